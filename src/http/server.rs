//! Serving: the service's state as actix-web sees it, the bound server, and
//! its graceful shutdown. Tests build the very same application.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::HeaderName;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use super::{request_id, routes, wellknown, AppState};
use crate::config::{ConfigError, Settings};

/// How often actix-http refreshes the clock its request-head deadlines are
/// computed from (`DateService`, a 500 ms interval).
const ACTIX_CLOCK_STEP: Duration = Duration::from_millis(500);

/// Why the service could not start. Each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TOKEN_ENDPOINT_BIND: cannot listen: {0}")]
    Bind(std::io::Error),
    /// A defect: the published documents are built from checked settings.
    #[error("the discovery document or JWKS could not be serialized: {0}")]
    Metadata(#[from] serde_json::Error),
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
        let tls = settings
            .tls
            .as_ref()
            .map(super::tls::server_config)
            .transpose()?;
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
        // actix sets the head's deadline from a clock it refreshes every
        // 500 ms (actix-http's DateService), so a deadline of T lands
        // anywhere in [T - 500 ms, T] after the connection arrives: at
        // T = 300 ms, 40% of healthy requests got an immediate 408. Adding
        // the step moves it to [T, T + 500 ms]: never shorter than set.
        .client_request_timeout(settings.limits.client_timeout + ACTIX_CLOCK_STEP)
        // Signals are ours (`run_until_stopped`): readiness must turn false
        // before the listener closes, which actix's own handling does not do.
        .disable_signals()
        // actix counts whole seconds: round up, and let `run_until_stopped`
        // end the drain at the configured millisecond.
        .shutdown_timeout(settings.drain_timeout.as_millis().div_ceil(1000).max(1) as u64);
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
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

/// The service's parts ([`crate::service::build`]) and what the HTTP layer
/// serves beside them.
pub async fn build_state(settings: &Settings) -> Result<AppState, StartupError> {
    let redeemer = crate::service::build(settings).await?;
    let published = wellknown::Published::new(settings, redeemer.minter())?;
    Ok(AppState {
        redeemer,
        dev_endpoints: settings.dev_endpoints,
        dev_hosts: super::DevHosts::new(settings.bind.ip(), &settings.issuer),
        cors_max_age: settings.cors_max_age.as_secs().into(),
        max_body_bytes: settings.max_body_bytes,
        jwks: published.jwks,
        discovery: published.discovery,
        draining: Arc::new(AtomicBool::new(false)),
        client_timeout: settings.limits.client_timeout,
        client_address_header: settings
            .limits
            .client_address_header
            .as_deref()
            .and_then(|name| HeaderName::from_bytes(name.as_bytes()).ok()),
    })
}
