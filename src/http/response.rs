//! Responses of the token endpoint: RFC 6749 §5.1 success and §5.2 errors,
//! with the headers both require. Every JSON error body of the service,
//! the dev endpoints' included, is built here ([`error_json`]).

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::grant::error::{Headers, TokenError};
use crate::grant::TokenResponse;

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// RFC 6749 §5.1: `Cache-Control: no-store` and `Pragma: no-cache` on any
/// response carrying tokens, JSON body, and the headers the answer carries.
pub fn token_response(tokens: &TokenResponse) -> HttpResponse {
    match serde_json::to_vec(tokens) {
        Ok(json) => {
            let mut response = HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, JSON))
                .insert_header((header::CACHE_CONTROL, NO_STORE))
                .insert_header((header::PRAGMA, NO_CACHE))
                .body(json);
            insert_headers(&mut response, &tokens.headers);
            response
        }
        Err(_) => error_response(&TokenError::server_error()),
    }
}

/// The answer's own headers. A value that is not a valid header value
/// (never one this service builds) is left out and logged, not sent
/// broken.
fn insert_headers(response: &mut HttpResponse, headers: &Headers) {
    for (name, value) in headers.iter() {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().insert(name, value);
            }
            _ => tracing::error!(header = name, "a response header is not valid; left out"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// A JSON error answer, `{"error": .., "error_description": ..}`, never
/// cached: the one shape of every error the service makes.
pub fn error_json(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let body = ErrorBody {
        error,
        error_description: description,
    };
    // Two strings in a struct always serialize.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, JSON))
        .insert_header((header::CACHE_CONTROL, NO_STORE))
        .insert_header((header::PRAGMA, NO_CACHE))
        .body(json)
}

/// RFC 6749 §5.2: the status and headers of the reason's row
/// ([`crate::grant::error`]) and those of this answer (`WWW-Authenticate`,
/// `Retry-After`).
pub fn error_response(error: &TokenError) -> HttpResponse {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = error_json(status, error.code(), error.description());
    insert_headers(&mut response, error.headers());
    response
}

pub async fn not_found() -> HttpResponse {
    error_json(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the token endpoint is POST /oauth/token",
    )
}
