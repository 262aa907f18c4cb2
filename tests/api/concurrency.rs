//! Exactly once: many concurrent redemptions of each code, across replicas.

use std::sync::Arc;

use futures::StreamExt;

use crate::helpers::*;

const CODES: usize = 1000;

const ATTEMPTS_PER_CODE: usize = 8;

/// Redeem every code `ATTEMPTS_PER_CODE` times at once, spread over `apps`;
/// return (successes, invalid_grant answers, anything else).
async fn hammer(
    apps: &[TestApp],
    codes: &[token_endpoint::contract::frontend::IssuedCode],
) -> (usize, usize, Vec<String>) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let attempts = codes
        .iter()
        .flat_map(|issued| (0..ATTEMPTS_PER_CODE).map(move |i| (issued, i)));
    let results: Vec<(u16, String)> = futures::stream::iter(attempts)
        .map(|(issued, i)| {
            let app = &apps[i % apps.len()];
            let http = http.clone();
            async move {
                let response = http
                    .post(app.token_url())
                    .form(&TestApp::form(issued, "public-app"))
                    .send()
                    .await
                    .expect("answer");
                let status = response.status().as_u16();
                let text = response.text().await.expect("body");
                let body: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
                let what = body["error"].as_str().unwrap_or("").to_owned();
                (status, what)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let successes = results.iter().filter(|(s, _)| *s == 200).count();
    let invalid_grant = results
        .iter()
        .filter(|(s, e)| *s == 400 && e == "invalid_grant")
        .count();
    let other = results
        .iter()
        .filter(|(s, e)| !(*s == 200 || (*s == 400 && e == "invalid_grant")))
        .map(|(s, e)| format!("{s} {e}"))
        .collect();
    (successes, invalid_grant, other)
}

/// Issue `CODES` codes through `apps[0]`, redeem each `ATTEMPTS_PER_CODE`
/// times at once spread over `apps`, and check: exactly one success per
/// code, every other answer `invalid_grant`, nothing else.
async fn assert_each_code_redeems_once(apps: &[TestApp]) {
    let mut codes = Vec::with_capacity(CODES);
    for _ in 0..CODES {
        codes.push(apps[0].issue(grant("public-app")).await);
    }
    let (successes, invalid_grant, other) = hammer(apps, &codes).await;
    assert_eq!(other, Vec::<String>::new());
    assert_eq!(successes, CODES);
    assert_eq!(invalid_grant, CODES * (ATTEMPTS_PER_CODE - 1));
}

/// Three app instances on the store `tweak()` configures, sharing one set
/// of files.
async fn three_apps<T>(tweak: impl Fn() -> T) -> Vec<TestApp>
where
    T: FnOnce(&mut token_endpoint::config::Settings),
{
    let files = Arc::new(AppFiles::new());
    let mut apps = vec![];
    for _ in 0..3 {
        apps.push(spawn_app_on(None, Arc::clone(&files), tweak()).await);
    }
    apps
}

/// 1,000 codes, each redeemed by 8 concurrent requests spread over 3 app
/// instances sharing one Redis: exactly 1,000 successes, every other answer
/// `invalid_grant`, and 7,000 replays counted across the instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_code_redeems_exactly_once_across_three_replicas() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let first = spawn_app(Backend::Redis).await;
    let mut apps = vec![];
    for _ in 0..2 {
        apps.push(spawn_app_on(first.redis.clone(), Arc::clone(&first.files), |_| {}).await);
    }
    apps.push(first);
    assert_each_code_redeems_once(&apps).await;
    let mut replays = 0.0;
    for app in &apps {
        replays += app.metric("code_replays_total").await;
    }
    assert_eq!(replays, (CODES * (ATTEMPTS_PER_CODE - 1)) as f64);
}

/// The same property on the embedded store (one process by design).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_code_redeems_exactly_once_on_the_embedded_store() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    assert_each_code_redeems_once(&[spawn_app(Backend::Embedded).await]).await;
}

/// The same property on a three-master Redis Cluster, three app instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_code_redeems_exactly_once_on_a_cluster() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let cluster = RedisCluster::start();
    assert_each_code_redeems_once(&three_apps(|| cluster.tweak()).await).await;
}

/// The same property through Redis Sentinel, three app instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_code_redeems_exactly_once_through_sentinel() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let group = RedisSentinelGroup::start();
    assert_each_code_redeems_once(&three_apps(|| group.tweak()).await).await;
}
