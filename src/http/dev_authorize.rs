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
//! in the redirect.

use std::borrow::Cow;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::response::error_json;
use super::AppState;
use crate::config::DevEndpoints;
use crate::contract::frontend::{issue_code_for_challenge, Grant};
use crate::contract::record::{check_resource, Resource};
use crate::grant::request::decode_component;
use crate::pkce::{is_unreserved, ChallengeMethod};

/// Lifetime of a code issued here: the contract's recommended 60 s.
const CODE_TTL: Duration = Duration::from_secs(60);

/// Who signs in here: the demo user.
const DEMO_SUBJECT: &str = "alice";

/// The parameters of an authorization request this page reads.
#[derive(Default)]
struct AuthorizationRequest {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// RFC 8707: may be repeated.
    resource: Vec<String>,
}

impl AuthorizationRequest {
    /// RFC 6749 §3.1: parameters sent without a value are omitted; none but
    /// `resource` may be sent twice; unknown ones are ignored.
    fn parse(query: &str) -> Result<Self, Cow<'static, str>> {
        let mut request = Self::default();
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
    let params = match AuthorizationRequest::parse(request.query_string()) {
        Ok(params) => params,
        Err(description) => return refuse(description),
    };
    let Some(client_id) = params.client_id.as_deref() else {
        return refuse("client_id is required");
    };
    let Some(client) = state.redeemer.clients().get(client_id) else {
        return refuse("client_id names no registered client");
    };
    let Some(redirect_uri) = params.redirect_uri.as_deref() else {
        return refuse("redirect_uri is required");
    };
    // The one matcher the registry validated the client's URIs for
    // (`crate::clients::redirect`): exact, or a loopback IP literal on
    // any port, never anything a browser would read as another host.
    if !client.allows_redirect_uri(redirect_uri) {
        return refuse("redirect_uri is not one of this client's redirect_uris");
    }
    let issuer = state.redeemer.minter().issuer();
    let client_state = params.state.as_deref();
    let fail = |error: &str, description: &str| {
        let mut answer = vec![("error", error), ("error_description", description)];
        if let Some(s) = client_state {
            answer.push(("state", s));
        }
        answer.push(("iss", issuer));
        redirect(redirect_uri, &answer)
    };
    if params.response_type.as_deref() != Some("code") {
        return fail(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    let Some(code_challenge) = params.code_challenge.clone() else {
        return fail(
            "invalid_request",
            "code_challenge is required: this server requires PKCE (RFC 7636)",
        );
    };
    // RFC 7636 §4.3: a missing method means plain.
    let method = match params.code_challenge_method.as_deref() {
        Some("S256") => ChallengeMethod::S256,
        None | Some("plain") if client.allow_plain_pkce => ChallengeMethod::Plain,
        None | Some("plain") => {
            return fail(
                "invalid_request",
                "code_challenge_method must be S256 (RFC 7636 section 4.4.1: transform algorithm not supported)",
            )
        }
        Some(_) => {
            return fail(
                "invalid_request",
                "code_challenge_method must be S256 or plain",
            )
        }
    };
    let well_formed = match method {
        ChallengeMethod::S256 => {
            code_challenge.len() == 43 && code_challenge.bytes().all(is_unreserved)
        }
        ChallengeMethod::Plain => {
            (43..=128).contains(&code_challenge.len()) && code_challenge.bytes().all(is_unreserved)
        }
    };
    if !well_formed {
        return fail(
            "invalid_request",
            "code_challenge is not the BASE64URL of a SHA-256 digest (43 characters) or a verifier (RFC 7636 section 4.2)",
        );
    }
    let resource = match params.resource.len() {
        0 => None,
        1 => params.resource.first().cloned().map(Resource::One),
        _ => Some(Resource::Many(params.resource.clone())),
    };
    if let Err(mismatch) = check_resource(resource.as_ref(), &client.resource_indicators) {
        return fail("invalid_target", mismatch.description());
    }
    let scope = params.scope.clone().unwrap_or_default();
    let mut grant = Grant::new(&client.client_id, DEMO_SUBJECT, &scope);
    grant.redirect_uri = Some(redirect_uri.to_owned());
    grant.nonce = params.nonce.clone();
    grant.auth_time = Some(crate::unix_now());
    grant.amr = Some(vec!["pwd".into()]);
    grant.resource = resource;
    grant.code_challenge_method = method;
    grant.claims = json!({"name": "Alice (demo user)", "email": "alice@example.com"})
        .as_object()
        .cloned();
    match issue_code_for_challenge(state.redeemer.store(), grant, code_challenge, CODE_TTL).await {
        Ok(code) => {
            let mut answer = vec![("code", code.as_str())];
            if let Some(s) = client_state {
                answer.push(("state", s));
            }
            answer.push(("iss", issuer));
            redirect(redirect_uri, &answer)
        }
        Err(e) => {
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
        let request = AuthorizationRequest::parse(
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
        assert!(AuthorizationRequest::parse("state=a&state=b").is_err());
        assert!(AuthorizationRequest::parse("state=&state=b").is_err());
    }
}
