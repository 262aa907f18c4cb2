//! DPoP (RFC 9449) at the token endpoint: bound tokens, every check of
//! §4.3 on its own, replay across replicas, server nonces, the client's
//! `dpop_bound_access_tokens` and the code's `dpop_jkt`. Every refusal
//! leaves the code redeemable, which each case shows by redeeming it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use token_endpoint::config::NonceSettings;
use token_endpoint::contract::frontend::IssuedCode;
use token_endpoint::dpop::jwk::Alg;
use token_endpoint_test_support::dpop::claims;
use token_endpoint_test_support::{on_every_store, AppFiles, RedisServer};

use crate::helpers::*;

on_every_store!(
    a_proof_binds_the_access_token_to_its_key,
    every_proof_check_refuses_alone_and_leaves_the_code,
    the_token_endpoints_url_is_compared_normalised,
    a_proof_is_accepted_once,
    nonces_are_asked_for_then_accepted,
    a_client_registered_for_dpop_must_send_a_proof,
    a_code_bound_to_a_key_needs_a_proof_of_that_key,
);

fn htu() -> String {
    format!("{ISSUER}/oauth/token")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Redeem `issued` for `public-app` with `proof`, and say it succeeded
/// with a DPoP-bound token of `key`.
async fn redeems_bound(app: &TestApp, issued: &IssuedCode, key: &DpopKey, proof: &str) {
    let answer = app
        .post_form_dpop(&TestApp::form(issued, "public-app"), &[proof])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["token_type"], "DPoP");
    let (_, claims) = jwt_parts(answer.body["access_token"].as_str().unwrap());
    assert_eq!(claims["cnf"]["jkt"], json!(key.thumbprint()));
}

/// A proof of each accepted algorithm yields `token_type` DPoP and an
/// access token whose `cnf.jkt` is the key's thumbprint as computed here;
/// the ID token carries no `cnf`; a request without a proof still gets a
/// bearer token.
async fn a_proof_binds_the_access_token_to_its_key(backend: Backend) {
    let app = spawn_app(backend).await;
    for key in [DpopKey::es256(), DpopKey::ed25519()] {
        let issued = app.issue(grant("public-app")).await;
        let answer = app
            .post_form_dpop(&TestApp::form(&issued, "public-app"), &[&key.proof(&htu())])
            .await;
        assert_eq!(answer.status, 200, "{} {answer:?}", key.alg());
        assert_eq!(answer.body["token_type"], "DPoP");
        let jwks = app.jwks().await;
        let access = verify_jwt(
            answer.body["access_token"].as_str().unwrap(),
            &jwks,
            "https://api.test",
        );
        assert_eq!(access["cnf"], json!({"jkt": key.thumbprint()}));
        let (_, id_token) = jwt_parts(answer.body["id_token"].as_str().unwrap());
        assert_eq!(id_token.get("cnf"), None, "the ID token is unchanged");
    }
    let issued = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.body["token_type"], "Bearer");
    let (_, claims) = jwt_parts(answer.body["access_token"].as_str().unwrap());
    assert_eq!(claims.get("cnf"), None);
    assert_eq!(app.requests("success", "issued").await, 3.0);
    assert_eq!(app.metric("dpop_bound_access_tokens_total").await, 2.0);
}

/// One broken proof per check of §4.3, each refused `invalid_dpop_proof`
/// with a description naming what is wrong; then the same code redeems
/// with a good proof, so none of them consumed it.
async fn every_proof_check_refuses_alone_and_leaves_the_code(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = DpopKey::es256();
    let other = DpopKey::es256();
    let ed = DpopKey::ed25519();
    let rsa = DpopKey::rsa("RS256");
    let now = unix_now();
    let with_header = |edit: &dyn Fn(&mut Value)| {
        let mut header = key.header();
        edit(&mut header);
        key.sign(&header, &claims(&htu()))
    };
    let with_claims = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims(&htu());
        edit(&mut claims);
        key.sign(&key.header(), &claims)
    };
    let good = key.proof(&htu());
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut flipped = signature.as_bytes().to_vec();
    flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
    let bad_signature = format!("{head}.{payload}.{}", String::from_utf8(flipped).unwrap());
    let cases: Vec<(&str, String, &str)> = vec![
        ("not a JWS", "not-a-jws".into(), "compact serialisation"),
        ("four parts", format!("{good}.x"), "compact serialisation"),
        (
            "typ missing",
            with_header(&|h| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            "no typ",
        ),
        ("typ jwt", with_header(&|h| h["typ"] = json!("JWT")), "typ"),
        (
            "alg none",
            with_header(&|h| h["alg"] = json!("none")),
            "alg 'none' is not accepted",
        ),
        (
            "alg HS256",
            with_header(&|h| h["alg"] = json!("HS256")),
            "alg 'HS256' is not accepted",
        ),
        (
            "alg RS256, not enabled",
            rsa.proof(&htu()),
            "alg 'RS256' is not accepted",
        ),
        (
            "alg of another key type",
            with_header(&|h| h["alg"] = json!("EdDSA")),
            "cannot sign alg EdDSA",
        ),
        (
            "jwk missing",
            with_header(&|h| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
            "no jwk",
        ),
        (
            "private jwk",
            with_header(&|h| h["jwk"]["d"] = json!("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I")),
            "private key material (d)",
        ),
        (
            "private member null",
            with_header(&|h| h["jwk"]["d"] = Value::Null),
            "private key material (d)",
        ),
        (
            "symmetric jwk",
            with_header(&|h| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})),
            "symmetric key (kty oct)",
        ),
        ("crit", with_header(&|h| h["crit"] = json!(["exp"])), "crit"),
        ("bad signature", bad_signature, "signature does not verify"),
        (
            "signed by another key",
            other.sign(&key.header(), &claims(&htu())),
            "signature does not verify",
        ),
        (
            "Ed25519 key, ES256 signature",
            {
                let mut header = key.header();
                header["jwk"] = ed.jwk();
                key.sign(&header, &claims(&htu()))
            },
            "cannot sign alg ES256",
        ),
        (
            "htm GET",
            with_claims(&|c| c["htm"] = json!("GET")),
            "htm is 'GET'",
        ),
        (
            "htm post",
            with_claims(&|c| c["htm"] = json!("post")),
            "htm is 'post'",
        ),
        (
            "htu of another server",
            with_claims(&|c| c["htu"] = json!("https://evil.test/oauth/token")),
            "htu",
        ),
        (
            "htu with a trailing slash",
            with_claims(&|c| c["htu"] = json!(format!("{}/", htu()))),
            "htu",
        ),
        (
            "htu of another endpoint",
            with_claims(&|c| c["htu"] = json!(format!("{ISSUER}/oauth/revoke"))),
            "htu",
        ),
        (
            "iat too old",
            with_claims(&|c| c["iat"] = json!(now - 120)),
            "in the past",
        ),
        (
            "iat in the future",
            with_claims(&|c| c["iat"] = json!(now + 60)),
            "in the future",
        ),
        (
            "iat not a number",
            with_claims(&|c| c["iat"] = json!(now.to_string())),
            "iat",
        ),
        (
            "jti missing",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            }),
            "no jti",
        ),
        (
            "jti too long",
            with_claims(&|c| c["jti"] = json!("j".repeat(257))),
            "jti must be 1 to 256 bytes",
        ),
        (
            "htu missing",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove("htu");
            }),
            "no htu",
        ),
        (
            "htm missing",
            with_claims(&|c| {
                c.as_object_mut().unwrap().remove("htm");
            }),
            "no htm",
        ),
    ];
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    for (case, proof, says) in &cases {
        let answer = app.post_form_dpop(&form, &[proof]).await;
        answer.assert_error(400, "invalid_dpop_proof");
        assert!(
            answer.description().contains(says),
            "{case}: {:?} should say {says:?}",
            answer.description()
        );
    }
    let two = app
        .post_form_dpop(&form, &[&key.proof(&htu()), &key.proof(&htu())])
        .await;
    two.assert_error(400, "invalid_dpop_proof");
    assert!(two.description().contains("more than one DPoP header"));
    assert_eq!(
        app.requests("invalid_dpop_proof", "dpop_proof_invalid")
            .await,
        (cases.len() + 1) as f64
    );
    assert_eq!(app.store_takes().await, 0.0, "refused before the store");
    redeems_bound(&app, &issued, &key, &key.proof(&htu())).await;
}

/// `htu` is compared after RFC 3986 normalisation, without its query and
/// fragment: a client that writes the URL another way is not refused.
async fn the_token_endpoints_url_is_compared_normalised(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = DpopKey::ed25519();
    for htu in [
        "HTTPS://ID.TEST/oauth/token",
        "https://id.test:443/oauth/token",
        "https://id.test/oauth/%74oken",
        "https://id.test/oauth/./token",
        "https://id.test/oauth/token?query=1#fragment",
    ] {
        let issued = app.issue(grant("public-app")).await;
        redeems_bound(&app, &issued, &key, &key.proof(htu)).await;
    }
}

/// A proof is accepted once: presented again with another code it is
/// refused as a replay, and that code stays redeemable. Another key with
/// the same `jti` is not a replay: the replay key is the pair.
async fn a_proof_is_accepted_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = DpopKey::es256();
    let proof = key.proof(&htu());
    redeems_bound(&app, &app.issue(grant("public-app")).await, &key, &proof).await;
    let second = app.issue(grant("public-app")).await;
    let answer = app
        .post_form_dpop(&TestApp::form(&second, "public-app"), &[&proof])
        .await;
    answer.assert_error(400, "invalid_dpop_proof");
    assert!(answer.description().contains("already used"), "{answer:?}");
    assert_eq!(
        app.requests("invalid_dpop_proof", "dpop_proof_replayed")
            .await,
        1.0
    );
    // The same jti under another key is that key's first proof.
    let other = DpopKey::es256();
    let mut same_jti = claims(&htu());
    let (_, first_claims) = jwt_parts(&proof);
    same_jti["jti"] = first_claims["jti"].clone();
    let proof = other.sign(&other.header(), &same_jti);
    redeems_bound(&app, &second, &other, &proof).await;
}

/// Two replicas on one Redis: a proof one accepted, the other refuses.
#[tokio::test]
async fn a_proof_is_accepted_once_across_replicas() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let files = Arc::new(AppFiles::new());
    let first = spawn_app_on(Some(redis.clone()), files.clone(), |_| {}).await;
    let second = spawn_app_on(Some(redis), files, |_| {}).await;
    let key = DpopKey::es256();
    let proof = key.proof(&htu());
    redeems_bound(
        &first,
        &first.issue(grant("public-app")).await,
        &key,
        &proof,
    )
    .await;
    let issued = second.issue(grant("public-app")).await;
    let answer = second
        .post_form_dpop(&TestApp::form(&issued, "public-app"), &[&proof])
        .await;
    answer.assert_error(400, "invalid_dpop_proof");
    assert!(answer.description().contains("already used"));
    redeems_bound(&second, &issued, &key, &key.proof(&htu())).await;
}

/// Nonces required, with a key shared through a file.
fn with_nonces(
    secret_file: std::path::PathBuf,
    step_secs: u64,
) -> impl FnOnce(&mut token_endpoint::config::Settings) {
    move |settings| {
        settings.dpop.nonce = Some(NonceSettings {
            secret_file: Some(secret_file),
            step_secs,
        })
    }
}

fn secret_file(files: &AppFiles, name: &str, secret: &[u8]) -> std::path::PathBuf {
    let path = files.dir.path().join(name);
    std::fs::write(&path, secret).unwrap();
    path
}

/// With nonces required, a proof without one is answered `use_dpop_nonce`
/// with a `DPoP-Nonce` header a browser may read, and the code stays; the
/// retry with that nonce succeeds. A nonce of another key is not accepted.
async fn nonces_are_asked_for_then_accepted(backend: Backend) {
    let redis = match backend {
        Backend::Embedded => None,
        _ => Some(Arc::new(std::sync::Mutex::new(RedisServer::start()))),
    };
    let files = Arc::new(AppFiles::new());
    let shared = secret_file(&files, "nonce.key", &[7; 32]);
    let app = spawn_app_on(redis, files.clone(), with_nonces(shared, 60)).await;
    let key = DpopKey::es256();
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header("Origin", "https://app.test")
                .header("DPoP", key.proof(&htu()))
                .form(&form),
        )
        .await;
    answer.assert_error(400, "use_dpop_nonce");
    let nonce = answer
        .header("dpop-nonce")
        .expect("a DPoP-Nonce header")
        .to_owned();
    let exposed = answer.header("access-control-expose-headers").unwrap_or("");
    assert!(exposed.contains("DPoP-Nonce"), "{exposed:?}");
    // A nonce this server never issued is stale.
    let forged = app
        .post_form_dpop(
            &form,
            &[&key.proof_with_nonce(&htu(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
        )
        .await;
    forged.assert_error(400, "use_dpop_nonce");
    assert_eq!(app.store_takes().await, 0.0);
    redeems_bound(&app, &issued, &key, &key.proof_with_nonce(&htu(), &nonce)).await;
}

/// Replicas that share the nonce key accept each other's nonces; one with
/// another key does not.
#[tokio::test]
async fn a_nonce_from_one_replica_is_accepted_by_another() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let files = Arc::new(AppFiles::new());
    let shared = secret_file(&files, "nonce.key", &[7; 32]);
    let stranger_key = secret_file(&files, "other.key", &[9; 32]);
    let first = spawn_app_on(
        Some(redis.clone()),
        files.clone(),
        with_nonces(shared.clone(), 60),
    )
    .await;
    let second = spawn_app_on(Some(redis.clone()), files.clone(), with_nonces(shared, 60)).await;
    let stranger = spawn_app_on(Some(redis), files, with_nonces(stranger_key, 60)).await;
    let key = DpopKey::es256();
    let issued = first.issue(grant("public-app")).await;
    let asked = first
        .post_form_dpop(&TestApp::form(&issued, "public-app"), &[&key.proof(&htu())])
        .await;
    asked.assert_error(400, "use_dpop_nonce");
    let nonce = asked.header("dpop-nonce").unwrap().to_owned();
    let refused = stranger
        .post_form_dpop(
            &TestApp::form(&issued, "public-app"),
            &[&key.proof_with_nonce(&htu(), &nonce)],
        )
        .await;
    refused.assert_error(400, "use_dpop_nonce");
    assert_ne!(refused.header("dpop-nonce"), Some(nonce.as_str()));
    redeems_bound(
        &second,
        &issued,
        &key,
        &key.proof_with_nonce(&htu(), &nonce),
    )
    .await;
}

/// A nonce of the previous time step is still accepted, and the answer
/// hands the client the current one (RFC 9449 §8.2), so its next proof
/// needs no extra round trip. A nonce of the current step gets none.
#[tokio::test]
async fn a_success_hands_out_the_next_nonce_when_the_step_rolls_over() {
    const STEP: u64 = 4;
    let files = Arc::new(AppFiles::new());
    let shared = secret_file(&files, "nonce.key", &[7; 32]);
    let app = spawn_app_on(None, files, with_nonces(shared, STEP)).await;
    let key = DpopKey::es256();
    // Early in a step: the nonce is current, nothing new is handed out.
    wait_for_step_start(STEP).await;
    let (issued, nonce) = ask_for_nonce(&app, &key).await;
    let answer = app
        .post_form_dpop(
            &TestApp::form(&issued, "public-app"),
            &[&key.proof_with_nonce(&htu(), &nonce)],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("dpop-nonce"), None);
    // In the next step, the same nonce: accepted, and a fresh one comes back.
    let (issued, _) = ask_for_nonce(&app, &key).await;
    wait_for_step_start(STEP).await;
    let answer = app
        .post_form_dpop(
            &TestApp::form(&issued, "public-app"),
            &[&key.proof_with_nonce(&htu(), &nonce)],
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let fresh = answer.header("dpop-nonce").expect("a fresh nonce");
    assert_ne!(fresh, nonce);
    let issued = app.issue(grant("public-app")).await;
    redeems_bound(&app, &issued, &key, &key.proof_with_nonce(&htu(), fresh)).await;
}

/// A code, and the nonce a proof without one is answered with.
async fn ask_for_nonce(app: &TestApp, key: &DpopKey) -> (IssuedCode, String) {
    let issued = app.issue(grant("public-app")).await;
    let answer = app
        .post_form_dpop(&TestApp::form(&issued, "public-app"), &[&key.proof(&htu())])
        .await;
    answer.assert_error(400, "use_dpop_nonce");
    (issued, answer.header("dpop-nonce").unwrap().to_owned())
}

/// Sleep until just after the next multiple of `step` seconds.
async fn wait_for_step_start(step: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let next = (now.as_secs() / step + 1) * step;
    let wait = Duration::from_secs(next) - now + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
}

/// A client registered with `dpop_bound_access_tokens` gets
/// `invalid_request` without a proof, and its code stays; with one, bound
/// tokens.
async fn a_client_registered_for_dpop_must_send_a_proof(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut for_dpop_app = grant("dpop-app");
    for_dpop_app.redirect_uri = None;
    let issued = app.issue(for_dpop_app).await;
    let form: Vec<(&str, String)> = TestApp::form(&issued, "dpop-app")
        .into_iter()
        .filter(|(name, _)| *name != "redirect_uri")
        .collect();
    let answer = app.post_form(&form).await;
    answer.assert_error(400, "invalid_request");
    assert!(answer.description().contains("dpop_bound_access_tokens"));
    assert_eq!(
        app.requests("invalid_request", "dpop_proof_required").await,
        1.0
    );
    let key = DpopKey::es256();
    let answer = app.post_form_dpop(&form, &[&key.proof(&htu())]).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["token_type"], "DPoP");
}

/// RFC 9449 §10: a code bound to a key's thumbprint (`dpop_jkt`) is
/// refused `invalid_grant` without a proof and with another key's, and
/// stays; the bound key redeems it.
async fn a_code_bound_to_a_key_needs_a_proof_of_that_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let key = DpopKey::es256();
    let mut bound = grant("public-app");
    bound.dpop_jkt = Some(key.thumbprint());
    let issued = app.issue(bound).await;
    let form = TestApp::form(&issued, "public-app");
    let without = app.post_form(&form).await;
    without.assert_error(400, "invalid_grant");
    assert!(
        without.description().contains("send a DPoP proof"),
        "{without:?}"
    );
    let other = DpopKey::ed25519();
    let wrong_key = app.post_form_dpop(&form, &[&other.proof(&htu())]).await;
    wrong_key.assert_error(400, "invalid_grant");
    assert!(
        wrong_key.description().contains("not the one"),
        "{wrong_key:?}"
    );
    assert_eq!(
        app.requests("invalid_grant", "dpop_key_mismatch").await,
        2.0
    );
    redeems_bound(&app, &issued, &key, &key.proof(&htu())).await;
}

/// RS256 and PS256 proofs, once enabled; discovery lists what is accepted,
/// in the configured order.
#[tokio::test]
async fn rsa_proofs_are_accepted_once_enabled_and_advertised() {
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), |settings| {
        settings.dpop.algorithms = vec![Alg::Ps256, Alg::Rs256, Alg::Es256];
    })
    .await;
    let discovery: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["dpop_signing_alg_values_supported"],
        json!(["PS256", "RS256", "ES256"])
    );
    for key in [DpopKey::rsa("RS256"), DpopKey::rsa("PS256")] {
        let issued = app.issue(grant("public-app")).await;
        redeems_bound(&app, &issued, &key, &key.proof(&htu())).await;
    }
    let ed = DpopKey::ed25519();
    let issued = app.issue(grant("public-app")).await;
    let answer = app
        .post_form_dpop(&TestApp::form(&issued, "public-app"), &[&ed.proof(&htu())])
        .await;
    answer.assert_error(400, "invalid_dpop_proof");
    assert!(answer
        .description()
        .contains("accepted: PS256, RS256, ES256"));
}

/// A DPoP redemption answered 503 (the take's `WAIT` fell short of the
/// replicas asked for) issued nothing, so its proof is released: the very
/// same request, resent once a replica has caught up, gets the tokens,
/// not a refusal of its proof as a replay.
#[tokio::test]
async fn a_proof_answered_503_may_be_sent_again() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let app = spawn_app_on(Some(redis), Arc::new(AppFiles::new()), |settings| {
        set_replica_acks(settings, 1)
    })
    .await;
    let key = DpopKey::es256();
    let proof = key.proof(&htu());
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    let answer = app.post_form_dpop(&form, &[&proof]).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    let _replica = replica_caught_up(&app).await;
    redeems_bound(&app, &issued, &key, &proof).await;
}
