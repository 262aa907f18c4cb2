//! The token endpoint's answers to a failure, named after the codes of RFC
//! 6749 §5.2. Each carries a precise `error_description` for the client, a
//! [`Reason`] for logs and metrics, and the headers its answer needs;
//! neither description nor header ever holds a secret.
//!
//! Every reason is one row of one table ([`reasons!`]): its label, its
//! error code, its HTTP status and any header it always carries. A new
//! reason is one new row.

use std::borrow::Cow;
use std::time::Duration;

/// One row per failure: what [`Reason::as_str`], [`Reason::code`],
/// [`Reason::status`] and the answer's fixed headers say.
struct Row {
    label: &'static str,
    /// RFC 6749 §5.2's code (or RFC 8707's, or `temporarily_unavailable`);
    /// `None` for the success.
    code: Option<&'static str>,
    status: u16,
    /// A header every answer of this reason carries.
    header: Option<(&'static str, &'static str)>,
}

/// Declares [`Reason`], its declaration-ordered [`Reason::ALL`] (the metrics
/// index their counters by `reason as usize`) and its table, from one list.
macro_rules! reasons {
    ($( $(#[$doc:meta])* $name:ident => $label:literal, $code:expr, $status:literal $(, $header:expr)?; )*) => {
        /// Why a request failed, as a bounded set: the `reason` label of
        /// `token_requests_total` and the field of every log line about a
        /// failure.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $( $(#[$doc])* $name, )*
        }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$( Self::$name, )*];

            const fn row(self) -> Row {
                match self {
                    $( Self::$name => Row {
                        label: $label,
                        code: $code,
                        status: $status,
                        header: reasons!(@header $($header)?),
                    }, )*
                }
            }
        }
    };
    (@header $header:expr) => { Some($header) };
    (@header) => { None };
}

// The error codes, from RFC 6749 §5.2 unless said otherwise:
//
// - `invalid_request`: "The request is missing a required parameter,
//   includes an unsupported parameter value (other than grant type), repeats
//   a parameter, includes multiple credentials, utilizes more than one
//   mechanism for authenticating the client, or is otherwise malformed."
// - `invalid_client` (401): "Client authentication failed (e.g., unknown
//   client, no client authentication included, or unsupported
//   authentication method)." Also too many failed authentications from an
//   address (429): the client cannot authenticate now, and RFC 6749 has no
//   code of its own for that.
// - `invalid_grant`: "The provided authorization grant ... is invalid,
//   expired, revoked, does not match the redirection URI used in the
//   authorization request, or was issued to another client." RFC 7636 §4.6:
//   also a verifier that does not match the challenge.
// - `unauthorized_client`: "The authenticated client is not authorized to
//   use this authorization grant type."
// - `unsupported_grant_type`: "The authorization grant type is not
//   supported by the authorization server."
// - `invalid_target` (RFC 8707 §2): "The requested resource is invalid,
//   missing, unknown, or malformed."
// - `temporarily_unavailable` (503, RFC 6749 §4.1.2.1's code for an
//   unavailable server, since §5.2 has none), with `Retry-After`.
// - `invalid_dpop_proof` (RFC 9449 §5): "The DPoP proof JWT is invalid".
// - `use_dpop_nonce` (RFC 9449 §8): the proof must carry the server's
//   nonce, given in the answer's `DPoP-Nonce` header.
// - `server_error` (500): §5.2 does not list it for the token endpoint; used
//   only for defects, never for a client's mistake.
const INVALID_REQUEST: Option<&str> = Some("invalid_request");
const INVALID_CLIENT: Option<&str> = Some("invalid_client");
const INVALID_GRANT: Option<&str> = Some("invalid_grant");
const INVALID_DPOP_PROOF: Option<&str> = Some("invalid_dpop_proof");

reasons! {
    Issued => "issued", None, 200;
    MalformedRequest => "malformed_request", INVALID_REQUEST, 400;
    BodyTooLarge => "body_too_large", INVALID_REQUEST, 413;
    /// The body did not arrive within the client timeout.
    SlowBody => "slow_body", INVALID_REQUEST, 408;
    UnsupportedGrantType => "unsupported_grant_type", Some("unsupported_grant_type"), 400;
    MalformedVerifier => "malformed_verifier", INVALID_REQUEST, 400;
    UnknownClient => "unknown_client", INVALID_CLIENT, 401;
    AuthFailed => "auth_failed", INVALID_CLIENT, 401;
    /// The client authenticated, but is not registered for this grant type
    /// (its `grant_types`, RFC 7591 §2).
    GrantTypeNotAllowed => "grant_type_not_allowed", Some("unauthorized_client"), 400;
    /// A browser request from an origin the client does not allow (CORS).
    OriginNotAllowed => "origin_not_allowed", INVALID_REQUEST, 400;
    /// Too many failed authentications of this client or from this address.
    AuthRateLimited => "auth_rate_limited", INVALID_CLIENT, 429;
    /// A DPoP proof that fails a check of RFC 9449 §4.3, or more than one
    /// `DPoP` header.
    DpopProofInvalid => "dpop_proof_invalid", INVALID_DPOP_PROOF, 400;
    /// A DPoP proof accepted before (its key and `jti`).
    DpopProofReplayed => "dpop_proof_replayed", INVALID_DPOP_PROOF, 400;
    /// A DPoP proof without a live server nonce, where nonces are required;
    /// the answer carries one in `DPoP-Nonce`.
    DpopNonceRequired => "dpop_nonce_required", Some("use_dpop_nonce"), 400;
    /// No DPoP proof from a client registered with
    /// `dpop_bound_access_tokens`.
    DpopProofRequired => "dpop_proof_required", INVALID_REQUEST, 400;
    /// A code bound to a DPoP key (`dpop_jkt`, RFC 9449 §10) presented
    /// without a proof, or with a proof of another key.
    DpopKeyMismatch => "dpop_key_mismatch", INVALID_GRANT, 400;
    UnknownCode => "unknown_code", INVALID_GRANT, 400;
    /// A code outside the contract's character set: no such code can exist.
    MalformedCode => "malformed_code", INVALID_GRANT, 400;
    Replay => "replay", INVALID_GRANT, 400;
    /// A redeemed code presented by someone who is not its owner (another
    /// client, or the owner's id without the owner's verifier). Answered
    /// like an unknown code; nothing is revoked.
    ForeignReplay => "foreign_replay", INVALID_GRANT, 400;
    /// The owner's retry of a redemption that was answered 503 after its
    /// take had consumed the code (the take did not reach enough replicas):
    /// no tokens were issued, so this is not a replay and nothing is
    /// revoked; the user must sign in again.
    ConsumedWithoutTokens => "consumed_without_tokens", INVALID_GRANT, 400;
    ClientMismatch => "client_mismatch", INVALID_GRANT, 400;
    RedirectMismatch => "redirect_mismatch", INVALID_GRANT, 400;
    PlainNotAllowed => "plain_not_allowed", INVALID_GRANT, 400;
    PkceMismatch => "pkce_mismatch", INVALID_GRANT, 400;
    /// The record's `resource` is not within the client's audience.
    TargetNotAllowed => "target_not_allowed", Some("invalid_target"), 400;
    BadRecord => "bad_record", INVALID_GRANT, 400;
    StoreUnavailable => "store_unavailable", Some("temporarily_unavailable"), 503, ("retry-after", "1");
    Internal => "internal", Some("server_error"), 500;
}

impl Reason {
    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        self.row().label
    }

    /// The error code; `None` for the success.
    pub const fn code(self) -> Option<&'static str> {
        self.row().code
    }

    /// The HTTP status of its answer.
    pub const fn status(self) -> u16 {
        self.row().status
    }

    /// The `outcome` label of `token_requests_total`: the error code, with
    /// `success` and `unavailable` for the two answers that are not a
    /// client's error (names the dashboards and alerts use).
    pub fn outcome(self) -> &'static str {
        match self.code() {
            None => "success",
            Some("temporarily_unavailable") => "unavailable",
            Some(code) => code,
        }
    }
}

/// Headers an answer carries besides its body: `Retry-After`,
/// `WWW-Authenticate`, and next `DPoP-Nonce`. Names are lowercase, as
/// HTTP/2 writes them; values are visible ASCII, never a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(&'static str, Cow<'static, str>)>);

impl Headers {
    /// Set `name` to `value`, replacing any earlier value.
    pub fn set(&mut self, name: &'static str, value: impl Into<Cow<'static, str>>) {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().map(|(n, v)| (*n, v.as_ref()))
    }
}

/// The description of [`TokenError::unusable_code`] (RFC 6749 §5.2's own
/// list for `invalid_grant`).
const UNUSABLE_CODE: &str =
    "authorization code is invalid, has expired, or was not issued to this client";

/// `WWW-Authenticate` of an `invalid_client` answer to a client that used
/// the Authorization header (RFC 6749 §5.2).
const BASIC_CHALLENGE: &str = "Basic realm=\"token\", charset=\"UTF-8\"";

/// An error answer of the token endpoint: why (its [`Reason`], from which
/// the error code and status follow), what the client is told, and the
/// headers the answer carries. The HTTP layer turns it into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    reason: Reason,
    description: Cow<'static, str>,
    headers: Headers,
}

impl TokenError {
    /// A failure for `reason`, told as `description`, with the headers its
    /// row always carries.
    pub fn new(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        let mut headers = Headers::default();
        if let Some((name, value)) = reason.row().header {
            headers.set(name, value);
        }
        Self {
            reason,
            description: description.into(),
            headers,
        }
    }

    /// The same answer with `name: value` besides.
    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.set(name, value);
        self
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Reason::MalformedRequest, description)
    }

    pub fn invalid_grant(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(reason, description)
    }

    /// An `invalid_client`; `used_authorization_header` when the client
    /// used Basic, so that the answer challenges it (RFC 6749 §5.2).
    pub fn invalid_client(
        reason: Reason,
        description: impl Into<Cow<'static, str>>,
        used_authorization_header: bool,
    ) -> Self {
        let error = Self::new(reason, description);
        if used_authorization_header {
            error.with_header("www-authenticate", BASIC_CHALLENGE)
        } else {
            error
        }
    }

    /// Too many failed client authentications from this address in the
    /// current window: 429 with `Retry-After`, unread.
    pub fn rate_limited(retry_after: Duration, used_authorization_header: bool) -> Self {
        Self::invalid_client(
            Reason::AuthRateLimited,
            "too many failed client authentications from this address; retry after the time in Retry-After",
            used_authorization_header,
        )
        .with_header(
            "retry-after",
            Self::retry_after_secs(retry_after).to_string(),
        )
    }

    /// The code store did not answer in time: 503 with `Retry-After`.
    pub fn unavailable() -> Self {
        Self::new(
            Reason::StoreUnavailable,
            "the authorization code store is not answering; retry shortly",
        )
    }

    /// A defect (a token that could not be signed), never a client's mistake.
    pub fn server_error() -> Self {
        Self::new(
            Reason::Internal,
            "the server could not issue tokens; this is a defect, and it has been logged",
        )
    }

    /// The one answer for a code this client cannot use and must learn
    /// nothing about: unknown, expired, malformed, issued to another client,
    /// or already redeemed by someone else. `reason` keeps the difference
    /// for logs and metrics.
    pub fn unusable_code(reason: Reason) -> Self {
        Self::new(reason, UNUSABLE_CODE)
    }

    /// Seconds a 429 asks the client to wait: the time left, rounded up, so
    /// that a client never retries while still limited.
    pub fn retry_after_secs(retry_after: Duration) -> u64 {
        (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1)
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The `error` member.
    pub fn code(&self) -> &'static str {
        self.reason.code().unwrap_or("server_error")
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The `error_description` member.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The headers the answer carries.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Whether the answer challenges the client to authenticate with the
    /// Authorization header (`WWW-Authenticate`, RFC 6749 §5.2).
    pub fn used_authorization_header(&self) -> bool {
        self.headers.get("www-authenticate").is_some()
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.description())
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics index their counters by `reason as usize`: `ALL` must
    /// list every reason in declaration order.
    #[test]
    fn all_reasons_are_listed_in_order() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
    }

    /// Labels are unique, and only the success has no error code.
    #[test]
    fn every_row_is_distinct_and_complete() {
        let labels: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), Reason::ALL.len());
        for reason in Reason::ALL {
            assert_eq!(
                reason.code().is_none(),
                *reason == Reason::Issued,
                "{reason:?}"
            );
            if reason.code() == Some("invalid_client") {
                assert!([401, 429].contains(&reason.status()), "{reason:?}");
            }
        }
    }

    #[test]
    fn headers_follow_the_row_and_the_constructor() {
        assert_eq!(
            TokenError::unavailable().headers().get("retry-after"),
            Some("1")
        );
        let limited = TokenError::rate_limited(Duration::from_millis(9_001), true);
        assert_eq!(limited.headers().get("retry-after"), Some("10"));
        assert_eq!(
            limited.headers().get("www-authenticate"),
            Some(BASIC_CHALLENGE)
        );
        let plain = TokenError::invalid_client(Reason::AuthFailed, "x", false);
        assert_eq!(plain.headers().iter().count(), 0);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            TokenError::retry_after_secs(Duration::from_millis(9_001)),
            10
        );
        assert_eq!(TokenError::retry_after_secs(Duration::from_secs(9)), 9);
        assert_eq!(TokenError::retry_after_secs(Duration::ZERO), 1);
    }
}
