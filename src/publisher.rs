//! The publishing path of the HTTP handlers: resolves each event's routes
//! against the routing table (never across tenants, skipping the
//! triggering user's own subscriptions), builds its rows and delivery jobs,
//! and queues them for the group commit, all on the handler's own thread.
//! The router owns the table (it alone writes it) and receives the stored
//! deliveries after the commit.
//!
//! On a single node (SQLite) a publish thus never waits in the router's
//! mailbox: one thread hop less per publish, and the router's thread is
//! free for handing out deliveries. In a cluster, publishes still go
//! through the router, which knows which endpoints other nodes own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use actix::prelude::*;
use bytes::Bytes;
use foldhash::HashMap;
use tokio::sync::oneshot;

use crate::delivery::endpoint::Job;
use crate::group_commit::{GroupCommit, Pending};
use crate::router::{Incoming, Publish, PublishError, PublishReply, Published, Router};
use crate::signing::Secret;
use crate::store::db_time::DbTime;
use crate::store::events::PreparedEvent;
use crate::store::models::{NewDelivery, NewEvent, PENDING};

/// Events waiting for a commit beyond which publishers are told to retry.
const MAX_WAITING: usize = 200_000;

/// One subscription as routing sees it.
#[derive(Clone)]
pub struct Route {
    pub subscription_id: i64,
    pub user_id: i64,
    pub endpoint_id: i64,
    pub secret: Arc<Secret>,
}

/// marketplace id → event type → routes.
type Table = HashMap<i64, HashMap<String, Vec<Route>>>;

/// The routing table, shared by the router (writer) and the publishers.
#[derive(Clone, Default)]
pub struct RouteTable(Arc<RwLock<Table>>);

impl RouteTable {
    /// For reading. Nothing panics while holding the lock, so a poisoned
    /// lock still holds a consistent table.
    pub fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// For the router's changes.
    pub fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rows of one publish and, per event, the jobs to hand out once it is
/// stored: (endpoint, job).
type Prepared = (Vec<PreparedEvent>, Vec<Vec<(i64, Job)>>);

/// Resolves routes and builds the rows and jobs of one publish.
fn prepare(table: &Table, events: Vec<Incoming>) -> Prepared {
    let now = DbTime::new(crate::store::now());
    let mut prepared = Vec::with_capacity(events.len());
    let mut jobs = Vec::with_capacity(events.len());
    for incoming in events {
        let event = incoming.event;
        let body = event.to_body();
        let bytes = Bytes::from(body.clone());
        let event_id = uuid::Uuid::now_v7().to_string();
        let routes = table
            .get(&event.marketplace_id)
            .and_then(|types| types.get(event.event.as_str()))
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|r| Some(r.user_id) != event.triggering_user_id);
        let mut deliveries = Vec::new();
        let mut event_jobs = Vec::new();
        for route in routes {
            let id = uuid::Uuid::now_v7().to_string();
            deliveries.push(NewDelivery {
                id: id.clone(),
                event_id: event_id.clone(),
                subscription_id: route.subscription_id,
                endpoint_id: route.endpoint_id,
                status: PENDING,
                attempts: 0,
                next_attempt_at: now.clone(),
                last_error: None,
                created_at: now.clone(),
                updated_at: now.clone(),
            });
            event_jobs.push((
                route.endpoint_id,
                Job::new(
                    Arc::from(id),
                    route.subscription_id,
                    route.secret.clone(),
                    bytes.clone(),
                ),
            ));
        }
        prepared.push(PreparedEvent {
            event: NewEvent {
                id: event_id,
                marketplace_id: event.marketplace_id,
                event: event.event,
                body,
                idempotency_key: incoming.idempotency_key,
                delivery_count: deliveries.len() as i32,
                created_at: now.clone(),
            },
            deliveries,
        });
        jobs.push(event_jobs);
    }
    (prepared, jobs)
}

/// Events handed to the group commit whose deliveries the router has not
/// received yet (the publish backlog).
#[derive(Clone, Default)]
pub struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    /// Counts `n` more events, unless that would pass `MAX_WAITING`; then
    /// answers how many wait.
    pub fn admit(&self, n: usize) -> Result<(), usize> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w + n <= MAX_WAITING).then_some(w + n)
            })
            .map(|_| ())
    }

    /// `n` events are out of the backlog (committed, or refused).
    pub fn done(&self, n: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(w.saturating_sub(n))
            });
    }
}

/// Why a publish could not even be queued.
#[derive(Debug)]
pub struct Busy;

/// Where the HTTP handlers publish.
#[derive(Clone)]
pub struct Publisher {
    routes: RouteTable,
    /// The group commit, for publishing inline; `None` in a cluster, where
    /// publishes go through the router.
    commits: Option<GroupCommit>,
    router: Addr<Router>,
    waiting: Waiting,
}

/// The answer to one publish, after its commit.
pub type Answer = oneshot::Receiver<Result<Vec<Published>, PublishError>>;

impl Publisher {
    pub fn new(
        routes: RouteTable,
        commits: Option<GroupCommit>,
        router: Addr<Router>,
        waiting: Waiting,
    ) -> Publisher {
        Publisher {
            routes,
            commits,
            router,
            waiting,
        }
    }

    /// Queues `events` to be stored; the answer comes once they are durable.
    /// `Busy` when the router's mailbox is full (cluster mode).
    pub fn publish(&self, events: Vec<Incoming>) -> Result<Answer, Busy> {
        let (reply, answer) = oneshot::channel();
        let Some(commits) = &self.commits else {
            self.router
                .try_send(Publish { events, reply })
                .map_err(|_| Busy)?;
            return Ok(answer);
        };
        submit(
            &self.routes,
            Some(commits),
            &self.waiting,
            events,
            reply,
            |_| Vec::new(),
        );
        Ok(answer)
    }
}

/// Admits, routes and queues one publish for the group commit (`commits`,
/// `None` if its threads could not start). `remote` picks, from the routed
/// jobs, the endpoints other nodes own. Every refusal is answered on
/// `reply`.
pub fn submit(
    table: &RouteTable,
    commits: Option<&GroupCommit>,
    waiting: &Waiting,
    events: Vec<Incoming>,
    reply: PublishReply,
    remote: impl FnOnce(&[Vec<(i64, Job)>]) -> Vec<i64>,
) {
    let count = events.len();
    if let Err(waiting) = waiting.admit(count) {
        let _ = reply.send(Err(PublishError::Overloaded(waiting)));
        return;
    }
    let (events, jobs) = prepare(&table.read(), events);
    let pending = Pending {
        remote: remote(&jobs),
        events,
        jobs,
        reply,
    };
    let refused = match commits {
        Some(commits) => commits.send(pending).err(),
        None => Some(pending),
    };
    if let Some(pending) = refused {
        waiting.done(count);
        let _ = pending.reply.send(Err(PublishError::Storage(
            "the group-commit thread is not running; see the server log".into(),
        )));
    }
}
