//! `Job`: one delivery as the endpoint actor holds it in memory, from its
//! first attempt or read back from the database queue.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::delivery::budget::{Charge, QUEUED};
use crate::signing::Secrets;
use crate::store::deliveries::JobRow;

/// One delivery of one event to one subscription.
#[derive(Debug, Clone)]
pub struct Job {
    /// The delivery id; also the `webhook-id`, the same on every retry.
    pub id: Arc<str>,
    pub subscription_id: i64,
    pub secret: Arc<Secrets>,
    pub body: Bytes,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not to be sent before this (a retry's wait).
    pub not_before: Option<Instant>,
    /// Its share of the memory budget of queued deliveries.
    _charge: Charge,
}

impl Job {
    /// A delivery to send from its first attempt on.
    pub fn new(id: Arc<str>, subscription_id: i64, secret: Arc<Secrets>, body: Bytes) -> Job {
        Job {
            _charge: QUEUED.charge(&id, &body),
            id,
            subscription_id,
            secret,
            body,
            attempts: 0,
            not_before: None,
        }
    }

    /// A pending delivery read from the database, signed with `secret`.
    pub(super) fn from_row(row: JobRow, secret: Arc<Secrets>) -> Job {
        let wait = (row.next_attempt_at - crate::store::now())
            .to_std()
            .ok()
            .filter(|d| !d.is_zero());
        Job {
            attempts: row.attempts.max(0) as u32,
            not_before: wait.map(|d| Instant::now() + d),
            ..Job::new(
                Arc::from(row.id),
                row.subscription_id,
                secret,
                Bytes::from(row.body),
            )
        }
    }
}
