//! Published metadata: the JWKS and an OpenID Connect discovery document.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

use super::AppState;

fn cached_json(body: &web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        // Public metadata: any browser app (an SPA's OIDC library fetching
        // discovery, a resource server's page fetching keys) may read it.
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .body(body.clone())
}

/// `GET /.well-known/jwks.json`: every signing key and every key kept for
/// verification only (RFC 7517 §5).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    cached_json(&state.jwks)
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery §4).
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    cached_json(&state.discovery)
}
