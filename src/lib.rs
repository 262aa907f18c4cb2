//! An OAuth 2.0 token endpoint for the authorization code grant with PKCE
//! (RFC 6749 §4.1.3, RFC 7636), minting RFC 9068 access tokens and OpenID
//! Connect ID tokens, with Redis as its only state.
//!
//! # Layout
//! A request's path through the service, top-down:
//!
//! - [`http`]: actix-web routes; reads the body, maps results to RFC 6749 responses.
//! - [`request`]: raw form and `Authorization` header to a validated [`request::TokenRequest`].
//! - [`redeem`]: authenticate the client, take the code, mint the tokens.
//! - [`clients`]: the client registry and client authentication.
//! - [`origin`]: web origins as browsers send them (a client's CORS origins).
//! - [`abuse`]: limits on failed client authentication, per client and per address.
//! - [`store`]: the code store (Redis, or the embedded map): atomic, exactly-once take.
//! - [`record`]: the code record of the frontend contract and the checks made against it.
//! - [`pkce`]: RFC 7636 verifier syntax and S256/plain verification.
//! - [`tokens`]: keys, JWKS and the minting of access and ID tokens.
//! - [`error`]: the RFC 6749 §5.2 errors and the bounded set of failure reasons.
//! - [`metrics`]: Prometheus metrics.
//! - [`frontend`]: the login frontend's side of the contract (issue a code).
//! - [`config`], [`startup`], [`telemetry`]: settings, assembly, logging.
//! - `fuzzing` (hidden): the fuzz targets' properties, for `fuzz/` and the corpus replay test.

// The panic lints are the workspace's (Cargo.toml); unit tests may panic.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod clients;
pub mod config;
pub mod contract;
#[doc(hidden)]
pub mod fuzzing;
pub mod grant;
pub mod http;
pub mod metrics;
pub mod pkce;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;

/// Seconds since the Unix epoch: the clock of `iat`, `exp` and every TTL
/// derived from them. A clock before 1970 reads as 0.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
