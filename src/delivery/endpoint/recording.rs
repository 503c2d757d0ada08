//! The hand-off to the recorder: finished attempts are passed on in
//! batches (`RECORD_AT`, or within `RECORD_EVERY`), with the deliveries let
//! go of meanwhile; the recorder's `Recorded` answer lets the actor forget
//! them. Changed health goes the same way (`SaveHealth`).

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::EndpointActor;
use crate::delivery::recorder::{Record, Recorded, Records, SaveHealth};
use crate::store::endpoints::HealthRow;

/// Changed health is saved at most this late.
const SAVE_HEALTH_EVERY: Duration = Duration::from_secs(5);
/// Finished attempts are passed to the recorder in groups, at most this
/// late (within the recorder's own `FLUSH_EVERY`: a trickle of deliveries
/// then wakes the recorder once per few of them, not once each).
const RECORD_EVERY: Duration = Duration::from_millis(50);
/// ... or as soon as this many are waiting.
const RECORD_AT: usize = 256;

impl EndpointActor {
    /// Marks the health as changed; it is saved within `SAVE_HEALTH_EVERY`.
    pub(super) fn health_changed(&mut self, ctx: &mut Context<Self>) {
        if !self.health_dirty {
            self.health_dirty = true;
            ctx.run_later(SAVE_HEALTH_EVERY, |act, ctx| {
                if act.health_dirty {
                    act.save_health(ctx);
                }
            });
        }
    }

    /// Queues a finished attempt for the recorder. An attempt that was in
    /// flight when its delivery was cancelled by an erasure keeps no
    /// answer excerpt (the erasure removed the others).
    pub(super) fn record(&mut self, mut record: Record, ctx: &mut Context<Self>) {
        if self.cancelled.contains(record.attempt.delivery_id.as_str()) {
            record.attempt.response_excerpt = None;
        }
        self.records.push(record);
        if self.records.len() >= RECORD_AT || self.draining {
            self.send_records(ctx);
        } else {
            self.schedule_records(ctx);
        }
    }

    /// Passes what waits to the recorder within `RECORD_EVERY`.
    fn schedule_records(&mut self, ctx: &mut Context<Self>) {
        if self.records_timer.is_none() {
            self.records_timer = Some(ctx.run_later(RECORD_EVERY, |act, ctx| {
                act.records_timer = None;
                act.send_records(ctx);
            }));
        }
    }

    pub(super) fn send_records(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.records_timer.take() {
            ctx.cancel_future(t);
        }
        if !self.records.is_empty() || !self.released.is_empty() {
            self.recorder.do_send(Records {
                records: std::mem::take(&mut self.records),
                released: std::mem::take(&mut self.released),
                from: ctx.address().recipient(),
            });
        }
    }

    /// Passes what waits to the recorder, and the health if it changed
    /// (before the actor stops or drains).
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
        self.send_records(ctx);
        if self.health_dirty {
            self.save_health(ctx);
        }
    }

    fn health_row(&self) -> HealthRow {
        HealthRow {
            state: self.health.state.as_str().to_string(),
            consecutive_failures: self.health.consecutive_failures as i32,
            failed_verifications: self.health.failed_verifications as i32,
            last_success_at: self.health.last_success_at.map(|t| t.naive_utc()),
            last_failure_at: self.health.last_failure_at.map(|t| t.naive_utc()),
            last_failure_reason: self.health.last_failure_reason.clone(),
            next_verification_at: self.next_check_at.map(|t| t.naive_utc()),
        }
    }

    /// Hands the health to the recorder, which writes it with its next
    /// batch (and again until it is written).
    pub(super) fn save_health(&mut self, _ctx: &mut Context<Self>) {
        self.health_dirty = false;
        self.health_saved_at = Instant::now();
        self.recorder
            .do_send(SaveHealth(self.id, self.health_row()));
    }
}

impl Handler<Recorded> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: Recorded, ctx: &mut Self::Context) {
        if self.backlog.loading {
            // The page being read may show them pending still: ask again,
            // and forget them once a confirmation comes while no read runs.
            self.released.extend(msg.0);
            self.schedule_records(ctx);
        } else {
            self.forget(msg.0);
        }
    }
}
