//! The metric families of DESIGN.md section 3, each a name, a help text
//! and label names, and the helpers that register them.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Name, help text and label names of one metric family.
pub(super) struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

pub(super) const DELIVERIES: Family = Family {
    name: "hookrelay_deliveries_total",
    help: "Deliveries finished, by outcome (succeeded, dead).",
    labels: &["endpoint", "outcome"],
};
pub(super) const ATTEMPTS: Family = Family {
    name: "hookrelay_delivery_attempts_total",
    help: "Delivery attempts, by outcome (success, http_error, timeout, connect_error, refused).",
    labels: &["endpoint", "outcome"],
};
pub(super) const DURATION: Family = Family {
    name: "hookrelay_delivery_duration_seconds",
    help: "Time from sending a delivery attempt to the endpoint's full answer.",
    labels: &["endpoint"],
};
pub(super) const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
pub(super) const VERIFICATIONS: Family = Family {
    name: "hookrelay_verifications_total",
    help: "Verification calls (scheduled checks and probes), by outcome (success, failure).",
    labels: &["endpoint", "outcome"],
};
pub(super) const AUTO_UNSUBSCRIBED: Family = Family {
    name: "hookrelay_auto_unsubscribed_total",
    help: "Subscriptions removed because their endpoint was found dead.",
    labels: &[],
};
pub(super) const EVENTS_INGESTED: Family = Family {
    name: "hookrelay_events_ingested_total",
    help: "Events accepted and stored, by event type.",
    labels: &["event"],
};
pub(super) const EVENTS_REJECTED: Family = Family {
    name: "hookrelay_events_rejected_total",
    help: "Pushed events refused, by error code.",
    labels: &["error"],
};
pub(super) const COMMIT_FAILURES: Family = Family {
    name: "hookrelay_group_commit_failures_total",
    help: "Group commits the database refused (publishers were told to retry).",
    labels: &[],
};
pub(super) const STORAGE_TROUBLE: Family = Family {
    name: "hookrelay_storage_trouble_total",
    help: "Times the database stopped answering or storing (kind: unreachable, writes_failing); while it lasts pushes answer 503 and /health is not ready.",
    labels: &["kind"],
};
pub(super) const HISTORY_REMOVED: Family = Family {
    name: "hookrelay_history_removed_total",
    help: "History removed past --history-retention (what: attempt, delivery, event) and idempotency keys forgotten past --idempotency-retention (what: idempotency_key).",
    labels: &["what"],
};
pub(super) const ROUTING_CATCH_UPS: Family = Family {
    name: "hookrelay_routing_catch_ups_total",
    help: "Groups of events routed again while being stored, because a subscription changed (on any node) after they were routed.",
    labels: &[],
};
pub(super) const GROUP_COMMIT_EVENTS: Family = Family {
    name: "hookrelay_group_commit_events",
    help: "Events stored per group commit.",
    labels: &[],
};
pub(super) const GROUP_COMMIT_BUCKETS: [f64; 9] =
    [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0];
pub(super) const INTERNAL_ERRORS: Family = Family {
    name: "hookrelay_internal_errors_total",
    help: "Internal errors (database, bugs), by where they happened; the cause is in the log.",
    labels: &["where"],
};
pub(super) const QUEUED_BYTES: Family = Family {
    name: "hookrelay_queued_bytes",
    help: "Memory charged by deliveries held in memory (see --max-queued-bytes).",
    labels: &[],
};

/// Registers a collector; every family is registered once, at start-up.
pub(super) fn register<C: Collector + Clone + 'static>(r: &Registry, collector: C) -> C {
    r.register(Box::new(collector.clone()))
        .expect("registered once");
    collector
}

pub(super) fn counter_vec(r: &Registry, f: &Family) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(f.name, f.help), f.labels).expect("valid metric"),
    )
}

pub(super) fn counter(r: &Registry, f: &Family) -> IntCounter {
    register(r, IntCounter::new(f.name, f.help).expect("valid metric"))
}

pub(super) fn gauge(r: &Registry, f: &Family) -> IntGauge {
    register(r, IntGauge::new(f.name, f.help).expect("valid metric"))
}

pub(super) fn histogram_vec(r: &Registry, f: &Family, buckets: &[f64]) -> HistogramVec {
    let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
    register(r, HistogramVec::new(opts, f.labels).expect("valid metric"))
}

pub(super) fn histogram(r: &Registry, f: &Family, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(f.name, f.help).buckets(buckets.to_vec());
    register(r, Histogram::with_opts(opts).expect("valid metric"))
}
