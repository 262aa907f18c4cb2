//! The harness is the workspace's test-support crate (`tests/support`),
//! shared with the load generator's tests and the benches.

pub use token_endpoint_test_support::*;

/// One load test at a time in this binary. The load, fault and balancer
/// tests each saturate both cores; run side by side they starve each other,
/// and the rates and ratios they measure (one dead Cluster master must leave
/// the healthy ones at 0.8 of their rate or more) would measure the
/// neighbour instead. Held for the load phase of each.
#[cfg(feature = "slow-tests")]
pub static ONE_LOAD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `TOKEN_ENDPOINT_REDIS_REPLICA_ACKS` on settings that use Redis.
pub fn set_replica_acks(settings: &mut token_endpoint::config::Settings, acks: u32) {
    if let token_endpoint::config::StoreSettings::Redis { replica_acks, .. } = &mut settings.store {
        *replica_acks = acks;
    }
}

/// The redemption contract, over whatever `app` stores in: a wrong
/// verifier is refused and consumes nothing, the right one redeems with
/// verifiable tokens, a replay is refused.
pub async fn redemption_contract(app: &TestApp) {
    let issued = app.issue(grant("public-app")).await;
    let mut wrong = TestApp::form(&issued, "public-app");
    for (name, value) in wrong.iter_mut() {
        if *name == "code_verifier" {
            *value = "x".repeat(43);
        }
    }
    let refused = app.post_form(&wrong).await;
    assert_eq!((refused.status, refused.error()), (400, "invalid_grant"));
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    verify_jwt(
        answer.body["access_token"].as_str().expect("access_token"),
        &app.jwks().await,
        "https://api.test",
    );
    let replay = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!((replay.status, replay.error()), (400, "invalid_grant"));
    // The replay's revocation was written: a command the store's user may
    // not run would be a store error here, and the grant would stay valid.
    assert_eq!(app.metric("code_store_errors_total").await, 0.0);
}

/// The ACL rules of docs/production-redis.md, for the key prefix `oauth:`:
/// the library's command table's ([`acl_rules_are_the_command_tables`]).
pub const ACL_RULES: &[&str] = &[
    "resetkeys",
    "~oauth:*",
    "resetchannels",
    "-@all",
    "+ping",
    "+get",
    "+getdel",
    "+pttl",
    "+set",
    "+del",
    "+multi",
    "+exec",
    "+wait",
];

/// A command the service starts sending is added to the library's table
/// (`token_endpoint::store::COMMANDS`); this says when these rules lag.
#[test]
fn acl_rules_are_the_command_tables() {
    assert_eq!(ACL_RULES, token_endpoint::store::acl_rules("oauth:"));
}

/// Start a replica of `app`'s Redis and wait (20 s at most) until the
/// master counts it, so that a `WAIT 1` can succeed: what a failover's
/// rejoining master, or a late replica, does for a take that fell short.
pub async fn replica_caught_up(app: &TestApp) -> RedisServer {
    let redis = app.redis.as_ref().expect("an app on Redis");
    let port = redis.lock().unwrap().port;
    let replica = RedisServer::start_with(vec![
        "--replicaof".into(),
        "127.0.0.1".into(),
        port.to_string(),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !redis.lock().unwrap().replicates_writes() {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica did not sync"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    replica
}
