//! The service's parts, built from its settings: clients, keys, the store,
//! metrics and abuse limits, assembled into the [`Redeemer`]. Nothing here
//! knows about HTTP; [`crate::http::server`] serves what this builds.

use std::sync::Arc;
use std::time::Duration;

use crate::clients::ClientRegistry;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::config::{ConfigError, DevEndpoints, RedisFiles, Settings, StoreSettings};
use crate::dpop::nonce::Nonces;
use crate::dpop::{DpopPolicy, NonceMode};
use crate::grant::abuse::AuthFailureLimiter;
use crate::grant::Redeemer;
use crate::metrics::Metrics;
use crate::store::{CodeStore, MemoryStore, RedisSettings, RedisStore, RedisTls, StoreError};
use crate::tls::{self, ClientIdentity};
use crate::tokens::keys::{
    alg_name, is_private_key_file, verification_key_from_pem_file, SigningKey,
};
use crate::tokens::{ring_provider, TokenMinter};

/// The Redis password and TLS material, read from their files and checked
/// (the service's settings, or `issue-code`'s options of the same names).
pub fn redis_access(files: &RedisFiles) -> Result<(Option<SecretString>, RedisTls), ConfigError> {
    let password = match &files.password {
        None => None,
        Some(path) => {
            const SETTING: &str = "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE";
            let bytes = SecretSlice::from(tls::read(SETTING, path)?);
            let text = std::str::from_utf8(bytes.expose_secret()).map_err(|_| {
                ConfigError::new(SETTING, format!("{} is not UTF-8", path.display()))
            })?;
            // One trailing newline is the file's, not the password's
            // (`echo secret > file`, a Secret written by hand).
            let password = text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(text);
            if password.is_empty() {
                return Err(ConfigError::new(
                    SETTING,
                    format!("{} is empty", path.display()),
                ));
            }
            Some(SecretString::from(password))
        }
    };
    let mut material = RedisTls::default();
    if let Some(path) = &files.ca {
        const SETTING: &str = "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE";
        let pem = tls::read(SETTING, path)?;
        tls::certificates(SETTING, path, &pem)?;
        material.ca = Some(pem);
    }
    if let Some(client) = &files.client {
        let cert = ("TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE", client.cert.as_path());
        let key = ("TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE", client.key.as_path());
        // Read and checked as a pair here, so that a bad file is named
        // rather than reported as a failed handshake.
        tls::certified_key(cert, key)?;
        material.client = Some(ClientIdentity {
            cert: tls::read(cert.0, cert.1)?,
            key: Arc::new(SecretSlice::from(tls::read(key.0, key.1)?)),
        });
    }
    Ok((password, material))
}

/// The setting to blame for a Redis that does not work for the service,
/// from what failed: the TLS handshake's verdict on either side, the
/// password, or else the URL (unreachable, a missing ACL permission).
fn redis_blame(e: StoreError, files: &RedisFiles) -> ConfigError {
    let why = e.to_string();
    let has = |needles: &[&str]| needles.iter().any(|n| why.contains(n));
    let (setting, hint) = if let StoreError::UnknownSentinelMaster(_) = e {
        (
            "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER",
            "the sentinels of TOKEN_ENDPOINT_REDIS_URL know no such master",
        )
    } else if has(&["UnknownIssuer", "BadSignature", "UnknownCA"]) {
        (
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
            "the server's certificate is not signed by a CA this setting (or, unset, the system) trusts",
        )
    } else if has(&["NotValidForName", "not valid for name"]) {
        (
            "TOKEN_ENDPOINT_REDIS_URL",
            "names a host the server's certificate is not for (the name is always checked)",
        )
    } else if has(&[
        "CertificateRequired",
        "BadCertificate",
        "alert: HandshakeFailure",
    ]) {
        (
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
            "the server refused the TLS handshake: it wants a client certificate it trusts",
        )
    } else if has(&["AuthenticationFailed", "WRONGPASS", "NOAUTH"]) {
        let setting = if files.password.is_some() {
            "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE"
        } else {
            "TOKEN_ENDPOINT_REDIS_URL"
        };
        (setting, "Redis refused this user and password")
    } else if has(&["NoPerm", "NOPERM"]) {
        (
            "TOKEN_ENDPOINT_REDIS_URL",
            "its user lacks a permission the service needs (docs/production-redis.md lists them)",
        )
    } else {
        (
            "TOKEN_ENDPOINT_REDIS_URL",
            "Redis does not work for this service",
        )
    };
    ConfigError::new(setting, format!("{hint}: {why}"))
}

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
            files,
        } => {
            let (password, tls) = redis_access(files)?;
            let redis = RedisStore::connect(&RedisSettings {
                url: url.clone(),
                topology: topology.clone(),
                keys: keys.clone(),
                connect_timeout: *connect_timeout,
                command_timeout: *command_timeout,
                replica_acks: *replica_acks,
                password,
                tls,
            })
            .await
            .map_err(|e| redis_blame(e, files))?;
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
    let dpop = dpop_policy(settings)?;
    Ok(Redeemer::new(
        store, clients, minter, metrics, limiter, dpop,
    ))
}

/// How DPoP proofs are checked: the settings, the token endpoint's URL as
/// discovery advertises it, and the nonce key, read from its file (or made
/// for this process on the embedded store).
pub fn dpop_policy(settings: &Settings) -> Result<DpopPolicy, ConfigError> {
    const SECRET: &str = "TOKEN_ENDPOINT_DPOP_NONCE_SECRET_FILE";
    let dpop = &settings.dpop;
    let nonce = match &dpop.nonce {
        None => NonceMode::Off,
        Some(nonce) => {
            let secret = match &nonce.secret_file {
                Some(path) => {
                    warn_if_exposed(path);
                    let secret = std::fs::read(path).map_err(|e| {
                        ConfigError::new(SECRET, format!("cannot read {}: {e}", path.display()))
                    })?;
                    if secret.len() < 32 {
                        return Err(ConfigError::new(
                            SECRET,
                            format!(
                                "{} holds {} bytes; a nonce key needs at least 32 (head -c 32 /dev/urandom | base64)",
                                path.display(),
                                secret.len()
                            ),
                        ));
                    }
                    secret
                }
                None => {
                    let mut secret = vec![0u8; 32];
                    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                        .map_err(|_| ConfigError::new(SECRET, "the system RNG failed"))?;
                    secret
                }
            };
            NonceMode::Required(Nonces::new(&secret, nonce.step_secs))
        }
    };
    DpopPolicy::new(
        dpop.algorithms.clone(),
        dpop.max_age_secs,
        dpop.max_future_secs,
        nonce,
        &format!("{}/oauth/token", settings.issuer),
    )
    .map_err(|e| ConfigError::new("TOKEN_ENDPOINT_ISSUER", e))
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
