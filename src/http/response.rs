//! Responses of the token endpoint: RFC 6749 §5.1 success and §5.2 errors,
//! with the headers both require.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

use crate::error::{Reason, TokenError};

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
        Err(_) => error_response(&TokenError::ServerError),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// RFC 6749 §5.2: 400 with a JSON body, except `invalid_client` (401, with
/// `WWW-Authenticate` when the client used the Authorization header), a
/// body over the limit (413), a body too slow to arrive (408), too many
/// failed client authentications (429 + `Retry-After`, and
/// `WWW-Authenticate` as for any `invalid_client`), an unavailable store
/// (503 + `Retry-After`) and a defect (500).
pub fn error_response(error: &TokenError) -> HttpResponse {
    let status = match error {
        TokenError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
        TokenError::InvalidRequest {
            reason: Reason::BodyTooLarge,
            ..
        } => StatusCode::PAYLOAD_TOO_LARGE,
        TokenError::InvalidRequest {
            reason: Reason::SlowBody,
            ..
        } => StatusCode::REQUEST_TIMEOUT,
        TokenError::AuthRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        TokenError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, JSON))
        .insert_header((header::CACHE_CONTROL, NO_STORE))
        .insert_header((header::PRAGMA, NO_CACHE));
    match error {
        TokenError::InvalidClient {
            used_authorization_header: true,
            ..
        }
        | TokenError::AuthRateLimited {
            used_authorization_header: true,
            ..
        } => {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
            ));
        }
        TokenError::Unavailable => {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        _ => {}
    }
    if let TokenError::AuthRateLimited { retry_after, .. } = error {
        response.insert_header((
            header::RETRY_AFTER,
            TokenError::retry_after_secs(*retry_after),
        ));
    }
    let body = ErrorBody {
        error: error.code(),
        error_description: error.description(),
    };
    response.body(serde_json::to_vec(&body).unwrap_or_default())
}

pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((header::CONTENT_TYPE, JSON))
        .body(r#"{"error":"not_found","error_description":"no such endpoint; the token endpoint is POST /oauth/token"}"#)
}
