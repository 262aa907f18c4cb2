//! CORS at the token endpoint, per client, over real HTTP (a real browser
//! runs the same in tests/browser/). `public-app` allows
//! `https://app.test` and `http://localhost:5173` (registered as
//! `HTTP://LOCALHOST:5173`, normalized); `plain-app` allows
//! `https://plain.test`; no client allows `https://evil.test`.

use std::sync::Arc;

use reqwest::Method;
use token_endpoint::contract::frontend::{self, IssuedCode};

use crate::helpers::*;
use token_endpoint_test_support::{before_any_store, on_every_store};

on_every_store!(
    an_allowed_origin_reads_success_and_every_error,
    an_origin_the_client_does_not_allow_consumes_nothing,
    requests_without_origin_are_unchanged,
);

// A preflight names no code: run once, on the embedded store.
before_any_store!(
    a_preflight_is_answered_for_any_origin_some_client_allows,
    a_preflight_from_an_unknown_origin_gets_no_cors_headers,
);

const ALLOWED: &str = "https://app.test";
const OTHER_CLIENTS: &str = "https://plain.test";
const NOBODYS: &str = "https://evil.test";

async fn preflight(app: &TestApp, origin: Option<&str>, method: &str, headers: &str) -> Answer {
    let mut request = app
        .http
        .request(Method::OPTIONS, app.token_url())
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", headers);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    app.send(request).await
}

fn vary_origin(answer: &Answer) -> bool {
    answer
        .headers
        .get_all("vary")
        .iter()
        .any(|v| v.to_str().unwrap_or_default().contains("Origin"))
}

#[track_caller]
fn assert_cors(answer: &Answer, origin: &str) {
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some(origin),
        "{answer:?}"
    );
    assert_eq!(
        answer.header("access-control-expose-headers"),
        Some("WWW-Authenticate, Retry-After, DPoP-Nonce, X-Request-Id")
    );
    assert!(vary_origin(answer), "no Vary: Origin: {answer:?}");
    assert!(answer.header("access-control-allow-credentials").is_none());
}

#[track_caller]
fn assert_no_cors(answer: &Answer) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
        "access-control-allow-credentials",
    ] {
        assert!(answer.header(name).is_none(), "{name}: {answer:?}");
    }
    assert!(vary_origin(answer), "no Vary: Origin: {answer:?}");
}

/// A preflight names no client: any origin some client allows gets 204 with
/// the method and headers the endpoint accepts, whatever the browser asked
/// for (it compares), the configured max age, and never credentials. The
/// origin is matched in the form browsers send it (`HTTP://LOCALHOST:5173`
/// in the registry is `http://localhost:5173`).
async fn a_preflight_is_answered_for_any_origin_some_client_allows(backend: Backend) {
    let app = spawn_app(backend).await;
    for origin in [ALLOWED, OTHER_CLIENTS, "http://localhost:5173"] {
        for (method, headers) in [
            ("POST", "content-type"),
            ("POST", "authorization, dpop, content-type"),
            ("PUT", "x-odd, content-type"),
        ] {
            let answer = preflight(&app, Some(origin), method, headers).await;
            assert_eq!(answer.status, 204, "{answer:?}");
            assert_eq!(answer.header("access-control-allow-origin"), Some(origin));
            assert_eq!(answer.header("access-control-allow-methods"), Some("POST"));
            assert_eq!(
                answer.header("access-control-allow-headers"),
                Some("Content-Type, Authorization, DPoP")
            );
            assert_eq!(answer.header("access-control-max-age"), Some("7200"));
            assert!(answer.header("access-control-allow-credentials").is_none());
            assert!(vary_origin(&answer));
        }
    }
    assert_eq!(app.store_takes().await, 0.0, "a preflight asked the store");
}

/// For an origin no client allows (`null` included), and for a plain
/// OPTIONS, the answer carries no CORS header: the browser will not send
/// the request.
async fn a_preflight_from_an_unknown_origin_gets_no_cors_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    for origin in [
        Some(NOBODYS),
        Some("null"),
        Some("https://app.test:443"),
        Some("https://APP.test"),
        Some("https://app.test.evil.test"),
        Some("https://app.test/"),
        None,
    ] {
        let answer = preflight(&app, origin, "POST", "content-type").await;
        assert_eq!(answer.status, 204, "{answer:?}");
        assert_no_cors(&answer);
        assert_eq!(answer.header("allow"), Some("OPTIONS, POST"));
    }
    assert_eq!(app.store_takes().await, 0.0, "a preflight asked the store");
}

async fn post_from(app: &TestApp, origin: &str, form: &[(&str, String)]) -> Answer {
    app.send(
        app.http
            .post(app.token_url())
            .header("Origin", origin)
            .form(form),
    )
    .await
}

/// From an origin its client allows, a browser app reads the tokens and
/// every error: request syntax, client, grant, grant type, body size, the
/// method, and a store that is down. Errors found before any client is
/// known carry the headers for an origin some client allows.
async fn an_allowed_origin_reads_success_and_every_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let good = TestApp::form(&issued, "public-app");

    let answer = post_from(&app, ALLOWED, &good).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_cors(&answer, ALLOWED);

    let mut wrong = good.clone();
    wrong.retain(|(n, _)| *n != "code_verifier");
    wrong.push(("code_verifier", frontend::random_token().unwrap()));
    let other = app.issue(grant("public-app")).await;
    let mut mismatch = TestApp::form(&other, "public-app");
    mismatch.retain(|(n, _)| *n != "code_verifier");
    mismatch.push(("code_verifier", frontend::random_token().unwrap()));
    let mut no_grant_type = good.clone();
    no_grant_type.retain(|(n, _)| *n != "grant_type");
    let mut password = no_grant_type.clone();
    password.push(("grant_type", "password".into()));
    let mut unknown_client = good.clone();
    unknown_client.retain(|(n, _)| *n != "client_id");
    unknown_client.push(("client_id", "nobody".into()));
    type Form<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(Form, u16, &str)> = vec![
        (good.clone(), 400, "invalid_grant"), // the replay
        (mismatch, 400, "invalid_grant"),
        (no_grant_type, 400, "invalid_request"),
        (password, 400, "unsupported_grant_type"),
        (unknown_client, 401, "invalid_client"),
    ];
    for (form, status, error) in cases {
        for origin in [ALLOWED, OTHER_CLIENTS] {
            let answer = post_from(&app, origin, &form).await;
            if error == "invalid_grant" && origin == OTHER_CLIENTS {
                // public-app's own request from plain-app's origin is
                // refused before the take (the next test).
                answer.assert_error(400, "invalid_request");
            } else {
                answer.assert_error(status, error);
            }
            assert_cors(&answer, origin);
        }
    }
    let too_big = app
        .send(
            app.http
                .post(app.token_url())
                .header("Origin", ALLOWED)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![b'a'; 9000]),
        )
        .await;
    too_big.assert_error(413, "invalid_request");
    assert_cors(&too_big, ALLOWED);
    let wrong_type = app
        .send(
            app.http
                .post(app.token_url())
                .header("Origin", ALLOWED)
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
    wrong_type.assert_error(400, "invalid_request");
    assert_cors(&wrong_type, ALLOWED);
    let get = app
        .send(app.http.get(app.token_url()).header("Origin", ALLOWED))
        .await;
    assert_eq!(get.status, 405);
    assert_cors(&get, ALLOWED);

    if let Some(redis) = &app.redis {
        let fresh = app.issue(grant("public-app")).await;
        redis.lock().unwrap().kill();
        let answer = post_from(&app, ALLOWED, &TestApp::form(&fresh, "public-app")).await;
        answer.assert_error(503, "temporarily_unavailable");
        assert_cors(&answer, ALLOWED);
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
}

/// A browser request from an origin its client does not allow is refused
/// before the take, with a precise error and its own reason, and the code
/// stays redeemable. From an origin some other client allows, the error is
/// readable there; from nobody's origin, not even that.
async fn an_origin_the_client_does_not_allow_consumes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    for origin in [OTHER_CLIENTS, NOBODYS, "null", "https://app.test:8443", ""] {
        let answer = post_from(&app, origin, &form).await;
        answer.assert_error(400, "invalid_request");
        assert!(
            answer.description().contains("Origin"),
            "{origin}: {answer:?}"
        );
        if origin == OTHER_CLIENTS {
            assert_cors(&answer, origin);
        } else {
            assert_no_cors(&answer);
        }
    }
    assert_eq!(
        app.requests("invalid_request", "origin_not_allowed").await,
        5.0
    );
    // The code is still there, for the client's own origin.
    let answer = post_from(&app, "http://localhost:5173", &form).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_cors(&answer, "http://localhost:5173");
    // A client with no origins at all is not for browsers.
    let basic = app.issue(grant("basic-app")).await;
    let mut form = TestApp::form(&basic, "basic-app");
    form.retain(|(n, _)| *n != "client_id");
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header("Origin", ALLOWED)
                .basic_auth("basic-app", Some(BASIC_SECRET))
                .form(&form),
        )
        .await;
    answer.assert_error(400, "invalid_request");
    let answer = app.post_form_basic(&form, "basic-app", BASIC_SECRET).await;
    assert_eq!(answer.status, 200, "without an Origin: {answer:?}");
}

/// Without an `Origin` (native apps, servers) nothing changes but `Vary`.
async fn requests_without_origin_are_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_no_cors(&answer);
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    answer.assert_error(400, "invalid_grant");
    assert_no_cors(&answer);
}

/// Public metadata is readable by any origin.
#[tokio::test]
async fn metadata_is_readable_from_any_origin() {
    let app = spawn_app(Backend::Embedded).await;
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .header("Origin", NOBODYS)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
        assert!(response
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
    }
}

/// An app with `/dev/authorize` mounted (the explicit opt-in: this registry
/// is not the demo's). The login page never runs with Redis.
async fn app_with_login_page() -> TestApp {
    spawn_app_on(None, Arc::new(AppFiles::new()), |s| {
        s.dev_endpoints = token_endpoint::config::DevEndpoints::OptIn
    })
    .await
}

/// `/dev/authorize` with `params`.
fn authorization_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(&format!("{}/dev/authorize", app.address)).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.into()
}

fn pkce() -> (String, String) {
    let verifier = frontend::random_token().unwrap();
    let challenge = token_endpoint::pkce::s256_challenge(&verifier);
    (verifier, challenge)
}

fn location(answer: &Answer) -> reqwest::Url {
    reqwest::Url::parse(answer.header("location").expect("a redirect")).expect("a URL")
}

fn query(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// The stand-in login page: a standard authorization request comes back to
/// the redirect URI with `code`, `state` and `iss` (RFC 9207), and the code
/// redeems with the client's verifier, once. Loopback redirect URIs match
/// on any port (RFC 8252 section 7.3) and private-use schemes work.
#[tokio::test]
async fn the_stand_in_login_page_issues_codes_for_a_standard_request() {
    let app = app_with_login_page().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for redirect_uri in [
        "https://client.test/cb",
        "http://127.0.0.1:51234/cb",
        "com.example.app:/cb",
    ] {
        let (verifier, challenge) = pkce();
        let url = authorization_url(
            &app,
            &[
                ("response_type", "code"),
                ("client_id", "public-app"),
                ("redirect_uri", redirect_uri),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("scope", "openid profile"),
                ("state", "s t&a=te"),
                ("nonce", "n-1"),
            ],
        );
        let answer = app.send(http.get(url)).await;
        assert_eq!(answer.status, 302, "{answer:?}");
        assert_eq!(answer.header("cache-control"), Some("no-store"));
        let back = location(&answer);
        assert!(back.as_str().starts_with(redirect_uri), "{back}");
        assert_eq!(query(&back, "state").as_deref(), Some("s t&a=te"));
        assert_eq!(query(&back, "iss").as_deref(), Some(ISSUER));
        let issued = IssuedCode {
            code: query(&back, "code").expect("a code"),
            verifier,
        };
        let mut form = TestApp::form(&issued, "public-app");
        form.retain(|(n, _)| *n != "redirect_uri");
        form.push(("redirect_uri", redirect_uri.into()));
        let tokens = app.post_form(&form).await;
        assert_eq!(tokens.status, 200, "{tokens:?}");
        let (_, id) = jwt_parts(tokens.body["id_token"].as_str().unwrap());
        assert_eq!(id["nonce"], "n-1");
        assert_eq!(id["sub"], "alice");
        app.post_form(&form)
            .await
            .assert_error(400, "invalid_grant");
    }
}

/// RFC 6749 section 4.1.2.1: without a known client and a registered
/// redirect URI nothing is redirected (400); every other error goes back
/// to the client with `state` and `iss`.
#[tokio::test]
async fn the_stand_in_login_page_answers_errors_as_an_authorization_endpoint() {
    let app = app_with_login_page().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, challenge) = pkce();
    let base = [
        ("response_type", "code"),
        ("client_id", "public-app"),
        ("redirect_uri", "https://client.test/cb"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st"),
    ];
    let with = |name: &str, value: Option<&str>| -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = base
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        if let Some(value) = value {
            params.push((name.into(), value.into()));
        }
        params
    };
    let get = |params: Vec<(String, String)>| {
        let mut url = reqwest::Url::parse(&format!("{}/dev/authorize", app.address)).unwrap();
        url.query_pairs_mut().extend_pairs(params);
        app.send(http.get(url))
    };
    // Not redirected: the client or the redirect URI cannot be trusted.
    for params in [
        with("client_id", None),
        with("client_id", Some("nobody")),
        with("redirect_uri", None),
        with("redirect_uri", Some("https://evil.test/cb")),
        with("redirect_uri", Some("https://client.test/cb/")),
        with("redirect_uri", Some("http://127.0.0.1:4000/other")),
        with("redirect_uri", Some("http://localhost:4000/cb")),
        {
            let mut p = with("state", Some("a"));
            p.push(("state".into(), "b".into()));
            p
        },
    ] {
        let answer = get(params.clone()).await;
        assert_eq!(answer.status, 400, "{params:?}: {answer:?}");
        assert!(answer.header("location").is_none());
        assert_eq!(answer.error(), "invalid_request");
    }
    // Redirected with the error.
    for (params, error) in [
        (
            with("response_type", Some("token")),
            "unsupported_response_type",
        ),
        (with("response_type", None), "unsupported_response_type"),
        (with("code_challenge", None), "invalid_request"),
        (with("code_challenge_method", None), "invalid_request"),
        (
            with("code_challenge_method", Some("plain")),
            "invalid_request",
        ),
        (with("code_challenge", Some("short")), "invalid_request"),
        (
            with("resource", Some("https://admin.test")),
            "invalid_target",
        ),
    ] {
        let answer = get(params.clone()).await;
        assert_eq!(answer.status, 302, "{params:?}: {answer:?}");
        let back = location(&answer);
        assert_eq!(query(&back, "error").as_deref(), Some(error), "{params:?}");
        assert!(query(&back, "error_description").is_some());
        assert_eq!(query(&back, "state").as_deref(), Some("st"));
        assert_eq!(query(&back, "iss").as_deref(), Some(ISSUER));
        assert!(query(&back, "code").is_none());
    }
}
