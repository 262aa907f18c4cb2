//! The load generator against the real service on a real `redis-server`:
//! it must redeem every code exactly once, say so when it could not, and
//! write the seed file the k6 scripts read.

// Tests and benches may panic: that is how they fail (the workspace's lints
// forbid it in production code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use token_endpoint_test_support::{
    free_port, spawn_app, spawn_app_on, AppFiles, Backend, RedisCluster, RedisServer, TestApp,
    ISSUER,
};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

fn redis_url(app: &TestApp) -> String {
    app.redis
        .as_ref()
        .expect("a Redis-backed app")
        .lock()
        .expect("redis lock")
        .url()
}

/// Run `loadgen` off the async runtime (the app's server task lives there).
async fn loadgen(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(LOADGEN)
            .args(&args)
            .output()
            .expect("run loadgen")
    })
    .await
    .expect("loadgen task")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn summary(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("summary written")).expect("JSON summary")
}

/// Closed loop with replays, wrong verifiers and unknown codes mixed in:
/// every seeded code gets tokens exactly once, every other request an
/// `invalid_grant`, and the service's own metrics agree.
#[tokio::test]
async fn a_mixed_run_redeems_every_code_exactly_once() {
    let app = spawn_app(Backend::Redis).await;
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("summary.json");
    let output = loadgen(args(&[
        "run",
        "--target",
        &app.address,
        "--redis-url",
        &redis_url(&app),
        "--client-id",
        "public-app",
        "--codes",
        "400",
        "--connections",
        "8",
        "--mix",
        "replay=0.1,wrong_verifier=0.05,unknown=0.05",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--quiet",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("exactly once    PASS"), "{stdout}");

    let s = summary(&json);
    assert_eq!(s["passed"], true);
    assert_eq!(s["codes"], 400);
    assert_eq!(s["codes_not_redeemed"], 0);
    assert_eq!(s["codes_redeemed_more_than_once"], 0);
    let count = |key: &str| s["statuses"][key].as_u64().unwrap_or(0);
    // A replay may race its code's redemption and win; either way one 200.
    assert_eq!(count("redeem 200") + count("replay 200"), 400);
    for refused in ["replay 400", "wrong_verifier 400", "unknown 400"] {
        assert!(count(refused) > 0, "no {refused} in {}", s["statuses"]);
    }
    assert_eq!(count("wrong_verifier 200") + count("unknown 200"), 0);
    assert!(s["redemptions_per_s"].as_f64().expect("rate") > 0.0);
    assert!(s["latency_ms"]["p99"].as_f64().expect("p99") > 0.0);
    assert_eq!(app.requests("success", "issued").await, 400.0);
}

/// A code redeemed behind the generator's back cannot be redeemed by it:
/// the run must fail and count the code as not redeemed.
#[tokio::test]
async fn a_code_redeemed_before_the_run_fails_it() {
    let app = spawn_app(Backend::Redis).await;
    let dir = tempfile::tempdir().expect("dir");
    let codes = dir.path().join("codes.ndjson");
    let json = dir.path().join("summary.json");
    let seeded = loadgen(args(&[
        "seed",
        "--redis-url",
        &redis_url(&app),
        "--client-id",
        "public-app",
        "--codes",
        "20",
        "--out",
        codes.to_str().expect("utf-8 path"),
    ]))
    .await;
    assert!(seeded.status.success(), "{seeded:?}");

    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&codes)
            .expect("seed file")
            .lines()
            .next()
            .expect("a line"),
    )
    .expect("JSON line");
    let form = [
        ("grant_type", "authorization_code".to_owned()),
        ("code", first["code"].as_str().expect("code").to_owned()),
        ("client_id", "public-app".to_owned()),
        (
            "redirect_uri",
            first["redirect_uri"].as_str().expect("uri").to_owned(),
        ),
        (
            "code_verifier",
            first["code_verifier"]
                .as_str()
                .expect("verifier")
                .to_owned(),
        ),
    ];
    assert_eq!(app.post_form(&form).await.status, 200);

    let output = loadgen(args(&[
        "run",
        "--target",
        &app.address,
        "--codes-file",
        codes.to_str().expect("utf-8 path"),
        "--connections",
        "4",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--quiet",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let s = summary(&json);
    assert_eq!(s["passed"], false);
    assert_eq!(s["codes_not_redeemed"], 1);
    assert_eq!(s["statuses"]["redeem 200"], 19);
    assert_eq!(s["statuses"]["redeem 400"], 1);
}

/// The seed file as k6 reads it: `check-seed-file.mjs` parses it with the
/// very module the k6 scripts use and prints the bodies k6 would send; each
/// must redeem its code. Covers the default redirect URI and `null` (none).
#[tokio::test]
async fn the_seed_file_is_what_the_k6_scripts_send() {
    let app = spawn_app(Backend::Redis).await;
    let dir = tempfile::tempdir().expect("dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k6/check-seed-file.mjs");
    for (name, redirect) in [("with-uri", "https://app.test/cb?x=1&y=a b"), ("none", "")] {
        let codes = dir.path().join(format!("{name}.ndjson"));
        let seeded = loadgen(args(&[
            "seed",
            "--redis-url",
            &redis_url(&app),
            "--client-id",
            "public-app",
            "--redirect-uri",
            redirect,
            "--codes",
            "5",
            "--out",
            codes.to_str().expect("utf-8 path"),
        ]))
        .await;
        assert!(seeded.status.success(), "{seeded:?}");

        let node = Command::new("node")
            .arg(&script)
            .arg(&codes)
            .output()
            .expect("node runs (Node.js 18+ is needed for the k6 seed-file check)");
        assert!(node.status.success(), "{node:?}");
        let bodies = String::from_utf8(node.stdout).expect("utf-8");
        assert_eq!(bodies.lines().count(), 5, "{bodies}");
        for body in bodies.lines() {
            assert_eq!(
                body.contains("redirect_uri="),
                !redirect.is_empty(),
                "{body}"
            );
            let answer = app
                .send(
                    app.http
                        .post(app.token_url())
                        .header("Content-Type", "application/x-www-form-urlencoded")
                        .body(body.to_owned()),
                )
                .await;
            assert_eq!(answer.status, 200, "{body}: {}", answer.body);
            assert!(answer.body["id_token"].is_string());
        }
    }
}

/// `loadgen seed --redis-mode cluster` writes each code to the master of
/// its slot, and a run from that seed file redeems every code exactly once.
#[tokio::test]
async fn a_cluster_is_seeded_and_every_code_redeems_once() {
    let cluster = RedisCluster::start();
    let app = spawn_app_on(None, std::sync::Arc::new(AppFiles::new()), cluster.tweak()).await;
    let dir = tempfile::tempdir().expect("dir");
    let codes = dir.path().join("codes.ndjson");
    let seeded = loadgen(args(&[
        "seed",
        "--redis-url",
        &cluster.urls(),
        "--redis-mode",
        "cluster",
        "--client-id",
        "public-app",
        "--codes",
        "300",
        "--out",
        codes.to_str().expect("utf-8 path"),
    ]))
    .await;
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let output = loadgen(args(&[
        "run",
        "--target",
        &app.address,
        "--codes-file",
        codes.to_str().expect("utf-8 path"),
        "--connections",
        "8",
        "--quiet",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("exactly once    PASS"), "{stdout}");
    assert_eq!(app.requests("success", "issued").await, 300.0);
}

/// `minimal-handler` in one of its modes, on a real `redis-server`; killed
/// when dropped.
struct MinimalHandler {
    child: std::process::Child,
    address: String,
    redis: RedisServer,
    _files: AppFiles,
}

impl MinimalHandler {
    async fn start(mode: &str) -> Self {
        let redis = RedisServer::start();
        let files = AppFiles::new();
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_minimal-handler"))
            .env("MINIMAL_BIND", &address)
            .env("MINIMAL_MODE", mode)
            .env("TOKEN_ENDPOINT_REDIS_URL", redis.url())
            .env("TOKEN_ENDPOINT_SIGNING_KEYS", &files.es256_key)
            .env("TOKEN_ENDPOINT_WORKERS", "2")
            .env("TOKEN_ENDPOINT_ISSUER", ISSUER)
            .spawn()
            .expect("start minimal-handler");
        let handler = Self {
            child,
            address: format!("http://{address}"),
            redis,
            _files: files,
        };
        // Ready when /readyz answers; a handler that exited fails here.
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/readyz", handler.address))
                .send()
                .await
                .is_ok()
            {
                return handler;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("minimal-handler ({mode}) did not answer /readyz");
    }
}

impl Drop for MinimalHandler {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Each reference mode of `minimal-handler` keeps the scenario's promise
/// under load with the mix: every code redeemed exactly once, a wrong
/// verifier consumes nothing (checked modes), and with DPoP every proof
/// verifies and every token comes back bound. `getdel` checks nothing, so
/// it runs without the mix.
#[tokio::test]
async fn every_minimal_handler_mode_redeems_each_code_exactly_once() {
    for (mode, extra) in [
        ("getdel", vec![]),
        (
            "checked",
            vec!["--mix", "replay=0.1,wrong_verifier=0.05,unknown=0.05"],
        ),
        (
            "dpop",
            vec![
                "--mix",
                "replay=0.1,wrong_verifier=0.05,unknown=0.05",
                "--dpop",
                "--issuer",
                ISSUER,
                "--dpop-keys",
                "3",
            ],
        ),
    ] {
        let handler = MinimalHandler::start(mode).await;
        let dir = tempfile::tempdir().expect("dir");
        let json = dir.path().join("summary.json");
        let mut list = vec![
            "run",
            "--target",
            &handler.address,
            "--client-id",
            "loadtest",
            "--codes",
            "300",
            "--connections",
            "8",
            "--json",
            json.to_str().expect("utf-8 path"),
            "--quiet",
        ];
        let url = handler.redis.url();
        list.extend(["--redis-url", &url]);
        list.extend(extra);
        let output = loadgen(args(&list)).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{mode}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let s = summary(&json);
        assert_eq!(s["passed"], true, "{mode}");
        assert_eq!(s["codes_redeemed_more_than_once"], 0, "{mode}");
        assert_eq!(s["dpop"].is_object(), mode == "dpop", "{mode}");
        if mode != "getdel" {
            let count = |key: &str| s["statuses"][key].as_u64().unwrap_or(0);
            assert_eq!(count("redeem 200") + count("replay 200"), 300, "{mode}");
            assert!(count("wrong_verifier 400") > 0, "{mode}: {}", s["statuses"]);
        }
    }
}

/// What `print-dpop-proof.mjs` prints: proofs made by the k6 variant's own
/// builder (k6/lib/dpop.js) from one key.
struct NodeProofs {
    jkt: String,
    proofs: Vec<String>,
}

fn node_proofs(htu: &str, count: usize) -> NodeProofs {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k6/print-dpop-proof.mjs");
    let node = Command::new("node")
        .arg(&script)
        .arg(htu)
        .arg(count.to_string())
        .output()
        .expect("node runs (Node.js 20+ is needed for the k6 DPoP proof check)");
    assert!(node.status.success(), "{node:?}");
    let printed: Value = serde_json::from_slice(&node.stdout).expect("JSON");
    NodeProofs {
        jkt: printed["jkt"].as_str().expect("jkt").to_owned(),
        proofs: printed["proofs"]
            .as_array()
            .expect("proofs")
            .iter()
            .map(|p| p.as_str().expect("proof").to_owned())
            .collect(),
    }
}

/// The claims of a JWT, unverified (the minter's own tests verify them).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Codes seeded as `loadgen seed` writes them, and the form that redeems each.
async fn seeded_forms(redis_url: &str, client_id: &str, count: usize) -> Vec<String> {
    let dir = tempfile::tempdir().expect("dir");
    let codes = dir.path().join("codes.ndjson");
    let seeded = loadgen(args(&[
        "seed",
        "--redis-url",
        redis_url,
        "--client-id",
        client_id,
        "--codes",
        &count.to_string(),
        "--out",
        codes.to_str().expect("utf-8 path"),
    ]))
    .await;
    assert!(seeded.status.success(), "{seeded:?}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("k6/check-seed-file.mjs");
    let node = Command::new("node")
        .arg(&script)
        .arg(&codes)
        .output()
        .expect("node runs");
    assert!(node.status.success(), "{node:?}");
    String::from_utf8(node.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A proof from the k6 builder, sent to `token_url` with `form`: the
/// status, and the answer's JSON.
async fn redeem_with_proof(token_url: &str, form: &str, proof: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(proof) = proof {
        request = request.header("DPoP", proof);
    }
    let answer = request.send().await.expect("answer");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("JSON answer"))
}

/// Two proofs of the k6 builder against `token_url`, with the codes of
/// `forms`: the first binds the tokens to its key (`cnf.jkt` is the
/// builder's thumbprint); sent again it is refused, and does not consume
/// the code it came with, which the second proof then redeems.
async fn k6_proofs_bind_once(token_url: &str, forms: &[String]) {
    let node = node_proofs(&format!("{ISSUER}/oauth/token"), 2);
    let (status, answer) = redeem_with_proof(token_url, &forms[0], Some(&node.proofs[0])).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "DPoP");
    let access = answer["access_token"].as_str().expect("access token");
    assert_eq!(jwt_claims(access)["cnf"]["jkt"], node.jkt.as_str());

    let (status, answer) = redeem_with_proof(token_url, &forms[1], Some(&node.proofs[0])).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    let (status, answer) = redeem_with_proof(token_url, &forms[1], Some(&node.proofs[1])).await;
    assert_eq!(status, 200, "the refused proof left the code: {answer}");
    assert_eq!(answer["token_type"], "DPoP");
}

/// The k6 DPoP variant's proofs (k6/lib/dpop.js, run by Node) against the
/// service: bound tokens, a proof accepted once.
#[tokio::test]
async fn k6_proofs_bind_the_services_tokens_once() {
    let app = spawn_app(Backend::Redis).await;
    let forms = seeded_forms(&redis_url(&app), "public-app", 2).await;
    k6_proofs_bind_once(&app.token_url(), &forms).await;
}

/// The same against `minimal-handler`'s DPoP mode, which also refuses a
/// request without a proof (it is the reference for DPoP requests only).
#[tokio::test]
async fn k6_proofs_bind_the_minimal_handlers_tokens_once() {
    let handler = MinimalHandler::start("dpop").await;
    let forms = seeded_forms(&handler.redis.url(), "loadtest", 3).await;
    let token_url = format!("{}/oauth/token", handler.address);
    let (status, answer) = redeem_with_proof(&token_url, &forms[2], None).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
    k6_proofs_bind_once(&token_url, &forms).await;
}

/// `loadgen run --dpop` against the service, with the mix: every request
/// carries a proof of its own, every code gets tokens exactly once, and
/// every token is bound (a bearer answer would fail the run); the service
/// counts each issue.
#[tokio::test]
async fn a_dpop_run_gets_bound_tokens_for_every_code_exactly_once() {
    let app = spawn_app(Backend::Redis).await;
    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("summary.json");
    let output = loadgen(args(&[
        "run",
        "--target",
        &app.address,
        "--redis-url",
        &redis_url(&app),
        "--client-id",
        "public-app",
        "--codes",
        "400",
        "--connections",
        "8",
        "--mix",
        "replay=0.1,wrong_verifier=0.05,unknown=0.05",
        "--dpop",
        "--issuer",
        ISSUER,
        "--json",
        json.to_str().expect("utf-8 path"),
        "--quiet",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let s = summary(&json);
    assert_eq!(s["passed"], true);
    assert_eq!(s["dpop"]["htu"], format!("{ISSUER}/oauth/token"));
    let count = |key: &str| s["statuses"][key].as_u64().unwrap_or(0);
    assert_eq!(count("redeem 200") + count("replay 200"), 400);
    for refused in ["replay 400", "wrong_verifier 400", "unknown 400"] {
        assert!(count(refused) > 0, "no {refused} in {}", s["statuses"]);
    }
    assert_eq!(app.requests("success", "issued").await, 400.0);
}

/// Proofs for another issuer's token endpoint are refused before the take:
/// the run fails with every redemption refused, and the same codes then
/// redeem, each once, with proofs for this service.
#[tokio::test]
async fn a_dpop_run_with_the_wrong_htu_fails_and_consumes_nothing() {
    let app = spawn_app(Backend::Redis).await;
    let dir = tempfile::tempdir().expect("dir");
    let codes = dir.path().join("codes.ndjson");
    let json = dir.path().join("summary.json");
    let seeded = loadgen(args(&[
        "seed",
        "--redis-url",
        &redis_url(&app),
        "--client-id",
        "public-app",
        "--codes",
        "20",
        "--out",
        codes.to_str().expect("utf-8 path"),
    ]))
    .await;
    assert!(seeded.status.success(), "{seeded:?}");
    for (issuer, passed) in [("https://elsewhere.test", false), (ISSUER, true)] {
        let output = loadgen(args(&[
            "run",
            "--target",
            &app.address,
            "--codes-file",
            codes.to_str().expect("utf-8 path"),
            "--connections",
            "4",
            "--dpop",
            "--issuer",
            issuer,
            "--json",
            json.to_str().expect("utf-8 path"),
            "--quiet",
        ]))
        .await;
        assert_eq!(output.status.success(), passed, "{issuer}: {output:?}");
        let s = summary(&json);
        assert_eq!(s["passed"], passed, "{issuer}");
        let status = if passed { "redeem 200" } else { "redeem 400" };
        assert_eq!(s["statuses"][status], 20, "{issuer}: {}", s["statuses"]);
    }
    assert_eq!(app.requests("success", "issued").await, 20.0);
}
