//! How the actor applies pacing (`delivery::pace`): a request starts only
//! while the concurrency window has room and the token bucket (when the
//! policy sets `maxPerSecond`) has a token; when the bucket is empty one
//! timer wakes the send loop when the next token is due. Answers feed the
//! window (not while it is at rest: at its bound, no congestion
//! remembered, and the answer good); a policy change re-bounds both at
//! once.

use std::time::Instant;

use actix::prelude::*;

use super::{EndpointActor, EndpointPolicy};
use crate::delivery::pace::{Bucket, Congestion, Signal, signal};
use crate::delivery::sender::Attempt;
use crate::metrics::AttemptOutcome;

impl EndpointActor {
    /// Whether the window has room for one more request.
    pub(super) fn window_has_room(&self) -> bool {
        self.in_flight < self.window.limit()
    }

    /// Whether a token is there now (none is taken); if not, the send loop
    /// runs again when the next one is due.
    pub(super) fn token_ready(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(bucket) = &mut self.bucket else {
            return true;
        };
        let wait = bucket.wait(Instant::now());
        if wait.is_zero() {
            return true;
        }
        self.wake_for_token(wait, ctx);
        false
    }

    /// Takes what a request needs to start now: room in the window and a
    /// token. Without them it starts later (the send loop runs again when
    /// an answer comes or the next token is due).
    pub(super) fn may_post(&mut self, ctx: &mut Context<Self>) -> bool {
        if !self.window_has_room() {
            return false;
        }
        let Some(bucket) = &mut self.bucket else {
            return true;
        };
        match bucket.take(Instant::now()) {
            Ok(()) => true,
            Err(wait) => {
                self.wake_for_token(wait, ctx);
                false
            }
        }
    }

    fn wake_for_token(&mut self, wait: std::time::Duration, ctx: &mut Context<Self>) {
        if self.token_timer.is_none() {
            self.token_timer = Some(ctx.run_later(wait, |act, ctx| {
                act.token_timer = None;
                act.pump(ctx);
            }));
        }
    }

    /// Whether a request starting now (the `level`-th in flight) probes
    /// above the level the receiver last refused at.
    pub(super) fn probing(&self, level: u32) -> bool {
        self.window.probing(level)
    }

    /// Tells the window what an answer says about the endpoint's capacity;
    /// `probe`: the request was sent as a probe. Good answers to a window
    /// at rest are skipped (the cheap check first).
    pub(super) fn pace_after(&mut self, attempt: &Attempt, probe: bool) {
        let timed_out = matches!(attempt.outcome, AttemptOutcome::Timeout);
        let refused = matches!(attempt.status, Some(429) | Some(503));
        if self.window.at_rest() && !timed_out && !refused {
            return;
        }
        let fast = attempt.succeeded() && self.latency.observe(attempt.duration);
        match signal(attempt.status, timed_out, fast) {
            Signal::Widen => self.window.widen(Instant::now()),
            Signal::Steady => self.window.steady(),
            Signal::Narrow => self.window.narrow(
                Congestion {
                    others: self.in_flight,
                    instant: !timed_out && self.latency.is_instant(attempt.duration),
                    probe,
                },
                Instant::now(),
            ),
        }
    }

    /// Applies an operator's new policy: the window's bound and the bucket
    /// follow it at once.
    pub(super) fn apply_policy(&mut self, policy: EndpointPolicy, ctx: &mut Context<Self>) {
        let policy = policy.for_endpoint(self.id, &self.settings);
        self.policy = policy;
        self.window.set_max(policy.max_in_flight(&self.settings));
        let rate = self.bucket.as_ref().map(Bucket::rate);
        if rate != policy.max_per_second {
            self.bucket = policy
                .max_per_second
                .map(|r| Bucket::new(r, Instant::now()));
            if let Some(timer) = self.token_timer.take() {
                ctx.cancel_future(timer);
            }
        }
    }
}
