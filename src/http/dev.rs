//! `POST /dev/codes`: the embedded default's stand-in for a login frontend,
//! so the walk-through works without Redis. It mints a code for any client
//! and subject, so it is mounted only in the zero-configuration demo or on
//! explicit request, never with Redis ([`crate::config::DevEndpoints`]);
//! otherwise the frontend (or `token-endpoint issue-code`) writes codes.
//! Like `/dev/authorize`, it answers only to a local `Host`
//! ([`super::dev_host`]: DNS rebinding would otherwise let a web page read
//! the code it answers with).

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::response::error_json;
use super::AppState;
use crate::config::DevEndpoints;
use crate::contract::frontend::{issue_code as issue, Grant, IssueError, RngUnavailable};
use crate::contract::record::Resource;
use crate::pkce::ChallengeMethod;

/// Lifetime of a code issued here unless the request says otherwise: the
/// contract's recommended 60 s.
const DEFAULT_TTL_SECS: u64 = 60;
/// The longest a code issued here may live.
const MAX_TTL_SECS: u64 = 3600;

/// The body of `POST /dev/codes`: the frontend's grant, every member
/// optional (an empty body or `{}` is the demo grant: client `demo`, subject
/// `alice`, scope `openid profile`), and the code's lifetime in seconds.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DevCode {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    sub: Option<String>,
    scope: Option<String>,
    nonce: Option<String>,
    auth_time: Option<u64>,
    acr: Option<String>,
    amr: Option<Vec<String>>,
    claims: Option<serde_json::Map<String, serde_json::Value>>,
    resource: Option<Resource>,
    code_challenge_method: Option<ChallengeMethod>,
    /// RFC 9449 §10: bind the code to this DPoP key thumbprint.
    dpop_jkt: Option<String>,
    /// Seconds, 1 to 3600; default 60.
    ttl: Option<u64>,
}

fn bad_request(description: String) -> HttpResponse {
    error_json(StatusCode::BAD_REQUEST, "invalid_request", &description)
}

pub async fn issue_code(
    request: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    // Before anything is minted: the answer carries the code.
    if let Err(refused) = state.dev_hosts.check(&request) {
        return refused.response();
    }
    if state.dev_endpoints == DevEndpoints::OptIn {
        tracing::warn!(
            security_event = "dev_code_issued",
            "POST /dev/codes used: a code was minted without any login (TOKEN_ENDPOINT_DEV_ENDPOINTS=on)"
        );
    }
    let request: DevCode = if body.is_empty() {
        DevCode::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return bad_request(format!("the body is not a grant: {e}")),
        }
    };
    let ttl = request.ttl.unwrap_or(DEFAULT_TTL_SECS);
    if !(1..=MAX_TTL_SECS).contains(&ttl) {
        return bad_request(format!(
            "ttl {ttl} is not a number of seconds from 1 to {MAX_TTL_SECS}"
        ));
    }
    let mut grant = Grant::new(
        request.client_id.as_deref().unwrap_or("demo"),
        request.sub.as_deref().unwrap_or("alice"),
        request.scope.as_deref().unwrap_or("openid profile"),
    );
    grant.redirect_uri = request.redirect_uri;
    grant.nonce = request.nonce;
    grant.auth_time = request.auth_time;
    grant.acr = request.acr;
    grant.amr = request.amr;
    grant.claims = request.claims;
    grant.resource = request.resource;
    if let Some(jkt) = &request.dpop_jkt {
        if !crate::dpop::is_thumbprint(jkt) {
            return bad_request(
                "dpop_jkt is not a JWK SHA-256 thumbprint (43 characters of base64url, RFC 9449 section 10)".into(),
            );
        }
    }
    grant.dpop_jkt = request.dpop_jkt;
    if let Some(method) = request.code_challenge_method {
        grant.code_challenge_method = method;
    }
    let ttl = Duration::from_secs(ttl);
    match issue(state.redeemer.store(), grant, ttl).await {
        Ok(issued) => HttpResponse::Ok().json(json!({
            "code": issued.code,
            "code_verifier": issued.verifier,
            "expires_in": ttl.as_secs(),
        })),
        Err(IssueError::Rng(e)) => rng_unavailable(e),
        Err(IssueError::Store(e)) => error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            &e.to_string(),
        ),
    }
}

/// The answer of a dev endpoint when the system random number generator
/// fails: 503 with `Retry-After`, as for the token endpoint's other
/// server-side failures. `/dev/authorize` answers it directly too, not in
/// a redirect: nothing about the request was wrong, and the one who can
/// retry is whoever is at the page.
pub(super) fn rng_unavailable(error: RngUnavailable) -> HttpResponse {
    tracing::error!(error = %error, "no code could be made");
    let mut response = error_json(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "no code could be made: the system random number generator failed; retry shortly",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_failing_generator_is_a_503_to_retry() {
        let response = rng_unavailable(RngUnavailable);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        let body = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }
}
