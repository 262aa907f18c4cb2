//! Building the application from its settings: load clients and keys, connect
//! the store, bind the listener. Tests build the very same application.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::HeaderName;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use serde_json::json;

use crate::clients::ClientRegistry;
use crate::config::{ConfigError, DevEndpoints, Settings, StoreSettings};
use crate::grant::abuse::AuthFailureLimiter;
use crate::grant::Redeemer;
use crate::http::{request_id, routes, AppState};
use crate::metrics::Metrics;
use crate::store::{CodeStore, MemoryStore, RedisSettings, RedisStore, StoreError};
use crate::tokens::keys::{
    alg_name, is_private_key_file, verification_key_from_pem_file, SigningKey,
};
use crate::tokens::{ring_provider, TokenMinter};

/// Why the service could not start. Each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TOKEN_ENDPOINT_BIND: cannot listen: {0}")]
    Bind(std::io::Error),
}

/// A bound, not yet running, service.
pub struct Application {
    port: u16,
    server: Server,
    draining: Arc<AtomicBool>,
    shutdown_delay: Duration,
    drain_timeout: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(settings.bind).map_err(StartupError::Bind)?;
        Self::build_with_listener(settings, listener).await
    }

    /// Build on a listener the caller bound (tests bind port 0).
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> Result<Self, StartupError> {
        let state = web::Data::new(build_state(&settings).await?);
        Self::serve(state, listener, &settings)
    }

    /// Serve `state` on `listener`. Tests keep a handle on `state` to reach
    /// the very store the service uses.
    pub fn serve(
        state: web::Data<AppState>,
        listener: TcpListener,
        settings: &Settings,
    ) -> Result<Self, StartupError> {
        let port = listener.local_addr().map_err(StartupError::Bind)?.port();
        let dev = state.dev_endpoints;
        let draining = state.draining.clone();
        // The factory runs once on each worker thread: each worker's state
        // (and so its Redis connection) lives on that worker's runtime.
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(request_id))
                .app_data(web::Data::new(state.for_worker()))
                .configure(|cfg| routes(cfg, dev))
        })
        .workers(settings.workers)
        // The cap counts per worker in actix: an equal share each, rounded
        // down, so that all workers together never exceed it (the settings
        // refuse a cap below one per worker).
        .max_connections((settings.limits.max_connections / settings.workers.max(1)).max(1))
        .client_request_timeout(settings.limits.client_timeout)
        // Signals are ours (`run_until_stopped`): readiness must turn false
        // before the listener closes, which actix's own handling does not do.
        .disable_signals()
        // actix counts whole seconds: round up, and let `run_until_stopped`
        // end the drain at the configured millisecond.
        .shutdown_timeout(settings.drain_timeout.as_millis().div_ceil(1000).max(1) as u64)
        .listen(listener)
        .map_err(StartupError::Bind)?
        .run();
        Ok(Self {
            port,
            server,
            draining,
            shutdown_delay: settings.shutdown_delay,
            drain_timeout: settings.drain_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serve until SIGTERM or SIGINT (or [`ServerHandle::stop`]).
    ///
    /// On SIGTERM: `/readyz` turns 503 at once while requests are still
    /// served, for `TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS` (load balancers stop
    /// sending); then the listener closes and in-flight requests get up to
    /// `TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS` to finish, to the millisecond (actix
    /// counts whole seconds, so the end of the drain is timed here). SIGINT
    /// (Ctrl-C) skips the delay. Returns once every worker has stopped, or
    /// the drain time is up.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let draining = self.draining.clone();
        let delay = self.shutdown_delay;
        let drain = self.drain_timeout;
        let (drained, drain_over) = tokio::sync::oneshot::channel::<()>();
        let signals = tokio::spawn(async move {
            let signal = shutdown_signal().await;
            draining.store(true, Ordering::Relaxed);
            let delay = if signal == "SIGTERM" {
                delay
            } else {
                Duration::ZERO
            };
            tracing::info!(
                signal,
                delay_ms = delay.as_millis() as u64,
                drain_ms = drain.as_millis() as u64,
                "shutting down: readiness is now false; draining after the delay"
            );
            tokio::time::sleep(delay).await;
            tokio::select! {
                _ = handle.stop(true) => {}
                _ = tokio::time::sleep(drain) => {
                    tracing::warn!(
                        drain_ms = drain.as_millis() as u64,
                        "drain time is up: exiting with requests still in flight"
                    );
                    let _ = drained.send(());
                }
            }
        });
        // A sender dropped without sending (the drain ended in time) is no
        // reason to return: the server's own end is.
        let drain_over = async {
            if drain_over.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = self.server => result,
            () = drain_over => Ok(()),
        };
        signals.abort();
        result
    }
}

/// The first of SIGTERM and SIGINT, by name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        // Without signal handlers the process still stops on the default
        // action of the signal; there is just no graceful phase.
        _ => std::future::pending().await,
    }
}

/// Load everything the redemption path needs, once.
pub async fn build_state(settings: &Settings) -> Result<AppState, ConfigError> {
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

    let jwks = serde_json::to_vec(&minter.jwks())
        .unwrap_or_default()
        .into();
    let issuer = &settings.issuer;
    let mut discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": settings.authorization_endpoint,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms.iter().map(|a| alg_name(*a)).collect::<Vec<_>>(),
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    });
    if let (DevEndpoints::Demo | DevEndpoints::OptIn, Some(metadata)) =
        (settings.dev_endpoints, discovery.as_object_mut())
    {
        // The stand-in login page answers with `iss` (RFC 9207 section 3).
        metadata.insert(
            "authorization_response_iss_parameter_supported".into(),
            json!(true),
        );
    }
    let discovery = serde_json::to_vec(&discovery).unwrap_or_default().into();

    let limiter = Arc::new(AuthFailureLimiter::new(settings.limits.auth));
    limiter.spawn_sweeper(Duration::from_secs(10));
    Ok(AppState {
        redeemer: Redeemer::new(store, clients, minter, metrics, limiter),
        dev_endpoints: settings.dev_endpoints,
        cors_max_age: settings.cors_max_age.as_secs().into(),
        max_body_bytes: settings.max_body_bytes,
        jwks,
        discovery,
        draining: Arc::new(AtomicBool::new(false)),
        client_timeout: settings.limits.client_timeout,
        client_address_header: settings
            .limits
            .client_address_header
            .as_deref()
            .and_then(|name| HeaderName::from_bytes(name.as_bytes()).ok()),
    })
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
pub fn warn_if_exposed(path: &std::path::Path) {
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
