//! Prometheus metrics: the process-wide registry and its families
//! (`families.rs`, DESIGN.md section 3; per endpoint, label `endpoint` =
//! endpoint id, never its URL), the per-endpoint gauge table (`gauges.rs`),
//! `EndpointMetrics` (`endpoint.rs`), the last hour per minute for the
//! web UI (`recent.rs`), the handles an endpoint actor resolves
//! once so that recording costs an atomic add, and the count of internal
//! errors by `ErrorSite`. Scraping reads only memory.

mod endpoint;
mod families;
mod gauges;
pub mod recent;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock};

use prometheus::{
    Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry, TextEncoder,
};

pub use endpoint::{AttemptOutcome, EndpointMetrics};

use families::*;
use gauges::{GaugeTable, endpoint_gauges};

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
    /// Rows removed by retention, by what (`history_removed`).
    history_removed: IntCounterVec,
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

/// The internal-error counter, with a series at 0 for every site.
fn internal_errors(r: &Registry) -> IntCounterVec {
    let counter = counter_vec(r, &INTERNAL_ERRORS);
    for site in ErrorSite::ALL {
        counter.with_label_values(&[site.label()]);
    }
    counter
}

/// What retention removes, each with a series at 0 from the start.
const HISTORY_KINDS: [&str; 5] = ["attempt", "delivery", "event", "idempotency_key", "notice"];

fn history_removed_counter(r: &Registry) -> IntCounterVec {
    let counter = counter_vec(r, &HISTORY_REMOVED);
    for what in HISTORY_KINDS {
        counter.with_label_values(&[what]);
    }
    counter
}

/// Counts what one retention batch removed.
pub fn history_removed(removed: &crate::store::retention::Removed) {
    let counts = [
        removed.attempts,
        removed.deliveries,
        removed.events,
        removed.keys,
        removed.notices,
    ];
    for (what, n) in HISTORY_KINDS.iter().zip(counts) {
        if n > 0 {
            METRICS
                .history_removed
                .with_label_values(&[what])
                .inc_by(n as u64);
        }
    }
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
            history_removed: history_removed_counter(&r),
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
    /// A retention pass (the history cleanup) failed.
    Cleanup,
    /// `/metrics` could not be encoded.
    Metrics,
    /// A stored subscription or endpoint could not be routed (an unusable
    /// secret or URL).
    Routing,
    /// A group of events could not be stored for a reason other than the
    /// database's own trouble.
    Ingest,
    /// The router could not hand work to another node.
    Router,
    /// The last outcomes could not be written at shutdown.
    Shutdown,
}

impl ErrorSite {
    /// Every site, so that each series exists (at 0) from the start.
    const ALL: [ErrorSite; 9] = [
        ErrorSite::Api,
        ErrorSite::Recorder,
        ErrorSite::Endpoint,
        ErrorSite::Cleanup,
        ErrorSite::Metrics,
        ErrorSite::Routing,
        ErrorSite::Ingest,
        ErrorSite::Router,
        ErrorSite::Shutdown,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorSite::Api => "api",
            ErrorSite::Recorder => "recorder",
            ErrorSite::Endpoint => "endpoint",
            ErrorSite::Cleanup => "cleanup",
            ErrorSite::Metrics => "metrics",
            ErrorSite::Routing => "routing",
            ErrorSite::Ingest => "ingest",
            ErrorSite::Router => "router",
            ErrorSite::Shutdown => "shutdown",
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
