//! The redemption itself, free of HTTP: authenticate the client, take the
//! code, mint the tokens. Data flows one way:
//! [`TokenRequest`] -> [`Client`] -> [`CodeRecord`] -> [`Minted`] -> [`TokenResponse`].

use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::clients::{Client, ClientAuth, ClientRegistry};
use crate::error::{Reason, TokenError};
use crate::metrics::Metrics;
use crate::record::{Mismatch, Presented};
use crate::request::{ClientCredentials, PresentedAuth, TokenRequest};
use crate::store::{CodeStore, GrantMarker, TakeOutcome, TakeRequest};
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
/// [`Redeemer::for_worker`]): the registry, keys and metrics are shared, the
/// store connection is not.
pub struct Redeemer {
    pub store: CodeStore,
    pub clients: Arc<ClientRegistry>,
    pub minter: Arc<TokenMinter>,
    pub metrics: Metrics,
    rng: SystemRandom,
}

impl Redeemer {
    pub fn new(
        store: CodeStore,
        clients: ClientRegistry,
        minter: TokenMinter,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            clients: Arc::new(clients),
            minter: Arc::new(minter),
            metrics,
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
            rng: self.rng.clone(),
        }
    }

    /// Redeem one code. The caller records the outcome in the metrics, since
    /// it also sees the requests that never get this far.
    pub async fn redeem(&self, request: TokenRequest) -> Result<TokenResponse, TokenError> {
        let client = self.authenticate(&request.credentials)?;
        let now = unix_now();
        let [grant_id, jti] = self.random_ids()?;
        let marker = GrantMarker {
            grant_id,
            tokens_expire_at: now + client.access_token_lifetime.as_secs(),
        };
        let take = TakeRequest {
            code: request.code.as_str(),
            presented: Presented {
                client_id: &client.client_id,
                redirect_uri: request.redirect_uri.as_deref(),
                verifier: &request.verifier,
                allow_plain: client.allow_plain_pkce,
            },
            grant: &marker,
        };
        let started = Instant::now();
        let outcome = self.store.take(&take).await;
        self.metrics
            .store_duration
            .observe(started.elapsed().as_secs_f64());
        let record = match outcome {
            Ok(TakeOutcome::Taken(record)) => record,
            Ok(other) => return Err(self.refuse(other, client).await),
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::error!(error = %e, "code store failed");
                return Err(TokenError::Unavailable);
            }
        };

        let started = Instant::now();
        let ids = GrantIds {
            grant_id: &marker.grant_id,
            jti: &jti,
            now,
        };
        let minted = self.minter.mint(&record, client, &ids).map_err(|e| {
            tracing::error!(error = %e, client_id = %client.client_id, "minting failed after the code was taken");
            TokenError::ServerError
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

    /// RFC 6749 §3.2.1 and §2.3.1: the client exists and proved its identity
    /// the way it is registered to.
    fn authenticate(&self, credentials: &ClientCredentials) -> Result<&Arc<Client>, TokenError> {
        let used_header = credentials.method == PresentedAuth::Basic;
        let fail = |reason: Reason, description: &'static str| {
            tracing::warn!(
                security_event = "client_authentication_failed",
                client_registered = reason == Reason::AuthFailed,
                method = ?credentials.method,
                reason = reason.as_str(),
                "{description}"
            );
            TokenError::InvalidClient {
                description: description.into(),
                reason,
                used_authorization_header: used_header,
            }
        };
        let Some(client) = self.clients.get(&credentials.client_id) else {
            return Err(fail(Reason::UnknownClient, "unknown client"));
        };
        let secret = credentials.secret.as_ref().map(|s| s.expose_secret());
        match (&client.auth, credentials.method, secret) {
            (ClientAuth::None, PresentedAuth::None, None) => Ok(client),
            (ClientAuth::SecretBasic(hash), PresentedAuth::Basic, Some(secret))
            | (ClientAuth::SecretPost(hash), PresentedAuth::Post, Some(secret)) => {
                if hash.matches(secret) {
                    Ok(client)
                } else {
                    Err(fail(Reason::AuthFailed, "client authentication failed"))
                }
            }
            (ClientAuth::None, _, _) => Err(fail(
                Reason::AuthFailed,
                "this client is public (token_endpoint_auth_method none) and must not send a secret",
            )),
            (ClientAuth::SecretBasic(_), _, _) => Err(fail(
                Reason::AuthFailed,
                "this client must authenticate with HTTP Basic (client_secret_basic)",
            )),
            (ClientAuth::SecretPost(_), _, _) => Err(fail(
                Reason::AuthFailed,
                "this client must authenticate with client_secret in the body (client_secret_post)",
            )),
        }
    }

    /// Turn a take that found no redeemable code into the client's answer,
    /// logging the precise reason on the way.
    async fn refuse(&self, outcome: TakeOutcome, client: &Client) -> TokenError {
        let client_id = client.client_id.as_str();
        match outcome {
            TakeOutcome::Taken(_) => TokenError::ServerError,
            TakeOutcome::Unknown => TokenError::invalid_grant(
                Reason::UnknownCode,
                "authorization code is invalid or has expired",
            ),
            TakeOutcome::Replayed(marker) => {
                self.metrics.code_replays.inc();
                tracing::warn!(
                    security_event = "code_replay",
                    client_id,
                    grant_id = %marker.grant_id,
                    "authorization code redeemed a second time; revoking the grant it produced"
                );
                let ttl = marker.ttl(unix_now());
                if let Err(e) = self.store.revoke_grant(&marker.grant_id, ttl).await {
                    self.metrics.store_errors.inc();
                    tracing::error!(error = %e, grant_id = %marker.grant_id, "could not record the revocation of a replayed grant");
                }
                TokenError::invalid_grant(
                    Reason::Replay,
                    "authorization code has already been redeemed; the tokens issued for it are revoked",
                )
            }
            TakeOutcome::BadRecord(bad) => {
                tracing::error!(client_id, reason = %bad, "unreadable code record: the login frontend broke the contract");
                TokenError::invalid_grant(
                    Reason::BadRecord,
                    "authorization code cannot be redeemed: its stored grant is malformed",
                )
            }
            TakeOutcome::Mismatch(mismatch) => {
                let (reason, description) = match mismatch {
                    Mismatch::Client => (
                        Reason::ClientMismatch,
                        "authorization code was issued to another client",
                    ),
                    Mismatch::RedirectUri => (
                        Reason::RedirectMismatch,
                        "redirect_uri does not match the one of the authorization request",
                    ),
                    Mismatch::PlainNotAllowed => (
                        Reason::PlainNotAllowed,
                        "authorization code uses the plain PKCE method, which this client may not use",
                    ),
                    Mismatch::Pkce => (
                        Reason::PkceMismatch,
                        "code_verifier does not match the code_challenge (RFC 7636 section 4.6)",
                    ),
                };
                tracing::info!(
                    client_id,
                    reason = reason.as_str(),
                    "redemption refused; the code stays redeemable"
                );
                TokenError::invalid_grant(reason, description)
            }
        }
    }

    /// Two independent 128-bit random ids, base64url (the `grant_id` and the
    /// `jti`), from one call to the system RNG.
    fn random_ids(&self) -> Result<[String; 2], TokenError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| {
            tracing::error!("the system RNG failed");
            TokenError::ServerError
        })?;
        let (first, second) = bytes.split_at(16);
        Ok([
            URL_SAFE_NO_PAD.encode(first),
            URL_SAFE_NO_PAD.encode(second),
        ])
    }
}
