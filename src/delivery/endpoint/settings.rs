//! The delivery settings every endpoint actor shares, from the configuration.

use std::time::Duration;

use crate::delivery::health::Policy;

/// Delivery settings shared by every endpoint actor.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub max_in_flight: u32,
    /// An adaptive concurrency window within `max_in_flight`; off, the
    /// window is always `max_in_flight`.
    pub adaptive_concurrency: bool,
    pub verify_interval: Duration,
    pub probe_interval: Duration,
    pub probe_max_interval: Duration,
    pub policy: Policy,
    /// The endpoint of `--operator-webhook`, when one is set: it never dies
    /// and gives no notices about itself.
    pub operator_endpoint: Option<i64>,
}
