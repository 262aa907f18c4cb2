//! `POST /oauth/token` (RFC 6749 §3.2, §4.1.3): read the form, hand it to
//! the grant layer, answer. How a form POST is read ([`super::form`]) and
//! how an answer is made readable to a browser ([`super::cors`]) are shared
//! with any endpoint that takes one.

use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use super::cors;
use super::form;
use super::response::{error_response, token_response};
use super::AppState;
use crate::dpop::DpopHeader;
use crate::grant::error::{Reason, TokenError};
use crate::grant::request::{TokenForm, TokenRequest};
use crate::metrics::InFlight;

/// What a browser may send here: POST, with a form body, Basic credentials
/// and a DPoP proof (RFC 9449).
const CORS: cors::Accepts = cors::Accepts::post(HeaderValue::from_static(
    "Content-Type, Authorization, DPoP",
));

pub async fn token(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let started = Instant::now();
    let metrics = &state.redeemer.metrics();
    let origin = cors::request_origin(&request);
    let _in_flight = InFlight::enter(&metrics.in_flight);
    let result = async {
        let body = form::read(&request, payload, &state).await?;
        let form = TokenForm::parse(&body)?;
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let mut token_request = TokenRequest::from_form(form, authorization)?;
        token_request.origin = origin.map(str::to_owned);
        let mut proofs = request.headers().get_all("dpop");
        token_request.dpop = match (proofs.next(), proofs.next()) {
            (None, _) => DpopHeader::Absent,
            (Some(proof), None) => DpopHeader::One(proof.as_bytes().to_vec()),
            (Some(_), Some(_)) => DpopHeader::Repeated,
        };
        let source = form::client_address(&request, state.client_address_header.as_ref());
        state.redeemer.redeem(token_request, source).await
    }
    .await;
    let mut response = match &result {
        Ok(tokens) => token_response(tokens),
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

/// `OPTIONS /oauth/token`: a CORS preflight ([`cors::preflight`]).
pub async fn preflight(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    cors::preflight(&request, &state, &CORS)
}

/// Anything but POST (and a CORS preflight) on the token endpoint: 405 with
/// `Allow`, readable by a browser app whose origin some client allows.
pub async fn method_not_allowed(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut response = error_response(&TokenError::invalid_request(
        "the token endpoint accepts only POST (RFC 6749 section 3.2)",
    ));
    *response.status_mut() = actix_web::http::StatusCode::METHOD_NOT_ALLOWED;
    response.headers_mut().insert(header::ALLOW, CORS.allow());
    cors::decorate(
        response.headers_mut(),
        cors::request_origin(&request),
        &state,
    );
    response
}
