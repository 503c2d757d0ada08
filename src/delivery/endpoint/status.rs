//! The endpoint's state as operators see it (`Status` → `EndpointStatus`).

use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::EndpointActor;

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
            state: self.health.state.as_str(),
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

    /// When the endpoint's `Retry-After` hold ends, if one runs.
    fn held_until(&self) -> Option<DateTime<Utc>> {
        let left = self.hold_until?.checked_duration_since(Instant::now())?;
        chrono::Duration::from_std(left)
            .ok()
            .map(|d| Utc::now() + d)
    }
}
