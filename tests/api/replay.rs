//! Replays (RFC 6749 §4.1.2, §10.5) and an unreachable store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;
use token_endpoint_test_support::on_every_store;

on_every_store!(
    replay_is_detected_and_revokes_the_grant,
    a_race_revokes_the_winners_grant
);

/// A second redemption of a redeemed code is `invalid_grant`, counted and
/// logged as a replay (not as an unknown code), and the grant it produced is
/// marked revoked for the access token's lifetime.
async fn replay_is_detected_and_revokes_the_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    let first = app.post_form(&form).await;
    assert_eq!(first.status, 200, "{first:?}");
    let (_, claims) = jwt_parts(first.body["access_token"].as_str().unwrap());
    let grant_id = claims["grant_id"].as_str().unwrap().to_owned();
    let store = &app.state.redeemer.store();
    assert!(!store.is_grant_revoked(&grant_id).await.unwrap());

    let second = app.post_form(&form).await;
    second.assert_error(400, "invalid_grant");
    assert!(
        second.description().contains("already been redeemed"),
        "{second:?}"
    );
    assert!(store.is_grant_revoked(&grant_id).await.unwrap());
    assert_eq!(app.metric("code_replays_total").await, 1.0);
    assert_eq!(app.requests("invalid_grant", "replay").await, 1.0);
    assert_eq!(app.requests("invalid_grant", "unknown_code").await, 0.0);
}

/// Many identical redemptions at once: one gets tokens, the others are the
/// owner's replays of *its* grant, which they revoke. On Redis the losers
/// also passed the checks and ran the take's `MULTI`; their used marker
/// must not replace the winner's (`SET … NX`), or the replays would revoke
/// a grant never issued and leave the winner's tokens standing.
async fn a_race_revokes_the_winners_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    let answers = futures::future::join_all((0..32).map(|_| app.post_form(&form))).await;
    let winners: Vec<_> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for answer in answers.iter().filter(|a| a.status != 200) {
        answer.assert_error(400, "invalid_grant");
    }
    let (_, claims) = jwt_parts(winners[0].body["access_token"].as_str().unwrap());
    let grant_id = claims["grant_id"].as_str().unwrap();
    let store = &app.state.redeemer.store();
    assert!(store.is_grant_revoked(grant_id).await.unwrap());
}

/// In Redis the marker and the revocation carry TTLs bounded by the access
/// token's lifetime (600 s for public-app).
#[tokio::test]
async fn replay_keys_in_redis_expire_with_the_tokens() {
    let app = spawn_app(Backend::Redis).await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    let first = app.post_form(&form).await;
    let (_, claims) = jwt_parts(first.body["access_token"].as_str().unwrap());
    let grant_id = claims["grant_id"].as_str().unwrap();
    app.post_form(&form)
        .await
        .assert_error(400, "invalid_grant");

    let redis = app.redis.as_ref().unwrap().lock().unwrap();
    let mut conn = redis.client().get_connection().unwrap();
    let code_key = format!("oauth:code:{{{}}}", issued.code);
    let used_key = format!("oauth:used:{{{}}}", issued.code);
    let revoked_key = format!("oauth:revoked-grant:{{{grant_id}}}");
    // The key before it was hash-tagged, still written for resource servers
    // that check it (docs/contract.md, "Keys tied to a grant").
    let legacy_key = format!("oauth:revoked-grant:{grant_id}");
    let exists: bool = redis::cmd("EXISTS")
        .arg(&code_key)
        .query(&mut conn)
        .unwrap();
    assert!(!exists, "the record is gone");
    for key in [&used_key, &revoked_key, &legacy_key] {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut conn).unwrap();
        assert!((590..=600).contains(&ttl), "{key} TTL {ttl}");
    }
}

/// Redis gone: a fast 503 with `Retry-After` and a JSON error, never a hang;
/// once Redis is back the service recovers by itself.
#[tokio::test]
async fn redis_outage_is_a_fast_503_and_recovers() {
    let app = spawn_app(Backend::Redis).await;
    let issued = app.issue(grant("public-app")).await;
    app.redis.as_ref().unwrap().lock().unwrap().kill();

    let started = Instant::now();
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.error(), "temporarily_unavailable");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(app.get("/readyz").await.status(), 503);

    app.redis.as_ref().unwrap().lock().unwrap().restart();
    // The restarted Redis is empty: issue again and redeem, retrying while
    // the connection comes back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let store = &app.state.redeemer.store();
        let attempt = token_endpoint::contract::frontend::issue_code(
            store,
            grant("public-app"),
            Duration::from_secs(60),
        )
        .await;
        if let Ok(issued) = attempt {
            let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
            if answer.status == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the service did not recover within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert!(app.metric("code_store_errors_total").await >= 1.0);
}

/// Redis that accepts connections but does not answer (`CLIENT PAUSE`):
/// a 503 after the 250 ms command timeout, not a hang; once Redis answers
/// again, so does the service. (Whether the timed-out take ran late is
/// unknowable to the service; docs/token-endpoint.md, "When Redis times
/// out".)
#[tokio::test]
async fn redis_that_stops_answering_is_a_bounded_503() {
    let app = spawn_app(Backend::Redis).await;
    let issued = app.issue(grant("public-app")).await;
    {
        let redis = app.redis.as_ref().unwrap().lock().unwrap();
        let mut conn = redis.client().get_connection().unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(3000)
            .arg("ALL")
            .query(&mut conn)
            .unwrap();
    }
    let started = Instant::now();
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("1"));
    // Before Redis answers again: the command timeout (250 ms) answered,
    // not Redis. The margin is for a loaded machine, not a speed claim.
    assert!(
        elapsed < Duration::from_millis(3000),
        "answered after {elapsed:?}"
    );

    tokio::time::sleep(Duration::from_millis(3100).saturating_sub(elapsed)).await;
    let fresh = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&fresh, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// `REPLICA_ACKS=1` on a master with no replica: the take's `WAIT` falls
/// short, the answer is 503 with `Retry-After`, and the take is put back
/// with no more life than it had left. The client's retries, as the 503
/// asks, are neither replays nor final: no `code_replays_total`, no
/// revocation, and once a replica acknowledges, the retry gets the tokens.
/// (Before, the retry was answered "the tokens issued for it are revoked",
/// with a security event, although none were issued.)
#[tokio::test]
async fn a_retry_after_a_replica_shortfall_is_not_a_replay() {
    let redis = Arc::new(std::sync::Mutex::new(RedisServer::start()));
    let app = spawn_app_on(Some(redis), Arc::new(AppFiles::new()), |settings| {
        set_replica_acks(settings, 1)
    })
    .await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    for _ in 0..2 {
        let answer = app.post_form(&form).await;
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    {
        let redis = app.redis.as_ref().unwrap().lock().unwrap();
        let mut conn = redis.client().get_connection().unwrap();
        let code_key = format!("oauth:code:{{{}}}", issued.code);
        let used_key = format!("oauth:used:{{{}}}", issued.code);
        let left: i64 = redis::cmd("PTTL").arg(&code_key).query(&mut conn).unwrap();
        assert!(
            (1..=60_000).contains(&left),
            "the code was put back with {left} ms"
        );
        let used: bool = redis::cmd("EXISTS")
            .arg(&used_key)
            .query(&mut conn)
            .unwrap();
        assert!(!used, "the used marker of a take put back is still there");
    }
    assert_eq!(app.metric("code_replays_total").await, 0.0);
    assert_eq!(app.requests("invalid_grant", "replay").await, 0.0);

    // A replica arrives (as after a failover, when the old master rejoins):
    // the retry gets the tokens.
    let replica = replica_caught_up(&app).await;
    let answer = app.post_form(&form).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(app.metric("code_replays_total").await, 0.0);
    let revoked: Vec<String> = {
        let redis = app.redis.as_ref().unwrap().lock().unwrap();
        let mut conn = redis.client().get_connection().unwrap();
        redis::cmd("KEYS")
            .arg("oauth:revoked-grant:*")
            .query(&mut conn)
            .unwrap()
    };
    assert!(revoked.is_empty(), "revoked: {revoked:?}");
    drop(replica);
}
