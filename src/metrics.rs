//! Prometheus metrics: the process-wide registry, the metric families of
//! DESIGN.md section 3 (per endpoint, label `endpoint` = endpoint id, never
//! its URL), and `EndpointMetrics`, the handles an endpoint actor resolves
//! once so that recording costs an atomic add. Scraping reads only memory.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub deliveries: IntCounterVec,
    pub attempts: IntCounterVec,
    pub duration: HistogramVec,
    pub queue_depth: IntGaugeVec,
    pub in_flight: IntGaugeVec,
    pub consecutive_failures: IntGaugeVec,
    pub up: IntGaugeVec,
    pub paused: IntGaugeVec,
    pub verifications: IntCounterVec,
    pub auto_unsubscribed: IntCounter,
    pub events_ingested: IntCounterVec,
    pub ingest_rejected: IntCounterVec,
    pub commit_failures: IntCounter,
    pub group_commit_events: prometheus::Histogram,
    pub internal_errors: IntCounter,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

static NODE: OnceLock<String> = OnceLock::new();

/// Sets the `node` label every series carries; call before the first use.
pub fn set_node(node: &str) {
    let _ = NODE.set(node.to_string());
}

impl Metrics {
    fn new() -> Metrics {
        let labels = NODE
            .get()
            .map(|n| HashMap::from([("node".to_string(), n.clone())]));
        let r = Registry::new_custom(None, labels).expect("valid registry labels");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "hookrelay_delivery_duration_seconds",
                "Time from sending a delivery attempt to the endpoint's full answer.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["endpoint"],
        )
        .expect("valid metric");
        r.register(Box::new(duration.clone()))
            .expect("registered once");
        let group_commit_events = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "hookrelay_group_commit_events",
                "Events stored per group commit.",
            )
            .buckets(vec![
                1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(group_commit_events.clone()))
            .expect("registered once");
        Metrics {
            deliveries: counter_vec(
                &r,
                "hookrelay_deliveries_total",
                "Deliveries finished, by outcome (succeeded, dead).",
                &["endpoint", "outcome"],
            ),
            attempts: counter_vec(
                &r,
                "hookrelay_delivery_attempts_total",
                "Delivery attempts, by outcome (success, http_error, timeout, connect_error, refused).",
                &["endpoint", "outcome"],
            ),
            duration,
            queue_depth: gauge_vec(
                &r,
                "hookrelay_endpoint_queue_depth",
                "Deliveries held in memory for the endpoint and not in flight (a backlog in the database is not counted).",
                &["endpoint"],
            ),
            in_flight: gauge_vec(
                &r,
                "hookrelay_endpoint_in_flight",
                "Requests in flight to the endpoint.",
                &["endpoint"],
            ),
            consecutive_failures: gauge_vec(
                &r,
                "hookrelay_endpoint_consecutive_failures",
                "Failed delivery attempts in a row.",
                &["endpoint"],
            ),
            up: gauge_vec(
                &r,
                "hookrelay_endpoint_up",
                "1 when the endpoint is healthy, 0 when failing, paused or dead.",
                &["endpoint"],
            ),
            paused: gauge_vec(
                &r,
                "hookrelay_endpoint_paused",
                "1 while deliveries to the endpoint are held and it is being probed.",
                &["endpoint"],
            ),
            verifications: counter_vec(
                &r,
                "hookrelay_verifications_total",
                "Verification calls (scheduled checks and probes), by outcome (success, failure).",
                &["endpoint", "outcome"],
            ),
            auto_unsubscribed: counter(
                &r,
                "hookrelay_auto_unsubscribed_total",
                "Subscriptions removed because their endpoint was found dead.",
            ),
            events_ingested: counter_vec(
                &r,
                "hookrelay_events_ingested_total",
                "Events accepted and stored, by event type.",
                &["event"],
            ),
            ingest_rejected: counter_vec(
                &r,
                "hookrelay_events_rejected_total",
                "Pushed events refused, by error code.",
                &["error"],
            ),
            commit_failures: counter(
                &r,
                "hookrelay_group_commit_failures_total",
                "Group commits the database refused (publishers were told to retry).",
            ),
            group_commit_events,
            internal_errors: counter(
                &r,
                "hookrelay_internal_errors_total",
                "Internal errors (database, bugs); the cause is in the log.",
            ),
            registry: r,
        }
    }

    /// The exposition in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::with_capacity(64 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("could not encode metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Outcome label of one attempt.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome {
    Success,
    HttpError,
    Timeout,
    ConnectError,
    Refused,
}

/// One endpoint's series. The gauges of the contract (`up`, queue depth,
/// consecutive failures) exist from the start; every other series is
/// resolved on first use and kept, so recording costs an atomic add and an
/// idle endpoint holds three series (memory matters at 100,000 endpoints).
pub struct EndpointMetrics {
    label: String,
    succeeded: OnceCell<IntCounter>,
    dead: OnceCell<IntCounter>,
    attempts: [OnceCell<IntCounter>; 5],
    duration: OnceCell<prometheus::Histogram>,
    queue_depth: IntGauge,
    in_flight: OnceCell<IntGauge>,
    consecutive_failures: IntGauge,
    up: IntGauge,
    paused: OnceCell<IntGauge>,
    verification_ok: OnceCell<IntCounter>,
    verification_failed: OnceCell<IntCounter>,
}

const ATTEMPT_OUTCOMES: [&str; 5] = [
    "success",
    "http_error",
    "timeout",
    "connect_error",
    "refused",
];

fn counter_of<'a>(
    cell: &'a OnceCell<IntCounter>,
    vec: &IntCounterVec,
    labels: &[&str],
) -> &'a IntCounter {
    cell.get_or_init(|| vec.with_label_values(labels))
}

/// Sets a gauge, creating its series only for a non-zero value.
fn set_gauge(cell: &OnceCell<IntGauge>, vec: &IntGaugeVec, label: &str, value: i64) {
    match cell.get() {
        Some(g) => g.set(value),
        None if value != 0 => cell
            .get_or_init(|| vec.with_label_values(&[label]))
            .set(value),
        None => {}
    }
}

impl EndpointMetrics {
    pub fn new(endpoint_id: i64) -> EndpointMetrics {
        let label = endpoint_id.to_string();
        let l = [label.as_str()];
        let up = METRICS.up.with_label_values(&l);
        up.set(1);
        let queue_depth = METRICS.queue_depth.with_label_values(&l);
        let consecutive_failures = METRICS.consecutive_failures.with_label_values(&l);
        EndpointMetrics {
            label,
            succeeded: OnceCell::new(),
            dead: OnceCell::new(),
            attempts: Default::default(),
            duration: OnceCell::new(),
            queue_depth,
            in_flight: OnceCell::new(),
            consecutive_failures,
            up,
            paused: OnceCell::new(),
            verification_ok: OnceCell::new(),
            verification_failed: OnceCell::new(),
        }
    }

    pub fn succeeded(&self) {
        counter_of(
            &self.succeeded,
            &METRICS.deliveries,
            &[&self.label, "succeeded"],
        )
        .inc();
    }

    pub fn dead(&self, n: u64) {
        counter_of(&self.dead, &METRICS.deliveries, &[&self.label, "dead"]).inc_by(n);
    }

    pub fn attempt(&self, outcome: AttemptOutcome, seconds: f64) {
        let i = outcome as usize;
        counter_of(
            &self.attempts[i],
            &METRICS.attempts,
            &[&self.label, ATTEMPT_OUTCOMES[i]],
        )
        .inc();
        self.duration
            .get_or_init(|| METRICS.duration.with_label_values(&[self.label.as_str()]))
            .observe(seconds);
    }

    /// Counts a verification call made when a subscription was created.
    pub fn subscribe_verification(endpoint_id: i64) {
        METRICS
            .verifications
            .with_label_values(&[endpoint_id.to_string().as_str(), "success"])
            .inc();
    }

    pub fn verification(&self, ok: bool) {
        if ok {
            counter_of(
                &self.verification_ok,
                &METRICS.verifications,
                &[&self.label, "success"],
            )
            .inc();
        } else {
            counter_of(
                &self.verification_failed,
                &METRICS.verifications,
                &[&self.label, "failure"],
            )
            .inc();
        }
    }

    /// Updates the endpoint's gauges.
    pub fn gauges(
        &self,
        queue_depth: usize,
        in_flight: u32,
        consecutive_failures: u32,
        up: bool,
        paused: bool,
    ) {
        let m = &*METRICS;
        self.queue_depth.set(queue_depth as i64);
        set_gauge(&self.in_flight, &m.in_flight, &self.label, in_flight as i64);
        self.consecutive_failures.set(consecutive_failures as i64);
        set_gauge(&self.paused, &m.paused, &self.label, i64::from(paused));
        self.up.set(i64::from(up));
    }

    /// Drops the endpoint's gauges (a stopped actor reports nothing); its
    /// counters stay so that rates stay correct.
    pub fn remove_gauges(&self) {
        let m = &*METRICS;
        let l = [self.label.as_str()];
        let _ = m.queue_depth.remove_label_values(&l);
        let _ = m.in_flight.remove_label_values(&l);
        let _ = m.consecutive_failures.remove_label_values(&l);
        let _ = m.up.remove_label_values(&l);
        let _ = m.paused.remove_label_values(&l);
    }
}
