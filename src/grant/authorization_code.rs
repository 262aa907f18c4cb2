//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6): its
//! parameters, its validation, and its consume step, which takes the code
//! from the store exactly once with its checks (client, redirect URI, PKCE)
//! and turns a take that found nothing redeemable into the client's answer.
//! What it yields, the code's grant, goes on to the shared minting step
//! ([`super::Redeemer::redeem`]).

use std::time::Instant;

use super::error::{Reason, TokenError};
use super::request::TokenForm;
use super::{Context, Grant, GrantType, Redeemer};
use crate::clients::Client;
use crate::contract::record::{
    check, check_resource, is_well_formed_code, CodeRecord, Mismatch, Presented,
};
use crate::pkce::CodeVerifier;
use crate::store::{GrantMarker, TakeOutcome, TakeRequest};
use crate::tokens::{Binding, Granted};
use crate::unix_now;

/// `grant_type=authorization_code`, as presented.
#[derive(Debug)]
pub struct CodeGrant {
    code: AuthCode,
    redirect_uri: Option<String>,
    verifier: CodeVerifier,
}

impl CodeGrant {
    /// The code as presented (a secret: never log it).
    pub fn code(&self) -> &str {
        self.code.as_str()
    }

    /// Whether the code is within the contract's character set and length,
    /// so that the store is asked for it at all.
    pub fn code_is_well_formed(&self) -> bool {
        self.code.is_well_formed()
    }

    pub fn redirect_uri(&self) -> Option<&str> {
        self.redirect_uri.as_deref()
    }

    pub fn verifier(&self) -> &CodeVerifier {
        &self.verifier
    }
}

impl Grant for CodeGrant {
    const TYPE: GrantType = GrantType::AuthorizationCode;
    const PARAMETERS: &'static [&'static str] = &["code", "redirect_uri", "code_verifier"];

    fn parse(form: &mut TokenForm) -> Result<Self, TokenError> {
        let code = form
            .take("code")
            .ok_or_else(|| TokenError::invalid_request("code is required"))?;
        let verifier = form.take("code_verifier").ok_or_else(|| {
            TokenError::invalid_request(
                "code_verifier is required: this server requires PKCE (RFC 7636) for every authorization code",
            )
        })?;
        let verifier = CodeVerifier::parse(verifier)
            .map_err(|e| TokenError::new(Reason::MalformedVerifier, e.to_string()))?;
        Ok(Self {
            code: AuthCode::new(code),
            redirect_uri: form.take("redirect_uri"),
            verifier,
        })
    }

    /// A code outside the contract's character set or length was never
    /// issued: it is answered like an unknown code without asking the store
    /// (in Redis Cluster a brace in it would even split its keys over two
    /// slots).
    fn validate(&self, client: &Client) -> Result<(), TokenError> {
        if self.code.is_well_formed() {
            return Ok(());
        }
        tracing::info!(
            client_id = %client.client_id,
            "code outside the contract's character set or length: answered as unknown, the store not asked"
        );
        Err(TokenError::unusable_code(Reason::MalformedCode))
    }

    /// Take the code for the authenticated client, leaving a used marker
    /// that names this grant. The record's checks (client, redirect URI,
    /// PKCE) are this grant's, handed to the store to run on the record it
    /// reads, before it consumes anything.
    async fn consume(
        &self,
        redeemer: &Redeemer,
        context: &Context<'_>,
    ) -> Result<Granted, TokenError> {
        let client = context.client;
        let marker = GrantMarker {
            grant_id: context.grant_id.to_owned(),
            tokens_expire_at: context.now + client.longest_grant_lifetime().as_secs(),
            client_id: client.client_id.clone(),
            verifier_digest: self.verifier.s256_challenge().to_owned(),
        };
        let presented = Presented {
            client_id: &client.client_id,
            redirect_uri: self.redirect_uri.as_deref(),
            verifier: &self.verifier,
            allow_plain: client.allow_plain_pkce,
            dpop_jkt: match context.binding {
                Binding::Dpop { jkt } => Some(jkt),
                Binding::Bearer => None,
            },
        };
        let take = TakeRequest {
            code: self.code.as_str(),
            validate: &|record| check(record, &presented),
            grant: &marker,
            proof: context.proof,
        };
        let started = Instant::now();
        let outcome = redeemer.store.take(&take).await;
        redeemer
            .metrics
            .store_duration
            .observe(started.elapsed().as_secs_f64());
        let record = match outcome {
            Ok(TakeOutcome::Taken(record)) => record,
            Ok(other) => return Err(self.refuse(redeemer, other, client).await),
            Err(e) => {
                redeemer.metrics.store_errors.inc();
                tracing::error!(error = %e, "code store failed");
                if let Some(claim) = context.proof {
                    // Nothing was issued with this proof: the client's
                    // retry, as the 503 asks, may send it again.
                    redeemer.store.release_proof(claim).await;
                }
                return Err(TokenError::unavailable());
            }
        };
        if let Err(mismatch) = check_resource(record.resource.as_ref(), &client.resource_indicators)
        {
            // Nothing is issued; the record is consumed (no request could
            // ever redeem it), and its used marker goes so that a retry is
            // an unknown code, not a replay.
            redeemer.store.forget_take(self.code.as_str()).await;
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
        Ok(granted(*record, context.binding.clone()))
    }
}

/// What a code's record grants, for minting.
pub fn granted(record: CodeRecord, binding: Binding) -> Granted {
    Granted {
        sub: record.sub,
        scope: record.scope,
        resource: record.resource,
        auth_time: record.auth_time,
        acr: record.acr,
        amr: record.amr,
        nonce: record.nonce,
        claims: record.claims,
        binding,
    }
}

/// An authorization code as presented, and whether it can be one at all.
struct AuthCode {
    value: String,
    /// Within the contract's character set and length
    /// ([`is_well_formed_code`]).
    well_formed: bool,
}

impl AuthCode {
    fn new(value: String) -> Self {
        Self {
            well_formed: is_well_formed_code(&value),
            value,
        }
    }

    fn as_str(&self) -> &str {
        &self.value
    }

    fn is_well_formed(&self) -> bool {
        self.well_formed
    }
}

impl std::fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCode([redacted])")
    }
}

impl CodeGrant {
    /// Turn a take that found no redeemable code into the client's answer,
    /// logging the precise reason on the way. Whatever could tell a stranger
    /// that the code exists (issued to another client, redeemed by someone
    /// else) is answered like an unknown code.
    async fn refuse(
        &self,
        redeemer: &Redeemer,
        outcome: TakeOutcome,
        client: &Client,
    ) -> TokenError {
        let request = self;
        let client_id = client.client_id.as_str();
        match outcome {
            TakeOutcome::Taken(_) => TokenError::server_error(),
            TakeOutcome::Unknown => TokenError::unusable_code(Reason::UnknownCode),
            TakeOutcome::ProofReplayed => {
                tracing::warn!(
                    security_event = "dpop_proof_replay",
                    client_id,
                    "a DPoP proof presented a second time: refused before the take, the code is left in place"
                );
                TokenError::new(
                    Reason::DpopProofReplayed,
                    "this DPoP proof was already used (its jti, for this key): make a new proof for each request (RFC 9449 section 11.1)",
                )
            }
            TakeOutcome::Replayed(marker)
                if marker.is_owned_by(client_id, request.verifier.s256_challenge()) =>
            {
                redeemer.metrics.code_replays.inc();
                tracing::warn!(
                    security_event = "code_replay",
                    client_id,
                    grant_id = %marker.grant_id,
                    "authorization code redeemed a second time by its owner; revoking the grant it produced"
                );
                let ttl = marker.ttl(unix_now());
                if let Err(e) = redeemer.store.revoke_grant(&marker.grant_id, ttl).await {
                    redeemer.metrics.store_errors.inc();
                    tracing::error!(error = %e, grant_id = %marker.grant_id, "could not record the revocation of a replayed grant");
                }
                TokenError::invalid_grant(
                    Reason::Replay,
                    "authorization code has already been redeemed; the tokens issued for it are revoked",
                )
            }
            TakeOutcome::ConsumedWithoutTokens(marker)
                if marker.is_owned_by(client_id, request.verifier.s256_challenge()) =>
            {
                // The client did as a 503 asks and retried; the first
                // request consumed the code but issued nothing. Not a
                // replay: no security event, nothing to revoke.
                tracing::info!(
                    client_id,
                    grant_id = %marker.grant_id,
                    "retry of a redemption answered 503 after its take consumed the code: no tokens were ever issued"
                );
                TokenError::invalid_grant(
                    Reason::ConsumedWithoutTokens,
                    "authorization code was consumed by an earlier request that was answered 503 and issued no tokens; it cannot be redeemed, start a new authorization request",
                )
            }
            TakeOutcome::Replayed(marker) | TakeOutcome::ConsumedWithoutTokens(marker) => {
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
                    Mismatch::DpopProofMissing => TokenError::invalid_grant(
                        Reason::DpopKeyMismatch,
                        "authorization code is bound to a DPoP key (dpop_jkt, RFC 9449 section 10): send a DPoP proof made with that key",
                    ),
                    Mismatch::DpopKey => TokenError::invalid_grant(
                        Reason::DpopKeyMismatch,
                        "the DPoP proof's key is not the one the authorization code is bound to (dpop_jkt, RFC 9449 section 10)",
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
}
