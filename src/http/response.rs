//! Responses of the token endpoint: RFC 6749 §5.1 success and §5.2 errors,
//! with the headers both require. Every JSON error body of the service,
//! the dev endpoints' included, is built here ([`error_json`]).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::grant::error::{Reason, TokenError};

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// RFC 6749 §5.1: `Cache-Control: no-store` and `Pragma: no-cache` on any
/// response carrying tokens, JSON body.
pub fn token_response(body: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(json) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, JSON))
            .insert_header((header::CACHE_CONTROL, NO_STORE))
            .insert_header((header::PRAGMA, NO_CACHE))
            .body(json),
        Err(_) => error_response(&TokenError::server_error()),
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

/// The HTTP status of a failure: RFC 6749 §5.2's 400, except
/// `invalid_client` (401), a body over the limit (413), a body too slow to
/// arrive (408), too many failed client authentications (429), an
/// unavailable store (503) and a defect (500).
fn status(error: &TokenError) -> StatusCode {
    match error.reason() {
        Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::SlowBody => StatusCode::REQUEST_TIMEOUT,
        Reason::AuthRateLimited => StatusCode::TOO_MANY_REQUESTS,
        Reason::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ if error.code() == "invalid_client" => StatusCode::UNAUTHORIZED,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// RFC 6749 §5.2, with `WWW-Authenticate` on an `invalid_client` (its 429
/// included) when the client used the Authorization header, and
/// `Retry-After` on a 429 and a 503.
pub fn error_response(error: &TokenError) -> HttpResponse {
    let mut response = error_json(status(error), error.code(), error.description());
    let headers = response.headers_mut();
    if error.used_authorization_header() && error.code() == "invalid_client" {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
        );
    }
    if let Some(retry_after) = error.retry_after() {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(TokenError::retry_after_secs(retry_after)),
        );
    } else if error.reason() == Reason::StoreUnavailable {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

pub async fn not_found() -> HttpResponse {
    error_json(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; the token endpoint is POST /oauth/token",
    )
}
