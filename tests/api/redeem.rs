//! Successful redemptions: the response of RFC 6749 §5.1 and the claims of
//! both tokens.

use std::time::Duration;

use serde_json::json;
use token_endpoint::contract::record::{CodeRecord, Resource};
use token_endpoint::pkce::ChallengeMethod;

use crate::helpers::*;
use token_endpoint_test_support::on_every_store;

on_every_store!(
    rfc7636_appendix_b_vector_redeems,
    success_has_rfc6749_shape_and_verifiable_tokens,
    access_token_follows_rfc9068,
    id_token_follows_oidc_core,
    extra_claims_never_override_registered_ones,
    resource_indicator_sets_the_audience,
    confidential_clients_authenticate,
    plain_method_only_for_allowed_clients,
    scope_without_openid_gets_no_id_token,
    code_without_redirect_uri_redeems_without_one,
);

/// The RFC 7636 Appendix B verifier redeems a code stored with the
/// Appendix B challenge.
async fn rfc7636_appendix_b_vector_redeems(backend: Backend) {
    let app = spawn_app(backend).await;
    let record = CodeRecord {
        client_id: "public-app".into(),
        redirect_uri: Some("https://client.test/cb".into()),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        code_challenge_method: ChallengeMethod::S256,
        sub: "user-1".into(),
        scope: "openid".into(),
        nonce: None,
        auth_time: None,
        acr: None,
        amr: None,
        claims: None,
        resource: None,
        dpop_jkt: None,
    };
    app.insert_raw(
        "appendix-b-code",
        &record.to_json(),
        Duration::from_secs(60),
    )
    .await;
    let mut form = TestApp::form(
        &token_endpoint::contract::frontend::IssuedCode {
            code: "appendix-b-code".into(),
            verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        },
        "public-app",
    );
    let answer = app.post_form(&form).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // And a verifier one character off does not.
    let other = app.issue(grant("public-app")).await;
    form = TestApp::form(&other, "public-app");
    form[4].1.replace_range(
        0..1,
        if other.verifier.starts_with('A') {
            "B"
        } else {
            "A"
        },
    );
    app.post_form(&form)
        .await
        .assert_error(400, "invalid_grant");
}

/// RFC 6749 §5.1: the members, `token_type` Bearer, `no-store` and
/// `no-cache`; both tokens verify against the published JWKS.
async fn success_has_rfc6749_shape_and_verifiable_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("pragma"), Some("no-cache"));
    assert!(answer
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["expires_in"], 600);
    assert_eq!(answer.body["scope"], "openid profile");
    let jwks = app.jwks().await;
    let access = answer.body["access_token"].as_str().expect("access_token");
    let id = answer.body["id_token"].as_str().expect("id_token");
    verify_jwt(access, &jwks, "https://api.test");
    verify_jwt(id, &jwks, "public-app");
    assert_eq!(
        app.metric("tokens_issued_total{kind=\"access_token\"}")
            .await,
        1.0
    );
    assert_eq!(app.requests("success", "issued").await, 1.0);
}

/// RFC 9068 §2: header `typ: at+jwt`; `iss`, `sub`, `aud`, `client_id`,
/// `exp`, `iat`, `jti`, `scope`, and `auth_time`, `acr`, `amr` when the grant
/// has them; plus `grant_id`.
async fn access_token_follows_rfc9068(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.auth_time = Some(1_700_000_000);
    g.acr = Some("urn:mace:incommon:iap:silver".into());
    g.amr = Some(vec!["pwd".into(), "otp".into()]);
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    let token = answer.body["access_token"].as_str().expect("access_token");
    let (header, _) = jwt_parts(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    let claims = verify_jwt(token, &app.jwks().await, "https://api.test");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(
        claims["aud"],
        json!(["https://api.test", "https://other.test"])
    );
    assert_eq!(claims["client_id"], "public-app");
    assert_eq!(claims["scope"], "openid profile");
    assert_eq!(claims["auth_time"], 1_700_000_000);
    assert_eq!(claims["acr"], "urn:mace:incommon:iap:silver");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 600);
    assert_eq!(claims["jti"].as_str().map(str::len), Some(22));
    assert_eq!(claims["grant_id"].as_str().map(str::len), Some(22));
}

/// OpenID Connect Core §2 and §3.1.3.6: `aud` is the client, `azp` too,
/// `nonce` echoed, `at_hash` the left half of SHA-256 of the access token.
async fn id_token_follows_oidc_core(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.nonce = Some("n-0S6_WzA2Mj".into());
    g.auth_time = Some(1_700_000_000);
    g.amr = Some(vec!["pwd".into()]);
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    let access = answer.body["access_token"].as_str().expect("access_token");
    let id = answer.body["id_token"].as_str().expect("id_token");
    let (header, _) = jwt_parts(id);
    assert_eq!(header["typ"], "JWT");
    let claims = verify_jwt(id, &app.jwks().await, "public-app");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["aud"], "public-app");
    assert_eq!(claims["azp"], "public-app");
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["auth_time"], 1_700_000_000);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        120
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, access.as_bytes());
    let expected = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest.as_ref()[..16],
    );
    assert_eq!(claims["at_hash"], expected);
}

/// The record's extra `claims` reach the ID token, but never replace a
/// registered claim.
async fn extra_claims_never_override_registered_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.claims = Some(
        json!({"email": "u@example.test", "email_verified": true, "sub": "admin", "iss": "https://evil.test", "aud": "x", "at_hash": "x"})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    let claims = verify_jwt(
        answer.body["id_token"].as_str().unwrap(),
        &app.jwks().await,
        "public-app",
    );
    assert_eq!(claims["email"], "u@example.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "public-app");
    let raw_payload = answer.body["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    let payload = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            raw_payload,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(payload.matches("\"sub\"").count(), 1, "{payload}");
}

/// RFC 8707: a `resource` in the record, one of the client's registered
/// audience, becomes the access token's `aud` (anything else is refused:
/// tests/api/attacks.rs).
async fn resource_indicator_sets_the_audience(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.resource = Some(Resource::One("https://other.test".into()));
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    let claims = verify_jwt(
        answer.body["access_token"].as_str().unwrap(),
        &app.jwks().await,
        "https://other.test",
    );
    assert_eq!(claims["aud"], "https://other.test");
}

/// `client_secret_basic` and `client_secret_post` clients redeem with their
/// secret, each by its registered method.
async fn confidential_clients_authenticate(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("basic-app")).await;
    let mut form = TestApp::form(&issued, "basic-app");
    form.retain(|(name, _)| *name != "client_id");
    let answer = app.post_form_basic(&form, "basic-app", BASIC_SECRET).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let issued = app.issue(grant("post-app")).await;
    let mut form = TestApp::form(&issued, "post-app");
    form.push(("client_secret", POST_SECRET.into()));
    let answer = app.post_form(&form).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// RFC 7636 §4.2 `plain`: refused (and not consumed) for a client not
/// allowed to use it; accepted for one that is.
async fn plain_method_only_for_allowed_clients(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.code_challenge_method = ChallengeMethod::Plain;
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    answer.assert_error(400, "invalid_grant");
    assert!(answer.description().contains("plain"), "{answer:?}");

    let mut g = grant("plain-app");
    g.code_challenge_method = ChallengeMethod::Plain;
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "plain-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Without `openid` in the scope there is no ID token (OpenID Connect Core
/// §3.1.2.1), and an empty scope is left out of the access token.
async fn scope_without_openid_gets_no_id_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.scope = "".into();
    let issued = app.issue(g).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.body.get("id_token").is_none());
    let (_, claims) = jwt_parts(answer.body["access_token"].as_str().unwrap());
    assert!(claims.get("scope").is_none());
}

/// RFC 6749 §4.1.3: redirect_uri is required only if the authorization
/// request carried one.
async fn code_without_redirect_uri_redeems_without_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut g = grant("public-app");
    g.redirect_uri = None;
    let issued = app.issue(g).await;
    let mut form = TestApp::form(&issued, "public-app");
    form.retain(|(name, _)| *name != "redirect_uri");
    let answer = app.post_form(&form).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}
