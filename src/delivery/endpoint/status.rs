//! The endpoint's state as operators see it (`Status` → `EndpointStatus`).

use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::EndpointActor;
use crate::delivery::health::State;

/// A snapshot of the endpoint's state, for operators.
#[derive(Message)]
#[rtype(result = "EndpointStatus")]
pub struct Status;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    pub id: i64,
    pub url: String,
    pub state: &'static str,
    /// `operator` while an operator holds it, else `health` while
    /// self-healing paused it.
    pub paused_by: Option<&'static str>,
    /// The current concurrency window.
    pub concurrency: u32,
    pub queue_depth: usize,
    pub backlog_in_database: bool,
    pub in_flight: u32,
    pub waiting_for_retry: u32,
    pub consecutive_failures: u32,
    pub failed_verifications: u32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure_reason: Option<String>,
    pub next_verification_at: Option<DateTime<Utc>>,
    pub held_until: Option<DateTime<Utc>>,
    pub subscription_count: usize,
}

impl Handler<Status> for EndpointActor {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _: Status, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

impl EndpointActor {
    fn status(&self) -> EndpointStatus {
        let waiting_for_retry = self.slots_used - self.in_flight;
        EndpointStatus {
            id: self.id,
            url: self.url.to_string(),
            state: self.state_name(),
            paused_by: self.paused_by(),
            concurrency: self.window.limit(),
            queue_depth: self.queue.len() + waiting_for_retry as usize,
            backlog_in_database: self.backlog.more_in_db,
            in_flight: self.in_flight,
            waiting_for_retry,
            consecutive_failures: self.health.consecutive_failures,
            failed_verifications: self.health.failed_verifications,
            last_success_at: self.health.last_success_at,
            last_failure_at: self.health.last_failure_at,
            last_failure_reason: self.health.last_failure_reason.clone(),
            next_verification_at: self.next_check_at,
            held_until: self.held_until(),
            subscription_count: self.subscriptions.len(),
        }
    }

    /// The state operators see: `paused` while an operator holds it.
    fn state_name(&self) -> &'static str {
        shown_state(self.policy.paused, self.health.state)
    }

    fn paused_by(&self) -> Option<&'static str> {
        paused_by(self.policy.paused, self.health.state)
    }

    /// When the endpoint's `Retry-After` hold ends, if one runs.
    fn held_until(&self) -> Option<DateTime<Utc>> {
        let left = self.hold_until?.checked_duration_since(Instant::now())?;
        chrono::Duration::from_std(left)
            .ok()
            .map(|d| Utc::now() + d)
    }
}

/// The state shown: `paused` while an operator holds the endpoint (unless
/// it is dead), else its health's.
pub fn shown_state(operator_hold: bool, health: State) -> &'static str {
    if operator_hold && health != State::Dead {
        State::Paused.as_str()
    } else {
        health.as_str()
    }
}

/// Who paused the endpoint: the operator's hold wins over self-healing.
pub fn paused_by(operator_hold: bool, health: State) -> Option<&'static str> {
    if operator_hold {
        Some("operator")
    } else if health == State::Paused {
        Some("health")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_hold_shows_as_paused_by_the_operator_whatever_health_says() {
        for health in [State::Healthy, State::Failing, State::Paused] {
            assert_eq!(shown_state(true, health), "paused");
            assert_eq!(paused_by(true, health), Some("operator"));
        }
    }

    #[test]
    fn a_self_healing_pause_shows_as_paused_by_health() {
        assert_eq!(shown_state(false, State::Paused), "paused");
        assert_eq!(paused_by(false, State::Paused), Some("health"));
    }

    #[test]
    fn a_running_endpoint_is_paused_by_nobody() {
        assert_eq!(shown_state(false, State::Failing), "failing");
        assert_eq!(paused_by(false, State::Healthy), None);
        assert_eq!(paused_by(false, State::Failing), None);
    }
}
