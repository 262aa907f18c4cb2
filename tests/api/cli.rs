//! The binary itself: start-up errors, the embedded default walk-through,
//! and `issue-code` against Redis, as a user runs them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_token-endpoint");

/// A bad setting exits non-zero and names the setting.
#[test]
fn bad_settings_exit_nonzero_naming_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("TOKEN_ENDPOINT_WORKERS", "many")],
            "TOKEN_ENDPOINT_WORKERS",
        ),
        (
            &[("TOKEN_ENDPOINT_BIND", "localhost")],
            "TOKEN_ENDPOINT_BIND",
        ),
        (
            &[("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:1")],
            "TOKEN_ENDPOINT_ISSUER",
        ),
        (
            &[("TOKEN_ENDPOINT_CLIENTS_FILE", "/nonexistent/clients.toml")],
            "TOKEN_ENDPOINT_CLIENTS_FILE",
        ),
        (
            &[("TOKEN_ENDPOINT_SIGNING_KEYS", "/nonexistent/key.pem")],
            "TOKEN_ENDPOINT_SIGNING_KEYS",
        ),
    ];
    for (vars, setting) in cases {
        let output = Command::new(BIN)
            .env_clear()
            .env("TOKEN_ENDPOINT_BIND", format!("127.0.0.1:{}", free_port()))
            .envs(vars.iter().copied())
            .output()
            .expect("run the binary");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{setting}: exited 0");
        assert!(stderr.contains(setting), "{setting} not named in: {stderr}");
    }
}

/// Unreachable Redis at start-up: exit non-zero naming TOKEN_ENDPOINT_REDIS_URL, promptly.
#[test]
fn unreachable_redis_at_startup_names_the_setting() {
    let files = AppFiles::new();
    let started = Instant::now();
    let output = Command::new(BIN)
        .env_clear()
        .env("TOKEN_ENDPOINT_BIND", format!("127.0.0.1:{}", free_port()))
        .env(
            "TOKEN_ENDPOINT_REDIS_URL",
            format!("redis://127.0.0.1:{}", free_port()),
        )
        .env("TOKEN_ENDPOINT_ISSUER", ISSUER)
        .env("TOKEN_ENDPOINT_CLIENTS_FILE", &files.registry)
        .env("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env())
        .output()
        .expect("run the binary");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("TOKEN_ENDPOINT_REDIS_URL"));
    assert!(started.elapsed() < Duration::from_secs(10));
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(envs: &[(&str, String)], port: u16) -> Server {
    let child = Command::new(BIN)
        .env_clear()
        .env("TOKEN_ENDPOINT_BIND", format!("127.0.0.1:{port}"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the binary");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the server did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn issue_code(args: &[&str]) -> serde_json::Value {
    let output = Command::new(BIN)
        .arg("issue-code")
        .args(args)
        .env_remove("TOKEN_ENDPOINT_REDIS_URL")
        .output()
        .expect("run issue-code");
    assert!(
        output.status.success(),
        "issue-code failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("issue-code prints JSON")
}

fn redeem(
    port: u16,
    client_id: &str,
    code: &serde_json::Value,
    redirect: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("client_id", client_id.into()),
        ("code", code["code"].as_str().unwrap().into()),
        (
            "code_verifier",
            code["code_verifier"].as_str().unwrap().into(),
        ),
    ];
    if let Some(uri) = redirect {
        form.push(("redirect_uri", uri.into()));
    }
    // A blocking POST through the async client, for these synchronous tests.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    })
}

/// The README walk-through on the embedded default: start with no settings,
/// issue a code through the running server, redeem it with the demo client.
#[test]
fn embedded_default_walkthrough() {
    let port = free_port();
    let _server = start_server(&[], port);
    let server = format!("http://127.0.0.1:{port}");
    let code = issue_code(&[
        "--server",
        &server,
        "--redirect-uri",
        "https://app.example/cb",
    ]);
    let (status, body) = redeem(port, "demo", &code, Some("https://app.example/cb"));
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
    let (status, body) = redeem(port, "demo", &code, Some("https://app.example/cb"));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

/// Production shape: the binary on Redis with files for clients and keys;
/// `issue-code --redis-url` writes by the frontend contract; redemption works.
#[test]
fn issue_code_cli_against_redis() {
    let redis = RedisServer::start();
    let files = AppFiles::new();
    let port = free_port();
    let _server = start_server(
        &[
            ("TOKEN_ENDPOINT_REDIS_URL", redis.url()),
            ("TOKEN_ENDPOINT_ISSUER", ISSUER.into()),
            (
                "TOKEN_ENDPOINT_CLIENTS_FILE",
                files.registry.display().to_string(),
            ),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env()),
        ],
        port,
    );
    let code = issue_code(&[
        "--redis-url",
        &redis.url(),
        "--client-id",
        "public-app",
        "--redirect-uri",
        "https://client.test/cb",
        "--nonce",
        "abc",
    ]);
    // The line is also a line of a load-test seed file (loadtest/README.md).
    assert_eq!(code["client_id"], "public-app");
    assert_eq!(code["redirect_uri"], "https://client.test/cb");
    let mut conn = redis.client().get_connection().unwrap();
    let key = format!("oauth:code:{{{}}}", code["code"].as_str().unwrap());
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut conn).unwrap();
    assert!((1..=60).contains(&ttl), "TTL {ttl}");
    let (status, body) = redeem(port, "public-app", &code, Some("https://client.test/cb"));
    assert_eq!(status, 200, "{body}");
    let (_, claims) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "abc");
}
