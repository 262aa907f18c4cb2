//! Attacks on the running service, each a reproduction of a finding of the
//! security review (issue 10; issue 20 for the dev endpoints) turned into a
//! test: real source addresses (`127.0.0.x`), a real Redis (and a real
//! Cluster where slots matter), real HTTP. docs/security.md describes the
//! threat model they come from.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use token_endpoint::contract::frontend::{self, IssuedCode};
use token_endpoint::contract::record::Resource;

use crate::helpers::*;
use token_endpoint_test_support::{before_any_store, on_every_store};

on_every_store!(
    nobody_can_lock_users_out_of_a_public_client,
    nobody_can_lock_a_confidential_client_out_from_other_addresses,
    a_wrong_method_is_not_counted_as_a_guess,
    resource_must_be_a_subset_of_the_registered_audience,
    a_foreign_replay_revokes_nothing_and_reveals_nothing,
    a_replay_with_the_owners_client_id_but_a_wrong_verifier_revokes_nothing,
    a_live_code_of_another_client_looks_unknown,
    codes_outside_the_unreserved_set_never_reach_the_store,
    the_id_token_carries_the_grant_and_replays_are_caught_for_its_lifetime,
);

// Refused before any store is asked: run once, on the embedded store.
before_any_store!(a_repeated_parameter_is_refused_even_when_the_first_is_empty);

/// A reqwest client whose connections come from `source` (any 127.0.0.0/8
/// address reaches a server bound to 127.0.0.1 on Linux).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().expect("an address"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn post_from(app: &TestApp, source: &str, form: &[(&str, String)]) -> Answer {
    app.send(client_from(source).post(app.token_url()).form(form))
        .await
}

/// Finding 1. 20 requests from each of five addresses name the public client
/// with a `client_secret` it does not have (100 failures, as many as the
/// default per-client limit); a real user of that client, from a sixth
/// address, still redeems. A public client has no secret to guess: such a
/// request is refused (401) but counts against nobody.
async fn nobody_can_lock_users_out_of_a_public_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let victim = app.issue(grant("public-app")).await;
    for attacker in 2..=6 {
        let source = format!("127.0.0.{attacker}");
        let mut form = TestApp::form(&victim, "public-app");
        form.push(("client_secret", "x".into()));
        for _ in 0..20 {
            post_from(&app, &source, &form)
                .await
                .assert_error(401, "invalid_client");
        }
    }
    let answer = post_from(&app, "127.0.0.7", &TestApp::form(&victim, "public-app")).await;
    assert_eq!(
        answer.status, 200,
        "the real user was locked out: {answer:?}"
    );
    assert_eq!(
        app.requests("invalid_client", "auth_rate_limited").await,
        0.0
    );
}

/// Finding 1, confidential clients. Five addresses each fail 20 times
/// with wrong secrets for `basic-app`: each of those addresses is then
/// limited (429, even with the right secret), but the client itself is not:
/// its real server, from a sixth address, redeems. The per-client count is
/// an alert (a metric), not a refusal anyone can trigger for everyone.
async fn nobody_can_lock_a_confidential_client_out_from_other_addresses(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("basic-app")).await;
    let mut form = TestApp::form(&issued, "basic-app");
    form.retain(|(n, _)| *n != "client_id");
    for attacker in 2..=6 {
        let client = client_from(&format!("127.0.0.{attacker}"));
        for _ in 0..20 {
            app.send(
                client
                    .post(app.token_url())
                    .basic_auth("basic-app", Some("guess"))
                    .form(&form),
            )
            .await
            .assert_error(401, "invalid_client");
        }
    }
    let limited = app
        .send(
            client_from("127.0.0.2")
                .post(app.token_url())
                .basic_auth("basic-app", Some(BASIC_SECRET))
                .form(&form),
        )
        .await;
    assert_eq!(limited.status, 429, "{limited:?}");
    assert!(
        limited
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "a 429 invalid_client to a Basic client carries WWW-Authenticate: {limited:?}"
    );
    let answer = app
        .send(
            client_from("127.0.0.7")
                .post(app.token_url())
                .basic_auth("basic-app", Some(BASIC_SECRET))
                .form(&form),
        )
        .await;
    assert_eq!(answer.status, 200, "the client was locked out: {answer:?}");
    assert_eq!(
        app.metric("client_authentication_failures_total{client_id=\"basic-app\"}")
            .await,
        100.0
    );
}

/// Finding 1: a wrong authentication method is a mistake, not a guess (no
/// secret was compared). 25 of them from one address leave that address
/// free to authenticate.
async fn a_wrong_method_is_not_counted_as_a_guess(backend: Backend) {
    let app = spawn_app(backend).await;
    let public = app.issue(grant("public-app")).await;
    let confidential = app.issue(grant("basic-app")).await;
    for _ in 0..25 {
        // A secret from a public client, and a confidential client's secret
        // sent by the wrong method (in the body instead of Basic).
        let mut form = TestApp::form(&public, "public-app");
        form.push(("client_secret", "x".into()));
        post_from(&app, "127.0.0.2", &form)
            .await
            .assert_error(401, "invalid_client");
        let mut form = TestApp::form(&confidential, "basic-app");
        form.push(("client_secret", BASIC_SECRET.into()));
        post_from(&app, "127.0.0.2", &form)
            .await
            .assert_error(401, "invalid_client");
    }
    let mut form = TestApp::form(&confidential, "basic-app");
    form.retain(|(n, _)| *n != "client_id");
    let answer = app
        .send(
            client_from("127.0.0.2")
                .post(app.token_url())
                .basic_auth("basic-app", Some(BASIC_SECRET))
                .form(&form),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Finding 3. The record's `resource` (RFC 8707) may only narrow the
/// client's registered audience (`public-app`: `https://api.test` and
/// `https://other.test`). Anything else, an empty one included, is
/// `invalid_target` with no token; the code cannot ever be redeemed, so it
/// is consumed like a record that breaks the contract, and a retry finds an
/// unknown code (never a replay).
async fn resource_must_be_a_subset_of_the_registered_audience(backend: Backend) {
    let app = spawn_app(backend).await;
    let refused: Vec<Resource> = vec![
        Resource::One("https://admin.internal.example".into()),
        Resource::One(String::new()),
        Resource::Many(vec![]),
        Resource::Many(vec![String::new()]),
        Resource::Many(vec![
            "https://api.test".into(),
            "https://admin.internal.example".into(),
        ]),
        Resource::One("https://API.test".into()),
        Resource::One("https://api.test/".into()),
        Resource::Many(vec!["https://api.test".into(), "https://api.test".into()]),
    ];
    for resource in &refused {
        let mut g = grant("public-app");
        g.resource = Some(resource.clone());
        let issued = app.issue(g).await;
        let form = TestApp::form(&issued, "public-app");
        let answer = app.post_form(&form).await;
        answer.assert_error(400, "invalid_target");
        assert!(answer.body.get("access_token").is_none(), "{answer:?}");
        assert!(
            answer.description().contains("resource"),
            "{resource:?}: {answer:?}"
        );
        let again = app.post_form(&form).await;
        assert_eq!(shape(&again), unknown_code_answer(&app, "public-app").await);
    }
    assert_eq!(
        app.requests("invalid_target", "target_not_allowed").await,
        refused.len() as f64
    );
    assert_eq!(app.metric("code_replays_total").await, 0.0);
    assert_eq!(
        app.metric("tokens_issued_total{kind=\"access_token\"}")
            .await,
        0.0
    );

    let jwks = app.jwks().await;
    for (resource, audience) in [
        (
            Resource::One("https://other.test".into()),
            vec!["https://other.test"],
        ),
        (
            Resource::Many(vec!["https://other.test".into(), "https://api.test".into()]),
            vec!["https://other.test", "https://api.test"],
        ),
    ] {
        let mut g = grant("public-app");
        g.resource = Some(resource);
        let issued = app.issue(g).await;
        let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let claims = verify_jwt(
            answer.body["access_token"].as_str().unwrap(),
            &jwks,
            audience[0],
        );
        let aud: Vec<&str> = match &claims["aud"] {
            serde_json::Value::String(one) => vec![one.as_str()],
            many => many
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect(),
        };
        assert_eq!(aud, audience);
    }
}

/// The answer to a code nobody ever issued, for `client_id`: what every
/// refusal that must not reveal a code's existence has to look like.
async fn unknown_code_answer(app: &TestApp, client_id: &str) -> (u16, String, String) {
    let phantom = IssuedCode {
        code: frontend::random_token().unwrap(),
        verifier: frontend::random_token().unwrap(),
    };
    let answer = app.post_form(&TestApp::form(&phantom, client_id)).await;
    answer.assert_error(400, "invalid_grant");
    (
        answer.status,
        answer.error().to_owned(),
        answer.description().to_owned(),
    )
}

fn shape(answer: &Answer) -> (u16, String, String) {
    (
        answer.status,
        answer.error().to_owned(),
        answer.description().to_owned(),
    )
}

fn grant_id_of(answer: &Answer) -> String {
    let (_, claims) = jwt_parts(answer.body["access_token"].as_str().expect("access_token"));
    claims["grant_id"].as_str().expect("grant_id").to_owned()
}

/// Finding 4. `basic-app` redeems a code; the used code leaks; `public-app`
/// presents it with a verifier of its own. That is answered exactly like an
/// unknown code and revokes nothing. Only a replay by the owner, with the
/// owner's verifier, revokes the grant.
async fn a_foreign_replay_revokes_nothing_and_reveals_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("basic-app")).await;
    let mut owner_form = TestApp::form(&issued, "basic-app");
    owner_form.retain(|(n, _)| *n != "client_id");
    let first = app
        .post_form_basic(&owner_form, "basic-app", BASIC_SECRET)
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let grant_id = grant_id_of(&first);
    let store = &app.state.redeemer.store();

    let stranger = IssuedCode {
        code: issued.code.clone(),
        verifier: frontend::random_token().unwrap(),
    };
    let foreign = app.post_form(&TestApp::form(&stranger, "public-app")).await;
    assert_eq!(
        shape(&foreign),
        unknown_code_answer(&app, "public-app").await,
        "a foreign replay must look like an unknown code"
    );
    assert!(
        !store.is_grant_revoked(&grant_id).await.unwrap(),
        "a stranger revoked the owner's grant"
    );
    assert_eq!(app.metric("code_replays_total").await, 0.0);

    let replay = app
        .post_form_basic(&owner_form, "basic-app", BASIC_SECRET)
        .await;
    replay.assert_error(400, "invalid_grant");
    assert!(
        replay.description().contains("already been redeemed"),
        "{replay:?}"
    );
    assert!(store.is_grant_revoked(&grant_id).await.unwrap());
    assert_eq!(app.metric("code_replays_total").await, 1.0);
}

/// Finding 4, public clients: anyone can name a public client, so naming
/// the owner is not enough; the replay must also carry the owner's
/// verifier before it revokes anything.
async fn a_replay_with_the_owners_client_id_but_a_wrong_verifier_revokes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let first = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(first.status, 200, "{first:?}");
    let grant_id = grant_id_of(&first);
    let store = &app.state.redeemer.store();

    let stranger = IssuedCode {
        code: issued.code.clone(),
        verifier: frontend::random_token().unwrap(),
    };
    let answer = app.post_form(&TestApp::form(&stranger, "public-app")).await;
    assert_eq!(
        shape(&answer),
        unknown_code_answer(&app, "public-app").await
    );
    assert!(!store.is_grant_revoked(&grant_id).await.unwrap());

    let replay = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert!(replay.description().contains("already been redeemed"));
    assert!(store.is_grant_revoked(&grant_id).await.unwrap());
}

/// Finding 4, live codes: "issued to another client" would tell a stranger
/// that the code exists. It is answered like an unknown code, and the code
/// stays redeemable by its owner.
async fn a_live_code_of_another_client_looks_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&issued, "plain-app")).await;
    assert_eq!(shape(&answer), unknown_code_answer(&app, "plain-app").await);
    assert_eq!(app.requests("invalid_grant", "client_mismatch").await, 1.0);
    let owner = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(owner.status, 200, "{owner:?}");
}

/// Redis `INFO commandstats`: calls of every command so far.
fn redis_calls(app: &TestApp) -> u64 {
    let redis = app.redis.as_ref().expect("an app on Redis");
    let redis = redis.lock().unwrap();
    let mut conn = redis.client().get_connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Codes with a character outside RFC 3986's unreserved set.
const CODES_OUTSIDE_THE_CONTRACT: &[&str] =
    &["}x", "{x}", "a}b{c", "a b", "a+b", "a/b", "ab%", "ä"];

/// Finding 5. A code outside the unreserved set cannot exist under the
/// contract (docs/contract.md: frontend codes are base64url); it is
/// answered like an unknown code before any store is asked: no take on any
/// store (`code_store_duration_seconds_count`, which the unknown code and
/// the final redemption do move), no command in Redis, and each is counted
/// as `malformed_code`, not as an `unknown_code` the store reported.
async fn codes_outside_the_unreserved_set_never_reach_the_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let expected = unknown_code_answer(&app, "public-app").await;
    assert_eq!(app.store_takes().await, 1.0, "the unknown code was a take");
    let issued = app.issue(grant("public-app")).await;
    let before = app.redis.is_some().then(|| redis_calls(&app));
    for code in CODES_OUTSIDE_THE_CONTRACT {
        let attempt = IssuedCode {
            code: (*code).into(),
            verifier: issued.verifier.clone(),
        };
        let answer = app.post_form(&TestApp::form(&attempt, "public-app")).await;
        assert_eq!(shape(&answer), expected, "{code:?}: {answer:?}");
    }
    if let Some(before) = before {
        assert_eq!(redis_calls(&app), before, "a malformed code reached Redis");
    }
    assert_eq!(
        app.store_takes().await,
        1.0,
        "a malformed code was asked of the store"
    );
    assert_eq!(
        app.requests("invalid_grant", "malformed_code").await,
        CODES_OUTSIDE_THE_CONTRACT.len() as f64
    );
    assert_eq!(app.requests("invalid_grant", "unknown_code").await, 1.0);
    assert_eq!(app.metric("code_store_errors_total").await, 0.0);
    // The code whose verifier the attempts borrowed is untouched, and its
    // redemption is a take like any other.
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(app.store_takes().await, 2.0);
}

/// Finding 5 on a real three-master Cluster: `code=}x` used to put the
/// record and its used marker in different slots (CrossSlot, a 503 and a
/// store error that fires the alerts). Now it is an unknown code, and the
/// store is not touched.
#[cfg(feature = "slow-tests")]
#[tokio::test]
async fn codes_with_braces_are_unknown_on_a_cluster() {
    let cluster = RedisCluster::start();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), cluster.tweak()).await;
    let expected = unknown_code_answer(&app, "public-app").await;
    let issued = app.issue(grant("public-app")).await;
    for code in CODES_OUTSIDE_THE_CONTRACT {
        let attempt = IssuedCode {
            code: (*code).into(),
            verifier: issued.verifier.clone(),
        };
        let answer = app.post_form(&TestApp::form(&attempt, "public-app")).await;
        assert_eq!(shape(&answer), expected, "{code:?}: {answer:?}");
    }
    assert_eq!(app.store_takes().await, 1.0, "a malformed code was a take");
    assert_eq!(app.metric("code_store_errors_total").await, 0.0);
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Finding 7: `code=&code=<real>` is a repeated parameter (RFC 6749 §3.2),
/// refused whatever the first copy holds, and the code is left in place.
async fn a_repeated_parameter_is_refused_even_when_the_first_is_empty(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    for name in [
        "code",
        "code_verifier",
        "client_id",
        "grant_type",
        "redirect_uri",
    ] {
        let mut repeated = vec![(name, String::new())];
        repeated.extend(form.iter().cloned());
        let answer = app.post_form(&repeated).await;
        answer.assert_error(400, "invalid_request");
        assert!(answer.description().contains("repeated"), "{answer:?}");
    }
    assert_eq!(app.store_takes().await, 0.0, "a refusal asked the store");
    let answer = app.post_form(&form).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Finding 7: the ID token carries the grant it belongs to, and a replay is
/// recognised (and revokes) for as long as the longest-lived token of the
/// grant: `long-id-app`'s ID token lives 900 s, its access token 60 s.
async fn the_id_token_carries_the_grant_and_replays_are_caught_for_its_lifetime(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("long-id-app")).await;
    let form = TestApp::form(&issued, "long-id-app");
    let first = app.post_form(&form).await;
    assert_eq!(first.status, 200, "{first:?}");
    let grant_id = grant_id_of(&first);
    let (_, id_claims) = jwt_parts(first.body["id_token"].as_str().unwrap());
    assert_eq!(id_claims["grant_id"], grant_id.as_str());
    let replay = app.post_form(&form).await;
    assert!(replay.description().contains("already been redeemed"));
    if let Some(redis) = &app.redis {
        let redis = redis.lock().unwrap();
        let mut conn = redis.client().get_connection().unwrap();
        for key in [
            format!("oauth:used:{{{}}}", issued.code),
            format!("oauth:revoked-grant:{{{grant_id}}}"),
            format!("oauth:revoked-grant:{grant_id}"),
        ] {
            let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
            assert!((890..=900).contains(&ttl), "{key}: TTL {ttl}");
        }
    }
}

/// Finding 7: `/readyz` says "not ready" and nothing of Redis (its address,
/// port or error text) to an unauthenticated caller; the detail is logged.
#[tokio::test]
async fn readiness_reveals_nothing_about_redis() {
    let app = spawn_app(Backend::Redis).await;
    let port = app.redis.as_ref().unwrap().lock().unwrap().port;
    app.redis.as_ref().unwrap().lock().unwrap().kill();
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert_eq!(body.trim(), "not ready", "{body}");
    assert!(!body.contains(&port.to_string()));
}

/// Finding 7: a key listed both as a signing key and as a verification key
/// is published once: one JWK per `kid`.
#[tokio::test]
async fn a_key_listed_twice_is_published_once() {
    let files = Arc::new(AppFiles::new());
    let es256 = files.es256_key.clone();
    let app = spawn_app_on(None, files, move |s| s.verification_keys.push(es256)).await;
    let jwks = app.jwks().await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let mut unique = kids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(kids.len(), unique.len(), "{kids:?}");
    assert_eq!(kids.len(), 4, "{kids:?}");
}

/// The zero-configuration demo: the demo registry (`demo` registers the
/// loopback redirect URI `http://127.0.0.1/callback`) and `/dev/*` mounted.
async fn spawn_demo_app() -> TestApp {
    spawn_app_on(None, Arc::new(AppFiles::new()), |s| {
        s.clients_file = None;
        s.dev_endpoints = token_endpoint::config::DevEndpoints::Demo;
    })
    .await
}

/// `GET /dev/authorize` for the demo client with `redirect_uri`, not following redirects.
async fn authorize_demo(app: &TestApp, redirect_uri: &str) -> Answer {
    let challenge = token_endpoint::pkce::s256_challenge(&frontend::random_token().unwrap());
    let mut url = reqwest::Url::parse(&format!("{}/dev/authorize", app.address)).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "demo"),
        ("redirect_uri", redirect_uri),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "st"),
    ]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    app.send(http.get(url)).await
}

/// Issue 20: `/dev/authorize` took the host of a loopback redirect URI as
/// everything before the first `:`, so a redirect URI with user
/// information (`http://127.0.0.1:x@evil.example/callback`) passed as the
/// demo client's `http://127.0.0.1/callback` on another port, and the
/// browser was sent to `evil.example` with a code whose `code_challenge`
/// the attacker chose. Each such URI is now refused without a redirect;
/// the genuine loopback URI on any port still gets its code.
#[tokio::test]
async fn the_login_page_never_redirects_a_code_off_the_loopback_host() {
    let app = spawn_demo_app().await;
    for hostile in [
        "http://127.0.0.1:x@evil.example/callback",
        "http://127.0.0.1:@evil.example/callback",
        "http://127.0.0.1@evil.example/callback",
        "http://127.0.0.1:80@evil.example:443/callback",
        "http://127.0.0.1:51004@evil.example/callback",
        "http://127.0.0.1:51004\\@evil.example/callback",
        "http://127.0.0.1:51004%40evil.example/callback",
        "http://127.0.0.1:51004/callback#@evil.example",
        "http://127.0.0.1.evil.example:51004/callback",
        "http://127.0.0.1:51004/callback/../callback",
        "http://127.1:51004/callback",
        "http://localhost:51004/callback",
    ] {
        let answer = authorize_demo(&app, hostile).await;
        assert_eq!(answer.status, 400, "{hostile}: {answer:?}");
        assert!(answer.header("location").is_none(), "{hostile}: {answer:?}");
        assert_eq!(answer.error(), "invalid_request", "{hostile}");
    }
    for genuine in [
        "http://127.0.0.1:51004/callback",
        "http://127.0.0.1/callback",
    ] {
        let answer = authorize_demo(&app, genuine).await;
        assert_eq!(answer.status, 302, "{genuine}: {answer:?}");
        let back = reqwest::Url::parse(answer.header("location").unwrap()).unwrap();
        assert_eq!(back.host_str(), Some("127.0.0.1"), "{back}");
        assert!(back.as_str().starts_with(genuine), "{back}");
        assert!(back.query_pairs().any(|(n, _)| n == "code"), "{back}");
    }
}

/// Issue 20, defence in depth: through DNS rebinding a web page at
/// `evil.example` can reach a loopback server as same-origin and read what
/// `POST /dev/codes` answers (a minted code). The browser then sends
/// `Host: evil.example:<port>`: both dev endpoints refuse it (400, JSON, no
/// code, no redirect), and answer as before to `127.0.0.1:<port>`,
/// `localhost:<port>` and `[::1]:<port>`.
#[tokio::test]
async fn the_dev_endpoints_answer_only_to_local_host_names() {
    let app = spawn_demo_app().await;
    let port = reqwest::Url::parse(&app.address).unwrap().port().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let challenge = token_endpoint::pkce::s256_challenge(&frontend::random_token().unwrap());
    let mut authorize = reqwest::Url::parse(&format!("{}/dev/authorize", app.address)).unwrap();
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "demo"),
        ("redirect_uri", "http://127.0.0.1:51004/callback"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let codes = format!("{}/dev/codes", app.address);
    for host in [
        format!("evil.example:{port}"),
        "evil.example:8080".to_owned(),
        "evil.example".to_owned(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
    ] {
        let minted = app.send(http.post(&codes).header("Host", &host)).await;
        assert_eq!(minted.status, 400, "{host}: {minted:?}");
        assert_eq!(minted.error(), "invalid_request", "{host}");
        assert!(minted.body.get("code").is_none(), "{host}: {minted:?}");
        let redirected = app
            .send(http.get(authorize.clone()).header("Host", &host))
            .await;
        assert_eq!(redirected.status, 400, "{host}: {redirected:?}");
        assert!(redirected.header("location").is_none(), "{host}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let minted = app.send(http.post(&codes).header("Host", &host)).await;
        assert_eq!(minted.status, 200, "{host}: {minted:?}");
        assert!(minted.body["code"].is_string(), "{host}");
        let redirected = app
            .send(http.get(authorize.clone()).header("Host", &host))
            .await;
        assert_eq!(redirected.status, 302, "{host}: {redirected:?}");
    }
}
