//! Redis Cluster: three real masters. The take is still one script on one
//! node (the code's keys share a hash tag), so the contract holds unchanged.

use std::sync::Arc;

use crate::helpers::*;

/// On a cluster: a redemption succeeds with verifiable tokens; a wrong
/// verifier is refused without consuming the code; a replay is refused and
/// counted.
#[tokio::test]
async fn redemption_replay_and_refusal_on_a_cluster() {
    let cluster = RedisCluster::start();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), cluster.tweak()).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    redemption_contract(&app).await;
    assert_eq!(app.metric("code_replays_total").await, 1.0);
    assert_eq!(app.requests("success", "issued").await, 1.0);

    // The codes really spread over the masters (routing by slot works).
    for _ in 0..30 {
        let issued = app.issue(grant("public-app")).await;
        let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let holding = cluster.nodes_holding_keys();
    assert!(holding >= 2, "used markers on only {holding} of 3 masters");
}

/// DPoP on a cluster: the proof's replay key and the code live in different
/// slots, so the service sends the claim and the read to their masters at
/// once. A bound redemption succeeds; the same proof with another code is
/// refused as a replay and that code stays; replay keys land on more than
/// one master.
#[tokio::test]
async fn dpop_proofs_are_accepted_once_on_a_cluster() {
    let cluster = RedisCluster::start();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), cluster.tweak()).await;
    let key = DpopKey::es256();
    let htu = format!("{ISSUER}/oauth/token");
    let proof = key.proof(&htu);
    let first = app.issue(grant("public-app")).await;
    let answer = app
        .post_form_dpop(&TestApp::form(&first, "public-app"), &[&proof])
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["token_type"], "DPoP");
    let second = app.issue(grant("public-app")).await;
    let form = TestApp::form(&second, "public-app");
    let replayed = app.post_form_dpop(&form, &[&proof]).await;
    replayed.assert_error(400, "invalid_dpop_proof");
    assert!(replayed.description().contains("already used"));
    for _ in 0..20 {
        let issued = app.issue(grant("public-app")).await;
        let answer = app
            .post_form_dpop(&TestApp::form(&issued, "public-app"), &[&key.proof(&htu)])
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let masters_with_proofs = cluster
        .nodes
        .iter()
        .take(3)
        .filter(|node| {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("oauth:dpop:*")
                .query(&mut node.client().get_connection().unwrap())
                .unwrap();
            !keys.is_empty()
        })
        .count();
    assert!(
        masters_with_proofs >= 2,
        "replay keys on {masters_with_proofs} master(s)"
    );
    let answer = app.post_form_dpop(&form, &[&key.proof(&htu)]).await;
    assert_eq!(answer.status, 200, "the refused code stays: {answer:?}");
}

/// `issue-code --redis-mode cluster` writes each code to the master of its
/// slot, as the login frontend would, and every code redeems once.
#[tokio::test]
async fn issue_code_writes_to_a_cluster() {
    let cluster = RedisCluster::start();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), cluster.tweak()).await;
    let urls = cluster.urls();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_token-endpoint"))
            .args([
                "issue-code",
                "--redis-url",
                &urls,
                "--redis-mode",
                "cluster",
            ])
            .args([
                "--client-id",
                "public-app",
                "--redirect-uri",
                "https://client.test/cb",
            ])
            .args(["--count", "30"])
            .env_remove("TOKEN_ENDPOINT_REDIS_URL")
            .output()
            .expect("run issue-code")
    })
    .await
    .expect("issue-code task");
    assert!(
        output.status.success(),
        "issue-code failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout).expect("UTF-8");
    let mut redeemed = 0;
    for line in lines.lines() {
        let seed: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let form = [
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "public-app".to_owned()),
            ("redirect_uri", "https://client.test/cb".to_owned()),
            ("code", seed["code"].as_str().expect("code").to_owned()),
            (
                "code_verifier",
                seed["code_verifier"].as_str().expect("verifier").to_owned(),
            ),
        ];
        let answer = app.post_form(&form).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        redeemed += 1;
    }
    assert_eq!(redeemed, 30);
    let holding = cluster.nodes_holding_keys();
    assert!(holding >= 2, "codes on only {holding} of 3 masters");
}

/// A slot given to another master after the service learned the map: the
/// old owner answers `MOVED`, and the service follows it (writing the code,
/// then redeeming it) instead of failing the request.
#[tokio::test]
async fn a_moved_slot_is_followed() {
    let cluster = RedisCluster::start();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), cluster.tweak()).await;
    // Every worker learns the map before the slot moves.
    for _ in 0..8 {
        let issued = app.issue(grant("public-app")).await;
        let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let (issued, record) =
        token_endpoint::contract::frontend::prepare(grant("public-app")).unwrap();
    let slot = token_endpoint::store::cluster_slot(format!("{{{}}}", issued.code).as_bytes());
    let owner = (0..3)
        .find(|&n| {
            cluster
                .slots_of(cluster.nodes[n].port)
                .iter()
                .any(|(start, end)| (*start..=*end).contains(&slot))
        })
        .expect("an owner");
    let heir = (owner + 1) % 3;
    cluster.move_empty_slot(slot, owner, heir);
    app.insert_raw(
        &issued.code,
        &record.to_json(),
        std::time::Duration::from_secs(60),
    )
    .await;
    let answer = app.post_form(&TestApp::form(&issued, "public-app")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let mut conn = cluster.nodes[heir].client().get_connection().expect("node");
    let used: bool = redis::cmd("EXISTS")
        .arg(format!("oauth:used:{{{}}}", issued.code))
        .query(&mut conn)
        .expect("EXISTS");
    assert!(used, "the take ran on the slot's new master");
}

/// `REPLICA_ACKS=1` on a Cluster with no replicas: the `WAIT` goes to the
/// node that ran the take and falls short (503), and the take is put back
/// on that node (the record and its used marker share a slot), so the
/// owner's retry is another 503, never a replay or a final 400.
#[tokio::test]
async fn a_retry_after_a_replica_shortfall_is_not_a_replay_on_a_cluster() {
    let cluster = RedisCluster::start();
    let tweak = cluster.tweak();
    let app = spawn_app_on(None, Arc::new(AppFiles::new()), |settings| {
        tweak(settings);
        set_replica_acks(settings, 1);
    })
    .await;
    for _ in 0..6 {
        let issued = app.issue(grant("public-app")).await;
        let form = TestApp::form(&issued, "public-app");
        for _ in 0..2 {
            let answer = app.post_form(&form).await;
            assert_eq!(answer.status, 503, "{answer:?}");
        }
    }
    assert_eq!(app.metric("code_replays_total").await, 0.0);
    assert_eq!(app.requests("invalid_grant", "replay").await, 0.0);
    assert_eq!(
        app.requests("invalid_grant", "consumed_without_tokens")
            .await,
        0.0
    );
}
