//! The publishing path of the HTTP handlers: resolves each event's routes
//! against the routing table (never across tenants, skipping the
//! triggering user's own subscriptions), builds its rows and delivery jobs,
//! and queues them for the group commit, all on the handler's own thread.
//! The table reports its changes up to the router, and the group commit
//! hands it the stored deliveries after the commit.
//!
//! When this node owns every endpoint (`Ownership::All`) a publish thus
//! never waits in the router's mailbox: one thread hop less per publish,
//! and the router's thread is free for handing out deliveries. In a
//! cluster, publishes still go through the router, which knows which
//! endpoints other nodes own (it calls `Ingest::submit` itself).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::directory::Directory;
use super::group_commit::{GroupCommit, Pending};
use super::{Incoming, Outcome, Publish, PublishError, PublishReply, Ticket};
use crate::cluster::Ownership;
use crate::routing::{RouteTable, Table};
use crate::store::db_time::DbTime;
use crate::store::events::PreparedEvent;
use crate::store::models::NewEvent;

/// Events waiting for a commit beyond which publishers are told to retry.
const MAX_WAITING: usize = 200_000;

/// Builds the rows of one publish, routed against `table`.
fn prepare(table: &Table, events: Vec<Incoming>) -> Vec<PreparedEvent> {
    let now = DbTime::new(crate::store::now());
    events
        .into_iter()
        .map(|incoming| {
            let event = incoming.event;
            let body = event.to_body();
            let mut prepared = PreparedEvent {
                event: NewEvent {
                    id: crate::ids::new_event_id(),
                    marketplace_id: event.marketplace_id,
                    event: event.event,
                    body,
                    idempotency_key: incoming.idempotency_key,
                    delivery_count: 0,
                    created_at: now.clone(),
                },
                deliveries: Vec::new(),
                secrets: Vec::new(),
                triggering_user_id: event.triggering_user_id,
                routed_at: 0,
            };
            table.route(&mut prepared, &now);
            prepared
        })
        .collect()
}

/// Events handed to the group commit whose deliveries have not reached the
/// router yet (the publish backlog).
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

/// What publishing needs, shared by the publisher and the router: the
/// routing table, the group commit and the publish backlog.
#[derive(Clone)]
pub struct Ingest {
    pub routes: RouteTable,
    pub commits: GroupCommit,
    pub waiting: Waiting,
    /// The endpoint actors the group commit hands deliveries to (kept by
    /// the router).
    pub actors: Directory,
}

impl Ingest {
    /// Admits, routes and queues one publish for the group commit.
    /// `remote` picks, from the routed events, the endpoints other nodes
    /// own. Every refusal is answered on `reply`.
    pub fn submit(
        &self,
        events: Vec<Incoming>,
        ticket: Ticket,
        reply: PublishReply,
        remote: impl FnOnce(&[PreparedEvent]) -> Vec<i64>,
    ) {
        let count = events.len();
        if let Err(waiting) = self.waiting.admit(count) {
            let _ = reply.send(Err(PublishError::Overloaded(waiting)));
            return;
        }
        let events = prepare(&self.routes.read(), events);
        let pending = Pending {
            remote: remote(&events),
            events,
            ticket,
            reply,
        };
        if let Err(pending) = self.commits.send(pending) {
            self.waiting.done(count);
            let _ = pending.reply.send(Err(PublishError::Failed(
                "the group-commit thread is not running; see the server log".into(),
            )));
        }
    }
}

/// Why a publish could not even be queued.
#[derive(Debug)]
pub struct Busy;

/// Where a publish is routed and queued.
#[derive(Clone)]
enum Path {
    /// On the handler's own thread: this node owns every endpoint.
    Inline,
    /// Through the router, which knows which endpoints other nodes own.
    Router(Recipient<Publish>),
}

/// Where the HTTP handlers publish.
#[derive(Clone)]
pub struct Publisher {
    ingest: Ingest,
    path: Path,
}

/// The answer to one publish, after its commit.
pub type Answer = oneshot::Receiver<Outcome>;

impl Publisher {
    /// Publishes inline when this node owns every endpoint, otherwise
    /// through `router`.
    pub fn new(ingest: Ingest, ownership: &Ownership, router: Recipient<Publish>) -> Publisher {
        let path = match ownership {
            Ownership::All => Path::Inline,
            Ownership::Leased(_) => Path::Router(router),
        };
        Publisher { ingest, path }
    }

    /// The routing table publishes are routed against.
    pub fn routes(&self) -> &RouteTable {
        &self.ingest.routes
    }

    /// Queues `events` to be stored; the answer comes once they are durable.
    /// `Busy` when the router's mailbox is full (cluster mode).
    pub fn publish(&self, events: Vec<Incoming>) -> Result<Publication, Busy> {
        let (reply, answer) = oneshot::channel();
        let ticket = Ticket::default();
        let publication = Publication {
            answer,
            ticket: ticket.clone(),
        };
        match &self.path {
            Path::Inline => self.ingest.submit(events, ticket, reply, |_| Vec::new()),
            Path::Router(router) => router
                .try_send(Publish {
                    events,
                    ticket,
                    reply,
                })
                .map_err(|_| Busy)?,
        }
        Ok(publication)
    }
}

/// A publish on its way: its answer, and the ticket with which its
/// publisher can give up waiting for it before it is stored.
pub struct Publication {
    pub answer: Answer,
    pub ticket: Ticket,
}

impl Publication {
    /// The answer once the events are stored, or `None` after `wait` when
    /// the publish was given up on before the writer took it: then nothing
    /// of it is stored. Once taken, its outcome comes whatever the wait.
    pub async fn answer_within(
        mut self,
        wait: std::time::Duration,
    ) -> Option<Result<Outcome, oneshot::error::RecvError>> {
        match tokio::time::timeout(wait, &mut self.answer).await {
            Ok(answer) => Some(answer),
            Err(_) if self.ticket.abandon() => None,
            Err(_) => Some(self.answer.await),
        }
    }
}
