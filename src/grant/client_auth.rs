//! Client authentication at the token endpoint (RFC 6749 §2.3, §3.2.1):
//! the client exists and proves its identity the way it is registered to,
//! within the limits on failed authentication ([`super::abuse`]). Shared by
//! every grant type.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use secrecy::ExposeSecret;

use super::request::{ClientCredentials, PresentedAuth};
use super::{Reason, Redeemer, TokenError};
use crate::clients::{Client, ClientAuth};

impl Redeemer {
    /// RFC 6749 §3.2.1 and §2.3.1: the client exists and proved its identity
    /// the way it is registered to, within the failed-authentication limits
    /// (see [`crate::grant::abuse`] for what counts and why).
    pub(super) fn authenticate(
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
}
