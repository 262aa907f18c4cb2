//! Every error branch: its status, its RFC 6749 §5.2 code, and, for failed
//! checks, that the code survives for the client it was issued to.

use std::time::{Duration, Instant};

use crate::helpers::*;
use token_endpoint_test_support::{before_any_store, on_every_store};

on_every_store!(
    client_authentication_failures_are_invalid_client,
    unknown_code_is_invalid_grant,
    wrong_verifier_is_invalid_grant_and_does_not_consume,
    other_client_is_invalid_grant_and_does_not_consume,
    redirect_uri_mismatch_is_invalid_grant_and_does_not_consume,
    expired_code_is_invalid_grant,
    broken_records_are_invalid_grant_and_counted,
);

// Refused before any store is asked (each checks that it was not): run
// once, on the embedded store. That a refused request consumes no code on
// any store is hostile.rs's `invalid_requests_never_consume_the_code`.
before_any_store!(
    request_syntax_errors_are_invalid_request,
    other_grant_type_is_unsupported_grant_type,
    body_over_the_limit_is_refused,
    wrong_content_type_is_invalid_request,
    only_post_is_allowed,
);

/// Missing, repeated and malformed parameters: 400 `invalid_request`, with a
/// description naming the problem.
async fn request_syntax_errors_are_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let good = TestApp::form(&issued, "public-app");
    let without = |name: &str| -> Vec<(&'static str, String)> {
        good.iter().filter(|(n, _)| *n != name).cloned().collect()
    };
    let with = |name: &'static str, value: &str| -> Vec<(&'static str, String)> {
        let mut f = without(name);
        f.push((name, value.into()));
        f
    };
    let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (without("grant_type"), "grant_type is required"),
        (without("code"), "code is required"),
        (without("code_verifier"), "code_verifier is required"),
        (with("code_verifier", "too-short"), "43 to 128"),
        (with("code_verifier", &"a".repeat(129)), "43 to 128"),
        (
            with("code_verifier", &format!("{}+/", "a".repeat(50))),
            "[A-Za-z0-9-._~]",
        ),
        (
            {
                let mut f = good.clone();
                f.push(("code", issued.code.clone()));
                f
            },
            "code is repeated",
        ),
        (
            {
                let mut f = good.clone();
                f.push(("client_id", "public-app".into()));
                f
            },
            "client_id is repeated",
        ),
    ];
    for (form, expected) in cases {
        let answer = app.post_form(&form).await;
        answer.assert_error(400, "invalid_request");
        assert!(
            answer.description().contains(expected),
            "{expected}: {answer:?}"
        );
    }
    // Bytes that are not UTF-8 once percent-decoded.
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=authorization_code&code=%FF%FE"),
        )
        .await;
    answer.assert_error(400, "invalid_request");
    // A code no frontend can have issued (longer than 512 characters, or
    // outside the unreserved set) is an unknown code: invalid_grant, the
    // store not asked (tests/api/attacks.rs).
    for code in ["c".repeat(600), "tab\tinside".into()] {
        let answer = app.post_form(&with("code", &code)).await;
        answer.assert_error(400, "invalid_grant");
        assert!(answer.description().contains("invalid"), "{answer:?}");
    }
    assert_eq!(app.requests("invalid_grant", "malformed_code").await, 2.0);
    assert_eq!(app.store_takes().await, 0.0, "a refusal asked the store");
    // None of this consumed the code.
    assert_eq!(app.post_form(&good).await.status, 200);
}

/// RFC 6749 §5.2 `unsupported_grant_type`.
async fn other_grant_type_is_unsupported_grant_type(backend: Backend) {
    let app = spawn_app(backend).await;
    for grant_type in ["password", "refresh_token", "client_credentials"] {
        let form = [
            ("grant_type", grant_type.to_string()),
            ("client_id", "public-app".into()),
        ];
        app.post_form(&form)
            .await
            .assert_error(400, "unsupported_grant_type");
    }
    assert_eq!(app.store_takes().await, 0.0, "a refusal asked the store");
}

/// Bodies over 8 KiB: 413 with an `invalid_request` body, whether the length
/// is announced or streamed.
async fn body_over_the_limit_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let big = format!("grant_type=authorization_code&pad={}", "x".repeat(9000));
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(big.clone()),
        )
        .await;
    answer.assert_error(413, "invalid_request");
    assert!(answer.description().contains("8192"), "{answer:?}");

    let chunks = futures::stream::iter(
        big.into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(reqwest::Body::wrap_stream(chunks)),
        )
        .await;
    answer.assert_error(413, "invalid_request");
    assert_eq!(app.store_takes().await, 0.0, "a refusal asked the store");
}

/// RFC 6749 §4.1.3: `application/x-www-form-urlencoded`, UTF-8.
async fn wrong_content_type_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let body = serde_urlencoded(&TestApp::form(&issued, "public-app"));
    for content_type in [
        None,
        Some("application/json"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded; charset=iso-8859-1"),
    ] {
        let mut request = app.http.post(app.token_url()).body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        app.send(request).await.assert_error(400, "invalid_request");
    }
    assert_eq!(app.store_takes().await, 0.0, "a refusal asked the store");
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header(
                    "content-type",
                    "Application/X-WWW-Form-Urlencoded; Charset=\"UTF-8\"",
                )
                .body(body),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

fn serde_urlencoded(form: &[(&str, String)]) -> String {
    form.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 6749 §5.2 `invalid_client`: 401, and `WWW-Authenticate: Basic` exactly
/// when the client used the Authorization header. None consumes the code.
async fn client_authentication_failures_are_invalid_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("basic-app")).await;
    let mut form = TestApp::form(&issued, "basic-app");
    form.retain(|(n, _)| *n != "client_id");

    let answer = app
        .post_form_basic(&form, "basic-app", "wrong-secret")
        .await;
    answer.assert_error(401, "invalid_client");
    assert!(answer
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Basic")));

    let answer = app.post_form_basic(&form, "nobody", "x").await;
    answer.assert_error(401, "invalid_client");
    assert!(answer.header("www-authenticate").is_some());

    // The right client by the wrong method: secret in the body.
    let mut post = TestApp::form(&issued, "basic-app");
    post.push(("client_secret", BASIC_SECRET.into()));
    let answer = app.post_form(&post).await;
    answer.assert_error(401, "invalid_client");
    assert!(answer.header("www-authenticate").is_none());

    // No secret at all from a confidential client.
    app.post_form(&TestApp::form(&issued, "basic-app"))
        .await
        .assert_error(401, "invalid_client");

    // Unknown client_id in the body.
    app.post_form(&TestApp::form(&issued, "nobody"))
        .await
        .assert_error(401, "invalid_client");

    // No client identification at all.
    app.post_form(&form)
        .await
        .assert_error(401, "invalid_client");

    // A public client that sends a secret.
    let public = app.issue(grant("public-app")).await;
    let mut f = TestApp::form(&public, "public-app");
    f.push(("client_secret", "whatever".into()));
    app.post_form(&f).await.assert_error(401, "invalid_client");

    // Two mechanisms at once (RFC 6749 §2.3): invalid_request.
    let mut both = form.clone();
    both.push(("client_secret", BASIC_SECRET.into()));
    app.post_form_basic(&both, "basic-app", BASIC_SECRET)
        .await
        .assert_error(400, "invalid_request");

    // A scheme other than Basic.
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .bearer_auth("token")
                .form(&form),
        )
        .await;
    answer.assert_error(401, "invalid_client");

    assert!(app.requests("invalid_client", "auth_failed").await >= 3.0);
    // The legitimate client still redeems.
    let answer = app.post_form_basic(&form, "basic-app", BASIC_SECRET).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// A code that was never issued: `invalid_grant`, counted as unknown (not a replay).
async fn unknown_code_is_invalid_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut issued = app.issue(grant("public-app")).await;
    issued.code = "never-issued".into();
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    answer.assert_error(400, "invalid_grant");
    assert_eq!(app.metric("code_replays_total").await, 0.0);
    assert_eq!(app.requests("invalid_grant", "unknown_code").await, 1.0);
}

/// RFC 7636 §4.6: a verifier that does not match is `invalid_grant`, and the
/// attempt leaves the code redeemable by the holder of the right verifier.
async fn wrong_verifier_is_invalid_grant_and_does_not_consume(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let mut attacker = issued.clone();
    attacker.verifier = token_endpoint::contract::frontend::random_token().unwrap();
    for _ in 0..3 {
        let answer = app.post_form(&TestApp::form(&attacker, "public-app")).await;
        answer.assert_error(400, "invalid_grant");
        assert!(answer.description().contains("code_verifier"), "{answer:?}");
    }
    assert_eq!(app.requests("invalid_grant", "pkce_mismatch").await, 3.0);
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// A code issued to one client, presented by another: `invalid_grant`, code
/// kept. The description is the unknown code's (a stranger must not learn
/// that the code exists); the metrics and logs keep `client_mismatch`.
async fn other_client_is_invalid_grant_and_does_not_consume(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&issued, "plain-app")).await;
    answer.assert_error(400, "invalid_grant");
    assert!(
        answer.description().contains("not issued to this client"),
        "{answer:?}"
    );
    assert_eq!(app.requests("invalid_grant", "client_mismatch").await, 1.0);
    assert_eq!(
        app.post_form(&TestApp::form(&issued, "public-app"))
            .await
            .status,
        200
    );
}

/// RFC 6749 §4.1.3: redirect_uri must be present and identical when the
/// authorization request had one; a failed comparison keeps the code.
async fn redirect_uri_mismatch_is_invalid_grant_and_does_not_consume(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let good = TestApp::form(&issued, "public-app");
    for uri in [
        Some("https://client.test/cb/"),
        Some("https://CLIENT.test/cb"),
        Some("https://evil.test/cb"),
        None,
    ] {
        let mut form: Vec<_> = good
            .iter()
            .filter(|(n, _)| *n != "redirect_uri")
            .cloned()
            .collect();
        if let Some(uri) = uri {
            form.push(("redirect_uri", uri.into()));
        }
        let answer = app.post_form(&form).await;
        answer.assert_error(400, "invalid_grant");
        assert!(answer.description().contains("redirect_uri"), "{answer:?}");
    }
    // A redirect_uri where the authorization request had none is refused too.
    let mut g = grant("public-app");
    g.redirect_uri = None;
    let bare = app.issue(g).await;
    app.post_form(&TestApp::form(&bare, "public-app"))
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(app.post_form(&good).await.status, 200);
}

/// Codes expire with their TTL (Redis `EX`, or the embedded store's clock).
/// The code is first shown to be there: a wrong verifier is refused as a
/// PKCE mismatch, which only a stored code can produce, and consumes
/// nothing. The same probe is repeated until it finds no code, which must
/// happen soon after the TTL; then the right verifier is refused as an
/// unknown code ("has expired", counted as `unknown_code`). Without
/// expiry the probe would go on finding the code and the test fails at
/// its deadline (or the redemption would succeed).
async fn expired_code_is_invalid_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let (issued, record) =
        token_endpoint::contract::frontend::prepare(grant("public-app")).unwrap();
    // Long enough that the first probe is sure to arrive before it ends.
    let ttl = Duration::from_secs(2);
    app.state
        .redeemer
        .store()
        .insert(&issued.code, &record, ttl)
        .await
        .expect("insert");
    let inserted = Instant::now();
    let mut probe = TestApp::form(&issued, "public-app");
    for (name, value) in probe.iter_mut() {
        if *name == "code_verifier" {
            *value = "x".repeat(43);
        }
    }
    let stored = |answer: &Answer| {
        answer
            .description()
            .contains("code_verifier does not match")
    };
    let first = app.post_form(&probe).await;
    first.assert_error(400, "invalid_grant");
    assert!(
        stored(&first),
        "the code was not there to expire: {first:?}"
    );
    let deadline = inserted + ttl + Duration::from_secs(5);
    loop {
        let answer = app.post_form(&probe).await;
        answer.assert_error(400, "invalid_grant");
        if !stored(&answer) {
            assert!(answer.description().contains("expired"), "{answer:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the code was still there {:?} after it was stored with a TTL of {ttl:?}",
            inserted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.requests("invalid_grant", "pkce_mismatch").await >= 1.0);
    let unknown = app.requests("invalid_grant", "unknown_code").await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    answer.assert_error(400, "invalid_grant");
    assert!(answer.description().contains("expired"), "{answer:?}");
    assert_eq!(
        app.requests("invalid_grant", "unknown_code").await,
        unknown + 1.0
    );
}

/// A frontend that breaks the contract: `invalid_grant`, counted as
/// `bad_record`, never a 500.
async fn broken_records_are_invalid_grant_and_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (issued, record) =
        token_endpoint::contract::frontend::prepare(grant("public-app")).unwrap();
    let mut valid = serde_json::to_value(&record).unwrap();
    let without = |field: &str| {
        let mut v = valid.clone();
        v.as_object_mut().unwrap().remove(field);
        v.to_string()
    };
    let broken = vec![
        "not json at all".to_string(),
        "[1,2,3]".to_string(),
        without("client_id"),
        without("code_challenge"),
        without("code_challenge_method"),
        without("sub"),
        without("scope"),
        {
            valid["code_challenge_method"] = "S512".into();
            valid.to_string()
        },
        {
            valid["code_challenge_method"] = "S256".into();
            valid["auth_time"] = "yesterday".into();
            valid.to_string()
        },
        {
            valid["auth_time"] = serde_json::Value::Null;
            valid["redirect_uri"] = 42.into();
            valid.to_string()
        },
    ];
    for (i, raw) in broken.iter().enumerate() {
        let code = format!("{}-{i}", issued.code);
        app.insert_raw(&code, raw, Duration::from_secs(60)).await;
        let mut attempt = issued.clone();
        attempt.code = code;
        let answer = app.post_form(&TestApp::form(&attempt, "public-app")).await;
        answer.assert_error(400, "invalid_grant");
    }
    assert_eq!(
        app.requests("invalid_grant", "bad_record").await,
        broken.len() as f64
    );
}

/// GET and other methods on the token endpoint: 405 with `Allow: OPTIONS,
/// POST` (OPTIONS answers CORS preflights: tests/api/cors.rs).
async fn only_post_is_allowed(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.get("/oauth/token").await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "OPTIONS, POST");
    assert_eq!(app.get("/nowhere").await.status(), 404);
    assert_eq!(app.store_takes().await, 0.0, "a refusal asked the store");
}

/// Every `reason` label of `token_requests_total` has its row in the
/// token endpoint's table (docs/token-endpoint.md), which docs/operations.md
/// points to for what each means: `slow_body` and `internal` once had none.
#[test]
fn every_reason_is_in_the_documented_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/token-endpoint.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let in_a_row = |reason: &str| {
        doc.lines()
            .any(|l| l.starts_with('|') && l.contains(&format!("`{reason}`")))
    };
    // `issued` is the success, whose outcome label says so.
    let missing: Vec<&str> = token_endpoint::grant::error::Reason::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|&r| r != "issued" && !in_a_row(r))
        .collect();
    assert!(
        missing.is_empty(),
        "reasons without a row in docs/token-endpoint.md: {missing:?}"
    );
}
