//! The redemption itself, free of HTTP: authenticate the client, take the
//! code, mint the tokens. Data flows one way:
//! [`TokenRequest`] -> [`Client`] -> [`CodeRecord`] -> [`Minted`] -> [`TokenResponse`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::abuse::AuthFailureLimiter;
use crate::clients::{Client, ClientAuth, ClientRegistry};
use crate::error::{Reason, TokenError};
use crate::metrics::Metrics;
use crate::record::{check_resource, Mismatch, Presented};
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
/// [`Redeemer::for_worker`]): the registry, keys, limiter and metrics are
/// shared, the store connection is not.
pub struct Redeemer {
    pub store: CodeStore,
    pub clients: Arc<ClientRegistry>,
    pub minter: Arc<TokenMinter>,
    pub metrics: Metrics,
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
        if let Some(origin) = request.origin.as_deref() {
            if !client.allows_origin(origin) {
                let shown: String = origin.chars().take(128).collect();
                tracing::warn!(
                    security_event = "cors_origin_not_allowed",
                    client_id = %client.client_id,
                    origin = ?shown,
                    "a browser request from an origin this client does not allow: refused before the take"
                );
                return Err(TokenError::new(
                    Reason::OriginNotAllowed,
                    "this client may not be used from the Origin of this request (allowed_cors_origins); the code is left in place",
                ));
            }
        }
        if !request.code.is_well_formed() {
            tracing::info!(
                client_id = %client.client_id,
                "code outside the contract's character set or length: answered as unknown, the store not asked"
            );
            return Err(TokenError::unusable_code(Reason::MalformedCode));
        }
        let now = unix_now();
        let [grant_id, jti] = self.random_ids()?;
        let marker = GrantMarker {
            grant_id,
            tokens_expire_at: now + client.longest_token_lifetime().as_secs(),
            client_id: client.client_id.clone(),
            verifier_digest: request.verifier.s256_challenge().to_owned(),
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
            Ok(other) => return Err(self.refuse(other, client, &request).await),
            Err(e) => {
                self.metrics.store_errors.inc();
                tracing::error!(error = %e, "code store failed");
                return Err(TokenError::unavailable());
            }
        };
        if let Err(mismatch) = check_resource(record.resource.as_ref(), &client.resource_indicators)
        {
            // Nothing is issued; the record is consumed (no request could
            // ever redeem it), and its used marker goes so that a retry is
            // an unknown code, not a replay.
            self.store.forget_take(request.code.as_str()).await;
            tracing::warn!(
                security_event = "resource_not_allowed",
                client_id = %client.client_id,
                ?mismatch,
                "the grant names a resource outside the client's audience: no tokens issued, code consumed"
            );
            return Err(TokenError::new(
                Reason::TargetNotAllowed,
                mismatch.description(),
            ));
        }

        let started = Instant::now();
        let ids = GrantIds {
            grant_id: &marker.grant_id,
            jti: &jti,
            now,
        };
        let minted = self.minter.mint(&record, client, &ids).map_err(|e| {
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

    /// RFC 6749 §3.2.1 and §2.3.1: the client exists and proved its identity
    /// the way it is registered to, within the failed-authentication limits
    /// (see [`crate::abuse`] for what counts and why).
    fn authenticate(
        &self,
        credentials: &ClientCredentials,
        source: Option<IpAddr>,
    ) -> Result<&Arc<Client>, TokenError> {
        let used_header = credentials.method == PresentedAuth::Basic;
        let fail = |reason: Reason, description: &'static str, guess: bool| {
            tracing::warn!(
                security_event = "client_authentication_failed",
                client_registered = reason == Reason::AuthFailed,
                method = ?credentials.method,
                reason = reason.as_str(),
                counted = guess,
                "{description}"
            );
            TokenError::invalid_client(reason, description, used_header)
        };
        let client = self.clients.get(&credentials.client_id);
        // A request that offers a secret, or names no registered client, is
        // refused unread once its address is over the limit: a limited
        // guesser learns nothing, right or wrong. A public client's request
        // without a secret has nothing to guess and is never refused here.
        if credentials.secret.is_some() || client.is_none() {
            if let Some(address) = source {
                if let Err(retry_after) = self.limiter.check(address, Instant::now()) {
                    tracing::warn!(
                        security_event = "client_authentication_rate_limited",
                        client_id = client.map_or("<unregistered>", |c| c.client_id.as_str()),
                        source = %address,
                        retry_after_secs = TokenError::retry_after_secs(retry_after),
                        "too many failed client authentications from this address; request refused unread"
                    );
                    return Err(TokenError::rate_limited(retry_after, used_header));
                }
            }
        }
        let count_against_source = || {
            if let Some(address) = source {
                self.limiter.record_address_failure(address, Instant::now());
            }
        };
        let Some(client) = client else {
            count_against_source();
            return Err(fail(Reason::UnknownClient, "unknown client", true));
        };
        let secret = credentials.secret.as_ref().map(|s| s.expose_secret());
        match (&client.auth, credentials.method, secret) {
            (ClientAuth::None, PresentedAuth::None, None) => Ok(client),
            (ClientAuth::SecretBasic(hash), PresentedAuth::Basic, Some(secret))
            | (ClientAuth::SecretPost(hash), PresentedAuth::Post, Some(secret)) => {
                if hash.matches(secret) {
                    return Ok(client);
                }
                count_against_source();
                self.metrics.client_auth_failure(&client.client_id);
                if self
                    .limiter
                    .record_client_failure(&client.client_id, Instant::now())
                {
                    tracing::warn!(
                        security_event = "client_secret_guessing",
                        client_id = %client.client_id,
                        "failed secret checks of this client reached the alert threshold in this window; \
                         it is not refused (that would lock it out for everyone): see docs/security.md"
                    );
                }
                Err(fail(Reason::AuthFailed, "client authentication failed", true))
            }
            (ClientAuth::None, _, _) => Err(fail(
                Reason::AuthFailed,
                "this client is public (token_endpoint_auth_method none) and must not send a secret",
                false,
            )),
            (ClientAuth::SecretBasic(_), _, _) => Err(fail(
                Reason::AuthFailed,
                "this client must authenticate with HTTP Basic (client_secret_basic)",
                false,
            )),
            (ClientAuth::SecretPost(_), _, _) => Err(fail(
                Reason::AuthFailed,
                "this client must authenticate with client_secret in the body (client_secret_post)",
                false,
            )),
        }
    }

    /// Turn a take that found no redeemable code into the client's answer,
    /// logging the precise reason on the way. Whatever could tell a stranger
    /// that the code exists (issued to another client, redeemed by someone
    /// else) is answered like an unknown code.
    async fn refuse(
        &self,
        outcome: TakeOutcome,
        client: &Client,
        request: &TokenRequest,
    ) -> TokenError {
        let client_id = client.client_id.as_str();
        match outcome {
            TakeOutcome::Taken(_) => TokenError::server_error(),
            TakeOutcome::Unknown => TokenError::unusable_code(Reason::UnknownCode),
            TakeOutcome::Replayed(marker)
                if marker.is_owned_by(client_id, request.verifier.s256_challenge()) =>
            {
                self.metrics.code_replays.inc();
                tracing::warn!(
                    security_event = "code_replay",
                    client_id,
                    grant_id = %marker.grant_id,
                    "authorization code redeemed a second time by its owner; revoking the grant it produced"
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
            TakeOutcome::Replayed(marker) => {
                tracing::warn!(
                    security_event = "foreign_code_replay",
                    client_id,
                    same_client = marker.client_id == client_id,
                    grant_id = %marker.grant_id,
                    "a redeemed code presented by someone who is not its owner (another client, or without the owner's verifier): answered as unknown, nothing revoked"
                );
                TokenError::unusable_code(Reason::ForeignReplay)
            }
            TakeOutcome::BadRecord(bad) => {
                tracing::error!(client_id, reason = %bad, "unreadable code record: the login frontend broke the contract");
                TokenError::invalid_grant(
                    Reason::BadRecord,
                    "authorization code cannot be redeemed: its stored grant is malformed",
                )
            }
            TakeOutcome::Mismatch(mismatch) => {
                let error = match mismatch {
                    Mismatch::Client => TokenError::unusable_code(Reason::ClientMismatch),
                    Mismatch::RedirectUri => TokenError::invalid_grant(
                        Reason::RedirectMismatch,
                        "redirect_uri does not match the one of the authorization request",
                    ),
                    Mismatch::PlainNotAllowed => TokenError::invalid_grant(
                        Reason::PlainNotAllowed,
                        "authorization code uses the plain PKCE method, which this client may not use",
                    ),
                    Mismatch::Pkce => TokenError::invalid_grant(
                        Reason::PkceMismatch,
                        "code_verifier does not match the code_challenge (RFC 7636 section 4.6)",
                    ),
                };
                tracing::info!(
                    client_id,
                    reason = error.reason().as_str(),
                    "redemption refused; the code stays redeemable"
                );
                error
            }
        }
    }

    /// Two independent 128-bit random ids, base64url (the `grant_id` and the
    /// `jti`), from one call to the system RNG.
    fn random_ids(&self) -> Result<[String; 2], TokenError> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| {
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
