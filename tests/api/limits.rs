//! Abuse limits: failed client authentication per client and per address,
//! slow clients, oversized headers, the connection cap. Each with the limit
//! set low, over real sockets.

use std::sync::Arc;
use std::time::Duration;

use token_endpoint::config::Settings;
use token_endpoint::grant::abuse::AuthLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

async fn app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    spawn_app_on(Some(redis), Arc::new(AppFiles::new()), tweak).await
}

fn low_auth_limits(settings: &mut Settings) {
    settings.limits.auth = AuthLimits {
        client_alert: 5,
        per_address: 3,
        window: Duration::from_secs(60),
    };
}

/// Send `form` as `basic-app` with `secret`, from `forwarded_for` if given.
async fn basic(
    app: &TestApp,
    issued: &token_endpoint::contract::frontend::IssuedCode,
    secret: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = app
        .http
        .post(app.token_url())
        .basic_auth("basic-app", Some(secret))
        .form(&TestApp::form(issued, "basic-app"));
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    app.send(request).await
}

/// After 3 failed authentications from one address, that address gets 429
/// with `Retry-After` for the rest of the window, even with the right
/// secret (a guesser learns nothing), and the refused request leaves the
/// code in place. Other addresses are not affected.
#[tokio::test]
async fn failed_authentication_is_limited_per_address() {
    let app = app_with(|s| {
        low_auth_limits(s);
        s.limits.client_address_header = Some("x-forwarded-for".into());
    })
    .await;
    let issued = app.issue(grant("basic-app")).await;
    for _ in 0..3 {
        basic(&app, &issued, "wrong", Some("198.51.100.7"))
            .await
            .assert_error(401, "invalid_client");
    }
    let limited = basic(&app, &issued, BASIC_SECRET, Some("198.51.100.7")).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    assert_eq!(limited.error(), "invalid_client");
    assert!(limited
        .description()
        .contains("too many failed client authentications"));
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        app.requests("invalid_client", "auth_rate_limited").await,
        1.0
    );
    // The code was not consumed: the client redeems it from elsewhere (the
    // last X-Forwarded-For entry is the one the load balancer appended).
    let ok = basic(
        &app,
        &issued,
        BASIC_SECRET,
        Some("198.51.100.7, 203.0.113.5"),
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// The per-client count is an alert, not a refusal (docs/security.md):
/// after 5 failures of `basic-app` spread over 5 addresses, the client's
/// real server, from a sixth address, still redeems, and the failures show
/// in `client_authentication_failures_total`.
#[tokio::test]
async fn failed_authentication_per_client_is_an_alert_not_a_refusal() {
    let app = app_with(|s| {
        low_auth_limits(s);
        s.limits.client_address_header = Some("x-forwarded-for".into());
    })
    .await;
    let issued = app.issue(grant("basic-app")).await;
    for i in 0..5 {
        basic(&app, &issued, "wrong", Some(&format!("192.0.2.{i}")))
            .await
            .assert_error(401, "invalid_client");
    }
    assert_eq!(
        app.metric("client_authentication_failures_total{client_id=\"basic-app\"}")
            .await,
        5.0
    );
    assert!(
        app.metrics()
            .await
            .contains("client_authentication_failures_total{client_id=\"post-app\"} 0"),
        "every confidential client's counter starts at 0"
    );
    let answer = basic(&app, &issued, BASIC_SECRET, Some("192.0.2.99")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Without a configured header, X-Forwarded-For is not believed: the
/// address is the TCP peer's, so a guesser cannot dodge the limit by
/// inventing addresses.
#[tokio::test]
async fn forwarded_addresses_are_ignored_unless_configured() {
    let app = app_with(low_auth_limits).await;
    let issued = app.issue(grant("basic-app")).await;
    for i in 0..3 {
        basic(&app, &issued, "wrong", Some(&format!("192.0.2.{i}")))
            .await
            .assert_error(401, "invalid_client");
    }
    let limited = basic(&app, &issued, BASIC_SECRET, Some("192.0.2.200")).await;
    assert_eq!(limited.status, 429, "{limited:?}");
}

/// Write `bytes` on a fresh connection, then read until the server closes
/// or `within` passes; return what was read.
async fn exchange(port: u16, bytes: &[u8], within: Duration) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    (answer, closed)
}

fn port(app: &TestApp) -> u16 {
    app.address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port")
}

/// The slow-client tests set `TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS` to 300 ms
/// (a head's deadline then falls within 800 ms: actix's clock step, see
/// `Application::serve`) and wait this long for the cut. actix-web's own
/// default for a request head (`client_request_timeout`) is 5 s: a slow
/// client cut off by that default, not by the service's setting, is still
/// connected when the wait ends, and fails the test.
const CUT_OFF_WITHIN: Duration = Duration::from_millis(2500);

/// A body that stops arriving gets a 408 with an RFC 6749 body once the
/// client timeout has passed, and nothing is held after.
#[tokio::test]
async fn a_slow_body_gets_408() {
    let app = app_with(|s| s.limits.client_timeout = Duration::from_millis(300)).await;
    let head = "POST /oauth/token HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/x-www-form-urlencoded\r\n\
                Content-Length: 100\r\n\r\ngrant_type=auth";
    let (answer, _) = exchange(port(&app), head.as_bytes(), CUT_OFF_WITHIN).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""error":"invalid_request""#), "{text}");
    assert!(text.contains("did not arrive within 300 ms"), "{text}");
    // Read from the app's registry, not over HTTP: with a 300 ms client
    // timeout, a loaded machine can make actix answer the /metrics request
    // itself with a 408 before its head is read.
    let metrics = String::from_utf8(app.state.redeemer.metrics().render()).unwrap();
    assert!(
        metrics.contains(r#"token_requests_total{outcome="invalid_request",reason="slow_body"} 1"#),
        "{metrics}"
    );
}

/// A request head that stops arriving is cut off by actix after the
/// service's client timeout (408, connection closed), well before actix's
/// own 5 s default would: a slowloris cannot hold a connection.
#[tokio::test]
async fn a_slow_head_is_cut_off() {
    let app = app_with(|s| s.limits.client_timeout = Duration::from_millis(300)).await;
    let (answer, closed) = exchange(
        port(&app),
        b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nX-Slow: ",
        CUT_OFF_WITHIN,
    )
    .await;
    assert!(
        closed,
        "the connection was still open after {CUT_OFF_WITHIN:?}: \
         TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS (300 ms) did not apply"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// At the lowest client timeout the settings accept, a client that sends
/// its head well within it (50 ms after connecting, against 100 ms) is
/// answered. actix computes the head's deadline from a clock that lags by
/// up to 500 ms: before the fix, most such requests got an immediate 408.
#[tokio::test]
async fn the_lowest_client_timeout_answers_healthy_requests() {
    let app = app_with(|s| s.limits.client_timeout = Duration::from_millis(100)).await;
    let mut timed_out = 0;
    for _ in 0..40 {
        let mut stream = TcpStream::connect(("127.0.0.1", port(&app)))
            .await
            .expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut answer = Vec::new();
        // A write to a connection the server already cut may fail.
        if stream
            .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .is_ok()
        {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        }
        let text = String::from_utf8_lossy(&answer);
        if !text.starts_with("HTTP/1.1 200") {
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 0, "{timed_out} of 40 healthy requests timed out");
}

/// Oversized request heads (over actix-web's 128 KiB, or over its 96 header
/// lines) are refused by actix with 431 before any handler runs, and the
/// service goes on serving.
#[tokio::test]
async fn an_oversized_head_is_refused() {
    let app = app_with(|_| {}).await;
    let huge = "a".repeat(200 * 1024);
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: x\r\nX-Huge: {huge}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
    );
    let (answer, _) = exchange(port(&app), request.as_bytes(), Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    assert_eq!(status, 431, "{text}");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /livez HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (answer, _) = exchange(port(&app), request.as_bytes(), Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(app.get("/livez").await.status(), 200);
}

/// With the cap at 2 connections (one worker), a third connection is not
/// served while two are held open, and is served as soon as one closes.
#[tokio::test]
async fn connections_beyond_the_cap_wait() {
    let app = app_with(|s| {
        s.workers = 1;
        s.limits.max_connections = 2;
    })
    .await;
    two_held_then_a_third_waits(port(&app), "the third connection was served past the cap").await;
}

/// The cap counts all workers together: with 2 workers and a cap of 3,
/// each worker holds 1 (rounded down, never above the cap), so a third
/// connection waits while two are held (it was served: the cap was applied
/// per worker, rounded up, 4 in all).
#[tokio::test]
async fn the_connection_cap_counts_all_workers_together() {
    let app = app_with(|s| {
        s.workers = 2;
        s.limits.max_connections = 3;
    })
    .await;
    two_held_then_a_third_waits(
        port(&app),
        "a third connection was served past a cap of 3 over 2 workers",
    )
    .await;
}

/// Two connections to `port` are served and held open; a third is not
/// served (`past_the_cap` says why that would be wrong) until one of the
/// two closes.
async fn two_held_then_a_third_waits(port: u16, past_the_cap: &str) {
    let livez = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = vec![];
    for _ in 0..2 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(livez).await.unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the first two are served")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let mut third = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    third.write_all(livez).await.unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(early.is_err(), "{past_the_cap}");
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}
