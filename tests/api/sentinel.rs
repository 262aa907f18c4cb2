//! Redis Sentinel: a master, a replica and three sentinels. The service asks
//! the sentinels for the master, and asks again when the master moves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use token_endpoint::contract::frontend;

use crate::helpers::*;

/// Redemptions work through the sentinels; after a failover the service
/// finds the new master by itself (a few requests may get a 503 meanwhile,
/// never a 500), and codes written to the new master redeem.
#[tokio::test]
async fn redemptions_follow_a_sentinel_failover() {
    let group = RedisSentinelGroup::start();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), group.tweak()).await;
    let issued = app.issue(grant("public-app")).await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // The start-up connection and the worker's that served the request.
    assert_eq!(app.metric("redis_connections ").await, 2.0);
    let opened = app.metric("redis_connections_opened_total ").await;
    let old_master = group.master_port();
    assert_eq!(old_master, group.master.port);
    group.failover();
    let deadline = Instant::now() + Duration::from_secs(20);
    while group.master_port() == old_master {
        assert!(Instant::now() < deadline, "the sentinels did not fail over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(group.master_port(), group.replica.port);
    // The sentinels name the new master before the old one is demoted; wait
    // for the demotion, so the writes below really meet a moved master.
    while !group.master.is_replica() {
        assert!(Instant::now() < deadline, "the old master was not demoted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Until each worker has noticed, its writes fail fast (503); then they
    // work. Both workers must get there: wait for 10 successes in a row.
    let started = Instant::now();
    let (mut unavailable, mut in_a_row) = (0, 0);
    while in_a_row < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "redemptions did not recover after the failover ({unavailable} answered 503)"
        );
        let store = &app.state.redeemer.store();
        let Ok(issued) =
            frontend::issue_code(store, grant("public-app"), Duration::from_secs(60)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
        match answer.status {
            200 => in_a_row += 1,
            503 => {
                unavailable += 1;
                in_a_row = 0;
            }
            other => panic!("{other}: {answer:?}"),
        }
    }
    assert!(unavailable <= 8, "{unavailable} requests answered 503");
    // Each worker let go of its connection to the old master and opened
    // one to the new; none is held twice.
    assert!(app.metric("redis_connections_opened_total ").await > opened);
    let held = app.metric("redis_connections ").await;
    assert!((1.0..=3.0).contains(&held), "{held} connections held");
}

/// A master name no sentinel knows stops start-up naming
/// TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER, not the URL of the sentinels,
/// which answered.
#[tokio::test]
async fn an_unknown_master_name_is_blamed_on_its_setting() {
    let group = RedisSentinelGroup::start();
    let files = AppFiles::new();
    let mut settings = settings(&files, None);
    group.tweak()(&mut settings);
    if let token_endpoint::config::StoreSettings::Redis { topology, .. } = &mut settings.store {
        *topology = token_endpoint::store::RedisTopology::Sentinel {
            master: "no-such-master".into(),
        };
    }
    let err = match token_endpoint::service::build(&settings).await {
        Ok(_) => panic!("an unknown master name was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER", "{err}");
}
