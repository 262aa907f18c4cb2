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

/// A code for `public-app` and `https://client.test/cb`, written to `redis`.
fn issue_public_code(redis: &RedisServer) -> serde_json::Value {
    issue_code(&[
        "--redis-url",
        &redis.url(),
        "--client-id",
        "public-app",
        "--redirect-uri",
        "https://client.test/cb",
    ])
}

/// `CLIENT PAUSE <ms> WRITE`: the take's MULTI writes, so the take is held back
/// while PING (readiness) and new connections go through.
fn pause_writes(redis: &RedisServer, ms: u64) {
    let mut conn = redis.client().get_connection().unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("WRITE")
        .query::<()>(&mut conn)
        .unwrap();
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

/// A plain `GET`, blocking, for the synchronous tests: the status only.
fn get_status(port: u16, path: &str) -> Option<u16> {
    status_of(reqwest::Method::GET, port, path)
}

/// A request without a body, blocking: its status, or `None` if nothing
/// answers.
fn status_of(method: reqwest::Method, port: u16, path: &str) -> Option<u16> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        reqwest::Client::new()
            .request(method, format!("http://127.0.0.1:{port}{path}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
}

/// The binary listening on `bind` (`ip:port`) with `envs` and nothing else
/// of this environment, its stderr kept in a file; started once it answers
/// `/livez`, killed when dropped.
struct Logged {
    port: u16,
    log: std::path::PathBuf,
    _server: Server,
    _dir: tempfile::TempDir,
}

impl Logged {
    fn start(bind: &str, envs: &[(&str, String)]) -> Self {
        let port: u16 = bind.rsplit(':').next().unwrap().parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new(BIN)
            .env_clear()
            .env("TOKEN_ENDPOINT_BIND", bind)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while get_status(port, "/livez").is_none() {
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!(
                    "the server exited ({status}) instead of starting: {envs:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start: {envs:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            log,
            _server: server,
            _dir: dir,
        }
    }

    /// On loopback, on a free port.
    fn on_loopback(envs: &[(&str, String)]) -> Self {
        Self::start(&format!("127.0.0.1:{}", free_port()), envs)
    }

    /// What it wrote to stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// What it wrote to stderr, once that holds `text` (within 5 s).
    fn log_once_it_has(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log();
            if log.contains(text) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Wait until the server on `port` counts a token request in flight
/// (`token_requests_in_flight` 1): the redemption `held` sent has reached
/// the service and is held there. Fails if `held` was answered first, or
/// after 10 s.
fn until_in_flight<T>(port: u16, held: &std::thread::JoinHandle<T>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            !held.is_finished(),
            "the redemption was answered before it was seen in flight"
        );
        let metrics = runtime.block_on(async {
            reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        });
        if metrics.is_some_and(|m| m.lines().any(|l| l == "token_requests_in_flight 1")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the redemption was never counted in flight"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM while a redemption is in flight (held up by a Redis that pauses
/// writes): `/readyz` turns 503 at once while the service still answers, the
/// listener closes after the shutdown delay, the started redemption still
/// completes with tokens, and the process exits 0.
#[test]
fn sigterm_turns_readiness_off_then_drains_in_flight_redemptions() {
    let redis = RedisServer::start();
    let files = AppFiles::new();
    let port = free_port();
    let mut server = start_server(
        &[
            ("TOKEN_ENDPOINT_REDIS_URL", redis.url()),
            ("TOKEN_ENDPOINT_ISSUER", ISSUER.into()),
            (
                "TOKEN_ENDPOINT_CLIENTS_FILE",
                files.registry.display().to_string(),
            ),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env()),
            ("TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS", "5000".into()),
            ("TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS", "1000".into()),
            ("TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS", "10000".into()),
        ],
        port,
    );
    assert_eq!(get_status(port, "/readyz"), Some(200));
    let code = issue_public_code(&redis);

    pause_writes(&redis, 2500);
    let in_flight = std::thread::spawn(move || {
        redeem(port, "public-app", &code, Some("https://client.test/cb"))
    });
    until_in_flight(port, &in_flight);
    let started = Instant::now();
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // Ready until the signal is handled, then 503 while still listening.
    loop {
        match get_status(port, "/readyz") {
            Some(503) => break,
            Some(200) => {}
            other => panic!(
                "readiness did not turn false before the listener closed: {other:?} after {:?}",
                started.elapsed()
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get_status(port, "/livez"),
        Some(200),
        "the service still serves during the shutdown delay"
    );

    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "the started redemption completes: {body}");
    assert!(body["access_token"].is_string());

    let exit = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the process did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the listener stayed open for the shutdown delay"
    );
    assert_eq!(get_status(port, "/livez"), None, "the listener is closed");
}

/// A failed client authentication is one security event in the JSON logs,
/// carrying the request's `X-Request-Id` and not the secret presented.
#[test]
fn security_events_carry_the_request_id() {
    let files = AppFiles::new();
    let server = Logged::on_loopback(&[
        (
            "TOKEN_ENDPOINT_CLIENTS_FILE",
            files.registry.display().to_string(),
        ),
        ("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env()),
        ("TOKEN_ENDPOINT_LOG_FORMAT", "json".into()),
    ]);
    let port = server.port;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/oauth/token"))
            .header("X-Request-Id", "trace-me-42")
            .basic_auth("basic-app", Some("not-the-secret-9f8e7d"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", "c0de"),
                ("code_verifier", &"v".repeat(43)),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);
    // The event is written as the request ends; give the writer a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let text = server.log();
        let events: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &serde_json::Value| e["security_event"] == "client_authentication_failed")
            .collect();
        if !events.is_empty() || Instant::now() > deadline {
            assert!(
                !text.contains("not-the-secret-9f8e7d"),
                "the secret was logged"
            );
            break events;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0]["span"]["request_id"], "trace-me-42",
        "{}",
        events[0]
    );
}

/// A signing key readable by others is warned about at start-up, naming the
/// file and its mode; the same key at 0600 (or 0440, Kubernetes' way for a
/// non-root container) is not.
#[cfg(unix)]
#[test]
fn a_key_file_open_to_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let files = AppFiles::new();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing-key.pem");
    std::fs::copy(&files.signing_keys()[0], &key).unwrap();
    // The registry's RS256 and EdDSA clients need the other keys too.
    let mut keys = key.display().to_string();
    for other in &files.signing_keys()[1..] {
        keys = format!("{keys},{}", other.display());
    }
    let warnings = |mode: u32| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let server = Logged::on_loopback(&[
            (
                "TOKEN_ENDPOINT_CLIENTS_FILE",
                files.registry.display().to_string(),
            ),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", keys.clone()),
            (
                "TOKEN_ENDPOINT_VERIFICATION_KEYS",
                fixture("ec-p256-public.test-only.pem")
                    .display()
                    .to_string(),
            ),
        ]);
        server
            .log()
            .lines()
            .filter(|l| l.contains("private key file is readable or writable by others"))
            .filter(|l| l.contains("signing-key.pem"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let open = warnings(0o644);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].contains("signing-key.pem") && open[0].contains("644"),
        "{open:?}"
    );
    assert_eq!(warnings(0o600), Vec::<String>::new());
    assert_eq!(warnings(0o440), Vec::<String>::new());
}

/// Run the binary with `envs` (and nothing else of this environment) until
/// it exits, at most `within`; `None` if it was still running then (it was
/// killed). Returns the exit status and what it wrote to stderr.
fn run_until_exit(
    envs: &[(&str, String)],
    within: Duration,
) -> Option<(std::process::ExitStatus, String)> {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let mut child = Command::new(BIN)
        .env_clear()
        .env("TOKEN_ENDPOINT_BIND", format!("127.0.0.1:{}", free_port()))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the binary");
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    status.map(|s| (s, std::fs::read_to_string(&log_path).unwrap()))
}

/// The environment of a production-shaped start on `redis_url`.
fn production_env(files: &AppFiles, redis_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TOKEN_ENDPOINT_REDIS_URL", redis_url.into()),
        ("TOKEN_ENDPOINT_ISSUER", ISSUER.into()),
        (
            "TOKEN_ENDPOINT_CLIENTS_FILE",
            files.registry.display().to_string(),
        ),
        ("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env()),
    ]
}

/// Security review, finding 7: the issuer is checked strictly. Whitespace
/// anywhere, no host, credentials or a port that is not a number stop
/// start-up; so does an `http://` issuer with Redis, unless
/// `TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER=allow` says it is on purpose.
#[test]
fn the_issuer_is_validated_strictly() {
    let redis = RedisServer::start();
    let files = AppFiles::new();
    for issuer in [
        "https://id.test ",
        " https://id.test",
        "https://id.test/a b",
        "https://id.test\t",
        "https://",
        "https:///path",
        "https://user:pw@id.test",
        "https://id.test:port",
        "https://id.test/../x",
        "ftp://id.test",
    ] {
        let envs = [("TOKEN_ENDPOINT_ISSUER", issuer.to_string())];
        let (status, stderr) = run_until_exit(&envs, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{issuer:?} was accepted: the service started"));
        assert!(!status.success(), "{issuer:?}");
        assert!(
            stderr.contains("TOKEN_ENDPOINT_ISSUER"),
            "{issuer:?}: {stderr}"
        );
    }
    let mut envs = production_env(&files, &redis.url());
    envs[1].1 = "http://id.test".into();
    let (status, stderr) = run_until_exit(&envs, Duration::from_secs(10))
        .expect("an http:// issuer with Redis was accepted: the service started");
    assert!(!status.success());
    assert!(
        stderr.contains("TOKEN_ENDPOINT_ISSUER")
            && stderr.contains("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER"),
        "{stderr}"
    );
    envs.push(("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER", "allow".into()));
    assert!(
        run_until_exit(&envs, Duration::from_secs(3)).is_none(),
        "with the explicit setting an http:// issuer starts"
    );
    envs.pop();
    envs.push(("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER", "yes".into()));
    let (status, stderr) = run_until_exit(&envs, Duration::from_secs(10)).expect("exits");
    assert!(!status.success());
    assert!(
        stderr.contains("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER"),
        "{stderr}"
    );
}

/// Security review, finding 2: listening beyond loopback without
/// `TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER` is warned about at start-up
/// (behind a load balancer every request would seem to come from it, and
/// the per-address limit would become global); with the header set, or on
/// loopback, there is no warning.
#[test]
fn a_public_bind_without_an_address_header_is_warned_about() {
    let warned = |bind: &str, header: Option<&str>| {
        let mut envs = Vec::new();
        if let Some(header) = header {
            envs.push(("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER", header.to_string()));
        }
        Logged::start(bind, &envs)
            .log()
            .lines()
            .filter(|l| l.contains("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let open = warned(&format!("0.0.0.0:{}", free_port()), None);
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0].contains("WARN"), "{open:?}");
    assert!(warned(&format!("0.0.0.0:{}", free_port()), Some("X-Forwarded-For")).is_empty());
    assert!(warned(&format!("127.0.0.1:{}", free_port()), None).is_empty());
}

/// Security review, finding 8: the dev endpoints (which mint a code for any
/// client and subject) exist only in the zero-configuration demo (embedded
/// store, ephemeral key, demo clients, loopback), or with
/// `TOKEN_ENDPOINT_DEV_ENDPOINTS=on`, which warns at start-up and on every
/// use and refuses to start with Redis. Every other configuration answers
/// 404 on `/dev/*`.
#[test]
fn dev_endpoints_exist_only_in_the_demo_or_on_explicit_opt_in() {
    let files = AppFiles::new();
    // A registry whose only client needs no key but the ephemeral one.
    let demo_like = files.dir.path().join("one-client.toml");
    std::fs::write(
        &demo_like,
        "[[clients]]\nclient_id = \"spa\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://api.test\"\n",
    )
    .unwrap();
    let key = files.es256_key.display().to_string();
    let clients = demo_like.display().to_string();
    let dev_status = |bind_ip: &str, envs: &[(&str, String)]| -> (Option<u16>, String) {
        let server = Logged::start(&format!("{bind_ip}:{}", free_port()), envs);
        let port = server.port;
        assert_eq!(get_status(port, "/dev/anything"), Some(404));
        // An empty body asks for the demo grant.
        let status = status_of(reqwest::Method::POST, port, "/dev/codes");
        // The stand-in login page goes with /dev/codes: mounted, it refuses
        // a request without a client (400); otherwise it does not exist.
        let login_page = get_status(port, "/dev/authorize");
        assert_eq!(
            login_page,
            Some(if status == Some(200) { 400 } else { 404 }),
            "/dev/authorize and /dev/codes are mounted together: {envs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
        (status, server.log())
    };
    let signing = ("TOKEN_ENDPOINT_SIGNING_KEYS", key.clone());
    let registry = ("TOKEN_ENDPOINT_CLIENTS_FILE", clients.clone());

    // The zero-configuration demo.
    let (status, _) = dev_status("127.0.0.1", &[]);
    assert_eq!(status, Some(200), "the demo has /dev/codes");
    // Anything configured, or a bind beyond loopback: gone.
    for (bind, envs) in [
        ("127.0.0.1", vec![signing.clone()]),
        ("127.0.0.1", vec![registry.clone()]),
        ("127.0.0.1", vec![signing.clone(), registry.clone()]),
        ("0.0.0.0", vec![]),
        (
            "127.0.0.1",
            vec![("TOKEN_ENDPOINT_DEV_ENDPOINTS", "off".into())],
        ),
    ] {
        let (status, _) = dev_status(bind, &envs);
        assert_eq!(status, Some(404), "{bind} {envs:?}");
    }
    // Explicit opt-in: mounted, with a warning at start-up and on each use.
    let (status, stderr) = dev_status(
        "0.0.0.0",
        &[
            signing.clone(),
            registry.clone(),
            ("TOKEN_ENDPOINT_DEV_ENDPOINTS", "on".into()),
        ],
    );
    assert_eq!(status, Some(200));
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("/dev/codes"))
        .collect();
    assert!(warnings.len() >= 2, "start-up and use warnings: {stderr}");

    // Never with Redis: a refusal at start-up, naming the setting.
    let redis = RedisServer::start();
    let mut envs = production_env(&files, &redis.url());
    envs.push(("TOKEN_ENDPOINT_DEV_ENDPOINTS", "on".into()));
    let (status, stderr) =
        run_until_exit(&envs, Duration::from_secs(10)).expect("refused at start-up");
    assert!(!status.success());
    assert!(stderr.contains("TOKEN_ENDPOINT_DEV_ENDPOINTS"), "{stderr}");
    let (status, _) = dev_status("127.0.0.1", &production_env(&files, &redis.url()));
    assert_eq!(status, Some(404), "Redis: no dev endpoints");
    let (status, stderr) = run_until_exit(
        &[("TOKEN_ENDPOINT_DEV_ENDPOINTS", "maybe".into())],
        Duration::from_secs(10),
    )
    .expect("a bad value is refused");
    assert!(!status.success());
    assert!(stderr.contains("TOKEN_ENDPOINT_DEV_ENDPOINTS"), "{stderr}");
}

/// Security review, finding 7: a private key listed as a verification key
/// is a private key too; open to others, it is warned about like a signing
/// key.
#[cfg(unix)]
#[test]
fn a_private_verification_key_open_to_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let files = AppFiles::new();
    let dir = tempfile::tempdir().unwrap();
    let old_key = dir.path().join("retired-key.pem");
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    std::fs::write(
        &old_key,
        pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec())),
    )
    .unwrap();
    std::fs::set_permissions(&old_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Logged::on_loopback(&[
        (
            "TOKEN_ENDPOINT_CLIENTS_FILE",
            files.registry.display().to_string(),
        ),
        ("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env()),
        (
            "TOKEN_ENDPOINT_VERIFICATION_KEYS",
            old_key.display().to_string(),
        ),
    ]);
    let log = server.log();
    assert!(
        log.lines().any(
            |l| l.contains("private key file is readable or writable by others")
                && l.contains("retired-key.pem")
        ),
        "{log}"
    );
}

/// The settings table in docs/configuration.md is the one
/// `token-endpoint settings` prints from the settings code: they cannot
/// drift apart.
#[test]
fn the_documented_configuration_table_is_the_settings_code() {
    let output = Command::new(BIN).arg("settings").output().unwrap();
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let begin = doc
        .find("<!-- settings:begin")
        .and_then(|i| doc[i..].find('\n').map(|n| i + n + 1))
        .expect("docs/configuration.md marks its settings table");
    let end = doc.find("<!-- settings:end -->").expect("end marker");
    assert_eq!(
        &doc[begin..end],
        table,
        "the table in docs/configuration.md differs from the code: paste `cargo run -- settings` between the markers"
    );
}

/// Documented-promises review (issue 15): settings the binary accepted
/// although the docs said they stop start-up. Each exits non-zero naming
/// the setting, promptly (before the fix some started and served).
#[test]
fn refused_settings_stop_start_up_naming_the_setting() {
    let files = AppFiles::new();
    let registry = files.registry.display().to_string();
    let unknown_field = files.dir.path().join("unknown-field.toml");
    std::fs::write(
        &unknown_field,
        "[[clients]]\nclient_id = \"spa\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://a.test\"\n\n[[clients]]\nclient_id = \"web\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://a.test\"\nredirect_uri = \"https://a.test/cb\"\n",
    )
    .unwrap();
    type Env<'a> = Vec<(&'a str, String)>;
    let cases: Vec<(Env, &str, &str)> = vec![
        // actix refuses more than 512 workers: it panicked after "ready".
        (
            vec![("TOKEN_ENDPOINT_WORKERS", "513".into())],
            "TOKEN_ENDPOINT_WORKERS",
            "512",
        ),
        // Set but empty: it ran the embedded store with real keys.
        (
            vec![("TOKEN_ENDPOINT_REDIS_URL", String::new())],
            "TOKEN_ENDPOINT_REDIS_URL",
            "empty",
        ),
        (
            vec![("TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT", "not a url".into())],
            "TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT",
            "not a url",
        ),
        // Two workers cannot share one connection: it served two.
        (
            vec![
                ("TOKEN_ENDPOINT_WORKERS", "2".into()),
                ("TOKEN_ENDPOINT_MAX_CONNECTIONS", "1".into()),
            ],
            "TOKEN_ENDPOINT_MAX_CONNECTIONS",
            "workers",
        ),
        // An unknown field names the client and the line.
        (
            vec![(
                "TOKEN_ENDPOINT_CLIENTS_FILE",
                unknown_field.display().to_string(),
            )],
            "TOKEN_ENDPOINT_CLIENTS_FILE",
            "line 10, client \"web\" (clients[1]): unknown field `redirect_uri`",
        ),
        // An algorithm no key provides names the client and the field.
        (
            vec![
                ("TOKEN_ENDPOINT_CLIENTS_FILE", registry.clone()),
                (
                    "TOKEN_ENDPOINT_SIGNING_KEYS",
                    files.es256_key.display().to_string(),
                ),
            ],
            "TOKEN_ENDPOINT_CLIENTS_FILE",
            "id_token_signed_response_alg",
        ),
    ];
    for (envs, setting, why) in &cases {
        let (status, stderr) = run_until_exit(envs, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{envs:?}: the service started"));
        assert!(!status.success(), "{envs:?}");
        assert_eq!(
            status.code(),
            Some(1),
            "{envs:?}: not the start-up error's exit: {stderr}"
        );
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{envs:?}: no error line: {stderr}"));
        assert!(
            error.contains(setting) && error.contains(why),
            "{setting} and {why:?} not in: {error}"
        );
    }
}

/// Redis that answers but does not work for the service stops start-up
/// naming TOKEN_ENDPOINT_REDIS_URL: a URL without the password Redis
/// requires, a wrong password, an ACL user that may not load the take
/// script. With the right user the service starts.
#[test]
fn redis_that_refuses_the_service_stops_start_up() {
    let redis = RedisServer::start_with(vec!["--requirepass".into(), "s3cret-pw".into()]);
    let mut admin = redis::Client::open(format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port))
        .unwrap()
        .get_connection()
        .unwrap();
    // A user that may PING but not run scripts, and one with what the
    // service needs (docs: the commands the service runs).
    redis::cmd("ACL")
        .arg(&["SETUSER", "pinger", "on", ">pinger-pw", "~*", "+ping"])
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("ACL")
        .arg(&["SETUSER", "tokens", "on", ">tokens-pw"])
        .arg(ACL_RULES)
        .query::<()>(&mut admin)
        .unwrap();
    let files = AppFiles::new();
    let port = redis.port;
    for (url, why) in [
        (format!("redis://127.0.0.1:{port}"), "NOAUTH"),
        (
            format!("redis://:wrong@127.0.0.1:{port}"),
            "authentication failed",
        ),
        (
            format!("redis://pinger:pinger-pw@127.0.0.1:{port}"),
            "no permissions to run",
        ),
    ] {
        let envs = production_env(&files, &url);
        let (status, stderr) = run_until_exit(&envs, Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{why}: the service started"));
        assert!(!status.success());
        assert!(
            stderr.contains("TOKEN_ENDPOINT_REDIS_URL") && stderr.contains(why),
            "{why}: {stderr}"
        );
        assert!(
            !stderr.contains("pinger-pw") && !stderr.contains("wrong@"),
            "{stderr}"
        );
    }
    let envs = production_env(
        &files,
        &format!("redis://tokens:tokens-pw@127.0.0.1:{port}"),
    );
    assert!(
        run_until_exit(&envs, Duration::from_secs(3)).is_none(),
        "the service with a working ACL user did not start"
    );
}

/// `POST /dev/codes`: "the frontend's grant, all optional": `{}` and a
/// grant with a client only are the demo grant; `issue-code --ttl` sets the
/// code's lifetime on the embedded default too.
#[test]
fn dev_codes_take_an_optional_grant_and_issue_code_its_ttl() {
    let server = Logged::on_loopback(&[]);
    let port = server.port;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for body in ["{}", r#"{"client_id":"demo"}"#, r#"{"sub":"bob","ttl":5}"#] {
        let (status, json) = runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/dev/codes"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        });
        assert_eq!(status, 200, "{body}: {json}");
        let code =
            serde_json::json!({"code": json["code"], "code_verifier": json["code_verifier"]});
        let (status, tokens) = redeem(port, "demo", &code, None);
        assert_eq!(status, 200, "{body}: {tokens}");
    }
    // A 2 s code is there at first (a wrong verifier is a PKCE mismatch,
    // which consumes nothing), gone soon after 2 s, long before the
    // default 60 s: then the right verifier is refused too.
    let server_url = format!("http://127.0.0.1:{port}");
    let issued_at = Instant::now();
    let code = issue_code(&["--server", &server_url, "--ttl", "2"]);
    let probe = serde_json::json!({"code": code["code"], "code_verifier": "x".repeat(43)});
    let stored = |body: &serde_json::Value| {
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("code_verifier does not match"))
    };
    let (status, body) = redeem(port, "demo", &probe, None);
    assert!(
        status == 400 && stored(&body),
        "the code was not there: {body}"
    );
    let deadline = issued_at + Duration::from_secs(2 + 5);
    loop {
        let (status, body) = redeem(port, "demo", &probe, None);
        assert_eq!(status, 400, "{body}");
        if !stored(&body) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a 2 s code was still there after {:?}: --ttl was ignored",
            issued_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = redeem(port, "demo", &code, None);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "an expired code redeemed: {body}"
    );
}

/// `TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS` counts milliseconds: with 1500 and a
/// redemption that cannot finish (Redis paused), the process exits 1.5 s
/// after the listener closes, not at a whole second (it rounded down to 1 s).
#[test]
fn the_drain_timeout_counts_milliseconds() {
    let redis = RedisServer::start();
    let files = AppFiles::new();
    let port = free_port();
    let mut envs = production_env(&files, &redis.url());
    envs.extend([
        ("TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS", "10000".into()),
        ("TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS", "0".into()),
        ("TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS", "1500".into()),
    ]);
    let mut server = start_server(&envs, port);
    let code = issue_public_code(&redis);
    pause_writes(&redis, 8000);
    let in_flight = std::thread::spawn(move || {
        redeem(port, "public-app", &code, Some("https://client.test/cb"))
    });
    until_in_flight(port, &in_flight);
    let started = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let exit = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(8), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit}");
    assert!(
        started.elapsed() >= Duration::from_millis(1450),
        "exited after {:?}: the drain was cut short",
        started.elapsed()
    );
}

/// Text logs written to a file carry no colour codes; the 429 of the
/// failed-authentication limit says the same `Retry-After` as its log line.
#[test]
fn logs_to_a_file_are_plain_and_agree_with_the_answer() {
    let files = AppFiles::new();
    let server = Logged::on_loopback(&[
        (
            "TOKEN_ENDPOINT_CLIENTS_FILE",
            files.registry.display().to_string(),
        ),
        ("TOKEN_ENDPOINT_SIGNING_KEYS", files.signing_keys_env()),
        ("TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS", "2".into()),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let retry_after = runtime.block_on(async {
        let mut last = None;
        for _ in 0..3 {
            let response = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{}/oauth/token", server.port))
                .basic_auth("basic-app", Some("wrong"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "c0de"),
                    ("code_verifier", &"v".repeat(43)),
                ])
                .send()
                .await
                .unwrap();
            last = Some((
                response.status().as_u16(),
                response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned()),
            ));
        }
        last.unwrap()
    });
    assert_eq!(retry_after.0, 429);
    let seconds = retry_after.1.expect("Retry-After");
    // The event may be written just after the answer is sent.
    let log = server.log_once_it_has("client_authentication_rate_limited");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file: {log}");
    let limited = log
        .lines()
        .find(|l| l.contains("client_authentication_rate_limited"))
        .unwrap_or_else(|| panic!("no rate-limit event: {log}"));
    assert!(
        limited.contains(&format!("retry_after_secs={seconds}")),
        "Retry-After {seconds} but the log says: {limited}"
    );
}

/// `issue-code --key-prefix` refuses what the service refuses.
#[test]
fn issue_code_refuses_a_key_prefix_the_service_refuses() {
    let output = Command::new(BIN)
        .args([
            "issue-code",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--key-prefix",
            "{x}:",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--key-prefix") && stderr.contains("braces"),
        "{stderr}"
    );
}

/// Issue 20, item 6: a misspelled setting stops start-up, naming the
/// variable and the nearest setting. `TOKEN_ENDPOINT_REDIS_URI` would
/// otherwise have started the zero-configuration demo with `/dev/codes`.
#[test]
fn a_misspelled_setting_stops_start_up_naming_the_nearest() {
    for (typo, value, nearest) in [
        (
            "TOKEN_ENDPOINT_REDIS_URI",
            "redis://127.0.0.1:6379",
            "TOKEN_ENDPOINT_REDIS_URL",
        ),
        ("TOKEN_ENDPOINT_WORKER", "4", "TOKEN_ENDPOINT_WORKERS"),
        ("TOKEN_ENDPOINT_LOG_LEVEL", "debug", "TOKEN_ENDPOINT_LOG"),
    ] {
        for command in [None, Some("check")] {
            let mut run = Command::new(BIN);
            run.env_clear()
                .env("TOKEN_ENDPOINT_BIND", format!("127.0.0.1:{}", free_port()))
                .env(typo, value)
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            if let Some(command) = command {
                run.arg(command);
            }
            // Bounded: before the fix, `serve` started the demo and ran on.
            let mut child = run.spawn().expect("run the binary");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{typo} ({command:?}): still running after 10 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let output = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{typo} ({command:?}): exited 0");
            assert!(
                stderr.contains(&format!("{typo}: is not a setting"))
                    && stderr.contains(&format!("did you mean {nearest}?")),
                "{typo} ({command:?}): {stderr}"
            );
        }
    }
}

/// What Kubernetes injects for a Service named `token-endpoint` (and one
/// named `token-endpoint-redis`) in every pod of the namespace, unless
/// `enableServiceLinks: false`, never stops a pod.
#[test]
fn kubernetes_service_links_do_not_stop_start_up() {
    let port = free_port();
    let links: Vec<(&str, String)> = [
        ("TOKEN_ENDPOINT_SERVICE_HOST", "10.96.0.11"),
        ("TOKEN_ENDPOINT_SERVICE_PORT", "80"),
        ("TOKEN_ENDPOINT_SERVICE_PORT_HTTP", "80"),
        ("TOKEN_ENDPOINT_PORT", "tcp://10.96.0.11:80"),
        ("TOKEN_ENDPOINT_PORT_80_TCP", "tcp://10.96.0.11:80"),
        ("TOKEN_ENDPOINT_PORT_80_TCP_PROTO", "tcp"),
        ("TOKEN_ENDPOINT_PORT_80_TCP_PORT", "80"),
        ("TOKEN_ENDPOINT_PORT_80_TCP_ADDR", "10.96.0.11"),
        ("TOKEN_ENDPOINT_REDIS_SERVICE_HOST", "10.96.0.12"),
        ("TOKEN_ENDPOINT_REDIS_PORT", "tcp://10.96.0.12:6379"),
        ("TOKEN_ENDPOINT_REDIS_PORT_6379_TCP_ADDR", "10.96.0.12"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let _server = start_server(&links, port);
    assert_eq!(get_status(port, "/livez"), Some(200));
}

/// `token-endpoint check` on a production-shaped configuration: exit 0
/// having proved Redis works (the start-up probe), without binding (the
/// port it names stays someone else's), and the settings in effect printed
/// with the Redis password redacted.
#[test]
fn check_validates_the_configuration_without_serving() {
    let redis = RedisServer::start_with(vec!["--requirepass".into(), "s3cret-pw".into()]);
    let files = AppFiles::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", redis.port);
    let check = |url: &str| {
        Command::new(BIN)
            .arg("check")
            .env_clear()
            .env("TOKEN_ENDPOINT_BIND", &bind)
            .envs(production_env(&files, url))
            .output()
            .expect("run the binary")
    };
    let output = check(&url);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "TOKEN_ENDPOINT_REDIS_URL=redis://:REDACTED@127.0.0.1:{}",
            redis.port
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("TOKEN_ENDPOINT_BIND={bind}")),
        "{stdout}"
    );
    assert!(stdout.contains("# store: redis"), "{stdout}");
    assert!(
        !stdout.contains("s3cret-pw") && !stderr.contains("s3cret-pw"),
        "the password was printed: {stdout}\n{stderr}"
    );

    // The wrong password, and no Redis at all: exit 1 naming the setting.
    for url in [
        format!("redis://:wrong@127.0.0.1:{}", redis.port),
        format!("redis://127.0.0.1:{}", free_port()),
    ] {
        let output = check(&url);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
        assert!(
            stderr.contains("TOKEN_ENDPOINT_REDIS_URL"),
            "{url}: {stderr}"
        );
    }
    drop(taken);
}

/// `generate-key --out` writes a key that `serve` loads, private from the
/// start, and never replaces an existing file (a failed run leaves nothing
/// half-written, unlike a shell redirection).
#[test]
fn generate_key_writes_a_private_file_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing-key.pem");
    let generate = || {
        Command::new(BIN)
            .args(["generate-key", "--out"])
            .arg(&path)
            .output()
            .expect("run the binary")
    };
    assert!(generate().status.success());
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = generate();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--out"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
    let output = Command::new(BIN)
        .arg("check")
        .env_clear()
        .env("TOKEN_ENDPOINT_SIGNING_KEYS", &path)
        .output()
        .expect("run the binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `issue-code --ttl` takes 1 to 3600 seconds on every store: 0 became 1 s
/// on Redis, and 99999 was accepted there while the embedded store refused
/// it. Refused before anything is written.
#[test]
fn issue_code_ttl_has_one_range_on_every_store() {
    let redis = RedisServer::start();
    for ttl in ["0", "3601", "99999"] {
        for store in [
            vec!["--redis-url".to_owned(), redis.url()],
            vec![
                "--server".to_owned(),
                format!("http://127.0.0.1:{}", free_port()),
            ],
        ] {
            let output = Command::new(BIN)
                .env_clear()
                .args(["issue-code", "--ttl", ttl])
                .args(&store)
                .output()
                .expect("run the binary");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "--ttl {ttl} {store:?}: exited 0");
            assert!(
                stderr.contains("--ttl") && stderr.contains("1..=3600"),
                "--ttl {ttl} {store:?}: {stderr}"
            );
        }
    }
    let mut conn = redis.client().get_connection().unwrap();
    let keys: i64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 0, "a refused issue-code wrote to Redis");
}
