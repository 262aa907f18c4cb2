//! The HTTP layer: the only part of the service that knows about actix-web.
//! Routes, request reading (`form`, shared by every form POST), CORS
//! (`cors`, the same for every endpoint a browser calls), and the mapping
//! of domain results to responses.

mod cors;
mod dev;
mod dev_authorize;
mod dev_host;
mod form;
mod ops;
mod request_id;
mod response;
pub mod server;
pub mod tls;
mod token;
mod wellknown;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web;

pub use self::dev_host::DevHosts;
pub use self::request_id::{request_id, X_REQUEST_ID};
pub use self::response::error_response;
pub use self::server::{build_state, Application, StartupError};
use crate::config::DevEndpoints;
use crate::grant::Redeemer;

/// What a worker serves from. Built once at start-up; each worker gets its
/// own copy ([`AppState::for_worker`]) that shares all but the store
/// connection.
pub struct AppState {
    pub redeemer: Redeemer,
    pub max_body_bytes: usize,
    /// `GET /.well-known/jwks.json`, serialized once.
    pub jwks: web::Bytes,
    /// `GET /.well-known/openid-configuration`, serialized once.
    pub discovery: web::Bytes,
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// How long a client may take to send its body.
    pub client_timeout: Duration,
    /// Whether `/dev/*` is mounted, and why.
    pub dev_endpoints: DevEndpoints,
    /// The `Host` names `/dev/*` answers to.
    pub dev_hosts: DevHosts,
    /// `Access-Control-Max-Age` of a CORS preflight (seconds).
    pub cors_max_age: HeaderValue,
    /// See [`crate::config::Limits::client_address_header`].
    pub client_address_header: Option<HeaderName>,
}

impl AppState {
    pub fn for_worker(&self) -> Self {
        Self {
            redeemer: self.redeemer.for_worker(),
            max_body_bytes: self.max_body_bytes,
            jwks: self.jwks.clone(),
            discovery: self.discovery.clone(),
            draining: self.draining.clone(),
            client_timeout: self.client_timeout,
            dev_endpoints: self.dev_endpoints,
            dev_hosts: self.dev_hosts.clone(),
            cors_max_age: self.cors_max_age.clone(),
            client_address_header: self.client_address_header.clone(),
        }
    }
}

/// Every route of the service; `/dev/*` only when `dev` says so.
pub fn routes(cfg: &mut web::ServiceConfig, dev: DevEndpoints) {
    cfg.service(
        web::resource("/oauth/token")
            .route(web::post().to(token::token))
            .route(web::method(actix_web::http::Method::OPTIONS).to(token::preflight))
            .default_service(web::to(token::method_not_allowed)),
    )
    .route("/.well-known/jwks.json", web::get().to(wellknown::jwks))
    .route(
        "/.well-known/openid-configuration",
        web::get().to(wellknown::discovery),
    )
    .route("/livez", web::get().to(ops::livez))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics));
    if dev != DevEndpoints::Off {
        cfg.route("/dev/codes", web::post().to(dev::issue_code))
            .route("/dev/authorize", web::get().to(dev_authorize::authorize));
    }
    cfg.default_service(web::to(response::not_found));
}
