//! Secrets never leave: the real binary on a real Redis, logging at trace
//! level (every crate, JSON), runs the scenarios of the other tests; then
//! the captured logs, the metrics and every error answer are searched for
//! each secret the run used: codes, verifiers (right and wrong), client
//! secrets (right and wrong), tokens and the private key.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use token_endpoint::contract::frontend::{prepare, IssuedCode};
use token_endpoint::store::KeySpace;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_token-endpoint");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Everything secret the run has handled, and everything the service sent
/// back that must not carry a secret.
#[derive(Default)]
struct Ledger {
    secrets: Vec<(&'static str, String)>,
    error_bodies: Vec<String>,
}

impl Ledger {
    fn secret(&mut self, what: &'static str, value: impl Into<String>) {
        self.secrets.push((what, value.into()));
    }
}

/// Store a code for `client_id` the way the login frontend does.
fn seed(redis: &RedisServer, client_id: &str, ledger: &mut Ledger) -> IssuedCode {
    let (issued, record) = prepare(grant(client_id)).unwrap();
    let mut conn = redis.client().get_connection().expect("redis");
    let _: () = redis::cmd("SET")
        .arg(KeySpace::default().code(&issued.code))
        .arg(record.to_json())
        .arg("EX")
        .arg(60)
        .query(&mut conn)
        .expect("SET the record");
    ledger.secret("code", issued.code.clone());
    ledger.secret("verifier", issued.verifier.clone());
    issued
}

fn form(issued: &IssuedCode, client_id: &str, verifier: &str) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", "authorization_code".into()),
        ("code", issued.code.clone()),
        ("redirect_uri", "https://client.test/cb".into()),
        ("client_id", client_id.into()),
        ("code_verifier", verifier.into()),
    ]
}

/// POST and file the answer: tokens into the secrets, error bodies into the
/// bodies to search.
async fn post(request: reqwest::RequestBuilder, ledger: &mut Ledger) -> u16 {
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("JSON");
    if status == 200 {
        for name in ["access_token", "id_token"] {
            let token = body[name].as_str().expect(name).to_owned();
            let signature = token.rsplit('.').next().unwrap_or_default().to_owned();
            ledger.secret("token", token);
            ledger.secret("token signature", signature);
        }
    } else {
        ledger.error_bodies.push(body.to_string());
    }
    status
}

#[test]
fn no_secret_reaches_logs_metrics_or_error_answers_even_at_trace_level() {
    let mut redis = RedisServer::start();
    let files = AppFiles::new();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let child = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("TOKEN_ENDPOINT_BIND", format!("127.0.0.1:{port}"))
        .env("TOKEN_ENDPOINT_REDIS_URL", redis.url())
        .env("TOKEN_ENDPOINT_ISSUER", ISSUER)
        .env("TOKEN_ENDPOINT_CLIENTS_FILE", &files.registry)
        .env("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env())
        .env("TOKEN_ENDPOINT_LOG", "trace")
        .env("TOKEN_ENDPOINT_LOG_FORMAT", "json")
        .env("TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS", "5")
        // Stopped below to read its whole log: no delay before it exits.
        .env("TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the binary");
    let mut server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut ledger = Ledger::default();
    ledger.secret("client secret", BASIC_SECRET);
    ledger.secret("client secret", POST_SECRET);
    for key in files.signing_keys() {
        let pem = std::fs::read_to_string(&key).unwrap();
        for line in pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        {
            ledger.secret("private key", line);
        }
    }
    let url = format!("http://127.0.0.1:{port}/oauth/token");
    let http = reqwest::Client::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = runtime.block_on(async {
        // Successes, one per way of authenticating.
        let public = seed(&redis, "public-app", &mut ledger);
        let request = http
            .post(&url)
            .form(&form(&public, "public-app", &public.verifier));
        assert_eq!(post(request, &mut ledger).await, 200);
        let basic = seed(&redis, "basic-app", &mut ledger);
        let request = http
            .post(&url)
            .basic_auth("basic-app", Some(BASIC_SECRET))
            .form(&form(&basic, "basic-app", &basic.verifier));
        assert_eq!(post(request, &mut ledger).await, 200);
        let post_client = seed(&redis, "post-app", &mut ledger);
        let mut body = form(&post_client, "post-app", &post_client.verifier);
        body.push(("client_secret", POST_SECRET.into()));
        assert_eq!(post(http.post(&url).form(&body), &mut ledger).await, 200);

        // A replay, a wrong verifier, a wrong secret, an unknown client.
        let request = http
            .post(&url)
            .form(&form(&public, "public-app", &public.verifier));
        assert_eq!(post(request, &mut ledger).await, 400);
        let fresh = seed(&redis, "public-app", &mut ledger);
        let wrong_verifier = format!("{}Zz", &fresh.verifier[..fresh.verifier.len() - 2]);
        ledger.secret("wrong verifier", wrong_verifier.clone());
        let request = http
            .post(&url)
            .form(&form(&fresh, "public-app", &wrong_verifier));
        assert_eq!(post(request, &mut ledger).await, 400);
        let wrong_secret = "wrong-secret-7c1d0e5f9a";
        ledger.secret("wrong client secret", wrong_secret);
        let request = http
            .post(&url)
            .basic_auth("basic-app", Some(wrong_secret))
            .form(&form(&fresh, "basic-app", &fresh.verifier));
        assert_eq!(post(request, &mut ledger).await, 401);
        let request = http
            .post(&url)
            .basic_auth("nobody", Some(wrong_secret))
            .form(&form(&fresh, "nobody", &fresh.verifier));
        assert_eq!(post(request, &mut ledger).await, 401);
        // A corrupt record whose bad value is something private: the
        // reason logged for it must name the field, not quote the value.
        // The record is parsed before the grant's checks (client, redirect
        // URI and PKCE) can run, and fails there.
        let (corrupt, record) = prepare(grant("public-app")).unwrap();
        ledger.secret("code", corrupt.code.clone());
        ledger.secret("verifier", corrupt.verifier.clone());
        let private = "private-value-4f1c9b2e";
        ledger.secret("record value", private);
        let mut raw: serde_json::Value = serde_json::from_str(&record.to_json()).unwrap();
        raw["auth_time"] = private.into();
        let mut conn = redis.client().get_connection().unwrap();
        let _: () = redis::cmd("SET")
            .arg(KeySpace::default().code(&corrupt.code))
            .arg(raw.to_string())
            .query(&mut conn)
            .unwrap();
        let request = http
            .post(&url)
            .form(&form(&corrupt, "public-app", &corrupt.verifier));
        assert_eq!(post(request, &mut ledger).await, 400);
        // Redis gone: the store error is logged, with the code still secret.
        redis.kill();
        let down = IssuedCode {
            code: frontend_like_code(),
            ..fresh.clone()
        };
        ledger.secret("code", down.code.clone());
        let request = http
            .post(&url)
            .form(&form(&down, "public-app", &down.verifier));
        assert_eq!(post(request, &mut ledger).await, 503);

        // Failed authentications up to the limit (the last is 429).
        let mut statuses = vec![];
        for _ in 0..5 {
            let request = http
                .post(&url)
                .basic_auth("basic-app", Some(wrong_secret))
                .form(&form(&fresh, "basic-app", &fresh.verifier));
            statuses.push(post(request, &mut ledger).await);
        }
        assert_eq!(statuses.last(), Some(&429), "{statuses:?}");

        http.get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });

    // Lines may still be written after the last answer: stop the server
    // (SIGTERM, a clean shutdown) and read the log once it has exited, with
    // everything it will ever write, its shutdown included.
    assert!(Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let trace_lines = logs
        .lines()
        .filter(|l| l.contains(r#""level":"TRACE""#))
        .count();
    assert!(
        trace_lines > 0,
        "no trace-level line was logged: is the filter applied?"
    );
    assert!(
        logs.contains("client_authentication_failed"),
        "the scenarios ran"
    );
    for (what, secret) in &ledger.secrets {
        assert!(!logs.contains(secret.as_str()), "a {what} was logged");
        assert!(
            !metrics.contains(secret.as_str()),
            "a {what} is in the metrics"
        );
        for body in &ledger.error_bodies {
            assert!(
                !body.contains(secret.as_str()),
                "a {what} is in an error answer: {body}"
            );
        }
    }
    eprintln!(
        "secrets: {} secrets searched in {} log lines ({} at trace level), the metrics and {} error answers",
        ledger.secrets.len(),
        logs.lines().count(),
        trace_lines,
        ledger.error_bodies.len()
    );
}

/// A well-formed code that was never issued.
fn frontend_like_code() -> String {
    token_endpoint::contract::frontend::random_token().unwrap()
}
