//! The service's parts, built from its settings: clients, keys, the store,
//! metrics and abuse limits, assembled into the [`Redeemer`]. Nothing here
//! knows about HTTP; [`crate::http::server`] serves what this builds.

use std::sync::Arc;
use std::time::Duration;

use crate::clients::ClientRegistry;
use crate::config::{ConfigError, DevEndpoints, Settings, StoreSettings};
use crate::grant::abuse::AuthFailureLimiter;
use crate::grant::Redeemer;
use crate::metrics::Metrics;
use crate::store::{CodeStore, MemoryStore, RedisSettings, RedisStore, StoreError};
use crate::tokens::keys::{
    alg_name, is_private_key_file, verification_key_from_pem_file, SigningKey,
};
use crate::tokens::{ring_provider, TokenMinter};

/// Load everything the redemption path needs, once. A setting that cannot
/// be used is an error naming it.
pub async fn build(settings: &Settings) -> Result<Redeemer, ConfigError> {
    ring_provider::install();

    let clients = match &settings.clients_file {
        Some(path) => ClientRegistry::from_file(path)
            .map_err(|e| ConfigError::new("TOKEN_ENDPOINT_CLIENTS_FILE", e.to_string()))?,
        None => {
            tracing::info!("no TOKEN_ENDPOINT_CLIENTS_FILE: serving the demo clients `demo` (public) and `demo-confidential` (secret `demo-secret`)");
            ClientRegistry::demo()
        }
    };

    let signing = if settings.signing_keys.is_empty() {
        tracing::warn!(
            "NO SIGNING KEY CONFIGURED: signing with an EPHEMERAL P-256 key generated at start-up. \
             Every token becomes unverifiable when this process stops. Set TOKEN_ENDPOINT_SIGNING_KEYS for anything but a trial."
        );
        vec![SigningKey::ephemeral()]
    } else {
        for path in &settings.signing_keys {
            warn_if_exposed(path);
        }
        settings
            .signing_keys
            .iter()
            .map(|path| SigningKey::from_pem_file(path))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new("TOKEN_ENDPOINT_SIGNING_KEYS", e.to_string()))?
    };
    for path in &settings.verification_keys {
        // A private key kept for verification is a private key all the same.
        if is_private_key_file(path) {
            warn_if_exposed(path);
        }
    }
    let verification = settings
        .verification_keys
        .iter()
        .map(|path| verification_key_from_pem_file(path))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new("TOKEN_ENDPOINT_VERIFICATION_KEYS", e.to_string()))?;
    let minter = TokenMinter::new(settings.issuer.clone(), signing, verification)
        .map_err(|e| ConfigError::new("TOKEN_ENDPOINT_SIGNING_KEYS", e.to_string()))?;
    let algorithms = minter.algorithms();
    for client in clients.iter() {
        if !algorithms.contains(&client.id_token_alg) {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_CLIENTS_FILE",
                format!(
                    "client {:?}: id_token_signed_response_alg is {}, but TOKEN_ENDPOINT_SIGNING_KEYS has no such key",
                    client.client_id,
                    client.id_token_alg_name()
                ),
            ));
        }
    }

    let store = match &settings.store {
        StoreSettings::Embedded => {
            tracing::warn!("no TOKEN_ENDPOINT_REDIS_URL: codes live in this process only (embedded store); run a single replica");
            let store = MemoryStore::new();
            store.spawn_sweeper(Duration::from_secs(1));
            CodeStore::Memory(store)
        }
        StoreSettings::Redis {
            url,
            topology,
            keys,
            connect_timeout,
            command_timeout,
            replica_acks,
        } => {
            let redis = RedisStore::connect(&RedisSettings {
                url: url.clone(),
                topology: topology.clone(),
                keys: keys.clone(),
                connect_timeout: *connect_timeout,
                command_timeout: *command_timeout,
                replica_acks: *replica_acks,
            })
            .await
            .map_err(|e| match e {
                StoreError::UnknownSentinelMaster(_) => ConfigError::new(
                    "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER",
                    format!("the sentinels of TOKEN_ENDPOINT_REDIS_URL know no such master: {e}"),
                ),
                other => ConfigError::new(
                    "TOKEN_ENDPOINT_REDIS_URL",
                    format!("Redis does not work for this service: {other}"),
                ),
            })?;
            CodeStore::Redis(Box::new(redis))
        }
    };

    let access_key = minter.access_token_key();
    let metrics = Metrics::new(store.kind(), access_key.kid(), alg_name(access_key.alg()));
    metrics.watch_clients(
        clients
            .iter()
            .filter(|c| c.is_confidential())
            .map(|c| c.client_id.as_str()),
    );
    warn_about_settings(settings);
    if let Some(connections) = store.connection_metrics() {
        metrics.watch_connections(connections);
    }
    // The first configured key signs access tokens; an ephemeral one was
    // made just now, which is the gauge's default.
    if let Some(made) = settings
        .signing_keys
        .first()
        .and_then(|path| std::fs::metadata(path).ok()?.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
    {
        metrics.signing_key_created.set(made.as_secs_f64());
    }
    tracing::info!(
        store = store.kind(),
        issuer = %settings.issuer,
        kid = access_key.kid(),
        alg = alg_name(access_key.alg()),
        clients = clients.iter().count(),
        "token endpoint ready"
    );

    let limiter = Arc::new(AuthFailureLimiter::new(settings.limits.auth));
    limiter.spawn_sweeper(Duration::from_secs(10));
    Ok(Redeemer::new(store, clients, minter, metrics, limiter))
}

/// Settings that are allowed but dangerous, said once at start-up.
fn warn_about_settings(settings: &Settings) {
    match settings.dev_endpoints {
        DevEndpoints::Off => {}
        DevEndpoints::Demo => tracing::info!(
            "zero-configuration demo: POST /dev/codes issues codes for the demo clients (mounted only in this demo)"
        ),
        DevEndpoints::OptIn => tracing::warn!(
            "TOKEN_ENDPOINT_DEV_ENDPOINTS=on: POST /dev/codes is mounted and mints a code for ANY client and subject without a login. \
             Anyone who reaches this port can get tokens signed by this service's key. Never expose it"
        ),
    }
    if !settings.bind.ip().is_loopback() && settings.limits.client_address_header.is_none() {
        tracing::warn!(
            bind = %settings.bind,
            "listening beyond loopback without TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER: failed client authentications are limited per TCP peer. \
             Behind a load balancer or ingress every request comes from its address, and one guesser would lock out every client; \
             set TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER to the header it sets (for example X-Forwarded-For)"
        );
    }
}

/// Warn when a private key file is open to others: any permission for
/// "other", or write for the group. Group read is accepted: it is how
/// Kubernetes gives a non-root container a Secret (`defaultMode: 0440` with
/// `fsGroup`). A warning, not a refusal: the key may be readable on purpose
/// (a sidecar), and refusing would take the service down on a `chmod`.
fn warn_if_exposed(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = std::fs::metadata(path) else {
            return; // loading the key reports a missing file
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o027 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{mode:o}"),
                "private key file is readable or writable by others: chmod 600 (or 440 for a group that needs it)"
            );
        }
    }
}
