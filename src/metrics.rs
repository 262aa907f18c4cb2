//! Prometheus metrics. Every label value comes from a fixed set, and every
//! counter the hot path touches is resolved once, here, so recording an
//! outcome is one atomic add.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::grant::error::Reason;

/// Buckets from 50 µs to 1 s: a redemption takes well under a millisecond
/// when all is well, and the interesting tail lives between 1 and 100 ms.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0,
];

/// Cloning shares the metrics (every field is a handle).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: Vec<IntCounter>,
    pub code_replays: IntCounter,
    pub access_tokens: IntCounter,
    pub id_tokens: IntCounter,
    /// Access tokens bound to a DPoP key (RFC 9449), of `access_tokens`.
    pub dpop_bound_tokens: IntCounter,
    pub request_duration: Histogram,
    pub store_duration: Histogram,
    pub signing_duration: Histogram,
    pub store_errors: IntCounter,
    /// Failed secret checks per registered confidential client: the
    /// per-client signal of [`crate::grant::abuse`], an alert and not a refusal.
    /// Its label values are registered client ids only.
    client_auth_failures: IntCounterVec,
    /// Token requests being answered right now (body read to response).
    pub in_flight: IntGauge,
    /// When the access-token signing key was made (its file's modification
    /// time; start-up for an ephemeral key): alert on `time() - this`.
    pub signing_key_created: Gauge,
}

/// Registering a metric fails only on a duplicate name or a bad label set,
/// both fixed at compile time here: a test (`metrics_render`) registers them
/// all, so the `expect`s below cannot fire in a build that passed its tests.
#[allow(clippy::expect_used)]
fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

impl Metrics {
    #[allow(clippy::expect_used)] // see `register`
    pub fn new(store_kind: &str, signing_kid: &str, signing_alg: &str) -> Self {
        let registry = Registry::new();
        let requests_vec = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "token_requests_total",
                    "Token requests by outcome and reason",
                ),
                &["outcome", "reason"],
            )
            .expect("valid"),
        );
        let requests = Reason::ALL
            .iter()
            .map(|r| requests_vec.with_label_values(&[r.outcome(), r.as_str()]))
            .collect();
        let tokens_vec = register(
            &registry,
            IntCounterVec::new(
                Opts::new("tokens_issued_total", "Tokens issued by kind"),
                &["kind"],
            )
            .expect("valid"),
        );
        let histogram = |name: &str, help: &str| {
            register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid"),
            )
        };
        let info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "token_endpoint_info",
                    "Build and configuration of this process",
                ),
                &["version", "store", "kid", "alg"],
            )
            .expect("valid"),
        );
        info.with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            store_kind,
            signing_kid,
            signing_alg,
        ])
        .set(1);
        // Resident memory, CPU seconds, open fds, start time: the process
        // collector reads /proc at scrape time, never on the request path.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(process::ProcessMetrics::new()))
            .expect("the process collector registers once");
        let signing_key_created = register(
            &registry,
            Gauge::new(
                "token_endpoint_signing_key_created_timestamp_seconds",
                "When the access-token signing key was made (file modification time), seconds since the epoch",
            )
            .expect("valid"),
        );
        signing_key_created.set(crate::unix_now() as f64);
        Self {
            requests,
            code_replays: register(
                &registry,
                IntCounter::new(
                    "code_replays_total",
                    "Redemptions of codes that were already redeemed",
                )
                .expect("valid"),
            ),
            access_tokens: tokens_vec.with_label_values(&["access_token"]),
            id_tokens: tokens_vec.with_label_values(&["id_token"]),
            dpop_bound_tokens: register(
                &registry,
                IntCounter::new(
                    "dpop_bound_access_tokens_total",
                    "Access tokens bound to a DPoP key (cnf.jkt), of tokens_issued_total{kind=\"access_token\"}",
                )
                .expect("valid"),
            ),
            request_duration: histogram(
                "token_request_duration_seconds",
                "Time to answer a token request, body read to response",
            ),
            store_duration: histogram(
                "code_store_duration_seconds",
                "Time of the code store's take (one Redis round trip)",
            ),
            signing_duration: histogram(
                "token_signing_duration_seconds",
                "Time to mint the tokens of one grant",
            ),
            store_errors: register(
                &registry,
                IntCounter::new(
                    "code_store_errors_total",
                    "Code store calls that failed or timed out",
                )
                .expect("valid"),
            ),
            client_auth_failures: register(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "client_authentication_failures_total",
                        "Failed client secret checks per registered confidential client",
                    ),
                    &["client_id"],
                )
                .expect("valid"),
            ),
            in_flight: register(
                &registry,
                IntGauge::new(
                    "token_requests_in_flight",
                    "Token requests being answered right now",
                )
                .expect("valid"),
            ),
            signing_key_created,
            registry,
        }
    }

    /// Export the Redis connection gauges too (once).
    pub fn watch_connections(&self, connections: &crate::store::ConnectionMetrics) {
        register(&self.registry, connections.open.clone());
        register(&self.registry, connections.opened.clone());
    }

    /// Start the per-client failure counters at 0 for these (registered,
    /// confidential) clients, so that `rate()` sees their first failure.
    pub fn watch_clients<'a>(&self, client_ids: impl IntoIterator<Item = &'a str>) {
        for id in client_ids {
            self.client_auth_failures.with_label_values(&[id]);
        }
    }

    /// One failed secret check of the registered client `client_id`.
    pub fn client_auth_failure(&self, client_id: &str) {
        self.client_auth_failures
            .with_label_values(&[client_id])
            .inc();
    }

    pub fn record(&self, reason: Reason) {
        if let Some(counter) = self.requests.get(reason as usize) {
            counter.inc();
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Encoding to a Vec fails only on an I/O error, which a Vec never has.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Holds one unit of an in-flight gauge for as long as it lives: a guard,
/// so a request whose client goes away mid-way (its future dropped) is
/// still counted out.
pub struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    pub fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(target_os = "linux")]
mod process {
    //! The `prometheus` crate's process collector, with
    //! `process_cpu_seconds_total` to the clock tick. The crate's own divides
    //! the ticks by the tick rate in integers, so it counts whole seconds: a
    //! lightly loaded replica reads 0 for its first second of CPU, and
    //! `rate()` over it reads 0 or jumps by whole seconds.

    use prometheus::core::{Collector, Desc};
    use prometheus::process_collector::ProcessCollector;
    use prometheus::proto::{self, MetricFamily};

    const CPU_SECONDS: &str = "process_cpu_seconds_total";

    pub struct ProcessMetrics {
        inner: ProcessCollector,
    }

    impl ProcessMetrics {
        pub fn new() -> Self {
            Self {
                inner: ProcessCollector::for_self(),
            }
        }
    }

    /// User and system CPU time of this process, in seconds, to the tick
    /// (`/proc/self/stat`, as the Go client reads it).
    pub fn cpu_seconds() -> Option<f64> {
        let stat = procfs::process::Process::myself()
            .and_then(|p| p.stat())
            .ok()?;
        let ticks = procfs::ticks_per_second();
        (ticks > 0).then(|| (stat.utime + stat.stime) as f64 / ticks as f64)
    }

    impl Collector for ProcessMetrics {
        fn desc(&self) -> Vec<&Desc> {
            self.inner.desc()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let mut families = self.inner.collect();
            let seconds = cpu_seconds();
            for family in families.iter_mut().filter(|f| f.name() == CPU_SECONDS) {
                for metric in family.mut_metric() {
                    if let Some(seconds) = seconds {
                        let mut counter = proto::Counter::default();
                        counter.set_value(seconds);
                        metric.set_counter(counter);
                    }
                }
            }
            families
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_counts_out_a_request_dropped_mid_way() {
        use std::future::Future;

        let gauge = IntGauge::new("in_flight", "test").unwrap();
        let request = async {
            let _in_flight = InFlight::enter(&gauge);
            std::future::pending::<()>().await;
        };
        let mut request = Box::pin(request);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(request.as_mut().poll(&mut cx).is_pending());
        assert_eq!(gauge.get(), 1);
        drop(request);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn metrics_render() {
        let m = Metrics::new("embedded", "kid", "ES256");
        m.record(Reason::Replay);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"token_requests_total{outcome="invalid_grant",reason="replay"} 1"#),
            "{text}"
        );
        assert!(text.contains("token_endpoint_info"));
        assert!(text.contains("token_requests_in_flight 0"), "{text}");
        assert!(text.contains("token_endpoint_signing_key_created_timestamp_seconds"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        #[cfg(target_os = "linux")]
        cpu_seconds_are_not_cut_to_whole_seconds(&m);
        m.watch_clients(["backend"]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"client_authentication_failures_total{client_id="backend"} 0"#),
            "{text}"
        );
        m.watch_connections(&crate::store::ConnectionMetrics::new());
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("redis_connections 0"), "{text}");
        assert!(text.contains("redis_connections_opened_total 0"), "{text}");
    }

    /// `process_cpu_seconds_total` between the process's CPU time read
    /// just before and just after the scrape, on a reading that is not a
    /// whole number of seconds: a value cut to whole seconds falls below.
    #[cfg(target_os = "linux")]
    fn cpu_seconds_are_not_cut_to_whole_seconds(m: &Metrics) {
        let (before, text, after) = loop {
            let before = process::cpu_seconds().unwrap();
            if before.fract() < 0.005 || before.fract() > 0.995 {
                // Spin off the whole second (a tick is 10 ms).
                let until = std::time::Instant::now() + std::time::Duration::from_millis(20);
                while std::time::Instant::now() < until {
                    std::hint::black_box(before.sqrt());
                }
                continue;
            }
            let text = String::from_utf8(m.render()).unwrap();
            break (before, text, process::cpu_seconds().unwrap());
        };
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .expect("process_cpu_seconds_total is rendered")
            .parse()
            .unwrap();
        assert!(
            (before..=after).contains(&value),
            "process_cpu_seconds_total {value} outside [{before}, {after}]"
        );
    }
}
