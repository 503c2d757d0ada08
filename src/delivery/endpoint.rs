//! The endpoint actor: one per distinct endpoint URL, shared by every
//! subscription (of any tenant) that uses it. It owns the endpoint's FIFO of
//! pending deliveries, its slots (requests in flight or waiting for a retry,
//! at most `--max-in-flight-per-endpoint`), its retry timers and its health.
//!
//! ```text
//!   Router ──Enqueue──►  queue (in memory, a window onto the database queue)
//!                          │  pump: while a slot is free
//!                          ▼
//!                        send ──► endpoint ──► finish: success │ retry (keeps its slot, waits) │ dead letter
//!                                                  └──► Recorder (batched writes)
//!   database ──pending_page──► queue, when the window runs low (after a restart, or a backlog)
//! ```
//!
//! Every delivery the actor holds is already durable; the actor never needs
//! to save anything before it acts, and a crash only repeats in-flight
//! requests.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use super::recorder::{Record, Recorder};
use super::retry;
use super::sender::{self, Attempt};
use crate::endpoint_url::EndpointUrl;
use crate::signing::Secret;
use crate::store::Store;
use crate::store::deliveries::{self, Completion, JobRow};
use crate::store::models::NewAttempt;

/// Pending deliveries read from the database per page.
const PAGE: usize = 256;
/// How long a passed address check is trusted before it is repeated.
const ADDRESS_CHECK_TTL: Duration = Duration::from_secs(60);
/// Wait before reading the database again after a failed read.
const RELOAD_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Delivery settings shared by every endpoint actor.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub max_in_flight: u32,
    pub allow_private: bool,
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
}

impl Job {
    fn from_row(row: JobRow, secret: Arc<Secret>) -> Job {
        let wait = (row.next_attempt_at - crate::store::now())
            .to_std()
            .ok()
            .filter(|d| !d.is_zero());
        Job {
            id: Arc::from(row.id),
            subscription_id: row.subscription_id,
            secret,
            body: Bytes::from(row.body),
            attempts: row.attempts.max(0) as u32,
            not_before: wait.map(|d| Instant::now() + d),
        }
    }
}

/// New durable deliveries for this endpoint, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub Vec<Job>);

/// A subscription was removed: drop its queued deliveries.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetSubscription(pub i64);

/// Stop starting requests (shutdown). Answers the number still in flight.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct BeginDrain;

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
    pub last_success_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_failure_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_failure_reason: Option<String>,
}

/// The window onto the database queue.
#[derive(Default)]
struct Backlog {
    /// The database may hold pending deliveries not yet in memory.
    more_in_db: bool,
    loading: bool,
    /// Id of the last delivery read from the database.
    cursor: Option<String>,
    /// Deliveries that arrived while a page was being read.
    arrived: Vec<Job>,
}

#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    last_success_at: Option<chrono::DateTime<chrono::Utc>>,
    last_failure_at: Option<chrono::DateTime<chrono::Utc>>,
    last_failure_reason: Option<String>,
}

pub struct EndpointActor {
    id: i64,
    url: Arc<EndpointUrl>,
    settings: Arc<DeliverySettings>,
    store: Store,
    recorder: Addr<Recorder>,
    queue: VecDeque<Job>,
    /// Ids of every delivery held in memory (queued, in flight or waiting).
    known: HashSet<Arc<str>>,
    /// Requests in flight plus deliveries waiting for their retry.
    slots_used: u32,
    in_flight: u32,
    backlog: Backlog,
    draining: bool,
    /// Subscriptions removed while this actor held deliveries for them.
    removed_subscriptions: HashSet<i64>,
    address_checked_until: Option<Instant>,
    health: Health,
}

impl EndpointActor {
    /// An actor for `url`; `backlog` says whether the database holds pending
    /// deliveries for it (after a restart).
    pub fn new(
        id: i64,
        url: Arc<EndpointUrl>,
        settings: Arc<DeliverySettings>,
        store: Store,
        recorder: Addr<Recorder>,
        backlog: bool,
    ) -> EndpointActor {
        EndpointActor {
            id,
            url,
            settings,
            store,
            recorder,
            queue: VecDeque::new(),
            known: HashSet::new(),
            slots_used: 0,
            in_flight: 0,
            backlog: Backlog {
                more_in_db: backlog,
                ..Backlog::default()
            },
            draining: false,
            removed_subscriptions: HashSet::new(),
            address_checked_until: None,
            health: Health::default(),
        }
    }

    /// Starts deliveries while slots are free, and refills the window.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        while self.slots_used < self.settings.max_in_flight {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.slots_used += 1;
            self.start(job, ctx);
        }
        self.refill(ctx);
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
            // Its subscription was removed while it waited (the database
            // row was cancelled with the subscription).
            self.release(&job);
            self.pump(ctx);
            return;
        }
        self.in_flight += 1;
        let url = self.url.clone();
        let timeout = self.settings.timeout;
        let check_address = !self.settings.allow_private
            && self
                .address_checked_until
                .is_none_or(|until| until <= Instant::now());
        let body = job.body.clone();
        let secret = job.secret.clone();
        let id = job.id.clone();
        let request = async move {
            if check_address && let Err(e) = url.check_reachable_safely(false).await {
                return (
                    Attempt {
                        status: None,
                        error: Some(format!("refused before sending: {e}")),
                        retry_after: None,
                        duration: Duration::ZERO,
                    },
                    false,
                );
            }
            (sender::post(&url, body, &secret, &id, timeout).await, check_address)
        };
        ctx.spawn(request.into_actor(self).map(move |(attempt, checked), act, ctx| {
            act.finish(job, attempt, checked, ctx)
        }));
    }

    fn finish(&mut self, mut job: Job, attempt: Attempt, address_checked: bool, ctx: &mut Context<Self>) {
        self.in_flight -= 1;
        if address_checked {
            self.address_checked_until = Some(Instant::now() + ADDRESS_CHECK_TTL);
        }
        job.attempts += 1;
        let now = chrono::Utc::now();
        let row = NewAttempt {
            delivery_id: job.id.to_string(),
            endpoint_id: self.id,
            attempted_at: now.naive_utc(),
            status_code: attempt.status.map(i32::from),
            error: attempt.error.clone(),
            duration_ms: attempt.duration.as_millis() as i64,
        };
        let attempts = job.attempts as i32;
        let completion = match &attempt.error {
            None => {
                self.health.consecutive_failures = 0;
                self.health.last_success_at = Some(now);
                self.release(&job);
                Completion::Succeeded {
                    id: job.id.to_string(),
                    attempts,
                }
            }
            Some(error) => {
                self.health.consecutive_failures += 1;
                self.health.last_failure_at = Some(now);
                self.health.last_failure_reason = Some(error.clone());
                match self.retry_delay(&job, &attempt, now) {
                    Some(delay) => {
                        let completion = Completion::Retry {
                            id: job.id.to_string(),
                            attempts,
                            next_attempt_at: (now + delay).naive_utc(),
                            error: error.clone(),
                        };
                        job.not_before = Some(Instant::now() + delay);
                        self.start(job, ctx);
                        completion
                    }
                    None => {
                        log::info!(
                            "endpoint {} ({}): delivery {} is a dead letter after {attempts} attempts: {error}",
                            self.id,
                            self.url,
                            job.id
                        );
                        self.release(&job);
                        Completion::Dead {
                            id: job.id.to_string(),
                            attempts,
                            error: error.clone(),
                        }
                    }
                }
            }
        };
        self.recorder.do_send(Record {
            completion,
            attempt: row,
        });
        self.pump(ctx);
    }

    /// The wait before the next attempt of `job`, or `None` when it is dead.
    fn retry_delay(&self, job: &Job, attempt: &Attempt, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
        let scheduled = retry::next_delay(&self.settings.retry_schedule, job.attempts, retry::unit_random())?;
        let asked = match attempt.status {
            Some(429) | Some(503) => attempt
                .retry_after
                .as_deref()
                .and_then(|h| retry::retry_after(h, now, self.settings.retry_after_cap())),
            _ => None,
        };
        Some(asked.map_or(scheduled, |a| a.max(scheduled)))
    }

    /// Frees the slot of a finished delivery.
    fn release(&mut self, job: &Job) {
        self.slots_used -= 1;
        self.known.remove(&job.id);
    }

    /// Takes a durable delivery into memory, unless it is already there or
    /// the window will read it from the database later.
    fn accept(&mut self, job: Job) {
        if self.known.contains(&job.id) {
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
        self.known.insert(job.id.clone());
        self.queue.push_back(job);
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
                .run(move |conn| deliveries::pending_page(conn, endpoint_id, cursor.as_deref(), PAGE as i64))
                .await
        };
        ctx.spawn(read.into_actor(self).map(|result, act, ctx| act.loaded(result, ctx)));
    }

    fn loaded(&mut self, result: Result<Vec<JobRow>, crate::store::StoreError>, ctx: &mut Context<Self>) {
        self.backlog.loading = false;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                log::error!("endpoint {}: could not read pending deliveries: {e}", self.id);
                ctx.run_later(RELOAD_AFTER_ERROR, |act, ctx| act.pump(ctx));
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
            if self.known.contains(row.id.as_str()) {
                continue;
            }
            let secret = match Secret::parse(&row.secret) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    log::error!("delivery {}: its subscription's secret is unusable ({e}); skipped", row.id);
                    continue;
                }
            };
            let job = Job::from_row(row, secret);
            self.known.insert(job.id.clone());
            self.queue.push_back(job);
        }
        for job in std::mem::take(&mut self.backlog.arrived) {
            self.accept(job);
        }
        self.pump(ctx);
    }

    fn state(&self) -> &'static str {
        if self.health.consecutive_failures == 0 {
            "healthy"
        } else {
            "failing"
        }
    }
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.pump(ctx);
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

impl Handler<ForgetSubscription> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetSubscription, _ctx: &mut Self::Context) {
        self.removed_subscriptions.insert(msg.0);
        let known = &mut self.known;
        self.queue.retain(|job| {
            let keep = job.subscription_id != msg.0;
            if !keep {
                known.remove(&job.id);
            }
            keep
        });
        self.backlog.arrived.retain(|job| job.subscription_id != msg.0);
    }
}

impl Handler<BeginDrain> for EndpointActor {
    type Result = u32;

    fn handle(&mut self, _: BeginDrain, _ctx: &mut Self::Context) -> u32 {
        self.draining = true;
        self.in_flight
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
        MessageResult(EndpointStatus {
            id: self.id,
            url: self.url.to_string(),
            state: self.state(),
            queue_depth: self.queue.len() + self.slots_used as usize - self.in_flight as usize,
            backlog_in_database: self.backlog.more_in_db,
            in_flight: self.in_flight,
            waiting_for_retry: self.slots_used - self.in_flight,
            consecutive_failures: self.health.consecutive_failures,
            last_success_at: self.health.last_success_at,
            last_failure_at: self.health.last_failure_at,
            last_failure_reason: self.health.last_failure_reason.clone(),
        })
    }
}
