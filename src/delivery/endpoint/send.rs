//! The send loop: `pump` starts queued deliveries while slots are free and
//! sending is allowed, `start` waits out a retry's delay, `send` makes the
//! request, and the answer goes to `finish` (`outcome.rs`). An actor whose
//! endpoint nothing uses any more retires here.

use std::time::Instant;

use actix::prelude::*;
use foldhash::{HashSet, HashSetExt};
use std::collections::VecDeque;

use super::{EndpointActor, Job, Retired};
use crate::delivery::health::State;
use crate::delivery::sender;

/// Capacity an emptied queue or id set may keep; beyond it, it is freed.
const KEEP_CAPACITY: usize = 1024;

impl EndpointActor {
    /// Whether requests may start: not while draining, held by an
    /// operator, paused or dead, and not while a probe after a run of
    /// failures is out (its answer decides whether the endpoint is down;
    /// meanwhile no retry is spent).
    pub(super) fn sending_allowed(&self) -> bool {
        !self.draining
            && !self.policy.paused
            && !self.suspecting
            && matches!(self.health.state, State::Healthy | State::Failing)
    }

    /// Starts deliveries while slots are free, the concurrency window has
    /// room and a token is there, and refills the in-memory window. The
    /// gauges are set once, at the end.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.sending_allowed() && !self.held_back(ctx) {
            let max_in_flight = self.policy.max_in_flight(&self.settings);
            while self.slots_used < max_in_flight
                && self.window_has_room()
                && !self.queue.is_empty()
                && self.token_ready(ctx)
            {
                let Some(job) = self.queue.pop_front() else {
                    break;
                };
                self.slots_used += 1;
                self.start(job, ctx);
            }
            self.refill(ctx);
            self.shrink_when_idle();
        }
        self.update_gauges();
    }

    /// Whether a receiver's `Retry-After` still holds every request back;
    /// if so, the pump runs again when it ends.
    fn held_back(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(until) = self.hold_until else {
            return false;
        };
        let now = Instant::now();
        if until <= now {
            self.hold_until = None;
            return false;
        }
        if self.wake.is_none() {
            self.wake = Some(ctx.run_later(until - now, |act, ctx| {
                act.wake = None;
                act.pump(ctx);
            }));
        }
        true
    }

    /// Gives back the memory of a burst once it is over: an emptied queue
    /// or id set keeps its largest capacity otherwise (megabytes after a
    /// backlog of tens of thousands).
    pub(super) fn shrink_when_idle(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > KEEP_CAPACITY {
            self.queue = VecDeque::new();
        }
        if self.known.is_empty() && self.known.capacity() > KEEP_CAPACITY {
            self.known = HashSet::new();
        }
        if self.recently_done.is_empty() && self.recently_done.capacity() > KEEP_CAPACITY {
            self.recently_done = HashSet::new();
        }
    }

    pub(super) fn update_gauges(&self) {
        self.metrics.gauges(
            self.queue.len(),
            self.in_flight,
            self.health.consecutive_failures,
            self.health.state == State::Healthy,
            self.health.state == State::Paused,
        );
        self.metrics.pacing(self.window.limit(), self.policy.paused);
    }

    /// Sends `job` now, or when its retry wait is over. It holds a slot.
    pub(super) fn start(&mut self, job: Job, ctx: &mut Context<Self>) {
        match job.not_before {
            Some(at) if at > Instant::now() => {
                ctx.run_later(at - Instant::now(), move |act, ctx| act.send(job, ctx));
            }
            _ => self.send(job, ctx),
        }
    }

    fn send(&mut self, job: Job, ctx: &mut Context<Self>) {
        if self.draining {
            // Shutting down: it stays pending in the database.
            self.slots_used -= 1;
            return;
        }
        if self.cancelled_before_start(&job) {
            // Cancelled (an erasure) while it waited: never sent.
            self.pump(ctx);
            self.retire_if_unused(ctx);
            return;
        }
        if self.removed_subscriptions.contains(&job.subscription_id) {
            // Its subscription was removed while it waited (its row was
            // cancelled with the subscription).
            self.release(&job);
            self.pump(ctx);
            self.retire_if_unused(ctx);
            return;
        }
        if !self.sending_allowed() || self.hold_until.is_some_and(|t| t > Instant::now()) {
            self.hold(job);
            self.pump(ctx);
            return;
        }
        if !self.may_post(ctx) {
            // A retry whose wait is over waits for room or a token in the
            // queue, in order; it is not attempted meanwhile.
            self.hold(job);
            return;
        }
        self.post(job, ctx);
    }

    /// Makes the request; its answer goes to `finish`.
    fn post(&mut self, job: Job, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let probe = self.probing(self.in_flight);
        let url = self.url.clone();
        let timeout = self.policy.timeout(&self.settings);
        let body = job.body.clone();
        // Its subscription's latest keys: a rotation since it was queued
        // signs it too.
        let secret = self
            .subscriptions
            .get(&job.subscription_id)
            .unwrap_or(&job.secret)
            .clone();
        let id = job.id.clone();
        // The address check is the client's (`sender`), as for every request.
        let request = async move { sender::post(&url, body, &secret, &id, timeout).await };
        ctx.spawn(
            request
                .into_actor(self)
                .map(move |attempt, act, ctx| act.finish(job, attempt, probe, ctx)),
        );
    }

    /// Stops the actor once nothing subscribes to the endpoint and nothing is
    /// held or in flight (a new subscription starts a fresh one).
    pub(super) fn retire_if_unused(&mut self, ctx: &mut Context<Self>) {
        let unused = self.subscriptions.is_empty()
            && self.queue.is_empty()
            && self.slots_used == 0
            && !self.backlog.more_in_db
            && !self.backlog.loading;
        if unused {
            log::info!(
                "endpoint {} has no subscriptions left; its actor stops",
                self.id
            );
            self.flush(ctx);
            self.owner.retired.do_send(Retired {
                endpoint_id: self.id,
                actor: ctx.address(),
            });
            ctx.stop();
        }
    }
}
