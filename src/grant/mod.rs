//! The token request's path, free of HTTP: authenticate the client, check
//! the browser origin, run the grant, mint the tokens. Data flows one way:
//! [`TokenRequest`] -> [`Client`] -> [`CodeRecord`](crate::contract::record::CodeRecord) -> `Minted` ->
//! [`TokenResponse`].
//!
//! A grant type is one module that turns a validated request into what the
//! tokens are minted from: `authorization_code` today. Client
//! authentication (`client_auth`, with [`abuse`]'s limits), the origin
//! check and minting are shared steps around it.

pub mod abuse;
mod authorization_code;
mod client_auth;
pub mod error;
pub mod request;

pub use self::error::{Reason, TokenError};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use self::abuse::AuthFailureLimiter;
use self::request::TokenRequest;
use crate::clients::{Client, ClientRegistry};
use crate::metrics::Metrics;
use crate::store::{CodeStore, GrantMarker};
use crate::tokens::{GrantIds, TokenMinter};
use crate::unix_now;

/// RFC 6749 §5.1 successful response.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Everything a redemption needs. Each worker has its own (see
/// [`Redeemer::for_worker`]): the registry, keys, limiter and metrics are
/// shared, the store connection is not.
pub struct Redeemer {
    store: CodeStore,
    clients: Arc<ClientRegistry>,
    minter: Arc<TokenMinter>,
    metrics: Metrics,
    limiter: Arc<AuthFailureLimiter>,
    rng: SystemRandom,
}

impl Redeemer {
    pub fn new(
        store: CodeStore,
        clients: ClientRegistry,
        minter: TokenMinter,
        metrics: Metrics,
        limiter: Arc<AuthFailureLimiter>,
    ) -> Self {
        Self {
            store,
            clients: Arc::new(clients),
            minter: Arc::new(minter),
            metrics,
            limiter,
            rng: SystemRandom::new(),
        }
    }

    /// The same redeemer for another worker thread: everything shared but
    /// the store's connection, which the worker opens on its own runtime so
    /// that its commands never hop threads.
    pub fn for_worker(&self) -> Self {
        Self {
            store: self.store.for_worker(),
            clients: self.clients.clone(),
            minter: self.minter.clone(),
            metrics: self.metrics.clone(),
            limiter: self.limiter.clone(),
            rng: self.rng.clone(),
        }
    }

    /// Redeem one code presented from `source` (the client's address, when
    /// known). The caller records the outcome in the metrics, since it also
    /// sees the requests that never get this far.
    pub async fn redeem(
        &self,
        request: TokenRequest,
        source: Option<IpAddr>,
    ) -> Result<TokenResponse, TokenError> {
        let client = self.authenticate(&request.credentials, source)?;
        check_origin(client, request.origin.as_deref())?;
        let now = unix_now();
        let [grant_id, jti] = self.random_ids()?;
        let marker = GrantMarker {
            grant_id,
            tokens_expire_at: now + client.longest_token_lifetime().as_secs(),
            client_id: client.client_id.clone(),
            verifier_digest: request.verifier.s256_challenge().to_owned(),
        };
        let record = self.take_code(client, &request, &marker).await?;

        let started = Instant::now();
        let ids = GrantIds {
            grant_id: &marker.grant_id,
            jti: &jti,
            now,
        };
        let minted = self
            .minter
            .mint(&record, &client.recipient(), &ids)
            .map_err(|e| {
                tracing::error!(error = %e, client_id = %client.client_id, "minting failed after the code was taken");
                TokenError::server_error()
            })?;
        self.metrics
            .signing_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.access_tokens.inc();
        if minted.id_token.is_some() {
            self.metrics.id_tokens.inc();
        }
        tracing::debug!(client_id = %client.client_id, grant_id = %marker.grant_id, "tokens issued");
        Ok(TokenResponse {
            access_token: minted.access_token,
            token_type: "Bearer",
            expires_in: minted.expires_in,
            scope: record.scope,
            id_token: minted.id_token,
        })
    }

    /// The code store, for what the HTTP layer asks of it directly: readiness
    /// and the dev endpoints' codes.
    pub fn store(&self) -> &CodeStore {
        &self.store
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The `iss` of every token.
    pub fn issuer(&self) -> &str {
        self.minter.issuer()
    }

    /// The keys' public halves, as the JWKS publishes them, and the
    /// algorithms ID tokens can be signed with.
    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    /// Two independent 128-bit random ids, base64url (the `grant_id` and the
    /// `jti`), from this thread's pool of system randomness.
    fn random_ids(&self) -> Result<[String; 2], TokenError> {
        let bytes = RANDOM_POOL
            .with_borrow_mut(|pool| pool.take(&self.rng))
            .map_err(|_| {
                tracing::error!("the system RNG failed");
                TokenError::server_error()
            })?;
        let (first, second) = bytes.split_at(16);
        Ok([
            URL_SAFE_NO_PAD.encode(first),
            URL_SAFE_NO_PAD.encode(second),
        ])
    }
}

thread_local! {
    static RANDOM_POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool { chunks: [[0; 32]; 32], next: 32 })
    };
}

/// System randomness fetched 1 KiB at a time: one `getrandom` call per 32
/// redemptions instead of one per redemption (measured: 0.7% of the
/// service's CPU, BENCHMARKS.md). The bytes are the kernel's, each used
/// once; the ids they become are not secrets (they travel in the tokens),
/// only unguessable.
struct RandomPool {
    chunks: [[u8; 32]; 32],
    next: usize,
}

impl RandomPool {
    fn take(&mut self, rng: &SystemRandom) -> Result<[u8; 32], ring::error::Unspecified> {
        if self.next >= self.chunks.len() {
            rng.fill(self.chunks.as_flattened_mut())?;
            self.next = 0;
        }
        let chunk = self
            .chunks
            .get_mut(self.next)
            .ok_or(ring::error::Unspecified)?;
        let out = *chunk;
        // Never handed out twice, even should a later refill fail.
        *chunk = [0; 32];
        self.next += 1;
        Ok(out)
    }
}

/// CORS (docs/browser-apps.md): a browser request whose client does not
/// allow its origin is refused before anything is taken, whatever the grant.
fn check_origin(client: &Client, origin: Option<&str>) -> Result<(), TokenError> {
    let Some(origin) = origin else {
        return Ok(());
    };
    if client.allows_origin(origin) {
        return Ok(());
    }
    let shown: String = origin.chars().take(128).collect();
    tracing::warn!(
        security_event = "cors_origin_not_allowed",
        client_id = %client.client_id,
        origin = ?shown,
        "a browser request from an origin this client does not allow: refused before the take"
    );
    Err(TokenError::new(
        Reason::OriginNotAllowed,
        "this client may not be used from the Origin of this request (allowed_cors_origins); the code is left in place",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Across refills, every take is fresh: no chunk handed out twice, none
    /// left zeroed.
    #[test]
    fn the_random_pool_never_repeats() {
        let rng = SystemRandom::new();
        let mut pool = RandomPool {
            chunks: [[0; 32]; 32],
            next: 32,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let bytes = pool.take(&rng).unwrap();
            assert_ne!(bytes, [0; 32]);
            assert!(seen.insert(bytes));
        }
    }
}
