//! What follows an answer: `finish` tells health what happened, asks the
//! retry decision (`delivery::retry::next_step`) what to do, and carries it
//! out: free the slot, wait for the retry (keeping the slot), hold the
//! delivery while the endpoint is paused, or dead-letter it, and hold every
//! request back when the receiver pushed back (429, 503).

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::{EndpointActor, Job, SAVE_SUCCESS_EVERY};
use crate::delivery::health::{Effect, State};
use crate::delivery::notices::{Before, Observed};
use crate::delivery::recorder::Record;
use crate::delivery::retry::{self, Situation, Step};
use crate::delivery::sender::Attempt;
use crate::store::deliveries::Completion;
use crate::store::models::NewAttempt;

/// The parts of health whose change is saved soon.
type Counts = (State, u32, u32);

impl EndpointActor {
    /// Takes the answer to a delivery request (`probe`: it was sent above
    /// the level the window remembers, see `pacing.rs`).
    pub(super) fn finish(
        &mut self,
        mut job: Job,
        attempt: Attempt,
        probe: bool,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        self.metrics
            .attempt(attempt.outcome, attempt.duration.as_secs_f64());
        job.attempts += 1;
        self.pace_after(&attempt, probe);
        let now = Utc::now();
        let row = self.attempt_row(&job, &attempt, now);
        let before = self.health_counts();
        let seen = Before::of(&self.health);
        let effect = self.observe(&attempt, now);
        let decision = retry::next_step(
            &attempt,
            &Situation {
                attempts: job.attempts,
                state: self.health.state,
                schedule: &self.settings.retry_schedule,
                now,
                unit: retry::unit_random(),
                probe,
            },
        );
        if let Some(wait) = decision.hold_endpoint_for {
            self.hold_back(wait);
        }
        let completion = self.settle(job, decision.step, &attempt, now, ctx);
        self.record(
            Record {
                completion,
                attempt: row,
            },
            ctx,
        );
        // Failures and state changes are saved soon; a success that changes
        // nothing only refreshes `last_success_at` now and then.
        if self.health_counts() != before
            || !attempt.succeeded()
            || self.health_saved_at.elapsed() > SAVE_SUCCESS_EVERY
        {
            self.health_changed(ctx);
        }
        self.apply(effect, ctx);
        let observed = if attempt.succeeded() {
            Observed::DeliverySucceeded
        } else {
            Observed::Other
        };
        self.announce(seen, observed);
        self.pump(ctx);
    }

    /// The attempt's row in the attempt log: every attempt has one, a first
    /// attempt that succeeded too (the single-delivery view lists them all).
    fn attempt_row(&self, job: &Job, attempt: &Attempt, now: DateTime<Utc>) -> NewAttempt {
        NewAttempt {
            delivery_id: job.id.to_string(),
            endpoint_id: self.id,
            attempted_at: now.naive_utc(),
            status_code: attempt.status.map(i32::from),
            error: attempt.error.clone(),
            duration_ms: attempt.duration.as_millis() as i64,
            response_excerpt: attempt.excerpt.clone(),
        }
    }

    fn health_counts(&self) -> Counts {
        (
            self.health.state,
            self.health.consecutive_failures,
            self.health.failed_verifications,
        )
    }

    /// Tells health how the delivery went.
    fn observe(&mut self, attempt: &Attempt, now: DateTime<Utc>) -> Effect {
        match &attempt.error {
            None => self.health.delivery_succeeded(now),
            Some(error) => {
                self.health
                    .delivery_failed(now, error, attempt.gone(), &self.settings.policy)
            }
        }
    }

    /// No request to the endpoint for `wait` (or longer, if already held).
    fn hold_back(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        self.hold_until = Some(self.hold_until.map_or(until, |t| t.max(until)));
    }

    /// Carries out the decided step for `job`; answers what to record.
    fn settle(
        &mut self,
        mut job: Job,
        step: Step,
        attempt: &Attempt,
        now: DateTime<Utc>,
        ctx: &mut Context<Self>,
    ) -> Completion {
        let id = job.id.to_string();
        let attempts = job.attempts as i32;
        let error = attempt.error.clone().unwrap_or_default();
        match step {
            Step::Succeeded => {
                self.release(&job);
                self.metrics.succeeded();
                Completion::Succeeded { id, attempts }
            }
            Step::Hold => {
                // The endpoint is down; the attempt does not count against
                // the delivery.
                job.attempts = job.attempts.saturating_sub(1);
                let attempts = job.attempts as i32;
                self.hold(job);
                Completion::Retry {
                    id,
                    attempts,
                    next_attempt_at: now.naive_utc(),
                    error,
                }
            }
            Step::Release => {
                // The endpoint's burial dead-letters it.
                self.release(&job);
                Completion::Retry {
                    id,
                    attempts,
                    next_attempt_at: now.naive_utc(),
                    error,
                }
            }
            Step::Retry { after } => {
                job.not_before = Some(Instant::now() + after);
                self.start(job, ctx);
                Completion::Retry {
                    id,
                    attempts,
                    next_attempt_at: (now + after).naive_utc(),
                    error,
                }
            }
            Step::DeadLetter => {
                log::info!(
                    "endpoint {} ({}): delivery {id} is a dead letter after {attempts} attempts: {error}",
                    self.id,
                    self.url
                );
                self.release(&job);
                self.metrics.dead(1);
                Completion::Dead {
                    id,
                    attempts,
                    error,
                }
            }
        }
    }
}
