//! An operator's policy for one endpoint (DESIGN.md section 10): an
//! operator's hold, and overrides of the global delivery settings. Stored
//! with the endpoint, handed to its actor when it starts and whenever it
//! changes (`SetPolicy`), on whichever node the actor runs.

use std::time::Duration;

use super::DeliverySettings;

/// What an operator set for one endpoint; `None` means the global default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// An operator's hold: deliveries wait in order and no retries are
    /// spent; verification goes on. Distinct from the self-healing pause.
    pub paused: bool,
    /// At most this many requests in flight (1: strict order).
    pub max_in_flight: Option<u32>,
    /// At most this many requests started per second.
    pub max_per_second: Option<u32>,
    /// The request timeout for this endpoint.
    pub timeout: Option<Duration>,
}

impl EndpointPolicy {
    /// The most requests in flight, this endpoint's or the global one.
    pub fn max_in_flight(&self, settings: &DeliverySettings) -> u32 {
        self.max_in_flight.unwrap_or(settings.max_in_flight)
    }

    /// The policy endpoint `id` runs with: the operator webhook's endpoint
    /// sends one notice at a time (in order) unless an operator set
    /// otherwise.
    pub fn for_endpoint(mut self, id: i64, settings: &DeliverySettings) -> EndpointPolicy {
        if settings.operator_endpoint == Some(id) && self.max_in_flight.is_none() {
            self.max_in_flight = Some(1);
        }
        self
    }

    /// The request timeout, this endpoint's or the global one.
    pub fn timeout(&self, settings: &DeliverySettings) -> Duration {
        self.timeout.unwrap_or(settings.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::health::Policy;

    fn settings() -> DeliverySettings {
        DeliverySettings {
            timeout: Duration::from_secs(10),
            retry_schedule: Vec::new(),
            max_in_flight: 32,
            adaptive_concurrency: true,
            verify_interval: Duration::from_secs(3600),
            probe_interval: Duration::from_secs(1),
            probe_max_interval: Duration::from_secs(60),
            policy: Policy {
                pause_after_failures: 5,
                dead_after_failed_verifications: 3,
            },
            operator_endpoint: None,
        }
    }

    #[test]
    fn the_operator_webhook_sends_one_at_a_time_unless_an_operator_says_otherwise() {
        let settings = DeliverySettings {
            operator_endpoint: Some(9),
            ..settings()
        };
        let default = EndpointPolicy::default();
        assert_eq!(default.for_endpoint(9, &settings).max_in_flight, Some(1));
        assert_eq!(default.for_endpoint(8, &settings).max_in_flight, None);
        let set = EndpointPolicy {
            max_in_flight: Some(4),
            ..default
        };
        assert_eq!(set.for_endpoint(9, &settings).max_in_flight, Some(4));
    }

    #[test]
    fn an_endpoint_without_a_policy_uses_the_global_settings() {
        let policy = EndpointPolicy::default();
        assert_eq!(policy.max_in_flight(&settings()), 32);
        assert_eq!(policy.timeout(&settings()), Duration::from_secs(10));
        assert!(!policy.paused);
    }

    #[test]
    fn an_endpoints_own_values_win_over_the_global_settings() {
        let policy = EndpointPolicy {
            max_in_flight: Some(1),
            timeout: Some(Duration::from_millis(250)),
            ..EndpointPolicy::default()
        };
        assert_eq!(policy.max_in_flight(&settings()), 1);
        assert_eq!(policy.timeout(&settings()), Duration::from_millis(250));
    }
}
