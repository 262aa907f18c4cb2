//! The whole redemption in process: `Redeemer::redeem` from a validated
//! request to the `TokenResponse`, plus the `serde_json::to_vec` of it that
//! the HTTP layer writes (`http::response::token_response`). No HTTP.
//!
//! `cargo bench --bench redemption`: on the embedded store, then on a private
//! `redis-server` (started by the bench, on a free port, killed on exit)
//! one redemption at a time and with many in flight. Figures: BENCHMARKS.md.
//!
//! Every iteration redeems a fresh code, written beforehand outside the
//! timed part exactly as the login frontend writes it (`frontend::prepare`
//! and `CodeStore::insert`), and every redemption must succeed: a bench that
//! timed refusals would measure nothing useful.

// Tests and benches may panic: that is how they fail (the workspace's lints
// forbid it in production code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::stream::{self, StreamExt};
use token_endpoint::clients::ClientRegistry;
use token_endpoint::contract::frontend::{prepare, Grant};
use token_endpoint::dpop::jwk::Alg;
use token_endpoint::dpop::{DpopPolicy, NonceMode};
use token_endpoint::grant::abuse::{AuthFailureLimiter, AuthLimits};
use token_endpoint::grant::request::{TokenForm, TokenRequest};
use token_endpoint::grant::Redeemer;
use token_endpoint::metrics::Metrics;
use token_endpoint::store::{
    CodeStore, KeySpace, MemoryStore, RedisSettings, RedisStore, RedisTopology,
};
use token_endpoint::tokens::keys::{alg_name, SigningKey};
use token_endpoint::tokens::{ring_provider, TokenMinter};
use token_endpoint_test_support::{current_thread_runtime, RedisServer};
use tokio::runtime::Runtime;

/// The redirect URI bound to every code, and presented again on redemption.
const REDIRECT_URI: &str = "https://app.example/cb";

/// Redemptions in flight at once in the concurrent Redis bench.
const IN_FLIGHT: usize = 64;

/// Codes written at once while seeding: concurrent commands on the store's
/// one multiplexed connection are pipelined, so seeding stays short.
const SEED_IN_FLIGHT: usize = 256;

/// Long enough that no seeded code expires before it is redeemed.
const CODE_TTL: Duration = Duration::from_secs(600);

/// A redeemer assembled as the embedded default does (one ephemeral ES256
/// key, the demo clients), and the runtime it runs on.
///
/// The runtime is single-threaded, like each actix-web worker: the figures
/// are per worker, with `redis-server` free to use the other core.
struct Bench {
    redeemer: Redeemer,
    // Declared after `redeemer`, so it is dropped after the store's
    // connection, whose driver task runs on it.
    runtime: Runtime,
}

impl Bench {
    fn new(store: CodeStore, runtime: Runtime) -> Self {
        ring_provider::install();
        let key = SigningKey::ephemeral();
        let metrics = Metrics::new(store.kind(), key.kid(), alg_name(key.alg()));
        let minter = TokenMinter::new("https://id.example".into(), vec![key], vec![])
            .expect("one signing key makes a minter");
        Self {
            redeemer: Redeemer::new(
                store,
                ClientRegistry::demo(),
                minter,
                metrics,
                Arc::new(AuthFailureLimiter::new(AuthLimits::default())),
                DpopPolicy::new(
                    vec![Alg::Es256, Alg::EdDsa],
                    60,
                    5,
                    NonceMode::Off,
                    "https://id.example/oauth/token",
                )
                .expect("a valid token endpoint URL"),
            ),
            runtime,
        }
    }

    /// Write `n` fresh codes as the frontend does, and return the validated
    /// requests that redeem them.
    fn seed(&self, n: u64) -> Vec<TokenRequest> {
        self.runtime.block_on(
            stream::iter(0..n)
                .map(|_| self.issue())
                .buffer_unordered(SEED_IN_FLIGHT)
                .collect(),
        )
    }

    /// One code of the public `demo` client for an `openid profile` grant,
    /// so each redemption mints both tokens (two ES256 signatures).
    async fn issue(&self) -> TokenRequest {
        let mut grant = Grant::new("demo", "alice", "openid profile");
        grant.redirect_uri = Some(REDIRECT_URI.into());
        let (issued, record) = prepare(grant).expect("the system RNG works");
        self.redeemer
            .store()
            .insert(&issued.code, &record, CODE_TTL)
            .await
            .expect("the store accepts a fresh code");
        let form = TokenForm::from_pairs([
            ("grant_type", "authorization_code"),
            ("code", issued.code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", "demo"),
            ("code_verifier", issued.verifier.as_str()),
        ]);
        TokenRequest::from_form(form, None).expect("the request is valid")
    }

    /// Redeem one request and serialise the response as the HTTP layer does;
    /// anything but issued tokens stops the bench.
    async fn redeem(&self, request: TokenRequest) -> Vec<u8> {
        let response = self
            .redeemer
            .redeem(request, None)
            .await
            .expect("a fresh code with its verifier redeems");
        serde_json::to_vec(&response).expect("a token response serialises")
    }

    /// Time redeeming `requests` one after another.
    fn redeem_one_by_one(&self, requests: Vec<TokenRequest>) -> Duration {
        self.runtime.block_on(async {
            let started = Instant::now();
            for request in requests {
                black_box(self.redeem(request).await);
            }
            started.elapsed()
        })
    }

    /// Time redeeming `requests` with up to `in_flight` of them under way at once.
    fn redeem_concurrently(&self, requests: Vec<TokenRequest>, in_flight: usize) -> Duration {
        self.runtime.block_on(async {
            let started = Instant::now();
            stream::iter(requests)
                .map(|request| self.redeem(request))
                .buffer_unordered(in_flight)
                .for_each(|body| {
                    black_box(body);
                    async {}
                })
                .await;
            started.elapsed()
        })
    }
}

/// A redeemer on this server, through `RedisStore::connect` as the
/// service connects.
fn redis_bench(server: &RedisServer) -> Bench {
    let runtime = current_thread_runtime();
    let settings = RedisSettings {
        url: server.url().into(),
        topology: RedisTopology::Standalone,
        keys: KeySpace::default(),
        connect_timeout: Duration::from_secs(1),
        // Generous, unlike the service's 250 ms: on a shared machine a
        // stall must slow the bench down, not abort it.
        command_timeout: Duration::from_secs(5),
        replica_acks: 0,
        password: None,
        tls: Default::default(),
    };
    let store = runtime
        .block_on(RedisStore::connect(&settings))
        .expect("connect to the bench's redis-server");
    Bench::new(CodeStore::Redis(Box::new(store)), runtime)
}

/// The embedded store, one redemption at a time: the CPU cost of a
/// redemption with no network (client lookup, the take under a shard lock
/// with the record's JSON and PKCE S256, two ES256 signatures, the response
/// JSON). The floor under any store.
fn embedded(c: &mut Criterion) {
    let bench = Bench::new(
        CodeStore::Memory(MemoryStore::new()),
        current_thread_runtime(),
    );
    let mut group = c.benchmark_group("redeem");
    group.throughput(Throughput::Elements(1));
    group.bench_function("embedded store", |b| {
        b.iter_custom(|iters| bench.redeem_one_by_one(bench.seed(iters)))
    });
    group.finish();
}

/// Redis, one redemption at a time: the embedded figure plus one round trip
/// to a local Redis running the take script. Its latency, not a throughput
/// limit: the worker waits idle during the round trip.
fn redis_one_at_a_time(c: &mut Criterion) {
    let Some(server) = RedisServer::start_if_installed() else {
        return;
    };
    let bench = redis_bench(&server);
    let mut group = c.benchmark_group("redeem");
    group.throughput(Throughput::Elements(1));
    group.bench_function("Redis, one at a time", |b| {
        b.iter_custom(|iters| bench.redeem_one_by_one(bench.seed(iters)))
    });
    group.finish();
}

/// Redis with `IN_FLIGHT` redemptions under way at once on one worker: the
/// round trips overlap (pipelined on the one connection), so the time per
/// redemption is the throughput of a worker, bounded by its CPU.
fn redis_concurrent(c: &mut Criterion) {
    let Some(server) = RedisServer::start_if_installed() else {
        return;
    };
    let bench = redis_bench(&server);
    let mut group = c.benchmark_group("redeem");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("Redis, {IN_FLIGHT} in flight"), |b| {
        b.iter_custom(|iters| bench.redeem_concurrently(bench.seed(iters), IN_FLIGHT))
    });
    group.finish();
}

criterion_group!(benches, embedded, redis_one_at_a_time, redis_concurrent);
criterion_main!(benches);
