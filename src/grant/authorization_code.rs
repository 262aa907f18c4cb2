//! The authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.6): take the
//! code from the store, exactly once, with its checks (client, redirect
//! URI, PKCE), and turn a take that found nothing redeemable into the
//! client's answer. What the grant yields, the code's record, goes on to
//! the shared minting step ([`super::Redeemer::redeem`]).

use std::time::Instant;

use super::request::TokenRequest;
use super::{Reason, Redeemer, TokenError};
use crate::clients::Client;
use crate::contract::record::{check, check_resource, CodeRecord, Mismatch, Presented};
use crate::store::{GrantMarker, TakeOutcome, TakeRequest};
use crate::unix_now;

impl Redeemer {
    /// Take the code of `request` for `client` (authenticated), leaving
    /// `marker` behind; the record it held, checked.
    pub(super) async fn take_code(
        &self,
        client: &Client,
        request: &TokenRequest,
        marker: &GrantMarker,
    ) -> Result<Box<CodeRecord>, TokenError> {
        if !request.code.is_well_formed() {
            tracing::info!(
                client_id = %client.client_id,
                "code outside the contract's character set or length: answered as unknown, the store not asked"
            );
            return Err(TokenError::unusable_code(Reason::MalformedCode));
        }
        let presented = Presented {
            client_id: &client.client_id,
            redirect_uri: request.redirect_uri.as_deref(),
            verifier: &request.verifier,
            allow_plain: client.allow_plain_pkce,
        };
        let take = TakeRequest {
            code: request.code.as_str(),
            validate: &|record| check(record, &presented),
            grant: marker,
        };
        let started = Instant::now();
        let outcome = self.store.take(&take).await;
        self.metrics
            .store_duration
            .observe(started.elapsed().as_secs_f64());
        let record = match outcome {
            Ok(TakeOutcome::Taken(record)) => record,
            Ok(other) => return Err(self.refuse(other, client, request).await),
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

        Ok(record)
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
