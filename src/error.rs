//! The token endpoint's errors, named after the codes of RFC 6749 §5.2. Each
//! carries a precise `error_description` for the client and a [`Reason`] for
//! logs and metrics; neither ever holds a secret.

use std::borrow::Cow;

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
    pub const ALL: [Reason; 22] = [
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

    /// The `outcome` label: the RFC 6749 error code, `success` or `unavailable`.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Issued => "success",
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
            | Self::ClientMismatch
            | Self::RedirectMismatch
            | Self::PlainNotAllowed
            | Self::PkceMismatch
            | Self::BadRecord => "invalid_grant",
            Self::TargetNotAllowed => "invalid_target",
            Self::StoreUnavailable => "unavailable",
            Self::Internal => "server_error",
        }
    }
}

/// The description of [`TokenError::unusable_code`] (RFC 6749 §5.2's own
/// list for `invalid_grant`).
const UNUSABLE_CODE: &str =
    "authorization code is invalid, has expired, or was not issued to this client";

/// An error response of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// RFC 6749 §5.2 `invalid_request`: "The request is missing a required
    /// parameter, includes an unsupported parameter value (other than grant
    /// type), repeats a parameter, includes multiple credentials, utilizes
    /// more than one mechanism for authenticating the client, or is otherwise
    /// malformed."
    InvalidRequest {
        description: Cow<'static, str>,
        reason: Reason,
    },
    /// RFC 6749 §5.2 `invalid_client`: "Client authentication failed (e.g.,
    /// unknown client, no client authentication included, or unsupported
    /// authentication method)." Answered with 401; with
    /// `WWW-Authenticate: Basic` when the client used the Authorization header.
    InvalidClient {
        description: Cow<'static, str>,
        reason: Reason,
        used_authorization_header: bool,
    },
    /// RFC 6749 §5.2 `invalid_grant`: "The provided authorization grant ...
    /// is invalid, expired, revoked, does not match the redirection URI used
    /// in the authorization request, or was issued to another client."
    /// RFC 7636 §4.6: also a verifier that does not match the challenge.
    InvalidGrant {
        description: Cow<'static, str>,
        reason: Reason,
    },
    /// RFC 8707 §2 `invalid_target`: "The requested resource is invalid,
    /// missing, unknown, or malformed." Here: the `resource` the grant
    /// carries is not within the client's registered audience.
    InvalidTarget { description: Cow<'static, str> },
    /// RFC 6749 §5.2 `unsupported_grant_type`: "The authorization grant type
    /// is not supported by the authorization server."
    UnsupportedGrantType { description: Cow<'static, str> },
    /// Too many failed client authentications from this address in the
    /// current window: 429 with `Retry-After`, `error` `invalid_client` (the
    /// client cannot authenticate now; RFC 6749 has no code of its own for
    /// this), and `WWW-Authenticate` when the client used the header, as
    /// for any `invalid_client`. The request was not evaluated.
    AuthRateLimited {
        retry_after: std::time::Duration,
        used_authorization_header: bool,
    },
    /// The code store did not answer in time: 503 with `Retry-After`. Not an
    /// RFC 6749 code; the body uses `temporarily_unavailable` (RFC 6749
    /// §4.1.2.1's code for the same condition at the authorization endpoint).
    Unavailable,
    /// RFC 6749 §5.2 does not list it for the token endpoint; used only for
    /// defects (a token that could not be signed), never for client mistakes.
    ServerError,
}

impl TokenError {
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest {
            description: description.into(),
            reason: Reason::MalformedRequest,
        }
    }

    pub fn invalid_grant(reason: Reason, description: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidGrant {
            description: description.into(),
            reason,
        }
    }

    /// The one answer for a code this client cannot use and must learn
    /// nothing about: unknown, expired, malformed, issued to another client,
    /// or already redeemed by someone else. `reason` keeps the difference
    /// for logs and metrics.
    pub fn unusable_code(reason: Reason) -> Self {
        Self::invalid_grant(reason, UNUSABLE_CODE)
    }

    /// Seconds a 429 asks the client to wait: the time left, rounded up, so
    /// that a client never retries while still limited.
    pub fn retry_after_secs(retry_after: std::time::Duration) -> u64 {
        (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1)
    }

    pub fn reason(&self) -> Reason {
        match self {
            Self::InvalidRequest { reason, .. }
            | Self::InvalidClient { reason, .. }
            | Self::InvalidGrant { reason, .. } => *reason,
            Self::InvalidTarget { .. } => Reason::TargetNotAllowed,
            Self::UnsupportedGrantType { .. } => Reason::UnsupportedGrantType,
            Self::AuthRateLimited { .. } => Reason::AuthRateLimited,
            Self::Unavailable => Reason::StoreUnavailable,
            Self::ServerError => Reason::Internal,
        }
    }

    /// The `error` member.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::InvalidClient { .. } | Self::AuthRateLimited { .. } => "invalid_client",
            Self::InvalidGrant { .. } => "invalid_grant",
            Self::InvalidTarget { .. } => "invalid_target",
            Self::UnsupportedGrantType { .. } => "unsupported_grant_type",
            Self::Unavailable => "temporarily_unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The `error_description` member.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest { description, .. }
            | Self::InvalidClient { description, .. }
            | Self::InvalidGrant { description, .. }
            | Self::InvalidTarget { description }
            | Self::UnsupportedGrantType { description } => description,
            Self::AuthRateLimited { .. } => {
                "too many failed client authentications from this address; retry after the time in Retry-After"
            }
            Self::Unavailable => "the authorization code store is not answering; retry shortly",
            Self::ServerError => {
                "the server could not issue tokens; this is a defect, and it has been logged"
            }
        }
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
        use std::time::Duration;
        assert_eq!(
            TokenError::retry_after_secs(Duration::from_millis(9_001)),
            10
        );
        assert_eq!(TokenError::retry_after_secs(Duration::from_secs(9)), 9);
        assert_eq!(TokenError::retry_after_secs(Duration::ZERO), 1);
    }
}
