//! CORS at the token endpoint, per client (docs/browser-apps.md).
//!
//! A browser app redeems its code with `fetch()` from its own origin. The
//! answer is readable there only if it carries
//! `Access-Control-Allow-Origin` for that origin, which it does when some
//! registered client allows the origin (`allowed_cors_origins`). Whether
//! *this* client allows it is the domain's check, made before the code is
//! taken ([`crate::grant`]): a request from an origin its client does not
//! allow is refused and consumes nothing. So tokens are only ever readable
//! by an origin their client allows, and error answers by any origin that
//! is somebody's, so that a browser app reads `invalid_grant` rather than
//! an opaque network error.
//!
//! Never `Access-Control-Allow-Credentials`: the endpoint uses no cookies.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;

/// What a browser app must be able to read of an answer: the challenge of
/// an `invalid_client`, how long to wait after a 429 or 503, a DPoP nonce,
/// and the id to quote in a support request.
const EXPOSED: HeaderValue =
    HeaderValue::from_static("WWW-Authenticate, Retry-After, DPoP-Nonce, X-Request-Id");
/// What the token endpoint accepts: POST, with a form body, Basic
/// credentials and a DPoP proof (RFC 9449).
const METHODS: HeaderValue = HeaderValue::from_static("POST");
const HEADERS: HeaderValue = HeaderValue::from_static("Content-Type, Authorization, DPoP");
const ALLOW: HeaderValue = HeaderValue::from_static("OPTIONS, POST");

/// The request's `Origin`, as sent: `None` without one (not a browser, or a
/// same-origin GET); an origin that is not visible ASCII reads as `""`,
/// which no client allows.
pub fn request_origin(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or_default())
}

/// Add what the answer to a token request from `origin` needs: always
/// `Vary: Origin` (the answer depends on it), and the CORS headers when
/// some client allows the origin.
pub fn decorate(headers: &mut HeaderMap, origin: Option<&str>, state: &AppState) {
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin.filter(|o| state.redeemer.clients().is_cors_origin(o)) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    }
}

/// `OPTIONS /oauth/token`. A preflight names no client, so it is answered
/// for any origin some client allows: 204 with the methods and headers the
/// endpoint accepts, cached for `TOKEN_ENDPOINT_CORS_MAX_AGE_SECS`. For any
/// other origin (and a plain `OPTIONS`), 204 with `Allow` and no CORS
/// headers: the browser then refuses to send the request.
pub async fn preflight(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut response = HttpResponse::NoContent()
        .insert_header((header::ALLOW, ALLOW))
        .finish();
    let origin = request_origin(&request);
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = origin
        .filter(|o| state.redeemer.clients().is_cors_origin(o))
        .and_then(|o| HeaderValue::from_str(o).ok())
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, METHODS);
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS);
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, state.cors_max_age.clone());
    }
    response
}
