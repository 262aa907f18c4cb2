//! How should each actix-web worker reach Redis? The throughput of the
//! redemption command itself (EVALSHA of take_code.lua, with the KEYS and
//! ARGV that `RedisStore::take` sends) under five connection strategies,
//! with 2 worker threads, each on a current-thread runtime as an actix-web
//! worker is, and 32 commands in flight on each: 64 in all, as the load test
//! keeps.
//!
//! 1. one `ConnectionManager`, opened on a third thread's runtime and cloned
//!    into both workers (the old design: each command's I/O runs on the
//!    third thread);
//! 2. a `ConnectionManager` per worker, opened on its runtime (the service
//!    now: `RedisStore::for_worker`);
//! 3. a plain `MultiplexedConnection` per worker: what the manager costs;
//! 4. a deadpool-redis pool shared by both workers (max 64), one checkout
//!    per command, with its recycle check (`UNWATCH` + `PING` on every
//!    checkout, its only recycling method);
//! 5. the same pool with no check on checkout, through a manager of this
//!    bench's own: deadpool-redis has no cheaper recycling method.
//!
//! `cargo bench --bench redis_connection`. Each timed call redeems a fresh
//! code, written beforehand and untimed as the login frontend writes it, and
//! must answer `taken`: a bench that timed refusals would measure nothing.
//! After each strategy it also prints the CPU time per redemption of the
//! bench process and of redis-server (Linux `/proc`): when redis-server is
//! the bottleneck, the throughputs alone hide what a strategy costs the
//! workers, which in the service also sign tokens.
//!
//! `REDIS_RESTART_CHECK=1 cargo bench --bench redis_connection` times
//! nothing: under each strategy it kills redis-server, starts it again on
//! the same port, and prints what redemptions answer afterwards.

mod common;

use std::hint::black_box;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, LazyLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{current_thread_runtime, RedisServer};
use criterion::{criterion_group, Criterion, Throughput};
use deadpool::managed;
use futures::stream::{self, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, RedisError, RedisResult, Script, ScriptInvocation};
use token_endpoint::frontend::{prepare, random_token, Grant};
use token_endpoint::pkce::s256_challenge;
use token_endpoint::store::KeySpace;
use token_endpoint::unix_now;
use tokio::runtime::Runtime;

/// Worker threads, as on the 2-core machine the load test runs on.
const WORKERS: usize = 2;

/// Commands in flight on each worker.
const IN_FLIGHT_PER_WORKER: usize = 32;

/// Enough connections for every command in flight to have its own.
const POOL_SIZE: usize = WORKERS * IN_FLIGHT_PER_WORKER;

/// The public client of `ClientRegistry::demo`, and the redirect URI bound
/// to every code and presented again on redemption.
const CLIENT_ID: &str = "demo";
const REDIRECT_URI: &str = "https://app.example/cb";

/// The demo client's `access_token_lifetime`: the used marker's TTL.
const ACCESS_TOKEN_LIFETIME_SECS: u64 = 300;

/// Long enough that no seeded code expires before it is redeemed.
const CODE_TTL_SECS: u64 = 600;

/// Codes written per pipeline while seeding.
const SEED_BATCH: usize = 1000;

/// As the service's `ConnectionManagerConfig`, but with a generous command
/// timeout: on a shared machine a stall must slow the bench, not abort it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

static TAKE_CODE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../src/store/take_code.lua")));

/// One seeded code and what its redemption presents, computed before the
/// take as the service computes it (the S256 challenge when the verifier is
/// parsed, the grant marker before the store is called).
struct Redemption {
    code: String,
    verifier: String,
    s256_challenge: String,
    marker: String,
    tokens_expire_at: u64,
}

impl Redemption {
    /// A fresh code of the demo client, and the command that stores its
    /// record as the frontend does.
    fn issue(keys: &KeySpace) -> (Self, redis::Cmd) {
        let mut grant = Grant::new(CLIENT_ID, "alice", "openid profile");
        grant.redirect_uri = Some(REDIRECT_URI.into());
        let (issued, record) = prepare(grant);
        let mut set = redis::cmd("SET");
        set.arg(keys.code(&issued.code))
            .arg(record.to_json())
            .arg("EX")
            .arg(CODE_TTL_SECS)
            .arg("NX");
        // The grant_id is 128 random bits, base64url: 22 characters.
        let grant_id: String = random_token().chars().take(22).collect();
        let tokens_expire_at = unix_now() + ACCESS_TOKEN_LIFETIME_SECS;
        let redemption = Self {
            s256_challenge: s256_challenge(&issued.verifier),
            marker: format!("{grant_id} {tokens_expire_at}"),
            code: issued.code,
            verifier: issued.verifier,
            tokens_expire_at,
        };
        (redemption, set)
    }

    /// The EVALSHA that `RedisStore::take` sends for this code, built as it
    /// builds it.
    fn invocation(&self, keys: &KeySpace) -> ScriptInvocation<'static> {
        let marker_ttl = self.tokens_expire_at.saturating_sub(unix_now()).max(1);
        let mut invocation = TAKE_CODE.prepare_invoke();
        invocation
            .key(keys.code(&self.code))
            .key(keys.used(&self.code))
            .arg(CLIENT_ID)
            .arg("1")
            .arg(REDIRECT_URI)
            .arg(&self.s256_challenge)
            .arg(&self.verifier)
            .arg("0")
            .arg(&self.marker)
            .arg(marker_ttl);
        invocation
    }
}

/// The script's answer, `{word, payload?}`, as `RedisStore::take` reads it.
type Answer = Vec<Vec<u8>>;

fn is_taken(answer: &Answer) -> bool {
    matches!(answer.as_slice(), [word, record] if word == b"taken" && !record.is_empty())
}

/// Writes codes from the main thread, outside the timed part.
struct Seeder {
    client: redis::Client,
    keys: KeySpace,
    runtime: Runtime,
}

impl Seeder {
    fn new(url: &str) -> Self {
        Self {
            client: redis::Client::open(url).expect("a valid Redis URL"),
            keys: KeySpace::default(),
            runtime: current_thread_runtime(),
        }
    }

    /// Empty the database, then write `n` fresh codes. A connection of its
    /// own each time, so that seeding survives a restart of Redis.
    fn seed(&self, n: u64) -> Vec<Redemption> {
        self.runtime.block_on(async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection()
                .await
                .expect("the seeder connects");
            // Earlier samples' used markers would otherwise pile up and make
            // later strategies run against a bigger keyspace.
            redis::cmd("FLUSHDB")
                .query_async::<()>(&mut conn)
                .await
                .expect("FLUSHDB");
            let mut redemptions = Vec::with_capacity(n as usize);
            let mut left = n as usize;
            while left > 0 {
                let batch = left.min(SEED_BATCH);
                left -= batch;
                let mut pipe = redis::pipe();
                for _ in 0..batch {
                    let (redemption, set) = Redemption::issue(&self.keys);
                    pipe.add_command(set);
                    redemptions.push(redemption);
                }
                let written: Vec<Option<String>> =
                    pipe.query_async(&mut conn).await.expect("seed the codes");
                assert!(
                    written.iter().all(|w| w.as_deref() == Some("OK")),
                    "every fresh code is written"
                );
            }
            redemptions
        })
    }
}

/// The five ways a worker can reach Redis.
#[derive(Debug, Clone, Copy)]
enum Strategy {
    SharedManager,
    ManagerPerWorker,
    PlainPerWorker,
    Pool,
    PoolUnchecked,
}

impl Strategy {
    const ALL: [Self; 5] = [
        Self::SharedManager,
        Self::ManagerPerWorker,
        Self::PlainPerWorker,
        Self::Pool,
        Self::PoolUnchecked,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::SharedManager => "1 shared ConnectionManager (3rd thread)",
            Self::ManagerPerWorker => "2 ConnectionManager per worker",
            Self::PlainPerWorker => "3 MultiplexedConnection per worker",
            Self::Pool => "4 deadpool-redis, PING per checkout",
            Self::PoolUnchecked => "5 deadpool, no recycle check",
        }
    }

    /// The workers (and, for the shared manager, the third thread) with
    /// their connections open.
    fn build(self, url: &str) -> Rig {
        let client = redis::Client::open(url).expect("a valid Redis URL");
        let mut io_thread = None;
        let connects: Vec<Connect> = match self {
            Self::SharedManager => {
                let (thread, manager) = IoThread::spawn(client.clone());
                io_thread = Some(thread);
                (0..WORKERS)
                    .map(|_| Connect::Shared(manager.clone()))
                    .collect()
            }
            Self::ManagerPerWorker => (0..WORKERS)
                .map(|_| Connect::OwnManager(client.clone()))
                .collect(),
            Self::PlainPerWorker => (0..WORKERS)
                .map(|_| Connect::OwnPlain(client.clone()))
                .collect(),
            Self::Pool => {
                let manager = deadpool_redis::Manager::new_with_config(url, connection_config())
                    .expect("a valid Redis URL");
                let pool = deadpool_redis::Pool::builder(manager)
                    .max_size(POOL_SIZE)
                    .build()
                    .expect("the pool builds");
                (0..WORKERS).map(|_| Connect::Pool(pool.clone())).collect()
            }
            Self::PoolUnchecked => {
                let manager = deadpool_redis::Manager::new_with_config(url, connection_config())
                    .expect("a valid Redis URL");
                let pool = managed::Pool::builder(Unchecked(manager))
                    .max_size(POOL_SIZE)
                    .build()
                    .expect("the pool builds");
                (0..WORKERS)
                    .map(|_| Connect::PoolUnchecked(pool.clone()))
                    .collect()
            }
        };
        Rig {
            workers: connects.into_iter().map(Worker::spawn).collect(),
            _io_thread: io_thread,
        }
    }
}

/// The service's `ConnectionManagerConfig`, with the bench's timeouts.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// The same timeouts for the connections that have no manager.
fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT))
}

/// deadpool-redis's manager with the recycle check left out: a checked-out
/// connection is used as it is, as `RecyclingMethod::Fast` does in
/// deadpool-postgres (which at least asks the client whether it is closed;
/// a `MultiplexedConnection` cannot be asked).
struct Unchecked(deadpool_redis::Manager);

impl managed::Manager for Unchecked {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.0.create().await
    }

    async fn recycle(
        &self,
        _: &mut MultiplexedConnection,
        _: &managed::Metrics,
    ) -> managed::RecycleResult<RedisError> {
        Ok(())
    }
}

type UncheckedPool = managed::Pool<Unchecked>;

/// What a worker is handed to reach Redis; it opens its own connection, if
/// any, on its own runtime.
enum Connect {
    Shared(ConnectionManager),
    OwnManager(redis::Client),
    OwnPlain(redis::Client),
    Pool(deadpool_redis::Pool),
    PoolUnchecked(UncheckedPool),
}

impl Connect {
    async fn open(self) -> Link {
        match self {
            Self::Shared(manager) => Link::Manager(manager),
            Self::OwnManager(client) => Link::Manager(
                ConnectionManager::new_with_config(client, manager_config())
                    .await
                    .expect("the worker's manager connects"),
            ),
            Self::OwnPlain(client) => Link::Plain(
                client
                    .get_multiplexed_async_connection_with_config(&connection_config())
                    .await
                    .expect("the worker's connection connects"),
            ),
            Self::Pool(pool) => Link::Pool(pool),
            Self::PoolUnchecked(pool) => Link::PoolUnchecked(pool),
        }
    }
}

/// How a worker reaches Redis, once set up.
enum Link {
    Manager(ConnectionManager),
    Plain(MultiplexedConnection),
    Pool(deadpool_redis::Pool),
    PoolUnchecked(UncheckedPool),
}

impl Link {
    /// One redemption: the EVALSHA, and nothing else.
    async fn take(&self, keys: &KeySpace, redemption: &Redemption) -> RedisResult<Answer> {
        let invocation = redemption.invocation(keys);
        match self {
            // A clone per command, as `RedisStore::conn` hands out.
            Self::Manager(manager) => invocation.invoke_async(&mut manager.clone()).await,
            Self::Plain(conn) => invocation.invoke_async(&mut conn.clone()).await,
            Self::Pool(pool) => {
                let mut conn = pool.get().await.map_err(pool_error)?;
                invocation.invoke_async(&mut conn).await
            }
            Self::PoolUnchecked(pool) => {
                let mut conn = pool.get().await.map_err(pool_error)?;
                invocation.invoke_async(&mut *conn).await
            }
        }
    }
}

fn pool_error(e: managed::PoolError<RedisError>) -> RedisError {
    match e {
        managed::PoolError::Backend(e) => e,
        other => std::io::Error::other(other.to_string()).into(),
    }
}

enum Job {
    /// Redeem every code, `IN_FLIGHT_PER_WORKER` at a time, starting when
    /// every worker is ready.
    Redeem(Vec<Redemption>, Arc<Barrier>),
    /// Redeem one code and say what came back.
    Probe(Redemption),
}

enum Reply {
    Ready,
    Redeemed { started: Instant, finished: Instant },
    Probed(Result<(), String>),
}

/// A worker thread on a current-thread runtime, with its link to Redis.
struct Worker {
    jobs: Option<tokio::sync::mpsc::UnboundedSender<Job>>,
    replies: mpsc::Receiver<Reply>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Start the thread and wait until its link is open.
    fn spawn(connect: Connect) -> Self {
        let (jobs, mut job_rx) = tokio::sync::mpsc::unbounded_channel();
        let (reply_tx, replies) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = current_thread_runtime();
            runtime.block_on(async move {
                let keys = KeySpace::default();
                let link = connect.open().await;
                let _ = reply_tx.send(Reply::Ready);
                while let Some(job) = job_rx.recv().await {
                    let reply = match job {
                        Job::Redeem(batch, start) => {
                            // Blocks this thread for as long as the other
                            // worker takes to pick up its batch: microseconds.
                            start.wait();
                            let started = Instant::now();
                            stream::iter(&batch)
                                .map(|redemption| link.take(&keys, redemption))
                                .buffer_unordered(IN_FLIGHT_PER_WORKER)
                                .for_each(|answer| {
                                    let answer = answer.expect("Redis answers the take");
                                    assert!(is_taken(&answer), "every fresh code is taken");
                                    black_box(answer);
                                    async {}
                                })
                                .await;
                            let finished = Instant::now();
                            drop(batch);
                            Reply::Redeemed { started, finished }
                        }
                        Job::Probe(redemption) => {
                            let answer = tokio::time::timeout(
                                Duration::from_secs(1),
                                link.take(&keys, &redemption),
                            )
                            .await;
                            Reply::Probed(match answer {
                                Ok(Ok(answer)) if is_taken(&answer) => Ok(()),
                                Ok(Ok(answer)) => Err(format!(
                                    "answered {:?}",
                                    answer.first().map(|w| String::from_utf8_lossy(w))
                                )),
                                Ok(Err(e)) => Err(e.to_string()),
                                Err(_) => Err("no answer within 1 s".into()),
                            })
                        }
                    };
                    if reply_tx.send(reply).is_err() {
                        break;
                    }
                }
            })
        });
        let worker = Self {
            jobs: Some(jobs),
            replies,
            thread: Some(thread),
        };
        match worker.reply() {
            Reply::Ready => worker,
            _ => unreachable!("a worker says Ready first"),
        }
    }

    fn send(&self, job: Job) {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .expect("the worker is running");
    }

    fn reply(&self) -> Reply {
        self.replies
            .recv()
            .expect("the worker is running (if not, it panicked: see above)")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channel ends the worker's loop.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The third thread of the shared design: a runtime that keeps running the
/// shared manager's I/O until dropped.
struct IoThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl IoThread {
    fn spawn(client: redis::Client) -> (Self, ConnectionManager) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (manager_tx, manager_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = current_thread_runtime();
            runtime.block_on(async move {
                let manager = ConnectionManager::new_with_config(client, manager_config())
                    .await
                    .expect("the shared manager connects");
                let _ = manager_tx.send(manager);
                let _ = stopped.await;
            })
        });
        let manager = manager_rx
            .recv()
            .expect("the I/O thread opens the shared manager");
        let io = Self {
            stop: Some(stop),
            thread: Some(thread),
        };
        (io, manager)
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The workers of one strategy.
struct Rig {
    workers: Vec<Worker>,
    // Dropped after the workers, whose clones of its manager go first.
    _io_thread: Option<IoThread>,
}

impl Rig {
    /// Time redeeming `batch`, split evenly across the workers: from the
    /// first worker's start to the last one's finish.
    fn redeem(&self, mut batch: Vec<Redemption>) -> Duration {
        let start = Arc::new(Barrier::new(self.workers.len()));
        let share = batch.len().div_ceil(self.workers.len());
        for worker in &self.workers {
            let rest = batch.split_off(share.min(batch.len()));
            worker.send(Job::Redeem(batch, start.clone()));
            batch = rest;
        }
        let (mut first_start, mut last_finish) = (None::<Instant>, None::<Instant>);
        for worker in &self.workers {
            match worker.reply() {
                Reply::Redeemed { started, finished } => {
                    first_start = Some(first_start.map_or(started, |s| s.min(started)));
                    last_finish = Some(last_finish.map_or(finished, |f| f.max(finished)));
                }
                _ => unreachable!("a Redeem job is answered by Redeemed"),
            }
        }
        match (first_start, last_finish) {
            (Some(start), Some(finish)) => finish - start,
            _ => unreachable!("a rig has workers"),
        }
    }

    /// Redeem one code on the first worker.
    fn probe(&self, redemption: Redemption) -> Result<(), String> {
        let worker = &self.workers[0];
        worker.send(Job::Probe(redemption));
        match worker.reply() {
            Reply::Probed(outcome) => outcome,
            _ => unreachable!("a Probe job is answered by Probed"),
        }
    }
}

/// CPU time spent, while redemptions were timed, by this process (the
/// workers, and the shared design's third thread) and by redis-server:
/// where the time goes, which the throughput alone does not say when Redis
/// is the bottleneck.
struct CpuMeter {
    redis_pid: u32,
    redemptions: u64,
    bench_cpu: Duration,
    redis_cpu: Duration,
    wall: Duration,
}

impl CpuMeter {
    fn new(redis_pid: u32) -> Self {
        Self {
            redis_pid,
            redemptions: 0,
            bench_cpu: Duration::ZERO,
            redis_cpu: Duration::ZERO,
            wall: Duration::ZERO,
        }
    }

    fn measure(&mut self, redemptions: u64, timed: impl FnOnce() -> Duration) -> Duration {
        let (bench_before, redis_before) = (cpu_time("self"), cpu_time(self.redis_pid));
        let elapsed = timed();
        self.bench_cpu += cpu_time("self").saturating_sub(bench_before);
        self.redis_cpu += cpu_time(self.redis_pid).saturating_sub(redis_before);
        self.redemptions += redemptions;
        self.wall += elapsed;
        elapsed
    }

    fn report(&self, name: &str) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.redemptions.max(1) as f64;
        let busy = |d: Duration| 100.0 * d.as_secs_f64() / self.wall.as_secs_f64().max(1e-9);
        println!(
            "{name}: CPU per redemption: bench process {:.1} µs ({:.0}% of a core), \
             redis-server {:.1} µs ({:.0}% of a core), over {} redemptions\n",
            per(self.bench_cpu),
            busy(self.bench_cpu),
            per(self.redis_cpu),
            busy(self.redis_cpu),
            self.redemptions
        );
    }
}

/// CPU time of every thread of a process so far, from Linux's
/// `/proc/<pid>/task/*/schedstat` (nanoseconds); zero where it cannot be
/// read.
fn cpu_time(pid: impl std::fmt::Display) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn connection_strategies(c: &mut Criterion) {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let seeder = Seeder::new(&server.url());
    let mut group = c.benchmark_group(format!(
        "take via Redis, {WORKERS} workers x {IN_FLIGHT_PER_WORKER} in flight"
    ));
    group.throughput(Throughput::Elements(1));
    for strategy in Strategy::ALL {
        // One strategy's threads at a time: the others would compete for
        // the two cores.
        let rig = strategy.build(&server.url());
        let mut meter = CpuMeter::new(server.pid());
        group.bench_function(strategy.name(), |b| {
            b.iter_custom(|iters| {
                let batch = seeder.seed(iters);
                meter.measure(iters, || rig.redeem(batch))
            })
        });
        meter.report(strategy.name());
    }
    group.finish();
}

/// Under each strategy: fill the connections with a batch of redemptions,
/// kill redis-server and start it again on the same port, then redeem one
/// code every 100 ms for 2 s and print what each attempt got.
fn restart_check() {
    for strategy in Strategy::ALL {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let seeder = Seeder::new(&server.url());
        let rig = strategy.build(&server.url());
        rig.redeem(seeder.seed(POOL_SIZE as u64 * 4));
        server.restart();
        let restarted = Instant::now();
        println!("{}: redis-server killed and restarted", strategy.name());
        let mut failures = 0;
        for attempt in 0..20 {
            let sent = restarted.elapsed();
            let outcome = rig.probe(seeder.seed(1).remove(0));
            if outcome.is_err() {
                failures += 1;
            }
            // Every failure, and the first few attempts.
            if outcome.is_err() || attempt < 3 {
                println!(
                    "  attempt {attempt:>2} at {:>4} ms: {}",
                    sent.as_millis(),
                    outcome.map_or_else(|e| format!("error: {e}"), |()| "taken".into())
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("  {failures} of 20 attempts failed\n");
    }
}

criterion_group!(benches, connection_strategies);

fn main() {
    if std::env::var_os("REDIS_RESTART_CHECK").is_some() {
        restart_check();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
