//! The verdict (was every code redeemed exactly once?) and the figures, as a
//! table for people and JSON for scripts.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::plan::Kind;
use crate::run::{Mode, Outcome};

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// Milliseconds, from a histogram in nanoseconds.
    fn of(h: &Histogram<u64>) -> Option<Self> {
        let ms = |ns: u64| ns as f64 / 1e6;
        (!h.is_empty()).then(|| Self {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1e6,
        })
    }
}

#[derive(Serialize)]
pub struct Summary {
    pub mode: String,
    pub connections: usize,
    /// Requested arrival rate (open loop only).
    pub rate: Option<f64>,
    pub mix: String,
    pub requests: u64,
    pub elapsed_s: f64,
    /// Rightful redemptions that returned tokens, per second.
    pub redemptions_per_s: f64,
    pub requests_per_s: f64,
    /// Latency of rightful redemptions, in milliseconds.
    pub latency_ms: Option<Latency>,
    /// Latency of the other kinds, in milliseconds.
    pub latency_ms_by_kind: BTreeMap<&'static str, Latency>,
    /// `kind status` -> count; status 0 is a transport error.
    pub statuses: BTreeMap<String, u64>,
    pub codes: usize,
    pub codes_not_redeemed: usize,
    pub codes_redeemed_more_than_once: usize,
    /// 200s for a wrong verifier or an unknown code, 200s without tokens,
    /// answers other than 200 and 400, and transport errors.
    pub unexpected: u64,
    pub passed: bool,
    /// CPU time per request in the window, in microseconds, per watched
    /// process (and the generator itself, `loadgen`).
    pub cpu_us_per_request: BTreeMap<String, f64>,
    /// Resident and peak resident memory (MiB) after the window.
    pub memory_mib: BTreeMap<String, Memory>,
    /// The requests carried DPoP proofs (`--dpop`).
    pub dpop: Option<Dpop>,
}

/// How the run's DPoP proofs were made.
#[derive(Serialize)]
pub struct Dpop {
    /// Client keys, taken in turn.
    pub keys: usize,
    /// The proofs' `htu`.
    pub htu: String,
    /// Seconds spent signing every proof, before the window.
    pub signing_s: f64,
}

#[derive(Serialize)]
pub struct Memory {
    pub rss: f64,
    pub peak: f64,
}

impl Summary {
    pub fn new(outcome: &Outcome, mode: Mode, connections: usize, mix: String) -> Self {
        let tally = &outcome.tally;
        let requests: u64 = tally.statuses.values().sum();
        let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
        let redeemed = tally
            .statuses
            .get(&(Kind::Redeem, 200))
            .copied()
            .unwrap_or(0)
            .saturating_sub(tally.malformed_success);
        let unexpected: u64 = tally
            .statuses
            .iter()
            .filter(|((kind, status), _)| match status {
                200 => matches!(kind, Kind::WrongVerifier | Kind::Unknown),
                400 => false,
                _ => true,
            })
            .map(|(_, count)| count)
            .sum::<u64>()
            + tally.malformed_success;
        let codes_not_redeemed = outcome
            .successes_per_code
            .iter()
            .filter(|&&n| n == 0)
            .count();
        let codes_redeemed_more_than_once = outcome
            .successes_per_code
            .iter()
            .filter(|&&n| n > 1)
            .count();
        let (mode_name, rate) = match mode {
            Mode::Closed => ("closed loop".to_owned(), None),
            Mode::Open { rate } => (format!("open loop at {rate}/s"), Some(rate)),
        };
        Self {
            mode: mode_name,
            connections,
            rate,
            mix,
            requests,
            elapsed_s: outcome.elapsed.as_secs_f64(),
            redemptions_per_s: redeemed as f64 / seconds,
            requests_per_s: requests as f64 / seconds,
            latency_ms: tally
                .latency
                .get(Kind::Redeem.index())
                .and_then(Latency::of),
            latency_ms_by_kind: Kind::ALL
                .iter()
                .skip(1)
                .filter_map(|k| Some((k.name(), Latency::of(tally.latency.get(k.index())?)?)))
                .collect(),
            statuses: tally
                .statuses
                .iter()
                .map(|((kind, status), count)| (format!("{} {status}", kind.name()), *count))
                .collect(),
            codes: outcome.successes_per_code.len(),
            codes_not_redeemed,
            codes_redeemed_more_than_once,
            unexpected,
            passed: codes_not_redeemed == 0
                && codes_redeemed_more_than_once == 0
                && unexpected == 0,
            cpu_us_per_request: outcome
                .cpu_seconds
                .iter()
                .map(|(name, s)| (name.clone(), s * 1e6 / requests.max(1) as f64))
                .collect(),
            memory_mib: outcome
                .memory_mib
                .iter()
                .map(|(name, &(rss, peak))| (name.clone(), Memory { rss, peak }))
                .collect(),
            dpop: None,
        }
    }

    pub fn print(&self) {
        let rate = self
            .rate
            .map(|r| format!(" (asked {r:.0}/s)"))
            .unwrap_or_default();
        println!(
            "mode            {}, {} connections{rate}",
            self.mode, self.connections
        );
        if !self.latency_ms_by_kind.is_empty() {
            println!("mix             {}", self.mix);
        }
        if let Some(dpop) = &self.dpop {
            println!(
                "DPoP            a proof per request (ES256, {} keys, htu {}), signed in {:.2} s before the window",
                dpop.keys, dpop.htu, dpop.signing_s
            );
        }
        println!(
            "requests        {} in {:.2} s ({:.0}/s)",
            self.requests, self.elapsed_s, self.requests_per_s
        );
        println!("redemptions/s   {:.0}", self.redemptions_per_s);
        let line = |name: &str, l: &Latency| {
            println!(
                "{name:<15} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  (ms)",
                l.p50, l.p90, l.p99, l.p999, l.max
            )
        };
        if let Some(l) = &self.latency_ms {
            line("latency", l);
        }
        for (kind, l) in &self.latency_ms_by_kind {
            line(&format!("  {kind}"), l);
        }
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!("statuses        {}", statuses.join(", "));
        if !self.cpu_us_per_request.is_empty() {
            let cpu: Vec<String> = self
                .cpu_us_per_request
                .iter()
                .map(|(name, us)| format!("{name} {us:.1}"))
                .collect();
            println!("CPU µs/request  {}", cpu.join(", "));
        }
        for (name, m) in &self.memory_mib {
            println!(
                "memory          {name}: {:.1} MiB resident, {:.1} MiB peak",
                m.rss, m.peak
            );
        }
        println!(
            "exactly once    {} ({} codes; not redeemed {}, redeemed more than once {}; unexpected answers {})",
            if self.passed { "PASS" } else { "FAIL" },
            self.codes,
            self.codes_not_redeemed,
            self.codes_redeemed_more_than_once,
            self.unexpected
        );
    }
}
