//! `GET /dev/authorize`: a stand-in login page, so that a browser app (or a
//! native app) can be pointed at the embedded default and just work. It
//! takes a standard authorization request (RFC 6749 §4.1.1 with PKCE, RFC
//! 7636 §4.3), signs the demo user in without asking, writes the code record
//! through the frontend contract and redirects back with `code`, `state` and
//! `iss` (RFC 9207). Mounted under the same rule as `/dev/codes`
//! ([`crate::config::DevEndpoints`]): never with Redis; and, like it, it
//! answers only to a local `Host` ([`super::dev_host`]).
//!
//! Errors are what an authorization endpoint gives (RFC 6749 §4.1.2.1):
//! without a valid client and a registered redirect URI nothing is
//! redirected (400, JSON); after that, the error goes back to the client
//! in the redirect. What makes a request acceptable is the domain's
//! ([`crate::contract::authorize`]); this page reads the query, signs the
//! demo user in, and answers.

use std::borrow::Cow;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::response::error_json;
use super::AppState;
use crate::config::DevEndpoints;
use crate::contract::authorize::{self, AuthorizationParams};
use crate::contract::frontend::{issue_code_for_challenge, IssueError};
use crate::grant::request::decode_component;
use crate::pkce::is_unreserved;

/// Lifetime of a code issued here: the contract's recommended 60 s.
const CODE_TTL: Duration = Duration::from_secs(60);

/// Who signs in here: the demo user.
const DEMO_SUBJECT: &str = "alice";

/// The query of an authorization request. RFC 6749 §3.1: parameters sent
/// without a value are omitted; none but `resource` may be sent twice;
/// unknown ones are ignored.
fn parse_query(query: &str) -> Result<AuthorizationParams, Cow<'static, str>> {
    let mut request = AuthorizationParams::default();
    let mut seen: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(name.as_bytes())
            .map_err(|_| "the query is not UTF-8 once percent-decoded")?;
        let value = decode_component(value.as_bytes())
            .map_err(|_| "the query is not UTF-8 once percent-decoded")?
            .into_owned();
        let slot = match name.as_ref() {
            "resource" => {
                request.resource.push(value);
                continue;
            }
            "response_type" => &mut request.response_type,
            "client_id" => &mut request.client_id,
            "redirect_uri" => &mut request.redirect_uri,
            "scope" => &mut request.scope,
            "state" => &mut request.state,
            "nonce" => &mut request.nonce,
            "code_challenge" => &mut request.code_challenge,
            "code_challenge_method" => &mut request.code_challenge_method,
            "dpop_jkt" => &mut request.dpop_jkt,
            _ => continue,
        };
        if seen.iter().any(|n| *n == name) {
            return Err(format!("parameter {name} is repeated (RFC 6749 section 3.1)").into());
        }
        seen.push(name.into_owned());
        if !value.is_empty() {
            *slot = Some(value);
        }
    }
    Ok(request)
}

/// A 400 that redirects nowhere: the client or its redirect URI cannot be
/// trusted with an answer.
fn refuse(description: impl Into<Cow<'static, str>>) -> HttpResponse {
    error_json(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &description.into(),
    )
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `redirect_uri` with `params` added to its query (RFC 6749 §4.1.2: the
/// redirect URI's own query is kept).
fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let mut location = redirect_uri.to_owned();
    let mut separator = if location.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        location.push(separator);
        location.push_str(name);
        location.push('=');
        encode(value, &mut location);
        separator = '&';
    }
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .finish()
}

pub async fn authorize(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(refused) = state.dev_hosts.check(&request) {
        return refused.response();
    }
    if state.dev_endpoints == DevEndpoints::OptIn {
        tracing::warn!(
            security_event = "dev_code_issued",
            "GET /dev/authorize used: a code was minted without any login (TOKEN_ENDPOINT_DEV_ENDPOINTS=on)"
        );
    }
    let params = match parse_query(request.query_string()) {
        Ok(params) => params,
        Err(description) => return refuse(description),
    };
    let to = match authorize::recipient(state.redeemer.clients(), &params) {
        Ok(to) => to,
        Err(unknown) => return refuse(unknown.to_string()),
    };
    let issuer = state.redeemer.minter().issuer();
    let client_state = params.state.as_deref();
    let fail = |error: &str, description: &str| {
        let mut answer = vec![("error", error), ("error_description", description)];
        if let Some(s) = client_state {
            answer.push(("state", s));
        }
        answer.push(("iss", issuer));
        redirect(to.redirect_uri, &answer)
    };
    let authorization = match authorize::check(to.client, &params) {
        Ok(authorization) => authorization,
        Err(refused) => return fail(refused.code(), &refused.to_string()),
    };
    // The demo user signs in without being asked.
    let (mut grant, challenge) = authorization.grant(to, DEMO_SUBJECT);
    grant.auth_time = Some(crate::unix_now());
    grant.amr = Some(vec!["pwd".into()]);
    grant.claims = json!({"name": "Alice (demo user)", "email": "alice@example.com"})
        .as_object()
        .cloned();
    match issue_code_for_challenge(state.redeemer.store(), grant, challenge, CODE_TTL).await {
        Ok(code) => {
            let mut answer = vec![("code", code.as_str())];
            if let Some(s) = client_state {
                answer.push(("state", s));
            }
            answer.push(("iss", issuer));
            redirect(to.redirect_uri, &answer)
        }
        Err(IssueError::Rng(e)) => super::dev::rng_unavailable(e),
        Err(IssueError::Store(e)) => {
            tracing::error!(error = %e, "the stand-in login page could not store a code");
            fail(
                "temporarily_unavailable",
                "the code could not be stored; retry shortly",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_repeats_refused() {
        let request = parse_query(
            "response_type=code&client_id=demo&redirect_uri=http%3A%2F%2Flocalhost%3A5173%2F&state=a+b&resource=x&resource=y&unknown=1&nonce=",
        )
        .unwrap();
        assert_eq!(
            request.redirect_uri.as_deref(),
            Some("http://localhost:5173/")
        );
        assert_eq!(request.state.as_deref(), Some("a b"));
        assert_eq!(request.resource, ["x", "y"]);
        assert!(request.nonce.is_none());
        assert!(parse_query("state=a&state=b").is_err());
        assert!(parse_query("state=&state=b").is_err());
    }
}
