//! An OAuth 2.0 token endpoint for the authorization code grant with PKCE
//! (RFC 6749 §4.1.3, RFC 7636), minting RFC 9068 access tokens and OpenID
//! Connect ID tokens, with Redis as its only state.
//!
//! # Layout
//! A request's path through the service, top-down; each folder holds one idea.
//!
//! - [`http`]: actix-web and nothing else does. Routes, CORS, request ids, the
//!   discovery document and JWKS, the bound server and its graceful shutdown,
//!   the optional TLS listener; maps the domain's results to RFC 6749
//!   responses.
//! - [`grant`]: the token pipeline, one for every grant type
//!   (docs/architecture.md). Parse, authenticate the client (with the abuse
//!   limits), check its grant types and origin, the sender constraint (DPoP), the
//!   grant's validate and consume (the authorization code grant today),
//!   mint; the reason table (RFC 6749 §5.2 code, HTTP status, headers).
//! - [`dpop`]: DPoP proofs (RFC 9449, docs/dpop.md): every check of the
//!   proof but its replay, which the store claims with the grant's read;
//!   the key's thumbprint, the token endpoint's URL, server nonces.
//! - [`contract`]: the login frontend's contract: the code record and its
//!   checks, and the frontend's side (what an authorization request must be,
//!   issue a code).
//! - [`store`]: where codes live: Redis (`GET`, checks, `MULTI`; standalone, Cluster
//!   or Sentinel, over TLS or not) or the embedded map, both exactly once.
//! - [`clients`]: the client registry, web origins and redirect URIs.
//! - [`tokens`]: keys, JWKS and the minting of access and ID tokens.
//! - [`pkce`]: RFC 7636 verifier and challenge syntax, the challenge methods a
//!   client may use, and S256 verification.
//! - [`config`]: settings from the environment, each checked at start-up.
//! - [`service`]: the parts built from the settings, free of HTTP.
//! - [`tls`]: certificates and keys from files, and the rustls provider.
//! - [`metrics`], [`telemetry`]: Prometheus metrics, logging.
//!
//! The properties the fuzz targets check live beside them, in
//! `fuzz/properties`.

// The panic lints are the workspace's (Cargo.toml); unit tests may panic.
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod clients;
pub mod config;
pub mod contract;
pub mod dpop;
pub mod grant;
pub mod http;
pub mod metrics;
pub mod pkce;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tokens;

/// Seconds since the Unix epoch: the clock of `iat`, `exp` and every TTL
/// derived from them. A clock before 1970 reads as 0.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
