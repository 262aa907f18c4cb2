//! Operating the service: request ids, readiness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use token_endpoint::config::StoreSettings;

use crate::helpers::*;

/// A sane `X-Request-Id` from upstream is echoed back, on success and error
/// alike; a missing or unsafe one is replaced by a fresh, unique id.
#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = spawn_app(Backend::Embedded).await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let given = app
        .http
        .post(app.token_url())
        .header("X-Request-Id", "lb-7f3a.42")
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .expect("answer");
    assert_eq!(given.status(), 400);
    assert_eq!(id_of(&given).as_deref(), Some("lb-7f3a.42"));

    let unsafe_id = app
        .http
        .get(format!("{}/livez", app.address))
        .header("X-Request-Id", "two words\tand a tab")
        .send()
        .await
        .expect("answer");
    let replaced = id_of(&unsafe_id).expect("an id");
    assert!(
        !replaced.contains(' ') && !replaced.is_empty(),
        "{replaced}"
    );

    let first = id_of(&app.get("/livez").await).expect("an id");
    let second = id_of(&app.get("/livez").await).expect("an id");
    assert_ne!(first, second);
    assert_ne!(first, replaced);
}

/// `token_requests_in_flight` counts a redemption while Redis holds it up
/// and falls back to 0 once it is answered; the signing key's gauge is its
/// file's modification time.
#[tokio::test]
async fn in_flight_and_signing_key_metrics() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let app = spawn_app_on(Some(redis), Arc::new(AppFiles::new()), |s| {
        if let StoreSettings::Redis {
            command_timeout, ..
        } = &mut s.store
        {
            *command_timeout = Duration::from_secs(5);
        }
    })
    .await;
    let issued = app.issue(grant("public-app")).await;
    // Held until released below, or for 4 s at most (under the 5 s command
    // timeout, so the redemption still succeeds).
    redis_command(&app, &["PAUSE", "4000", "WRITE"]);
    let form = TestApp::form(&issued, "public-app");
    let redemption = app.post_form(&form);
    tokio::pin!(redemption);
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        tokio::select! {
            answer = &mut redemption => {
                panic!("answered without ever being counted in flight: {answer:?}")
            }
            during = app.metric("token_requests_in_flight") => {
                if during == 1.0 {
                    break;
                }
                assert_eq!(during, 0.0, "one redemption, counted as {during}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the held redemption was never counted in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis_command(&app, &["UNPAUSE"]);
    let answer = redemption.await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(app.metric("token_requests_in_flight").await, 0.0);

    let made = std::fs::metadata(&app.files.es256_key)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let gauge = app
        .metric("token_endpoint_signing_key_created_timestamp_seconds")
        .await;
    assert!((gauge - made).abs() < 1.0, "{gauge} vs {made}");
}

/// `CLIENT <args>` on the app's Redis.
fn redis_command(app: &TestApp, args: &[&str]) {
    let redis = app.redis.as_ref().unwrap().lock().unwrap();
    let mut conn = redis.client().get_connection().unwrap();
    let _: () = redis::cmd("CLIENT").arg(args).query(&mut conn).unwrap();
}
