//! The endpoint actor: one per distinct endpoint URL, shared by every
//! subscription (of any tenant) that uses it. It owns the endpoint's FIFO of
//! pending deliveries, its slots (requests in flight or waiting for a retry,
//! at most `--max-in-flight-per-endpoint`), its retry timers, its
//! verification timer, its health (`health.rs`) and its metrics.
//!
//! ```text
//!   Router ──Enqueue──►  queue (in memory: a bounded window onto the database queue)
//!                          │  pump: while a slot is free, the window has room, a token is
//!                          │        there (`pacing`), not paused or held, not held back
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
//! its owner (`Owner`: the Router), and stops.
//!
//! Where each part lives:
//! - `messages`: what the actor is told and what it reports upward; `drain`
//! - `status`: the operators' snapshot
//! - `job`: one delivery in memory; `settings`: the shared settings
//! - `send`: the send loop (`pump`, `start`, `send`) and retiring
//! - `outcome`: `finish`, carrying out `delivery::retry::next_step`
//! - `recording`: the hand-off to the recorder, and saving health
//! - `window`: the in-memory window onto the durable queue
//! - `pacing`: the concurrency window and token bucket applied (`delivery::pace`)
//! - `checks`: verification calls, probes, health effects and death
//! - `announce`: the lifecycle notices a health change gives, to the recorder
//! - `cancel`: deliveries cancelled under it (an erasure) dropped and never sent
//! - `actor`: the `Actor` impl and the message handlers

mod actor;
mod announce;
mod cancel;
mod checks;
mod job;
mod messages;
mod outcome;
mod pacing;
mod policy;
mod recording;
mod send;
mod settings;
mod status;
mod window;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::health::{Health, State};
use super::notices::Announced;
use super::pace::{Bucket, Latency, Window};
use super::recorder::{Record, Recorder};
use crate::endpoint_url::EndpointUrl;
use crate::metrics::EndpointMetrics;
use crate::signing::Secrets;
use crate::store::Store;
use crate::store::endpoints::HealthRow;

pub use job::Job;
use messages::Resume;
pub use messages::{
    AddSubscription, BeginDrain, Cancel, EndpointDied, Enqueue, ForgetSubscription, InFlight,
    Owner, Poke, Recheck, Replayed, Retired, SetPolicy, StopNow, drain,
};
pub use policy::EndpointPolicy;
pub use settings::DeliverySettings;
pub use status::{EndpointStatus, Status, paused_by, shown_state};
use window::Backlog;

/// Wait before touching the database again after a failed query.
const AFTER_DB_ERROR: Duration = Duration::from_secs(1);
/// A busy, healthy endpoint refreshes its saved `last_success_at` this often.
const SAVE_SUCCESS_EVERY: Duration = Duration::from_secs(60);

pub struct EndpointActor {
    id: i64,
    url: Arc<EndpointUrl>,
    settings: Arc<DeliverySettings>,
    store: Store,
    recorder: Addr<Recorder>,
    owner: Owner,
    /// What an operator set for this endpoint.
    policy: EndpointPolicy,
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
    /// Deliveries cancelled in the database while in flight or waiting for
    /// a retry: never started again (`Cancel`).
    cancelled: HashSet<Arc<str>>,
    /// A `Recheck` is being read; another was asked for meanwhile.
    rechecking: bool,
    recheck_again: bool,
    /// How many requests may be in flight now (within `maxInFlight`).
    window: Window,
    /// The smoothed latency of good answers (what "fast" means).
    latency: Latency,
    /// The token bucket of `maxPerSecond`, when the policy sets one.
    bucket: Option<Bucket>,
    /// Wakes the send loop when the bucket's next token is due.
    token_timer: Option<SpawnHandle>,
    /// Requests in flight plus deliveries waiting for their retry.
    slots_used: u32,
    in_flight: u32,
    backlog: Backlog,
    draining: bool,
    subscriptions: HashMap<i64, Arc<Secrets>>,
    /// Subscriptions removed while this actor held deliveries for them.
    removed_subscriptions: HashSet<i64>,
    health: Health,
    /// What its lifecycle notices have told so far.
    announced: Announced,
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
    /// An actor for `url`, reporting to `owner`; `backlog` says whether the
    /// database holds pending deliveries for it; `saved` is its saved
    /// health, if any; `policy` what an operator set for it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        url: Arc<EndpointUrl>,
        settings: Arc<DeliverySettings>,
        store: Store,
        recorder: Addr<Recorder>,
        owner: Owner,
        backlog: bool,
        saved: Option<HealthRow>,
        policy: EndpointPolicy,
    ) -> EndpointActor {
        let (mut health, next_check_at) = match saved {
            Some(row) => restore(row),
            None => (Health::default(), None),
        };
        // The operator webhook's endpoint is never removed (and announces
        // nothing about itself), and gets its notices in order.
        health.spare = settings.operator_endpoint == Some(id);
        let policy = policy.for_endpoint(id, &settings);
        let window = Window::new(
            policy.max_in_flight(&settings),
            settings.adaptive_concurrency,
        );
        let bucket = policy
            .max_per_second
            .map(|rate| Bucket::new(rate, Instant::now()));
        EndpointActor {
            id,
            url,
            settings,
            store,
            recorder,
            owner,
            policy,
            queue: VecDeque::new(),
            known: HashSet::new(),
            newest: None,
            records: Vec::new(),
            records_timer: None,
            recently_done: HashSet::new(),
            released: Vec::new(),
            cancelled: HashSet::new(),
            rechecking: false,
            recheck_again: false,
            window,
            latency: Latency::default(),
            bucket,
            token_timer: None,
            slots_used: 0,
            in_flight: 0,
            backlog: Backlog {
                more_in_db: backlog,
                ..Backlog::default()
            },
            draining: false,
            subscriptions: HashMap::new(),
            removed_subscriptions: HashSet::new(),
            announced: Announced::at_start(&health),
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
        spare: false,
    };
    (health, row.next_verification_at.map(|t| t.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str) -> HealthRow {
        HealthRow {
            state: state.to_string(),
            consecutive_failures: 4,
            failed_verifications: -1,
            last_success_at: None,
            last_failure_at: None,
            last_failure_reason: Some("endpoint answered 500".into()),
            next_verification_at: None,
        }
    }

    #[test]
    fn a_saved_paused_endpoint_starts_paused_with_its_counts() {
        let (health, next) = restore(row("paused"));
        assert_eq!(health.state, State::Paused);
        assert_eq!(health.consecutive_failures, 4);
        assert_eq!(health.failed_verifications, 0);
        assert_eq!(next, None);
    }

    #[test]
    fn a_saved_dead_endpoint_subscribed_to_again_starts_healthy() {
        assert_eq!(restore(row("dead")).0.state, State::Healthy);
    }
}
