//! Probes and metrics.

use std::sync::atomic::Ordering;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::store::CodeStore;

/// `GET /livez`: the process answers.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

/// `GET /readyz`: not shutting down, and the code store answers within its
/// command timeout.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().body("not ready: shutting down\n");
    }
    match &state.redeemer.store() {
        CodeStore::Memory(_) => HttpResponse::Ok().body("ready\n"),
        CodeStore::Redis(redis) => match redis.ping().await {
            Ok(()) => HttpResponse::Ok().body("ready\n"),
            // The detail (Redis' address and error) goes to the log, not to
            // an unauthenticated caller.
            Err(e) => {
                tracing::warn!(error = %e, "not ready: the code store does not answer");
                HttpResponse::ServiceUnavailable().body("not ready\n")
            }
        },
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        ))
        .body(state.redeemer.metrics().render())
}
