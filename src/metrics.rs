//! Prometheus metrics: the process-wide registry, the metric families of
//! DESIGN.md section 3 (per endpoint, label `endpoint` = endpoint id, never
//! its URL), and `EndpointMetrics`, the handles an endpoint actor resolves
//! once so that recording costs an atomic add. Scraping reads only memory.

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

/// One endpoint's series, resolved once.
pub struct EndpointMetrics {
    label: String,
    pub succeeded: IntCounter,
    pub dead: IntCounter,
    attempts: [IntCounter; 5],
    pub duration: prometheus::Histogram,
    pub queue_depth: IntGauge,
    pub in_flight: IntGauge,
    pub consecutive_failures: IntGauge,
    pub up: IntGauge,
    pub paused: IntGauge,
    pub verification_ok: IntCounter,
    pub verification_failed: IntCounter,
}

impl EndpointMetrics {
    pub fn new(endpoint_id: i64) -> EndpointMetrics {
        let m = &*METRICS;
        let label = endpoint_id.to_string();
        let l = label.as_str();
        let up = m.up.with_label_values(&[l]);
        up.set(1);
        EndpointMetrics {
            succeeded: m.deliveries.with_label_values(&[l, "succeeded"]),
            dead: m.deliveries.with_label_values(&[l, "dead"]),
            attempts: [
                "success",
                "http_error",
                "timeout",
                "connect_error",
                "refused",
            ]
            .map(|o| m.attempts.with_label_values(&[l, o])),
            duration: m.duration.with_label_values(&[l]),
            queue_depth: m.queue_depth.with_label_values(&[l]),
            in_flight: m.in_flight.with_label_values(&[l]),
            consecutive_failures: m.consecutive_failures.with_label_values(&[l]),
            up,
            paused: m.paused.with_label_values(&[l]),
            verification_ok: m.verifications.with_label_values(&[l, "success"]),
            verification_failed: m.verifications.with_label_values(&[l, "failure"]),
            label,
        }
    }

    pub fn attempt(&self, outcome: AttemptOutcome) {
        self.attempts[outcome as usize].inc();
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
