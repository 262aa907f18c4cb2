//! TLS: Redis over `rediss://` (Debian's `redis-server` with `--tls-port`)
//! with a private CA, mutual TLS and ACL users, and the service's own TLS
//! listener. The certificates come from a throwaway CA made per test
//! ([`TestPki`]). Everything that cannot work stops start-up naming the
//! setting at fault.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use token_endpoint::config::{
    CertificateFiles, ConfigError, ListenerTls, RedisFiles, Settings, StoreSettings,
};
use token_endpoint::http::{build_state, StartupError};

use crate::helpers::*;

/// Point `settings` at `url` (`rediss://`) with these files.
fn on_rediss(settings: &mut Settings, url: String, files: RedisFiles) {
    if let StoreSettings::Redis {
        url: u, files: f, ..
    } = &mut settings.store
    {
        *u = url.into();
        *f = files;
    }
}

fn trusting(pki: &TestPki) -> RedisFiles {
    RedisFiles {
        ca: Some(pki.ca_file.clone()),
        ..RedisFiles::default()
    }
}

/// An app on a TLS Redis (standalone), with `files`, through `url`.
async fn app_over_tls(server: RedisServer, url: String, files: RedisFiles) -> TestApp {
    let redis = Arc::new(std::sync::Mutex::new(server));
    spawn_app_on(Some(redis), Arc::new(AppFiles::new()), |settings| {
        on_rediss(settings, url, files)
    })
    .await
}

/// Why an app on `server` through `url` with `files` does not start.
async fn refusal(server: &RedisServer, url: String, files: RedisFiles) -> ConfigError {
    let app_files = AppFiles::new();
    let mut settings = settings(&app_files, Some(server));
    on_rediss(&mut settings, url, files);
    match tokio::time::timeout(Duration::from_secs(10), build_state(&settings))
        .await
        .expect("start-up ends within 10 s, never hangs")
    {
        Ok(_) => panic!("the service started"),
        Err(StartupError::Config(e)) => e,
        Err(other) => panic!("not a setting's fault: {other}"),
    }
}

/// Each of `codes` codes presented 8 times at once: exactly one 200 each.
async fn exactly_once_race(app: &TestApp, codes: usize) {
    let mut issued = Vec::with_capacity(codes);
    for _ in 0..codes {
        issued.push(app.issue(grant("public-app")).await);
    }
    let attempts = issued
        .iter()
        .flat_map(|code| std::iter::repeat_n(code, 8))
        .map(|code| {
            let form = TestApp::form(code, "public-app");
            async move { app.post_form(&form).await }
        });
    let answers: Vec<Answer> = futures::stream::iter(attempts)
        .buffer_unordered(64)
        .collect()
        .await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let replays = answers
        .iter()
        .filter(|a| a.status == 400 && a.error() == "invalid_grant")
        .count();
    assert_eq!(ok, codes, "one success per code");
    assert_eq!(replays, 7 * codes, "every other attempt is a replay");
}

/// `rediss://` with a private CA: the contract and the exactly-once race
/// hold over TLS.
#[tokio::test]
async fn redemptions_over_rediss_with_a_private_ca() {
    let pki = TestPki::new();
    let server = RedisServer::start_tls(&pki, false, vec![]);
    let url = server.tls_url();
    let app = app_over_tls(server, url, trusting(&pki)).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    redemption_contract(&app).await;
    exactly_once_race(&app, 50).await;
}

/// Mutual TLS and an ACL user holding exactly the permissions
/// docs/production-redis.md lists, its password from a file: it works.
#[tokio::test]
async fn an_acl_user_with_a_client_certificate_and_a_password_file() {
    let pki = TestPki::new();
    let server = RedisServer::start_tls(&pki, true, vec![]);
    acl_user(&server, "token-endpoint", "s3cret-pw", ACL_RULES);
    // Nobody gets in without a password: the service must log in as its
    // user, with the password from the file.
    acl_user(&server, "default", "admin-only", &["resetpass", "off"]);
    let password_file = pki.dir().join("redis-password");
    std::fs::write(&password_file, "s3cret-pw\n").unwrap();
    let url = format!(
        "rediss://token-endpoint@127.0.0.1:{}",
        server.tls_port.unwrap()
    );
    let files = RedisFiles {
        password: Some(password_file),
        ca: Some(pki.ca_file.clone()),
        client: Some(pki.client.clone()),
    };
    let app = app_over_tls(server, url, files).await;
    redemption_contract(&app).await;
}

/// Create `user` with `password` and `rules` through the plain port.
fn acl_user(server: &RedisServer, user: &str, password: &str, rules: &[&str]) {
    let mut conn = server.client().get_connection().unwrap();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(user)
        .arg("on")
        .arg(format!(">{password}"));
    for rule in rules {
        cmd.arg(*rule);
    }
    cmd.query::<()>(&mut conn).unwrap();
}

/// `issue-code` writes over TLS as an ACL user with a password file, with
/// the service's own settings as its environment, and the codes redeem.
#[tokio::test]
async fn issue_code_writes_over_tls_with_the_services_settings() {
    let pki = TestPki::new();
    let server = RedisServer::start_tls(&pki, true, vec![]);
    acl_user(&server, "token-endpoint", "pw-from-file", ACL_RULES);
    acl_user(&server, "default", "admin-only", &["resetpass", "off"]);
    let password_file = pki.dir().join("redis-password");
    std::fs::write(&password_file, "pw-from-file\n").unwrap();
    let url = format!(
        "rediss://token-endpoint@127.0.0.1:{}",
        server.tls_port.unwrap()
    );
    let files = RedisFiles {
        password: Some(password_file.clone()),
        ca: Some(pki.ca_file.clone()),
        client: Some(pki.client.clone()),
    };
    let env = [
        ("TOKEN_ENDPOINT_REDIS_URL", url.clone()),
        (
            "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
        (
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
            pki.ca_file.display().to_string(),
        ),
        (
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
            pki.client.cert.display().to_string(),
        ),
        (
            "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
            pki.client.key.display().to_string(),
        ),
    ];
    let app = app_over_tls(server, url, files).await;
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_token-endpoint"))
            .args(["issue-code", "--client-id", "public-app"])
            .args(["--redirect-uri", "https://client.test/cb", "--count", "3"])
            .envs(env)
            .output()
            .expect("run issue-code")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "issue-code failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout).unwrap();
    assert_eq!(lines.lines().count(), 3);
    for line in lines.lines() {
        let seed: serde_json::Value = serde_json::from_str(line).unwrap();
        let form = [
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "public-app".to_owned()),
            ("redirect_uri", "https://client.test/cb".to_owned()),
            ("code", seed["code"].as_str().unwrap().to_owned()),
            (
                "code_verifier",
                seed["code_verifier"].as_str().unwrap().to_owned(),
            ),
        ];
        let answer = app.post_form(&form).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
}

/// What cannot work stops start-up, naming the setting: a wrong password,
/// a user without a needed permission, a CA that did not sign the server's
/// certificate, a name the certificate is not for, a missing client
/// certificate where the server requires one.
#[tokio::test]
async fn what_cannot_work_stops_start_up_naming_the_setting() {
    let pki = TestPki::new();
    let server = RedisServer::start_tls(&pki, true, vec![]);
    acl_user(&server, "token-endpoint", "right", ACL_RULES);
    let mut no_getdel = ACL_RULES.to_vec();
    no_getdel.retain(|r| *r != "+getdel");
    acl_user(&server, "no-getdel", "right", &no_getdel);
    let port = server.tls_port.unwrap();
    let with_client = |files: RedisFiles| RedisFiles {
        client: Some(pki.client.clone()),
        ..files
    };
    let another_ca = TestPki::named("Another CA");
    let wrong_password = pki.dir().join("wrong-password");
    std::fs::write(&wrong_password, "wrong").unwrap();

    let cases: Vec<(&str, String, RedisFiles, &str)> = vec![
        (
            "a wrong password",
            format!("rediss://token-endpoint@127.0.0.1:{port}"),
            RedisFiles {
                password: Some(wrong_password),
                ..with_client(trusting(&pki))
            },
            "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
        ),
        (
            "a user without GETDEL",
            format!("rediss://no-getdel:right@127.0.0.1:{port}"),
            with_client(trusting(&pki)),
            "TOKEN_ENDPOINT_REDIS_URL",
        ),
        (
            "a CA that did not sign the server's certificate",
            format!("rediss://token-endpoint:right@127.0.0.1:{port}"),
            with_client(trusting(&another_ca)),
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        ),
        (
            "the system's trust store, which lacks the private CA",
            format!("rediss://token-endpoint:right@127.0.0.1:{port}"),
            with_client(RedisFiles::default()),
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        ),
        (
            "no client certificate",
            format!("rediss://token-endpoint:right@127.0.0.1:{port}"),
            trusting(&pki),
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
        ),
    ];
    for (what, url, files, setting) in cases {
        let err = refusal(&server, url, files).await;
        assert_eq!(err.setting, setting, "{what}: {err}");
        eprintln!("{what}: {err}");
    }

    // A certificate for other names than the one in the URL.
    let elsewhere = pki.issue("elsewhere", &["redis.elsewhere.test"]);
    let mut args = vec![];
    for (flag, path) in [
        ("--tls-cert-file", &elsewhere.cert),
        ("--tls-key-file", &elsewhere.key),
    ] {
        args.push(flag.to_string());
        args.push(path.display().to_string());
    }
    // Later arguments win: this server presents `elsewhere`.
    let misnamed = RedisServer::start_tls(&pki, false, args);
    let err = refusal(&misnamed, misnamed.tls_url(), trusting(&pki)).await;
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_URL", "{err}");
    assert!(err.reason.contains("not for"), "{err}");
    eprintln!("a hostname mismatch: {err}");
}

/// Bad files stop start-up naming their setting before any connection.
#[tokio::test]
async fn bad_tls_files_are_named() {
    let pki = TestPki::new();
    let server = RedisServer::start_tls(&pki, false, vec![]);
    let url = server.tls_url();
    let not_pem = pki.dir().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let missing = pki.dir().join("missing.pem");
    let other = TestPki::named("Other");
    let cases: Vec<(RedisFiles, &str)> = vec![
        (
            RedisFiles {
                ca: Some(missing.clone()),
                ..RedisFiles::default()
            },
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        ),
        (
            RedisFiles {
                ca: Some(not_pem.clone()),
                ..RedisFiles::default()
            },
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        ),
        (
            RedisFiles {
                client: Some(CertificateFiles {
                    cert: not_pem.clone(),
                    key: pki.client.key.clone(),
                }),
                ..trusting(&pki)
            },
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
        ),
        (
            RedisFiles {
                client: Some(CertificateFiles {
                    cert: pki.client.cert.clone(),
                    key: pki.client.cert.clone(),
                }),
                ..trusting(&pki)
            },
            "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
        ),
        (
            // A key that is not the certificate's.
            RedisFiles {
                client: Some(CertificateFiles {
                    cert: pki.client.cert.clone(),
                    key: other.client.key.clone(),
                }),
                ..trusting(&pki)
            },
            "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
        ),
        (
            RedisFiles {
                password: Some(missing),
                ..trusting(&pki)
            },
            "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
        ),
    ];
    for (files, setting) in cases {
        let err = refusal(&server, url.clone(), files).await;
        assert_eq!(err.setting, setting, "{err}");
    }
}

/// A TLS Redis that dies is a prompt 503 with `Retry-After`, and its
/// return is noticed: never a hang.
#[tokio::test]
async fn a_tls_redis_that_dies_is_a_prompt_503() {
    let pki = TestPki::new();
    let server = RedisServer::start_tls(&pki, false, vec![]);
    let url = server.tls_url();
    let app = app_over_tls(server, url, trusting(&pki)).await;
    let issued = app.issue(grant("public-app")).await;
    app.redis.as_ref().unwrap().lock().unwrap().kill();
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.header("retry-after").is_some());
}

/// A TLS Cluster (`tls-cluster yes`: clients and the bus speak TLS):
/// `CLUSTER SLOTS` on a TLS connection names the TLS ports, each node's
/// certificate is verified, and the contract and the race hold.
#[cfg(feature = "slow-tests")]
#[tokio::test]
async fn redemptions_on_a_tls_cluster() {
    let pki = TestPki::new();
    let cluster = RedisCluster::start_tls(&pki, true);
    for node in &cluster.nodes {
        acl_user(node, "token-endpoint", "pw", ACL_RULES);
        acl_user(node, "token-endpoint", "pw", &["+cluster|slots", "+asking"]);
    }
    let urls = cluster
        .nodes
        .iter()
        .map(|n| {
            format!(
                "rediss://token-endpoint:pw@127.0.0.1:{}",
                n.tls_port.unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let tweak = cluster.tweak();
    let files = RedisFiles {
        client: Some(pki.client.clone()),
        ..trusting(&pki)
    };
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), |settings| {
        tweak(settings);
        on_rediss(settings, urls, files);
    })
    .await;
    redemption_contract(&app).await;
    exactly_once_race(&app, 60).await;
    let holding = cluster.nodes_holding_keys();
    assert!(holding >= 2, "used markers on only {holding} of 3 masters");
}

/// Sentinel over TLS: the sentinels are asked over TLS, and they name the
/// master's TLS port, which the service reaches over TLS too, both
/// verified against the private CA. So are the service's own questions to
/// the sentinels (whether a miss is final).
#[cfg(feature = "slow-tests")]
#[tokio::test]
async fn redemptions_through_sentinels_over_tls() {
    let pki = TestPki::new();
    let group = RedisSentinelGroup::start_tls(&pki);
    let urls = group.tls_urls();
    let tweak = group.tweak();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), |settings| {
        tweak(settings);
        on_rediss(settings, urls, trusting(&pki));
    })
    .await;
    redemption_contract(&app).await;
    exactly_once_race(&app, 30).await;
    // A miss is final only once the sentinels, asked over TLS on
    // connections of the service's own, confirm the master: an unknown
    // code is a 400, not a 503.
    let unknown = token_endpoint::contract::frontend::IssuedCode {
        code: token_endpoint::contract::frontend::random_token().unwrap(),
        verifier: token_endpoint::contract::frontend::random_token().unwrap(),
    };
    app.post_form(&TestApp::form(&unknown, "public-app"))
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(app.requests("invalid_grant", "unknown_code").await, 1.0);
}

/// The listener over TLS: a real OpenID Connect client library
/// (`openidconnect` on reqwest with rustls, trusting only the test CA)
/// exchanges a code against the service's certificate, and the probes
/// answer over HTTPS.
#[tokio::test]
async fn a_client_library_redeems_over_the_tls_listener() {
    let pki = TestPki::new();
    let app = https_app(&pki, Duration::from_secs(10)).await;
    assert_eq!(app.get("/livez").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    let token = crate::interop::exchange_with_library(&app, &app.http).await;
    verify_jwt(&token, &app.jwks().await, "https://api.test");
    // Plain HTTP on the TLS port gets no answer a client could take for one.
    let plain = reqwest::Client::new()
        .get(app.address.replace("https://", "http://") + "/livez")
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP was served on the TLS listener"
    );
}

/// The service with its TLS listener on the embedded store, and an HTTP
/// client that trusts `pki`'s CA and nothing else.
async fn https_app(pki: &TestPki, reload_every: Duration) -> TestApp {
    let files = pki.server.clone();
    let mut app = spawn_app_on(None, Arc::new(AppFiles::new()), |settings| {
        settings.tls = Some(ListenerTls {
            files,
            reload_every,
        });
    })
    .await;
    app.address = app.address.replace("http://", "https://");
    app.http = https_client(pki);
    app
}

fn https_client(pki: &TestPki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca_file).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The certificate and key files replaced (as cert-manager does): new
/// connections get the new certificate without a restart; a broken
/// replacement is ignored and the last good one kept.
#[tokio::test]
async fn the_listener_certificate_is_reloaded_when_its_files_change() {
    let first = TestPki::new();
    let app = https_app(&first, Duration::from_secs(1)).await;
    assert_eq!(app.get("/livez").await.status(), 200);

    // Rotation to a certificate from another CA: a client trusting only
    // the new CA connects once the files are re-read.
    let second = TestPki::named("Rotated CA");
    let mut rotated = app.address.clone();
    rotated.push_str("/livez");
    std::fs::copy(&second.server.key, &first.server.key).unwrap();
    std::fs::copy(&second.server.cert, &first.server.cert).unwrap();
    let new_client = https_client(&second);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A new connection each time: the pool would keep the old one.
        let fresh = https_client(&second);
        if fresh.get(&rotated).send().await.is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated certificate was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(new_client.get(&rotated).send().await.unwrap().status(), 200);
    assert!(
        https_client(&first).get(&rotated).send().await.is_err(),
        "the old certificate is still served"
    );

    // A broken replacement (a key that is not the certificate's): the
    // rotated pair stays.
    std::fs::copy(&first.client.key, &first.server.key).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        https_client(&second)
            .get(&rotated)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A FIFO in place of the certificate (once, it blocked the reload thread
/// for good, and every later rotation was silently ignored), then a file
/// far past the size cap: both are refused without blocking, and a good
/// rotation after them is served.
#[tokio::test]
async fn the_reload_survives_a_fifo_and_an_oversized_file() {
    let first = TestPki::new();
    let app = https_app(&first, Duration::from_secs(1)).await;
    assert_eq!(app.get("/livez").await.status(), 200);
    std::fs::remove_file(&first.server.cert).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&first.server.cert)
        .status()
        .unwrap();
    assert!(made.success());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    std::fs::remove_file(&first.server.cert).unwrap();
    std::fs::write(&first.server.cert, vec![b'A'; 8 << 20]).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Still serving the first certificate all along.
    assert_eq!(app.get("/livez").await.status(), 200);

    let second = TestPki::named("Rotated CA");
    std::fs::copy(&second.server.key, &first.server.key).unwrap();
    std::fs::copy(&second.server.cert, &first.server.cert).unwrap();
    let url = format!("{}/livez", app.address);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while https_client(&second).get(&url).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation after the FIFO was not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The password from its file and the client key never show in `Debug`
/// output of the settings that carry them.
#[test]
fn redis_credentials_stay_out_of_debug_output() {
    use token_endpoint::config::RedisFiles;
    let pki = TestPki::new();
    let password_file = pki.dir().join("password");
    std::fs::write(&password_file, "hunter2-from-a-secret\n").unwrap();
    let (password, tls) = token_endpoint::service::redis_access(&RedisFiles {
        password: Some(password_file),
        ca: Some(pki.ca_file.clone()),
        client: Some(pki.client.clone()),
    })
    .unwrap();
    let settings = token_endpoint::store::RedisSettings {
        url: "rediss://user@redis.example:6380".to_owned().into(),
        topology: token_endpoint::store::RedisTopology::Standalone,
        keys: token_endpoint::store::KeySpace::default(),
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        replica_acks: 0,
        password,
        tls,
    };
    let debug = format!("{settings:?}");
    let key = std::fs::read_to_string(&pki.client.key).unwrap();
    let key_body = key.lines().nth(1).unwrap();
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains(key_body), "{debug}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}
