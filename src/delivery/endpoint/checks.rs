//! Checks, probes and death: the scheduled verification calls, the probe
//! after a run of failures and the probes while paused, carrying out the
//! health `Effect`s they and deliveries lead to, and the burial of a dead
//! endpoint (its subscriptions removed, its owner told).

use std::sync::Arc;

use actix::prelude::*;
use chrono::Utc;

use super::{AFTER_DB_ERROR, EndpointActor, EndpointDied, Resume};
use crate::delivery::health::{Effect, State};
use crate::delivery::notices::{Before, Observed};
use crate::delivery::recorder::Bury;
use crate::delivery::retry;
use crate::delivery::sender::{self, Attempt};
use crate::metrics::METRICS;
use crate::signing::Secrets;
use crate::store::StoreError;

/// Fraction of the verification interval used to spread first checks.
const CHECK_JITTER: f64 = 0.1;
/// Probe waits vary by this fraction either way, so endpoints that failed
/// together are not probed together.
const PROBE_JITTER: f64 = 0.2;
/// Verification calls and probes in flight at once, over all endpoints of
/// the node: thousands failing at once are checked a few dozen at a time.
static CHECKS_IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// The kinds of verification call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Every `--verify-interval`; failures count toward death.
    Scheduled,
    /// After a run of failed deliveries: is the endpoint down?
    Suspicion,
    /// While paused, on backoff, until it answers.
    Probe,
}

impl Check {
    fn name(self) -> &'static str {
        match self {
            Check::Scheduled => "verification call",
            Check::Suspicion | Check::Probe => "probe",
        }
    }
}

impl EndpointActor {
    /// A secret to sign verification calls with.
    fn any_secret(&self) -> Option<Arc<Secrets>> {
        self.subscriptions
            .values()
            .next()
            .cloned()
            .or_else(|| self.queue.front().map(|j| j.secret.clone()))
    }

    /// Carries out what health asked for.
    pub(super) fn apply(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::Nothing => {}
            Effect::Probe => {
                if !self.suspecting {
                    self.suspecting = true;
                    self.verify(ctx, Check::Suspicion);
                }
            }
            Effect::Pause => self.pause(ctx),
            Effect::Resume => self.resume(ctx),
            Effect::Die(reason) => self.die(reason, ctx),
        }
        self.update_gauges();
    }

    fn pause(&mut self, ctx: &mut Context<Self>) {
        log::warn!(
            "endpoint {} ({}) paused after {} failed attempts in a row (last: {}); holding its deliveries and probing it",
            self.id,
            self.url,
            self.health.consecutive_failures,
            self.health.last_failure_reason.as_deref().unwrap_or("?")
        );
        self.failed_probes = 0;
        self.schedule_probe(ctx);
        self.save_health(ctx);
    }

    fn resume(&mut self, ctx: &mut Context<Self>) {
        log::info!(
            "endpoint {} ({}) answers again; sending {} held deliveries",
            self.id,
            self.url,
            self.queue.len()
        );
        if let Some(t) = self.probe_timer.take() {
            ctx.cancel_future(t);
        }
        self.save_health(ctx);
        self.pump(ctx);
    }

    pub(super) fn schedule_probe(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.probe_timer.take() {
            ctx.cancel_future(t);
        }
        let factor = 2u32.saturating_pow(self.failed_probes.min(20));
        let wait = self
            .settings
            .probe_interval
            .saturating_mul(factor)
            .min(self.settings.probe_max_interval)
            .mul_f64(1.0 + PROBE_JITTER * (2.0 * retry::unit_random() - 1.0));
        self.probe_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.probe_timer = None;
            act.verify(ctx, Check::Probe);
        }));
    }

    /// Sends a verification call of the given kind.
    fn verify(&mut self, ctx: &mut Context<Self>, kind: Check) {
        if self.draining || self.health.state == State::Dead {
            return;
        }
        let Some(secret) = self.any_secret() else {
            // Nothing subscribes here any more; nothing to check for.
            match kind {
                Check::Scheduled => self.schedule_check(ctx, false),
                Check::Suspicion => self.suspecting = false,
                Check::Probe => {}
            }
            return;
        };
        let url = self.url.clone();
        let timeout = self.policy.timeout(&self.settings);
        let call = async move {
            let _turn = CHECKS_IN_FLIGHT.acquire().await;
            sender::verify(&url, &secret.current, timeout).await
        };
        ctx.spawn(
            call.into_actor(self)
                .map(move |attempt, act, ctx| act.checked(kind, attempt, ctx)),
        );
    }

    /// Takes the answer to a verification call.
    fn checked(&mut self, kind: Check, attempt: Attempt, ctx: &mut Context<Self>) {
        self.metrics.verification(attempt.succeeded());
        let seen = Before::of(&self.health);
        let effect = self.observe_check(kind, &attempt, ctx);
        if let Some(error) = &attempt.error {
            log::info!("endpoint {}: {} failed: {error}", self.id, kind.name());
        }
        let paused_before = self.health.state == State::Paused;
        self.apply(effect, ctx);
        self.announce(seen, Observed::Other);
        if self.health.state == State::Dead {
            return;
        }
        match kind {
            Check::Scheduled => {
                self.schedule_check(ctx, false);
                self.save_health(ctx);
            }
            Check::Probe if paused_before && self.health.state == State::Paused => {
                self.failed_probes += 1;
                self.schedule_probe(ctx);
            }
            _ => {}
        }
    }

    /// Tells health how a verification call went.
    fn observe_check(&mut self, kind: Check, attempt: &Attempt, ctx: &mut Context<Self>) -> Effect {
        let now = Utc::now();
        let (error, gone) = (attempt.error.as_deref(), attempt.gone());
        match kind {
            Check::Scheduled => self
                .health
                .check_answered(now, error, gone, &self.settings.policy),
            Check::Probe => self.health.probe_answered(now, error, gone),
            Check::Suspicion => {
                self.suspecting = false;
                let effect = self.health.suspicion_answered(now, error, gone);
                // What waited for the answer goes out, unless paused now.
                ctx.notify(Resume);
                effect
            }
        }
    }

    /// Schedules the next verification call; the first one after a start is
    /// spread over a fraction of the interval.
    pub(super) fn schedule_check(&mut self, ctx: &mut Context<Self>, first: bool) {
        let interval = self.settings.verify_interval;
        let now = Utc::now();
        let wait = match (first, self.next_check_at) {
            (true, Some(at)) if at > now => (at - now).to_std().unwrap_or(interval),
            (true, _) => interval.mul_f64(1.0 - CHECK_JITTER * retry::unit_random()),
            (false, _) => interval,
        };
        self.next_check_at = chrono::Duration::from_std(wait).ok().map(|d| now + d);
        ctx.run_later(wait, |act, ctx| act.verify(ctx, Check::Scheduled));
    }

    /// The endpoint is dead: remove its subscriptions, dead-letter what it
    /// holds and store the notices of its death (one transaction, by the
    /// recorder after the notices it took before), tell the owner, stop.
    fn die(&mut self, reason: String, ctx: &mut Context<Self>) {
        log::warn!(
            "endpoint {} ({}) is dead: {reason}; removing its {} subscriptions",
            self.id,
            self.url,
            self.subscriptions.len()
        );
        self.metrics
            .gauges(0, 0, self.health.consecutive_failures, false, false);
        let bury = self.recorder.send(Bury {
            endpoint_id: self.id,
            reason: reason.clone(),
            notices: self.death_notices(&reason),
        });
        ctx.spawn(bury.into_actor(self).map(move |result, act, ctx| {
            match result.unwrap_or(Err(StoreError::TaskFailed)) {
                Ok(subscription_ids) => act.buried(subscription_ids, ctx),
                Err(e) => {
                    log::error!(
                        "endpoint {}: could not remove its subscriptions: {e}; retrying",
                        act.id
                    );
                    crate::metrics::internal_error(crate::metrics::ErrorSite::Endpoint);
                    ctx.run_later(AFTER_DB_ERROR, move |act, ctx| act.die(reason, ctx));
                }
            }
        }));
    }

    /// Its subscriptions are removed (and the notices of its death stored
    /// with them): tell the owner and stop.
    fn buried(&mut self, subscription_ids: Vec<i64>, ctx: &mut Context<Self>) {
        METRICS
            .auto_unsubscribed
            .inc_by(subscription_ids.len() as u64);
        self.metrics.dead(self.known.len() as u64);
        self.owner.died.do_send(EndpointDied {
            endpoint_id: self.id,
            actor: ctx.address(),
            subscription_ids,
        });
        self.metrics.remove();
        ctx.stop();
    }
}
