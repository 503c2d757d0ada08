//! The endpoint actor: one per distinct endpoint URL, shared by every
//! subscription (of any tenant) that uses it. It owns the endpoint's FIFO of
//! pending deliveries, its slots (requests in flight or waiting for a retry,
//! at most `--max-in-flight-per-endpoint`), its retry timers, its
//! verification timer, its health (`health.rs`) and its metrics.
//!
//! ```text
//!   Router ──Enqueue──►  queue (in memory: a bounded window onto the database queue)
//!                          │  pump: while a slot is free, not paused, not held back
//!                          ▼
//!                        send ──► endpoint ──► finish: success │ retry (keeps its slot, waits) │ dead letter
//!                                                  └──► Recorder (batched writes)
//!   database ──pending_page──► queue, when the window runs low (restart, backlog, pause)
//!   timers: scheduled verification (--verify-interval) · probes while paused · Retry-After hold
//! ```
//!
//! Every delivery the actor holds is already durable, so it never has to
//! save a delivery before acting; a crash only repeats in-flight requests.
//! Health is saved periodically and at once on pause, resume and failed
//! checks. When the endpoint counts itself dead it removes its
//! subscriptions (kept with the reason), dead-letters what it holds, tells
//! the Router, and stops.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::budget::{Charge, QUEUED};
use super::health::{Effect, Health, Policy, State};
use super::recorder::{Record, Recorded, Recorder, Records, SaveHealth};
use super::retry;
use super::sender::{self, Attempt};
use crate::endpoint_url::EndpointUrl;
use crate::metrics::{EndpointMetrics, METRICS};
use crate::router::{EndpointDied, Retired, Router};
use crate::signing::Secret;
use crate::store::Store;
use crate::store::deliveries::{self, Completion, JobRow};
use crate::store::endpoints::{self as endpoint_store, HealthRow};
use crate::store::models::NewAttempt;

/// Pending deliveries read from the database per page.
const PAGE: usize = 1024;
/// Deliveries an endpoint may always hold in memory; beyond it new ones wait
/// in the database once the memory budget (`budget`) is used up.
const WINDOW: usize = 8 * PAGE;
/// Most deliveries an endpoint holds in memory, budget or not.
const MAX_WINDOW: usize = 64 * PAGE;
/// Wait before touching the database again after a failed query.
const AFTER_DB_ERROR: Duration = Duration::from_secs(1);
/// Changed health is saved at most this late.
const SAVE_HEALTH_EVERY: Duration = Duration::from_secs(5);
/// A busy, healthy endpoint refreshes its saved `last_success_at` this often.
const SAVE_SUCCESS_EVERY: Duration = Duration::from_secs(60);
/// Finished attempts are passed to the recorder in groups, at most this late.
const RECORD_EVERY: Duration = Duration::from_millis(5);
/// ... or as soon as this many are waiting.
const RECORD_AT: usize = 256;
/// Fraction of the verification interval used to spread first checks.
const CHECK_JITTER: f64 = 0.1;
/// Probe waits vary by this fraction either way, so endpoints that failed
/// together are not probed together.
const PROBE_JITTER: f64 = 0.2;
/// Verification calls and probes in flight at once, over all endpoints of
/// the node: thousands failing at once are checked a few dozen at a time.
static CHECKS_IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// Delivery settings shared by every endpoint actor.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub max_in_flight: u32,
    pub verify_interval: Duration,
    pub probe_interval: Duration,
    pub probe_max_interval: Duration,
    pub policy: Policy,
}

impl DeliverySettings {
    /// The longest delay a receiver's `Retry-After` may impose.
    pub fn retry_after_cap(&self) -> Duration {
        self.retry_schedule
            .iter()
            .copied()
            .max()
            .unwrap_or(Duration::from_secs(60))
    }

    /// The wait after a 429 without `Retry-After`: twice a first retry step.
    fn too_many_requests_wait(&self) -> Duration {
        2 * self
            .retry_schedule
            .first()
            .copied()
            .unwrap_or(Duration::from_secs(10))
    }
}

/// One delivery of one event to one subscription.
#[derive(Debug, Clone)]
pub struct Job {
    /// The delivery id; also the `webhook-id`, the same on every retry.
    pub id: Arc<str>,
    pub subscription_id: i64,
    pub secret: Arc<Secret>,
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
    pub fn new(id: Arc<str>, subscription_id: i64, secret: Arc<Secret>, body: Bytes) -> Job {
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

    fn from_row(row: JobRow, secret: Arc<Secret>) -> Job {
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

/// The kinds of verification call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
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

/// New durable deliveries for this endpoint, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub Vec<Job>);

/// A dead letter put back in the queue by an operator.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replayed(pub Job);

/// A subscription now uses this endpoint (its secret signs verification calls).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscription {
    pub id: i64,
    pub secret: Arc<Secret>,
}

/// A subscription was removed: drop its queued deliveries.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetSubscription(pub i64);

/// Stop starting requests (shutdown). Answers the number still in flight.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct BeginDrain;

/// Saves health and stops the actor now (its lease is gone or handed over).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopNow;

/// Another node stored deliveries for this endpoint: read the queue again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poke;

/// How far back a poke re-reads the queue: deliveries are ordered by a
/// time-based id written by whichever node accepted the event, so a node
/// whose clock runs behind writes ids older than the reader's cursor.
const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(10);

/// Stops `endpoints` from starting requests and waits until the ones in
/// flight are done, or the deadline passes (those are sent again later).
pub async fn drain(endpoints: &[Addr<EndpointActor>], deadline: Instant) {
    for addr in endpoints {
        let _ = addr.send(BeginDrain).await;
    }
    loop {
        let mut in_flight = 0;
        for addr in endpoints {
            in_flight += addr.send(InFlight).await.unwrap_or(0);
        }
        if in_flight == 0 {
            return;
        }
        if Instant::now() >= deadline {
            log::warn!(
                "{in_flight} deliveries still in flight at the deadline; they will be sent again"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The number of requests in flight.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct InFlight;

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

/// The window onto the database queue.
#[derive(Default)]
struct Backlog {
    /// The database may hold pending deliveries not yet in memory.
    more_in_db: bool,
    loading: bool,
    /// Id of the last delivery read from the database (or, once the window
    /// overflowed, the newest id held in memory).
    cursor: Option<String>,
    /// Deliveries that arrived while a page was being read.
    arrived: Vec<Job>,
}

pub struct EndpointActor {
    id: i64,
    url: Arc<EndpointUrl>,
    settings: Arc<DeliverySettings>,
    store: Store,
    recorder: Addr<Recorder>,
    router: Addr<Router>,
    queue: VecDeque<Job>,
    /// Ids of every delivery held in memory (queued, in flight or waiting).
    known: HashSet<Arc<str>>,
    /// The newest delivery id held in memory.
    newest: Option<Arc<str>>,
    /// Finished attempts not yet passed to the recorder.
    records: Vec<Record>,
    records_timer: Option<SpawnHandle>,
    /// Deliveries let go of whose outcome the recorder has not confirmed
    /// yet (`Recorded`): a read of the queue meanwhile may still see them
    /// pending, and must not send them again.
    recently_done: HashSet<Arc<str>>,
    /// Of those, the ones not yet passed to the recorder.
    released: Vec<Arc<str>>,
    /// Requests in flight plus deliveries waiting for their retry.
    slots_used: u32,
    in_flight: u32,
    backlog: Backlog,
    draining: bool,
    subscriptions: HashMap<i64, Arc<Secret>>,
    /// Subscriptions removed while this actor held deliveries for them.
    removed_subscriptions: HashSet<i64>,
    health: Health,
    health_dirty: bool,
    health_saved_at: Instant,
    /// No request before this (a receiver's `Retry-After`).
    hold_until: Option<Instant>,
    wake: Option<SpawnHandle>,
    probe_timer: Option<SpawnHandle>,
    failed_probes: u32,
    /// A probe after a run of failures is on its way.
    suspecting: bool,
    next_check_at: Option<DateTime<Utc>>,
    metrics: EndpointMetrics,
}

impl EndpointActor {
    /// An actor for `url`; `backlog` says whether the database holds pending
    /// deliveries for it; `saved` is its saved health, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        url: Arc<EndpointUrl>,
        settings: Arc<DeliverySettings>,
        store: Store,
        recorder: Addr<Recorder>,
        router: Addr<Router>,
        backlog: bool,
        saved: Option<HealthRow>,
    ) -> EndpointActor {
        let (health, next_check_at) = match saved {
            Some(row) => restore(row),
            None => (Health::default(), None),
        };
        EndpointActor {
            id,
            url,
            settings,
            store,
            recorder,
            router,
            queue: VecDeque::new(),
            known: HashSet::new(),
            newest: None,
            records: Vec::new(),
            records_timer: None,
            recently_done: HashSet::new(),
            released: Vec::new(),
            slots_used: 0,
            in_flight: 0,
            backlog: Backlog {
                more_in_db: backlog,
                ..Backlog::default()
            },
            draining: false,
            subscriptions: HashMap::new(),
            removed_subscriptions: HashSet::new(),
            health,
            health_dirty: false,
            health_saved_at: Instant::now(),
            hold_until: None,
            wake: None,
            probe_timer: None,
            failed_probes: 0,
            suspecting: false,
            next_check_at,
            metrics: EndpointMetrics::new(id),
        }
    }

    /// Whether requests may start: not while draining, paused or dead, and
    /// not while a probe after a run of failures is out (its answer decides
    /// whether the endpoint is down; meanwhile no retry is spent).
    fn sending_allowed(&self) -> bool {
        !self.draining
            && !self.suspecting
            && matches!(self.health.state, State::Healthy | State::Failing)
    }

    /// Starts deliveries while slots are free, and refills the window.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.update_gauges();
        if !self.sending_allowed() {
            return;
        }
        if let Some(until) = self.hold_until {
            let now = Instant::now();
            if until > now {
                if self.wake.is_none() {
                    self.wake = Some(ctx.run_later(until - now, |act, ctx| {
                        act.wake = None;
                        act.pump(ctx);
                    }));
                }
                return;
            }
            self.hold_until = None;
        }
        while self.slots_used < self.settings.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.slots_used += 1;
            self.start(job, ctx);
        }
        self.refill(ctx);
        self.update_gauges();
        self.shrink_when_idle();
    }

    /// Gives back the memory of a burst once it is over: an emptied queue
    /// or id set keeps its largest capacity otherwise (megabytes after a
    /// backlog of tens of thousands).
    fn shrink_when_idle(&mut self) {
        const KEEP: usize = 1024;
        if self.queue.is_empty() && self.queue.capacity() > KEEP {
            self.queue = VecDeque::new();
        }
        if self.known.is_empty() && self.known.capacity() > KEEP {
            self.known = HashSet::new();
        }
        if self.recently_done.is_empty() && self.recently_done.capacity() > KEEP {
            self.recently_done = HashSet::new();
        }
    }

    fn update_gauges(&self) {
        self.metrics.gauges(
            self.queue.len(),
            self.in_flight,
            self.health.consecutive_failures,
            self.health.state == State::Healthy,
            self.health.state == State::Paused,
        );
    }

    /// Sends `job` now, or when its retry wait is over. It holds a slot.
    fn start(&mut self, job: Job, ctx: &mut Context<Self>) {
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
        self.in_flight += 1;
        let url = self.url.clone();
        let timeout = self.settings.timeout;
        let body = job.body.clone();
        let secret = job.secret.clone();
        let id = job.id.clone();
        // The address check is the client's (`sender`), as for every request.
        let request = async move { sender::post(&url, body, &secret, &id, timeout).await };
        ctx.spawn(
            request
                .into_actor(self)
                .map(move |attempt, act, ctx| act.finish(job, attempt, ctx)),
        );
    }

    fn finish(&mut self, mut job: Job, attempt: Attempt, ctx: &mut Context<Self>) {
        self.in_flight -= 1;
        self.metrics
            .attempt(attempt.outcome, attempt.duration.as_secs_f64());
        job.attempts += 1;
        let now = Utc::now();
        let row = (job.attempts > 1 || attempt.error.is_some()).then(|| NewAttempt {
            delivery_id: job.id.to_string(),
            endpoint_id: self.id,
            attempted_at: now.naive_utc(),
            status_code: attempt.status.map(i32::from),
            error: attempt.error.clone(),
            duration_ms: attempt.duration.as_millis() as i64,
        });
        let attempts = job.attempts as i32;
        let before = (
            self.health.state,
            self.health.consecutive_failures,
            self.health.failed_verifications,
        );
        let (completion, effect) = match &attempt.error {
            None => {
                let effect = self.health.delivery_succeeded(now);
                self.release(&job);
                self.metrics.succeeded();
                let completion = Completion::Succeeded {
                    id: job.id.to_string(),
                    attempts,
                };
                (completion, effect)
            }
            Some(error) => {
                let effect =
                    self.health
                        .delivery_failed(now, error, attempt.gone(), &self.settings.policy);
                self.apply_back_pressure(&attempt, now);
                let completion = self.after_failure(job, &attempt, error, now, ctx);
                (completion, effect)
            }
        };
        self.record(
            Record {
                completion,
                attempt: row,
            },
            ctx,
        );
        let after = (
            self.health.state,
            self.health.consecutive_failures,
            self.health.failed_verifications,
        );
        // Failures and state changes are saved soon; a success that changes
        // nothing only refreshes `last_success_at` now and then.
        if before != after
            || attempt.error.is_some()
            || self.health_saved_at.elapsed() > SAVE_SUCCESS_EVERY
        {
            self.health_changed(ctx);
        }
        self.apply(effect, ctx);
        self.pump(ctx);
    }

    /// Stops the actor once nothing subscribes to the endpoint and nothing is
    /// held or in flight (a new subscription starts a fresh one).
    fn retire_if_unused(&mut self, ctx: &mut Context<Self>) {
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
            self.send_records(ctx);
            if self.health_dirty {
                self.save_health(ctx);
            }
            self.router.do_send(Retired {
                endpoint_id: self.id,
                actor: ctx.address(),
            });
            ctx.stop();
        }
    }

    /// Marks the health as changed; it is saved within `SAVE_HEALTH_EVERY`.
    fn health_changed(&mut self, ctx: &mut Context<Self>) {
        if !self.health_dirty {
            self.health_dirty = true;
            ctx.run_later(SAVE_HEALTH_EVERY, |act, ctx| {
                if act.health_dirty {
                    act.save_health(ctx);
                }
            });
        }
    }

    /// Queues a finished attempt for the recorder.
    fn record(&mut self, record: Record, ctx: &mut Context<Self>) {
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

    fn send_records(&mut self, ctx: &mut Context<Self>) {
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

    /// Decides what a failed delivery does next: wait for its retry (keeping
    /// its slot), go back to the queue (endpoint paused), or die.
    fn after_failure(
        &mut self,
        job: Job,
        attempt: &Attempt,
        error: &str,
        now: DateTime<Utc>,
        ctx: &mut Context<Self>,
    ) -> Completion {
        let id = job.id.to_string();
        let attempts = job.attempts as i32;
        let state = self.health.state;
        if state == State::Dead || state == State::Paused {
            // Dead: the endpoint's burial dead-letters it. Paused: held, not
            // retried; the endpoint is down and the attempt does not count
            // against the delivery.
            let mut job = job;
            if state == State::Paused {
                job.attempts = job.attempts.saturating_sub(1);
            }
            let completion = Completion::Retry {
                id,
                attempts: job.attempts as i32,
                next_attempt_at: now.naive_utc(),
                error: error.to_string(),
            };
            if state == State::Paused {
                self.hold(job);
            } else {
                self.release(&job);
            }
            return completion;
        }
        match self.retry_delay(&job, attempt, now) {
            Some(delay) => {
                let mut job = job;
                job.not_before = Some(Instant::now() + delay);
                self.start(job, ctx);
                Completion::Retry {
                    id,
                    attempts,
                    next_attempt_at: (now + delay).naive_utc(),
                    error: error.to_string(),
                }
            }
            None => {
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
                    error: error.to_string(),
                }
            }
        }
    }

    /// The wait a 429 or 503 asked for with `Retry-After` (capped).
    fn asked_wait(&self, attempt: &Attempt, now: DateTime<Utc>) -> Option<Duration> {
        match attempt.status {
            Some(429) | Some(503) => attempt
                .retry_after
                .as_deref()
                .and_then(|h| retry::retry_after(h, now, self.settings.retry_after_cap())),
            _ => None,
        }
    }

    /// 429 and 503 hold back every request to the endpoint for as long as it
    /// asked, and a 429 without `Retry-After` for longer than a plain failure.
    fn apply_back_pressure(&mut self, attempt: &Attempt, now: DateTime<Utc>) {
        let wait = self.asked_wait(attempt, now).or_else(|| {
            (attempt.status == Some(429)).then(|| self.settings.too_many_requests_wait())
        });
        if let Some(wait) = wait {
            let until = Instant::now() + wait;
            self.hold_until = Some(self.hold_until.map_or(until, |t| t.max(until)));
        }
    }

    /// The wait before the next attempt of `job`, or `None` when it is dead.
    fn retry_delay(&self, job: &Job, attempt: &Attempt, now: DateTime<Utc>) -> Option<Duration> {
        let scheduled = retry::next_delay(
            &self.settings.retry_schedule,
            job.attempts,
            retry::unit_random(),
        )?;
        match self.asked_wait(attempt, now) {
            Some(asked) => Some(asked.max(scheduled)),
            None if attempt.status == Some(429) => Some(2 * scheduled),
            None => Some(scheduled),
        }
    }

    /// Frees the slot of a finished delivery.
    fn release(&mut self, job: &Job) {
        self.slots_used -= 1;
        self.known.remove(&job.id);
        self.recently_done.insert(job.id.clone());
        self.released.push(job.id.clone());
    }

    /// Forgets deliveries whose outcome is in the database.
    fn forget(&mut self, recorded: Vec<Arc<str>>) {
        for id in recorded {
            self.recently_done.remove(&id);
        }
        self.shrink_when_idle();
    }

    /// Gives a delivery's slot back and puts it in the queue in id order
    /// (it stays known): it is sent again once the endpoint may be used.
    fn hold(&mut self, mut job: Job) {
        self.slots_used -= 1;
        job.not_before = None;
        let at = self.queue.partition_point(|j| j.id < job.id);
        self.queue.insert(at, job);
    }

    fn remember(&mut self, job: Job) {
        if self.newest.as_ref().is_none_or(|n| job.id > *n) {
            self.newest = Some(job.id.clone());
        }
        self.known.insert(job.id.clone());
        self.queue.push_back(job);
    }

    /// Takes a durable delivery into memory, unless it is already there or
    /// the window will read it from the database later.
    fn accept(&mut self, job: Job) {
        if self.known.contains(&job.id) || self.recently_done.contains(&job.id) {
            return;
        }
        if self.backlog.loading {
            self.backlog.arrived.push(job);
            return;
        }
        if self.backlog.more_in_db
            && self
                .backlog
                .cursor
                .as_deref()
                .is_none_or(|cursor| *job.id > *cursor)
        {
            return;
        }
        let held = self.queue.len();
        if held >= MAX_WINDOW || (held >= WINDOW && QUEUED.exhausted()) {
            // The window is full: from here on the database holds the rest.
            self.backlog.more_in_db = true;
            self.backlog.cursor = self.newest.as_deref().map(str::to_string);
            if self.newest.as_ref().is_none_or(|n| job.id > *n) {
                return;
            }
        }
        self.remember(job);
    }

    /// Reads the next page of pending deliveries when the window runs low.
    fn refill(&mut self, ctx: &mut Context<Self>) {
        if !self.backlog.more_in_db || self.backlog.loading || self.queue.len() >= PAGE / 2 {
            return;
        }
        self.backlog.loading = true;
        let cursor = self.backlog.cursor.clone();
        let endpoint_id = self.id;
        let store = self.store.clone();
        let read = async move {
            store
                .run_background(move |conn| {
                    deliveries::pending_page(conn, endpoint_id, cursor.as_deref(), PAGE as i64)
                })
                .await
        };
        ctx.spawn(
            read.into_actor(self)
                .map(|result, act, ctx| act.loaded(result, ctx)),
        );
    }

    fn loaded(
        &mut self,
        result: Result<Vec<JobRow>, crate::store::StoreError>,
        ctx: &mut Context<Self>,
    ) {
        self.backlog.loading = false;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                log::error!(
                    "endpoint {}: could not read pending deliveries: {e}",
                    self.id
                );
                crate::metrics::internal_error(crate::metrics::ErrorSite::Endpoint);
                ctx.run_later(AFTER_DB_ERROR, |act, ctx| act.pump(ctx));
                return;
            }
        };
        if rows.len() < PAGE {
            self.backlog.more_in_db = false;
        }
        if let Some(last) = rows.last() {
            self.backlog.cursor = Some(last.id.clone());
        }
        for row in rows {
            if self.known.contains(row.id.as_str()) || self.recently_done.contains(row.id.as_str())
            {
                continue;
            }
            let secret = match self.subscriptions.get(&row.subscription_id) {
                Some(s) => s.clone(),
                None => match Secret::parse(&row.secret) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        log::error!(
                            "delivery {}: its subscription's secret is unusable ({e}); skipped",
                            row.id
                        );
                        crate::metrics::internal_error(crate::metrics::ErrorSite::Endpoint);
                        continue;
                    }
                },
            };
            self.remember(Job::from_row(row, secret));
        }
        for job in std::mem::take(&mut self.backlog.arrived) {
            self.accept(job);
        }
        self.pump(ctx);
    }

    /// A secret to sign verification calls with.
    fn any_secret(&self) -> Option<Arc<Secret>> {
        self.subscriptions
            .values()
            .next()
            .cloned()
            .or_else(|| self.queue.front().map(|j| j.secret.clone()))
    }

    fn apply(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::Nothing => {}
            Effect::Probe => {
                if !self.suspecting {
                    self.suspecting = true;
                    self.verify(ctx, Check::Suspicion);
                }
            }
            Effect::Pause => {
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
            Effect::Resume => {
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
            Effect::Die(reason) => self.die(reason, ctx),
        }
        self.update_gauges();
    }

    fn schedule_probe(&mut self, ctx: &mut Context<Self>) {
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
        let timeout = self.settings.timeout;
        let call = async move {
            let _turn = CHECKS_IN_FLIGHT.acquire().await;
            sender::verify(&url, &secret, timeout).await
        };
        ctx.spawn(call.into_actor(self).map(move |attempt, act, ctx| {
            let now = Utc::now();
            if attempt.succeeded() {
                act.metrics.verification(true);
            } else {
                act.metrics.verification(false);
            }
            let (error, gone) = (attempt.error.as_deref(), attempt.gone());
            let effect = match kind {
                Check::Scheduled => {
                    act.health
                        .check_answered(now, error, gone, &act.settings.policy)
                }
                Check::Probe => act.health.probe_answered(now, error, gone),
                Check::Suspicion => {
                    act.suspecting = false;
                    let effect = act.health.suspicion_answered(now, error, gone);
                    // What waited for the answer goes out, unless paused now.
                    ctx.notify(Resume);
                    effect
                }
            };
            if let Some(error) = error {
                log::info!("endpoint {}: {} failed: {error}", act.id, kind.name());
            }
            let paused_before = act.health.state == State::Paused;
            act.apply(effect, ctx);
            if act.health.state == State::Dead {
                return;
            }
            match kind {
                Check::Scheduled => {
                    act.schedule_check(ctx, false);
                    act.save_health(ctx);
                }
                Check::Probe if paused_before && act.health.state == State::Paused => {
                    act.failed_probes += 1;
                    act.schedule_probe(ctx);
                }
                _ => {}
            }
        }));
    }

    /// Schedules the next verification call; the first one after a start is
    /// spread over a fraction of the interval.
    fn schedule_check(&mut self, ctx: &mut Context<Self>, first: bool) {
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
    /// holds, tell the router, stop.
    fn die(&mut self, reason: String, ctx: &mut Context<Self>) {
        log::warn!(
            "endpoint {} ({}) is dead: {reason}; removing its {} subscriptions",
            self.id,
            self.url,
            self.subscriptions.len()
        );
        self.metrics
            .gauges(0, 0, self.health.consecutive_failures, false, false);
        let (store, id) = (self.store.clone(), self.id);
        let why = reason.clone();
        let bury = async move {
            store
                .run_background(move |conn| endpoint_store::bury(conn, id, &why))
                .await
        };
        ctx.spawn(
            bury.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(subscription_ids) => {
                        METRICS
                            .auto_unsubscribed
                            .inc_by(subscription_ids.len() as u64);
                        act.metrics.dead(act.known.len() as u64);
                        act.router.do_send(EndpointDied {
                            endpoint_id: act.id,
                            actor: ctx.address(),
                            subscription_ids,
                        });
                        act.metrics.remove();
                        ctx.stop();
                    }
                    Err(e) => {
                        log::error!(
                            "endpoint {}: could not remove its subscriptions: {e}; retrying",
                            act.id
                        );
                        crate::metrics::internal_error(crate::metrics::ErrorSite::Endpoint);
                        ctx.run_later(AFTER_DB_ERROR, move |act, ctx| act.die(reason, ctx));
                    }
                }),
        );
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
    fn save_health(&mut self, _ctx: &mut Context<Self>) {
        self.health_dirty = false;
        self.health_saved_at = Instant::now();
        self.recorder
            .do_send(SaveHealth(self.id, self.health_row()));
    }
}

/// Health and next check time from a saved row. A dead row belongs to an
/// endpoint someone subscribed to again: it starts healthy.
fn restore(row: HealthRow) -> (Health, Option<DateTime<Utc>>) {
    let state = match State::parse(&row.state) {
        State::Dead => State::Healthy,
        s => s,
    };
    let health = Health {
        state,
        consecutive_failures: row.consecutive_failures.max(0) as u32,
        failed_verifications: row.failed_verifications.max(0) as u32,
        last_success_at: row.last_success_at.map(|t| t.and_utc()),
        last_failure_at: row.last_failure_at.map(|t| t.and_utc()),
        last_failure_reason: row.last_failure_reason,
    };
    (health, row.next_verification_at.map(|t| t.and_utc()))
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule_check(ctx, true);
        if self.health.state == State::Paused {
            self.schedule_probe(ctx);
        }
        self.pump(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.metrics.remove();
    }
}

impl Handler<Enqueue> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        for job in msg.0 {
            self.accept(job);
        }
        self.pump(ctx);
    }
}

/// Start what may be sent (after a wait that held deliveries ended).
#[derive(Message)]
#[rtype(result = "()")]
struct Resume;

impl Handler<Resume> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) {
        self.pump(ctx);
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

impl Handler<Replayed> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: Replayed, ctx: &mut Self::Context) {
        // It may have died moments ago; it is pending again now.
        self.recently_done.remove(&msg.0.id);
        self.accept(msg.0);
        self.pump(ctx);
    }
}

impl Handler<AddSubscription> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: AddSubscription, _ctx: &mut Self::Context) {
        self.removed_subscriptions.remove(&msg.id);
        self.subscriptions.insert(msg.id, msg.secret);
    }
}

impl Handler<ForgetSubscription> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetSubscription, ctx: &mut Self::Context) {
        self.subscriptions.remove(&msg.0);
        self.removed_subscriptions.insert(msg.0);
        let known = &mut self.known;
        self.queue.retain(|job| {
            let keep = job.subscription_id != msg.0;
            if !keep {
                known.remove(&job.id);
            }
            keep
        });
        self.backlog
            .arrived
            .retain(|job| job.subscription_id != msg.0);
        self.update_gauges();
        self.retire_if_unused(ctx);
    }
}

impl Handler<BeginDrain> for EndpointActor {
    type Result = u32;

    fn handle(&mut self, _: BeginDrain, ctx: &mut Self::Context) -> u32 {
        self.draining = true;
        self.send_records(ctx);
        if self.health_dirty {
            self.save_health(ctx);
        }
        self.in_flight
    }
}

impl Handler<StopNow> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: StopNow, ctx: &mut Self::Context) {
        self.draining = true;
        self.send_records(ctx);
        if self.health_dirty {
            self.save_health(ctx);
        }
        self.metrics.remove();
        ctx.stop();
    }
}

impl Handler<Poke> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Poke, ctx: &mut Self::Context) {
        let floor = crate::store::id_floor(Utc::now() - CLOCK_SKEW_MARGIN);
        self.backlog.more_in_db = true;
        if let Some(cursor) = &self.backlog.cursor
            && *cursor > floor
        {
            self.backlog.cursor = Some(floor);
        }
        self.pump(ctx);
    }
}

impl Handler<InFlight> for EndpointActor {
    type Result = u32;

    fn handle(&mut self, _: InFlight, _ctx: &mut Self::Context) -> u32 {
        self.in_flight
    }
}

impl Handler<Status> for EndpointActor {
    type Result = MessageResult<Status>;

    fn handle(&mut self, _: Status, _ctx: &mut Self::Context) -> Self::Result {
        let held_until = self.hold_until.and_then(|t| {
            let left = t.checked_duration_since(Instant::now())?;
            chrono::Duration::from_std(left)
                .ok()
                .map(|d| Utc::now() + d)
        });
        MessageResult(EndpointStatus {
            id: self.id,
            url: self.url.to_string(),
            state: self.health.state.as_str(),
            queue_depth: self.queue.len() + (self.slots_used - self.in_flight) as usize,
            backlog_in_database: self.backlog.more_in_db,
            in_flight: self.in_flight,
            waiting_for_retry: self.slots_used - self.in_flight,
            consecutive_failures: self.health.consecutive_failures,
            failed_verifications: self.health.failed_verifications,
            last_success_at: self.health.last_success_at,
            last_failure_at: self.health.last_failure_at,
            last_failure_reason: self.health.last_failure_reason.clone(),
            next_verification_at: self.next_check_at,
            held_until,
            subscription_count: self.subscriptions.len(),
        })
    }
}
