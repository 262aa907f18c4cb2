//! `POST /oauth/token` (RFC 6749 §3.2, §4.1.3).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::web::{self, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use prometheus::IntGauge;

use super::cors;
use super::response::{error_response, token_response};
use super::AppState;
use crate::grant::error::{Reason, TokenError};
use crate::grant::request::{TokenForm, TokenRequest};

pub async fn token(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let metrics = &state.redeemer.metrics();
    let origin = cors::request_origin(&request);
    // A guard, so a request whose client goes away mid-way is still counted out.
    let _in_flight = InFlight::enter(&metrics.in_flight);
    let result = async {
        check_content_type(&request)?;
        let body = read_body(
            &request,
            payload,
            state.max_body_bytes,
            state.client_timeout,
        )
        .await?;
        let form = TokenForm::parse(&body)?;
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let mut token_request = TokenRequest::from_form(form, authorization)?;
        token_request.origin = origin.map(str::to_owned);
        let source = client_address(&request, state.client_address_header.as_ref());
        state.redeemer.redeem(token_request, source).await
    }
    .await;
    let mut response = match &result {
        Ok(tokens) => token_response(tokens, &tokens.headers),
        Err(error) => error_response(error),
    };
    cors::decorate(response.headers_mut(), origin, &state);
    metrics.record(match &result {
        Ok(_) => Reason::Issued,
        Err(e) => e.reason(),
    });
    metrics
        .request_duration
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Holds one unit of the in-flight gauge for as long as it lives.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// RFC 6749 §4.1.3: "using the application/x-www-form-urlencoded format ...
/// with a character encoding of UTF-8".
fn check_content_type(request: &HttpRequest) -> Result<(), TokenError> {
    let wrong = || {
        TokenError::invalid_request(
            "Content-Type must be application/x-www-form-urlencoded (RFC 6749 section 4.1.3)",
        )
    };
    let value = request
        .headers()
        .get(header::CONTENT_TYPE)
        .ok_or_else(wrong)?
        .to_str()
        .map_err(|_| wrong())?;
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(wrong());
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") {
                return Err(TokenError::invalid_request(
                    "the request body must be UTF-8 (RFC 6749 Appendix B); charset says otherwise",
                ));
            }
        }
    }
    Ok(())
}

fn too_large(limit: usize) -> TokenError {
    TokenError::new(
        Reason::BodyTooLarge,
        format!("request body exceeds {limit} bytes"),
    )
}

/// The client's address: the last entry of the last `header` line when a
/// trusted load balancer sets it (what that balancer appended: entries
/// before it, and earlier lines, came from the client and prove nothing),
/// else the TCP peer.
fn client_address(request: &HttpRequest, header: Option<&header::HeaderName>) -> Option<IpAddr> {
    let forwarded = header
        .and_then(|name| request.headers().get_all(name).last())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
        .and_then(|last| last.parse::<IpAddr>().ok());
    forwarded.or_else(|| request.peer_addr().map(|a| a.ip()))
}

/// Read the whole body within `timeout`, refusing anything past `limit` as
/// soon as it is announced or seen.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<BytesMut, TokenError> {
    tokio::time::timeout(timeout, read_body_unbounded(request, payload, limit))
        .await
        .unwrap_or_else(|_| {
            Err(TokenError::new(
                Reason::SlowBody,
                format!(
                    "the request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            ))
        })
}

async fn read_body_unbounded(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, TokenError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(512));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| TokenError::invalid_request("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Anything but POST (and a CORS preflight) on the token endpoint: 405 with
/// `Allow`, readable by a browser app whose origin some client allows.
pub async fn method_not_allowed(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut response = error_response(&TokenError::invalid_request(
        "the token endpoint accepts only POST (RFC 6749 section 3.2)",
    ));
    *response.status_mut() = actix_web::http::StatusCode::METHOD_NOT_ALLOWED;
    response.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_static("OPTIONS, POST"),
    );
    cors::decorate(
        response.headers_mut(),
        cors::request_origin(&request),
        &state,
    );
    response
}
