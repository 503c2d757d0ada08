//! Prometheus metrics: the process-wide registry, the metric families of
//! DESIGN.md section 3 (per endpoint, label `endpoint` = endpoint id, never
//! its URL), and `EndpointMetrics`, the handles an endpoint actor resolves
//! once so that recording costs an atomic add. Scraping reads only memory.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub deliveries: IntCounterVec,
    pub attempts: IntCounterVec,
    pub duration: HistogramVec,
    pub verifications: IntCounterVec,
    pub auto_unsubscribed: IntCounter,
    pub events_ingested: IntCounterVec,
    pub ingest_rejected: IntCounterVec,
    pub commit_failures: IntCounter,
    /// Times the database got into trouble, by kind.
    pub storage_trouble: IntCounterVec,
    /// Groups of events routed again because the routing version moved.
    pub routing_catch_ups: IntCounter,
    pub group_commit_events: Histogram,
    /// Counted through `internal_error`, by `ErrorSite`.
    internal_errors: IntCounterVec,
    /// Bytes charged by deliveries held in memory (set when scraped).
    queued_bytes: IntGauge,
    /// The per-endpoint gauges, kept as plain atomics per endpoint.
    endpoint_gauges: Arc<GaugeTable>,
}

/// Name, help text and label names of one metric family.
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

const DELIVERIES: Family = Family {
    name: "hookrelay_deliveries_total",
    help: "Deliveries finished, by outcome (succeeded, dead).",
    labels: &["endpoint", "outcome"],
};
const ATTEMPTS: Family = Family {
    name: "hookrelay_delivery_attempts_total",
    help: "Delivery attempts, by outcome (success, http_error, timeout, connect_error, refused).",
    labels: &["endpoint", "outcome"],
};
const DURATION: Family = Family {
    name: "hookrelay_delivery_duration_seconds",
    help: "Time from sending a delivery attempt to the endpoint's full answer.",
    labels: &["endpoint"],
};
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const VERIFICATIONS: Family = Family {
    name: "hookrelay_verifications_total",
    help: "Verification calls (scheduled checks and probes), by outcome (success, failure).",
    labels: &["endpoint", "outcome"],
};
const AUTO_UNSUBSCRIBED: Family = Family {
    name: "hookrelay_auto_unsubscribed_total",
    help: "Subscriptions removed because their endpoint was found dead.",
    labels: &[],
};
const EVENTS_INGESTED: Family = Family {
    name: "hookrelay_events_ingested_total",
    help: "Events accepted and stored, by event type.",
    labels: &["event"],
};
const EVENTS_REJECTED: Family = Family {
    name: "hookrelay_events_rejected_total",
    help: "Pushed events refused, by error code.",
    labels: &["error"],
};
const COMMIT_FAILURES: Family = Family {
    name: "hookrelay_group_commit_failures_total",
    help: "Group commits the database refused (publishers were told to retry).",
    labels: &[],
};
const STORAGE_TROUBLE: Family = Family {
    name: "hookrelay_storage_trouble_total",
    help: "Times the database stopped answering or storing (kind: unreachable, writes_failing); while it lasts pushes answer 503 and /health is not ready.",
    labels: &["kind"],
};
const ROUTING_CATCH_UPS: Family = Family {
    name: "hookrelay_routing_catch_ups_total",
    help: "Groups of events routed again while being stored, because a subscription changed (on any node) after they were routed.",
    labels: &[],
};
const GROUP_COMMIT_EVENTS: Family = Family {
    name: "hookrelay_group_commit_events",
    help: "Events stored per group commit.",
    labels: &[],
};
const GROUP_COMMIT_BUCKETS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0];
const INTERNAL_ERRORS: Family = Family {
    name: "hookrelay_internal_errors_total",
    help: "Internal errors (database, bugs), by where they happened; the cause is in the log.",
    labels: &["where"],
};
const QUEUED_BYTES: Family = Family {
    name: "hookrelay_queued_bytes",
    help: "Memory charged by deliveries held in memory (see --max-queued-bytes).",
    labels: &[],
};

/// Registers a collector; every family is registered once, at start-up.
fn register<C: Collector + Clone + 'static>(r: &Registry, collector: C) -> C {
    r.register(Box::new(collector.clone()))
        .expect("registered once");
    collector
}

fn counter_vec(r: &Registry, f: &Family) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(f.name, f.help), f.labels).expect("valid metric"),
    )
}

fn counter(r: &Registry, f: &Family) -> IntCounter {
    register(r, IntCounter::new(f.name, f.help).expect("valid metric"))
}

fn gauge(r: &Registry, f: &Family) -> IntGauge {
    register(r, IntGauge::new(f.name, f.help).expect("valid metric"))
}

fn histogram_vec(r: &Registry, f: &Family, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, f.labels).expect("valid metric"))
}

fn histogram(r: &Registry, f: &Family, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
    register(r, Histogram::with_opts(opts).expect("valid metric"))
}

/// The internal-error counter, with a series at 0 for every place.
fn internal_errors(r: &Registry) -> IntCounterVec {
    let counter = counter_vec(r, &INTERNAL_ERRORS);
    for site in ErrorSite::ALL {
        counter.with_label_values(&[site.label()]);
    }
    counter
}

/// The table of per-endpoint gauges, read when scraped.
fn endpoint_gauges(r: &Registry) -> Arc<GaugeTable> {
    let table = Arc::new(GaugeTable::new());
    r.register(Box::new(TableCollector(table.clone())))
        .expect("registered once");
    table
}

/// The registry, whose series all carry the `node` label when one is set.
fn registry() -> Registry {
    let labels = NODE
        .get()
        .map(|n| HashMap::from([("node".to_string(), n.clone())]));
    Registry::new_custom(None, labels).expect("valid registry labels")
}

static NODE: OnceLock<String> = OnceLock::new();

/// Sets the `node` label every series carries; call before the first use.
pub fn set_node(node: &str) {
    let _ = NODE.set(node.to_string());
}

impl Metrics {
    fn new() -> Metrics {
        let r = registry();
        Metrics {
            deliveries: counter_vec(&r, &DELIVERIES),
            attempts: counter_vec(&r, &ATTEMPTS),
            duration: histogram_vec(&r, &DURATION, &DURATION_BUCKETS),
            verifications: counter_vec(&r, &VERIFICATIONS),
            auto_unsubscribed: counter(&r, &AUTO_UNSUBSCRIBED),
            events_ingested: counter_vec(&r, &EVENTS_INGESTED),
            ingest_rejected: counter_vec(&r, &EVENTS_REJECTED),
            commit_failures: counter(&r, &COMMIT_FAILURES),
            storage_trouble: counter_vec(&r, &STORAGE_TROUBLE),
            routing_catch_ups: counter(&r, &ROUTING_CATCH_UPS),
            group_commit_events: histogram(&r, &GROUP_COMMIT_EVENTS, &GROUP_COMMIT_BUCKETS),
            internal_errors: internal_errors(&r),
            queued_bytes: gauge(&r, &QUEUED_BYTES),
            endpoint_gauges: endpoint_gauges(&r),
            registry: r,
        }
    }

    /// The exposition in the Prometheus text format.
    pub fn render(&self) -> String {
        self.queued_bytes
            .set(crate::delivery::budget::QUEUED.charged() as i64);
        let mut buf = Vec::with_capacity(64 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!("could not encode metrics: {e}");
            internal_error(ErrorSite::Metrics);
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Where an internal error happened: the `where` label of
/// `hookrelay_internal_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSite {
    /// An API request answered 500.
    Api,
    /// The recorder could not write delivery outcomes and health.
    Recorder,
    /// An endpoint actor could not read or change its deliveries or
    /// subscriptions.
    Endpoint,
    /// The history cleanup failed.
    Cleanup,
    /// `/metrics` could not be encoded.
    Metrics,
}

impl ErrorSite {
    /// Every site, so that each series exists (at 0) from the start.
    const ALL: [ErrorSite; 5] = [
        ErrorSite::Api,
        ErrorSite::Recorder,
        ErrorSite::Endpoint,
        ErrorSite::Cleanup,
        ErrorSite::Metrics,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorSite::Api => "api",
            ErrorSite::Recorder => "recorder",
            ErrorSite::Endpoint => "endpoint",
            ErrorSite::Cleanup => "cleanup",
            ErrorSite::Metrics => "metrics",
        }
    }
}

/// Counts one internal error at `site`; call it where the error is logged.
pub fn internal_error(site: ErrorSite) {
    METRICS
        .internal_errors
        .with_label_values(&[site.label()])
        .inc();
}

/// Outcome label of one attempt.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome {
    Success,
    HttpError,
    Timeout,
    ConnectError,
    Refused,
}

/// The gauges of one endpoint: plain atomics in a table that is read at
/// scrape time (a `prometheus` series per gauge would cost about 400 bytes
/// each; at 100,000 endpoints that matters).
#[derive(Default)]
pub struct EndpointGauges {
    queue_depth: AtomicI64,
    in_flight: AtomicI64,
    consecutive_failures: AtomicI64,
    up: AtomicI64,
    paused: AtomicI64,
}

/// The gauge families read from the table, with their help texts.
const GAUGES: [(&str, &str); 5] = [
    (
        "hookrelay_endpoint_queue_depth",
        "Deliveries held in memory for the endpoint and not in flight (a backlog in the database is not counted).",
    ),
    (
        "hookrelay_endpoint_in_flight",
        "Requests in flight to the endpoint.",
    ),
    (
        "hookrelay_endpoint_consecutive_failures",
        "Failed delivery attempts in a row.",
    ),
    (
        "hookrelay_endpoint_up",
        "1 when the endpoint is healthy, 0 when failing, paused or dead.",
    ),
    (
        "hookrelay_endpoint_paused",
        "1 while deliveries to the endpoint are held and it is being probed.",
    ),
];

impl EndpointGauges {
    fn values(&self) -> [i64; 5] {
        [
            self.queue_depth.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.consecutive_failures.load(Ordering::Relaxed),
            self.up.load(Ordering::Relaxed),
            self.paused.load(Ordering::Relaxed),
        ]
    }
}

/// Every running endpoint's gauges, by endpoint id.
struct GaugeTable {
    descs: Vec<Desc>,
    endpoints: RwLock<BTreeMap<i64, Arc<EndpointGauges>>>,
}

impl GaugeTable {
    fn new() -> GaugeTable {
        let descs = GAUGES
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec!["endpoint".into()],
                    HashMap::new(),
                )
                .expect("valid metric")
            })
            .collect();
        GaugeTable {
            descs,
            endpoints: RwLock::new(BTreeMap::new()),
        }
    }
}

struct TableCollector(Arc<GaugeTable>);

impl Collector for TableCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let endpoints = self.0.endpoints.read().unwrap_or_else(|p| p.into_inner());
        let mut families: Vec<MetricFamily> = GAUGES
            .iter()
            .map(|(name, help)| {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(MetricType::GAUGE);
                f
            })
            .collect();
        for (id, gauges) in endpoints.iter() {
            let label = id.to_string();
            for (family, value) in families.iter_mut().zip(gauges.values()) {
                let mut pair = LabelPair::default();
                pair.set_name("endpoint".into());
                pair.set_value(label.clone());
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value as f64);
                let mut metric = proto::Metric::default();
                metric.set_label(vec![pair]);
                metric.set_gauge(gauge);
                family.mut_metric().push(metric);
            }
        }
        // A family without series is left out, like the built-in vectors do.
        families.retain(|f| !f.get_metric().is_empty());
        families
    }
}

/// One endpoint's series. Its gauges live in the gauge table from the
/// start; every other series is resolved on first use and kept, so
/// recording costs an atomic add and an idle endpoint costs a few atomics.
pub struct EndpointMetrics {
    id: i64,
    label: String,
    gauges: Arc<EndpointGauges>,
    succeeded: OnceCell<IntCounter>,
    dead: OnceCell<IntCounter>,
    attempts: [OnceCell<IntCounter>; 5],
    duration: OnceCell<prometheus::Histogram>,
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

impl EndpointMetrics {
    pub fn new(endpoint_id: i64) -> EndpointMetrics {
        let gauges = Arc::new(EndpointGauges::default());
        gauges.up.store(1, Ordering::Relaxed);
        METRICS
            .endpoint_gauges
            .endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint_id, gauges.clone());
        EndpointMetrics {
            id: endpoint_id,
            label: endpoint_id.to_string(),
            gauges,
            succeeded: OnceCell::new(),
            dead: OnceCell::new(),
            attempts: Default::default(),
            duration: OnceCell::new(),
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
        let g = &self.gauges;
        g.queue_depth.store(queue_depth as i64, Ordering::Relaxed);
        g.in_flight.store(i64::from(in_flight), Ordering::Relaxed);
        g.consecutive_failures
            .store(i64::from(consecutive_failures), Ordering::Relaxed);
        g.up.store(i64::from(up), Ordering::Relaxed);
        g.paused.store(i64::from(paused), Ordering::Relaxed);
    }

    /// Drops every series of the endpoint: its actor stopped (dead,
    /// unused, or moved to another node, which reports it from then on), so
    /// `/metrics` stays as large as the live endpoints make it. Nothing is
    /// dropped when a newer actor of the same endpoint runs already.
    pub fn remove(&self) {
        let mut table = METRICS
            .endpoint_gauges
            .endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if !table
            .get(&self.id)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gauges))
        {
            return;
        }
        table.remove(&self.id);
        let label = self.label.as_str();
        for outcome in ["succeeded", "dead"] {
            let _ = METRICS.deliveries.remove_label_values(&[label, outcome]);
        }
        for outcome in ATTEMPT_OUTCOMES {
            let _ = METRICS.attempts.remove_label_values(&[label, outcome]);
        }
        for outcome in ["success", "failure"] {
            let _ = METRICS.verifications.remove_label_values(&[label, outcome]);
        }
        let _ = METRICS.duration.remove_label_values(&[label]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_internal_error_site_has_a_series_from_the_start() {
        let text = METRICS.render();
        for site in ErrorSite::ALL {
            let series = format!(
                "hookrelay_internal_errors_total{{where=\"{}\"}}",
                site.label()
            );
            assert!(text.contains(&series), "{series} missing");
        }
    }

    #[test]
    fn an_internal_error_is_counted_at_its_site() {
        let before = METRICS
            .internal_errors
            .with_label_values(&["cleanup"])
            .get();
        internal_error(ErrorSite::Cleanup);
        let after = METRICS
            .internal_errors
            .with_label_values(&["cleanup"])
            .get();
        assert!(after > before);
    }
}
