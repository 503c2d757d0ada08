//! `EndpointMetrics`: the series of one endpoint, resolved once so that
//! recording costs an atomic add, and dropped when its actor stops.

use std::cell::OnceCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus::{IntCounter, IntCounterVec};

use super::METRICS;
use super::gauges::EndpointGauges;

/// Outcome label of one attempt.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome {
    Success,
    HttpError,
    Timeout,
    ConnectError,
    Refused,
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

    /// Updates the endpoint's pacing gauges: its concurrency window and
    /// whether an operator holds it.
    pub fn pacing(&self, concurrency: u32, operator_paused: bool) {
        let g = &self.gauges;
        g.concurrency
            .store(i64::from(concurrency), Ordering::Relaxed);
        g.operator_paused
            .store(i64::from(operator_paused), Ordering::Relaxed);
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
