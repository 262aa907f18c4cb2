//! The token endpoint's errors, named after the codes of RFC 6749 §5.2. Each
//! carries a precise `error_description` for the client and a [`Reason`] for
//! logs and metrics; neither ever holds a secret.

use std::borrow::Cow;
use std::time::Duration;

/// Why a request failed, as a bounded set: the `reason` label of
/// `token_requests_total` and the field of every log line about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Issued,
    MalformedRequest,
    BodyTooLarge,
    /// The body did not arrive within the client timeout.
    SlowBody,
    UnsupportedGrantType,
    MalformedVerifier,
    UnknownClient,
    AuthFailed,
    /// A browser request from an origin the client does not allow (CORS).
    OriginNotAllowed,
    /// Too many failed authentications of this client or from this address.
    AuthRateLimited,
    UnknownCode,
    /// A code outside the contract's character set: no such code can exist.
    MalformedCode,
    Replay,
    /// A redeemed code presented by someone who is not its owner (another
    /// client, or the owner's id without the owner's verifier). Answered
    /// like an unknown code; nothing is revoked.
    ForeignReplay,
    /// The owner's retry of a redemption that was answered 503 after its
    /// take had consumed the code (the take did not reach enough replicas):
    /// no tokens were issued, so this is not a replay and nothing is
    /// revoked; the user must sign in again.
    ConsumedWithoutTokens,
    ClientMismatch,
    RedirectMismatch,
    PlainNotAllowed,
    PkceMismatch,
    /// The record's `resource` is not within the client's audience.
    TargetNotAllowed,
    BadRecord,
    StoreUnavailable,
    Internal,
}

impl Reason {
    pub const ALL: [Reason; 23] = [
        Self::Issued,
        Self::MalformedRequest,
        Self::BodyTooLarge,
        Self::SlowBody,
        Self::UnsupportedGrantType,
        Self::MalformedVerifier,
        Self::UnknownClient,
        Self::AuthFailed,
        Self::OriginNotAllowed,
        Self::AuthRateLimited,
        Self::UnknownCode,
        Self::MalformedCode,
        Self::Replay,
        Self::ForeignReplay,
        Self::ConsumedWithoutTokens,
        Self::ClientMismatch,
        Self::RedirectMismatch,
        Self::PlainNotAllowed,
        Self::PkceMismatch,
        Self::TargetNotAllowed,
        Self::BadRecord,
        Self::StoreUnavailable,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::MalformedRequest => "malformed_request",
            Self::BodyTooLarge => "body_too_large",
            Self::SlowBody => "slow_body",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::MalformedVerifier => "malformed_verifier",
            Self::UnknownClient => "unknown_client",
            Self::AuthFailed => "auth_failed",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::AuthRateLimited => "auth_rate_limited",
            Self::UnknownCode => "unknown_code",
            Self::MalformedCode => "malformed_code",
            Self::Replay => "replay",
            Self::ForeignReplay => "foreign_replay",
            Self::ConsumedWithoutTokens => "consumed_without_tokens",
            Self::ClientMismatch => "client_mismatch",
            Self::RedirectMismatch => "redirect_mismatch",
            Self::PlainNotAllowed => "plain_not_allowed",
            Self::PkceMismatch => "pkce_mismatch",
            Self::TargetNotAllowed => "target_not_allowed",
            Self::BadRecord => "bad_record",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
        }
    }

    /// The one mapping from a failure to its error code: RFC 6749 §5.2's,
    /// RFC 8707's `invalid_target`, or `temporarily_unavailable` (RFC 6749
    /// §4.1.2.1's code for an unavailable server, since §5.2 has none).
    /// `None` for success.
    ///
    /// - `invalid_request`: "The request is missing a required parameter,
    ///   includes an unsupported parameter value (other than grant type),
    ///   repeats a parameter, includes multiple credentials, utilizes more
    ///   than one mechanism for authenticating the client, or is otherwise
    ///   malformed."
    /// - `invalid_client`: "Client authentication failed (e.g., unknown
    ///   client, no client authentication included, or unsupported
    ///   authentication method)." Also too many failed authentications from
    ///   an address: the client cannot authenticate now, and RFC 6749 has no
    ///   code of its own for that.
    /// - `invalid_grant`: "The provided authorization grant ... is invalid,
    ///   expired, revoked, does not match the redirection URI used in the
    ///   authorization request, or was issued to another client." RFC 7636
    ///   §4.6: also a verifier that does not match the challenge.
    /// - `invalid_target` (RFC 8707 §2): "The requested resource is invalid,
    ///   missing, unknown, or malformed."
    /// - `unsupported_grant_type`: "The authorization grant type is not
    ///   supported by the authorization server."
    /// - `server_error`: §5.2 does not list it for the token endpoint; used
    ///   only for defects, never for a client's mistake.
    pub fn code(self) -> Option<&'static str> {
        Some(match self {
            Self::Issued => return None,
            Self::MalformedRequest
            | Self::BodyTooLarge
            | Self::SlowBody
            | Self::MalformedVerifier
            | Self::OriginNotAllowed => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnknownClient | Self::AuthFailed | Self::AuthRateLimited => "invalid_client",
            Self::UnknownCode
            | Self::MalformedCode
            | Self::Replay
            | Self::ForeignReplay
            | Self::ConsumedWithoutTokens
            | Self::ClientMismatch
            | Self::RedirectMismatch
            | Self::PlainNotAllowed
            | Self::PkceMismatch
            | Self::BadRecord => "invalid_grant",
            Self::TargetNotAllowed => "invalid_target",
            Self::StoreUnavailable => "temporarily_unavailable",
            Self::Internal => "server_error",
        })
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

/// The description of [`TokenError::unusable_code`] (RFC 6749 §5.2's own
/// list for `invalid_grant`).
const UNUSABLE_CODE: &str =
    "authorization code is invalid, has expired, or was not issued to this client";

/// An error answer of the token endpoint: why (its [`Reason`], from which
/// the error code follows, [`Reason::code`]), what the client is told, and
/// what the answer needs besides. The HTTP layer turns it into a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    reason: Reason,
    description: Cow<'static, str>,
    /// The client authenticated with the `Authorization` header: its
    /// `invalid_client` answers carry `WWW-Authenticate` (RFC 6749 §5.2).
    used_authorization_header: bool,
    /// How long a limited client is to wait (a 429's `Retry-After`).
    retry_after: Option<Duration>,
}

impl TokenError {
    /// A failure for `reason`, told as `description`.
    pub fn new(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            description: description.into(),
            used_authorization_header: false,
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Reason::MalformedRequest, description)
    }

    pub fn invalid_grant(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(reason, description)
    }

    /// An `invalid_client`; `used_authorization_header` when the client
    /// used Basic, so that the answer challenges it.
    pub fn invalid_client(
        reason: Reason,
        description: impl Into<Cow<'static, str>>,
        used_authorization_header: bool,
    ) -> Self {
        Self {
            used_authorization_header,
            ..Self::new(reason, description)
        }
    }

    /// Too many failed client authentications from this address in the
    /// current window: 429 with `Retry-After`, unread.
    pub fn rate_limited(retry_after: Duration, used_authorization_header: bool) -> Self {
        Self {
            retry_after: Some(retry_after),
            used_authorization_header,
            ..Self::new(
                Reason::AuthRateLimited,
                "too many failed client authentications from this address; retry after the time in Retry-After",
            )
        }
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

    /// The `error_description` member.
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn used_authorization_header(&self) -> bool {
        self.used_authorization_header
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
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
