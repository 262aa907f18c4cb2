//! CORS, per client (docs/browser-apps.md), the same way for every endpoint
//! a browser app calls with `fetch()`: the token endpoint today, and any
//! form POST after it. An endpoint states what it accepts ([`Accepts`]);
//! reading the request's origin, decorating an answer and answering a
//! preflight are here.
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
//! Never `Access-Control-Allow-Credentials`: the endpoints use no cookies.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};

use super::AppState;

/// What a browser app must be able to read of an answer: the challenge of
/// an `invalid_client`, how long to wait after a 429 or 503, a DPoP nonce,
/// and the id to quote in a support request.
const EXPOSED: HeaderValue =
    HeaderValue::from_static("WWW-Authenticate, Retry-After, DPoP-Nonce, X-Request-Id");

/// What one endpoint accepts from a browser: the methods of its preflight
/// (and its `Allow`), and the request headers a page may set.
pub struct Accepts {
    methods: HeaderValue,
    allow: HeaderValue,
    headers: HeaderValue,
}

impl Accepts {
    /// A POST endpoint whose requests may carry `headers`.
    pub const fn post(headers: HeaderValue) -> Self {
        Self {
            methods: HeaderValue::from_static("POST"),
            allow: HeaderValue::from_static("OPTIONS, POST"),
            headers,
        }
    }

    /// The endpoint's `Allow`: its methods, and `OPTIONS` for the preflight.
    pub fn allow(&self) -> HeaderValue {
        self.allow.clone()
    }
}

/// The request's `Origin`, as sent: `None` without one (not a browser, or a
/// same-origin GET); an origin that is not visible ASCII reads as `""`,
/// which no client allows.
pub fn request_origin(request: &HttpRequest) -> Option<&str> {
    request
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or_default())
}

/// Add what the answer to a request from `origin` needs: always
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

/// The answer to a CORS preflight at an endpoint that accepts `accepts`. A
/// preflight names no client, so it is answered for any origin some client
/// allows: 204 with the methods and headers the endpoint accepts, cached
/// for `TOKEN_ENDPOINT_CORS_MAX_AGE_SECS`. For any other origin (and a
/// plain `OPTIONS`), 204 with `Allow` and no CORS headers: the browser then
/// refuses to send the request.
pub fn preflight(request: &HttpRequest, state: &AppState, accepts: &Accepts) -> HttpResponse {
    let mut response = HttpResponse::NoContent()
        .insert_header((header::ALLOW, accepts.allow()))
        .finish();
    let origin = request_origin(request);
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = origin
        .filter(|o| state.redeemer.clients().is_cors_origin(o))
        .and_then(|o| HeaderValue::from_str(o).ok())
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            accepts.methods.clone(),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            accepts.headers.clone(),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, state.cors_max_age.clone());
    }
    response
}
