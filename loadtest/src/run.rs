//! Sending the plan over C keep-alive connections, closed or open loop, and
//! recording what came back.
//!
//! Closed loop: each connection sends its next request as soon as the last
//! one is answered; latency is from send to answer.
//!
//! Open loop: request `i` is due at `start + i / rate`, whatever the server
//! is doing. A connection takes the earliest request not yet sent; if it
//! is already late (every connection was busy), its latency counts from the
//! time it was due, so queueing behind a slow server is measured rather than
//! hidden (no coordinated omission). If it is early, the connection waits
//! for it and latency counts from the actual send, so the timer's own
//! millisecond granularity is not charged to the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::http1::Connection;
use crate::plan::{Kind, Plan};
use crate::procstat::{self, Watched};

#[derive(Debug, Clone, Copy)]
pub enum Mode {
    Closed,
    Open { rate: f64 },
}

pub struct Options {
    pub addr: SocketAddr,
    /// `https://` targets: how to speak TLS.
    pub tls: Option<crate::http1::Tls>,
    pub connections: usize,
    pub mode: Mode,
    pub progress: bool,
    /// Processes whose CPU time and memory the summary reports.
    pub watch: Vec<Watched>,
    /// Requests carry DPoP proofs: tokens count only if bound
    /// (`token_type` `DPoP`); a bearer token is a malformed success.
    pub dpop: bool,
}

/// What one connection saw; merged at the end.
pub struct Tally {
    /// Latency in nanoseconds, per [`Kind`].
    pub latency: [Histogram<u64>; 4],
    /// `(kind, status)` -> count; status 0 is a transport error.
    pub statuses: BTreeMap<(Kind, u16), u64>,
    /// 200 answers whose body had no `access_token` (or, with DPoP, whose
    /// `token_type` was not `DPoP`).
    pub malformed_success: u64,
}

impl Tally {
    fn new() -> Self {
        // 1 µs to 60 s at 3 significant digits: the bounds are constants.
        let histogram = || {
            #[allow(clippy::expect_used)]
            Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("valid histogram bounds")
        };
        Self {
            latency: [histogram(), histogram(), histogram(), histogram()],
            statuses: BTreeMap::new(),
            malformed_success: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.latency.iter_mut().zip(other.latency.iter()) {
            // Same bounds on both sides: adding cannot fail.
            mine.add(theirs).ok();
        }
        for (key, count) in other.statuses {
            *self.statuses.entry(key).or_default() += count;
        }
        self.malformed_success += other.malformed_success;
    }
}

/// Everything the run measured.
pub struct Outcome {
    pub tally: Tally,
    /// First request sent to last answer received.
    pub elapsed: Duration,
    /// Per seeded code, how many requests got tokens for it.
    pub successes_per_code: Vec<u8>,
    /// CPU seconds spent in the window, per watched process and `loadgen`.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// `(resident, peak resident)` MiB at the end, per watched process.
    pub memory_mib: BTreeMap<String, (f64, f64)>,
}

struct Shared {
    plan: Plan,
    next: AtomicUsize,
    done: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    finished: AtomicBool,
    successes: Vec<AtomicU8>,
}

pub async fn run(plan: Plan, options: &Options) -> Result<Outcome, String> {
    let mut connections = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        connections.push(
            Connection::open(options.addr, options.tls.clone())
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", options.addr))?,
        );
    }
    let shared = Arc::new(Shared {
        successes: (0..plan.codes).map(|_| AtomicU8::new(0)).collect(),
        plan,
        next: AtomicUsize::new(0),
        done: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        finished: AtomicBool::new(false),
    });
    // Every connection is open; give the tasks a moment to be scheduled so
    // the first due times are not already late.
    let start = Instant::now() + Duration::from_millis(20);
    let cpu_before = procstat::cpu_seconds(&options.watch);
    let progress = options
        .progress
        .then(|| tokio::spawn(progress(shared.clone(), start)));
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|conn| {
            tokio::spawn(drive(
                conn,
                shared.clone(),
                options.mode,
                options.dpop,
                start,
            ))
        })
        .collect();
    let mut tally = Tally::new();
    let mut last = start;
    for task in tasks {
        let (part, finished_at) = task
            .await
            .map_err(|e| format!("a connection task failed: {e}"))?;
        tally.merge(part);
        last = last.max(finished_at);
    }
    let cpu_after = procstat::cpu_seconds(&options.watch);
    shared.finished.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        progress.await.ok();
    }
    Ok(Outcome {
        tally,
        elapsed: last.saturating_duration_since(start),
        successes_per_code: shared
            .successes
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect(),
        cpu_seconds: cpu_after
            .into_iter()
            .map(|(name, after)| {
                let before = cpu_before.get(&name).copied().unwrap_or(after);
                (name, after - before)
            })
            .collect(),
        memory_mib: procstat::memory(&options.watch),
    })
}

/// One connection's loop: take the next request, send it, record the answer.
async fn drive(
    mut conn: Connection,
    shared: Arc<Shared>,
    mode: Mode,
    dpop: bool,
    start: Instant,
) -> (Tally, Instant) {
    let mut tally = Tally::new();
    let interval_ns = match mode {
        Mode::Open { rate } => 1e9 / rate,
        Mode::Closed => 0.0,
    };
    tokio::time::sleep_until(start.into()).await;
    let mut finished_at = start;
    loop {
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = shared.plan.jobs.get(index) else {
            break;
        };
        let sent_at = match mode {
            Mode::Closed => Instant::now(),
            Mode::Open { .. } => {
                let due = start + Duration::from_nanos((index as f64 * interval_ns) as u64);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep_until(due.into()).await;
                    Instant::now()
                } else {
                    due
                }
            }
        };
        let (status, tokens) = match conn.send(&job.request).await {
            Ok(reply) => (
                reply.status,
                reply.status == 200
                    && contains(reply.body, b"\"access_token\":\"")
                    && (!dpop || contains(reply.body, b"\"token_type\":\"DPoP\"")),
            ),
            Err(_) => {
                // Count it, then start over on a fresh connection; if even
                // that fails the next request will report it again.
                conn.reconnect().await.ok();
                (0, false)
            }
        };
        let now = Instant::now();
        finished_at = now;
        let elapsed =
            u64::try_from(now.saturating_duration_since(sent_at).as_nanos()).unwrap_or(u64::MAX);
        if let Some(histogram) = tally.latency.get_mut(job.kind.index()) {
            histogram.saturating_record(elapsed.max(1_000));
        }
        *tally.statuses.entry((job.kind, status)).or_default() += 1;
        if status == 200 && !tokens {
            tally.malformed_success += 1;
        }
        if tokens {
            shared.ok.fetch_add(1, Ordering::Relaxed);
            if let Some(counter) = job.code.and_then(|c| shared.successes.get(c as usize)) {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        } else if job.kind == Kind::Redeem {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    (tally, finished_at)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One line a second on stderr: progress, the last second's rate, failures.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let total = shared.plan.jobs.len();
    let mut last_done = 0;
    let mut ticker = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    while !shared.finished.load(Ordering::Relaxed) {
        ticker.tick().await;
        let done = shared.done.load(Ordering::Relaxed);
        eprintln!(
            "[{:>5.1}s] {done:>9}/{total} answered  {:>7}/s  tokens {:>9}  failed redemptions {}",
            start.elapsed().as_secs_f64(),
            done - last_done,
            shared.ok.load(Ordering::Relaxed),
            shared.failed.load(Ordering::Relaxed),
        );
        last_done = done;
        if done as usize >= total {
            break;
        }
    }
}
