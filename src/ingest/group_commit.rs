//! Group commit: stores what is published and answers each
//! publisher once its events are durable. Two threads form a pipeline:
//!
//! - the *writer* stores every publish that arrived while its previous
//!   transaction ran in one transaction (`Store::write_unsynced`);
//! - the *syncer* makes every transaction written so far durable with one
//!   `Store::sync_commits` (an `fdatasync` of SQLite's WAL; nothing on
//!   PostgreSQL, whose commits are durable already), then answers their
//!   publishers in the order written and reports upward (`Committed`, to
//!   the router, which hands the deliveries to their endpoint actors).
//!
//! So the next group is written while the previous one waits for the disk.
//! The writer stays at most one group ahead of the syncer (the hand-over is
//! a rendezvous): what arrives while a written group waits for its sync is
//! gathered into the next group instead of being written as many small
//! transactions that the same sync would cover anyway. Each transaction
//! rewrites its tables' last, partly filled pages into the WAL, so fewer
//! and larger groups write less per event. Plain threads
//! rather than the blocking pool: no task hop between the stages, and the
//! answers do not wait in the router's mailbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use actix::prelude::*;
use bytes::Bytes;
use prometheus::IntCounter;

use super::{PublishError, PublishReply, Published, Ticket};
use crate::delivery::endpoint::Job;
use crate::metrics::METRICS;
use crate::routing::RouteTable;
use crate::store::db_time::DbTime;
use crate::store::events::{PreparedEvent, Reroute, Stored, store_batch};
use crate::store::subscriptions::RouteRow;
use crate::store::{Store, StoreError};

/// Most events stored by one transaction.
const MAX_GROUP: usize = 10_000;

const STORE_FAILED: &str = "the database refused the write; see the server log";
const SYNC_FAILED: &str = "the database could not confirm the write on disk; push again \
                           (with an Idempotency-Key to avoid duplicates)";

/// One publish, routed and ready to store.
pub struct Pending {
    pub events: Vec<PreparedEvent>,
    /// Endpoints of these events that other nodes own (told by NOTIFY).
    pub remote: Vec<i64>,
    pub ticket: Ticket,
    pub reply: PublishReply,
}

/// A group is stored and its publishers answered: the deliveries of its new
/// events, per endpoint in the order they were published.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Committed {
    /// Events the group held (stored, duplicate, refused or abandoned).
    pub events: usize,
    pub deliveries: Vec<(i64, Vec<Job>)>,
}

/// Where routed publishes go to be stored.
#[derive(Clone)]
pub struct GroupCommit {
    tx: Sender<Pending>,
}

impl GroupCommit {
    /// Starts the threads; they route groups again against `table` when
    /// it is stale, tell `done` of every commit and stop when this handle
    /// is dropped.
    pub fn start(
        store: Store,
        table: RouteTable,
        done: Recipient<Committed>,
    ) -> std::io::Result<GroupCommit> {
        let (tx, rx) = mpsc::channel();
        // Rendezvous: the writer hands a group over only once the syncer
        // is ready to sync it.
        let (written_tx, written_rx) = mpsc::sync_channel(0);
        let syncer_store = store.clone();
        std::thread::Builder::new()
            .name("hr-sync".into())
            .spawn(move || sync(syncer_store, written_rx, done))?;
        std::thread::Builder::new()
            .name("hr-commit".into())
            .spawn(move || write(store, table, rx, written_tx))?;
        Ok(GroupCommit { tx })
    }

    /// Queues a publish. Fails only if the threads have stopped; the
    /// publish comes back so that its publisher can be answered.
    pub fn send(&self, pending: Pending) -> Result<(), Pending> {
        self.tx.send(pending).map_err(|e| e.0)
    }
}

/// A group written (or refused), waiting for the disk sync: its events in
/// order, and per publish how many of them and where to answer.
struct Written {
    events: usize,
    rows: Vec<PreparedEvent>,
    parts: Vec<(usize, PublishReply)>,
    stored: Result<Vec<Stored>, StoreError>,
}

/// Routes a stale group again: the changes go into the node's table (and
/// so to the router), then the stale events are routed against it.
struct Rerouter<'a>(&'a RouteTable);

impl Reroute for Rerouter<'_> {
    fn reroute(
        &mut self,
        version: i64,
        changes: Vec<RouteRow>,
        batch: &mut [PreparedEvent],
    ) -> Vec<i64> {
        METRICS.routing_catch_ups.inc();
        self.0.apply(version, changes);
        let table = self.0.read();
        let now = DbTime::new(crate::store::now());
        let mut endpoints = Vec::new();
        for prepared in batch.iter_mut().filter(|p| p.routed_at < version) {
            table.route(prepared, &now);
            endpoints.extend(prepared.deliveries.iter().map(|d| d.endpoint_id));
        }
        endpoints.sort_unstable();
        endpoints.dedup();
        endpoints
    }
}

/// What the writer stores of a group: the rows of the publishes it took,
/// in order, per publish how many rows and where to answer, and the
/// endpoints other nodes own that get notified.
struct Taken {
    rows: Vec<PreparedEvent>,
    parts: Vec<(usize, PublishReply)>,
    notify: Vec<i64>,
}

/// Takes the publishes of a group (`count` events in all) whose publishers
/// still wait; the others are dropped unstored and unanswered (their
/// publishers answered their clients already).
fn take(group: Vec<Pending>, count: usize) -> Taken {
    let mut taken = Taken {
        rows: Vec::with_capacity(count),
        parts: Vec::with_capacity(group.len()),
        notify: Vec::new(),
    };
    for pending in group {
        if !pending.ticket.take() {
            continue;
        }
        taken.parts.push((pending.events.len(), pending.reply));
        taken.rows.extend(pending.events);
        taken.notify.extend(pending.remote);
    }
    taken.notify.sort_unstable();
    taken.notify.dedup();
    taken
}

/// The writer: one transaction for whatever has queued up. A publish whose
/// publisher gave up waiting (and told its client that nothing was stored)
/// is dropped unstored.
fn write(store: Store, table: RouteTable, rx: Receiver<Pending>, written: SyncSender<Written>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut count = group[0].events.len();
        while count < MAX_GROUP {
            let Ok(next) = rx.try_recv() else { break };
            count += next.events.len();
            group.push(next);
        }
        METRICS.group_commit_events.observe(count as f64);
        let Taken {
            mut rows,
            parts,
            notify,
        } = take(group, count);
        let stored = if rows.is_empty() {
            Ok(Vec::new())
        } else {
            store
                .write_unsynced(|conn| store_batch(conn, &mut rows, &notify, &mut Rerouter(&table)))
        };
        let group = Written {
            events: count,
            rows,
            parts,
            stored,
        };
        if written.send(group).is_err() {
            return;
        }
    }
}

/// The syncer: one disk sync for every group written since the last one,
/// then the answers, in the order written.
fn sync(store: Store, rx: Receiver<Written>, done: Recipient<Committed>) {
    let mut ingested = IngestCounters::default();
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(next) = rx.try_recv() {
            groups.push(next);
        }
        let synced = store.sync_commits();
        match &synced {
            Err(e) => {
                log::error!("group commit could not be synced to disk: {e}");
                METRICS.commit_failures.inc();
            }
            Ok(())
                if groups
                    .iter()
                    .any(|g| g.stored.is_ok() && !g.rows.is_empty()) =>
            {
                store.write_succeeded();
            }
            Ok(()) => {}
        }
        for group in groups {
            let deliveries = match group.stored {
                Err(e) => {
                    log::error!("group commit failed: {e}");
                    METRICS.commit_failures.inc();
                    let refusal = match e.unavailable() {
                        Some(why) => PublishError::Storage(why),
                        None => PublishError::Failed(STORE_FAILED.into()),
                    };
                    for (_, reply) in group.parts {
                        let _ = reply.send(Err(refusal.clone()));
                    }
                    Vec::new()
                }
                // After a failed sync the rows are committed but perhaps not
                // on disk: the publishers hear of a failure (and may push
                // again, as after any unanswered push); the stored
                // deliveries go out.
                Ok(stored) => settle(
                    group.parts,
                    group.rows,
                    stored,
                    synced.is_err(),
                    &mut ingested,
                ),
            };
            done.do_send(Committed {
                events: group.events,
                deliveries,
            });
        }
    }
}

/// `hookrelay_events_ingested_total` per event type, each series looked up
/// once (event types are the catalog's few).
#[derive(Default)]
struct IngestCounters(HashMap<String, IntCounter>);

impl IngestCounters {
    fn inc(&mut self, event_type: String) {
        self.0
            .entry(event_type)
            .or_insert_with_key(|t| METRICS.events_ingested.with_label_values(&[t.as_str()]))
            .inc();
    }
}

/// Answers the publishers of a stored group (with an error if `unsynced`)
/// and returns the deliveries of its new events, per endpoint.
fn settle(
    parts: Vec<(usize, PublishReply)>,
    rows: Vec<PreparedEvent>,
    stored: Vec<Stored>,
    unsynced: bool,
    ingested: &mut IngestCounters,
) -> Vec<(i64, Vec<Job>)> {
    let mut events = rows.into_iter().zip(stored);
    let mut by_endpoint: HashMap<i64, Vec<Job>> = HashMap::new();
    for (count, reply) in parts {
        let mut results = Vec::with_capacity(count);
        for (prepared, stored) in events.by_ref().take(count) {
            match stored {
                Stored::Duplicate {
                    event_id,
                    deliveries,
                } => {
                    results.push(Published {
                        event_id,
                        deliveries: deliveries.max(0) as usize,
                        repeated: true,
                        conflicting: false,
                    });
                    continue;
                }
                Stored::Conflict { event_id } => {
                    results.push(Published {
                        event_id,
                        deliveries: 0,
                        repeated: true,
                        conflicting: true,
                    });
                    continue;
                }
                Stored::New => {}
            }
            let PreparedEvent {
                event,
                deliveries,
                secrets,
                ..
            } = prepared;
            results.push(Published {
                event_id: event.id,
                deliveries: deliveries.len(),
                repeated: false,
                conflicting: false,
            });
            ingested.inc(event.event);
            let body = Bytes::from(event.body);
            for (delivery, secret) in deliveries.into_iter().zip(secrets) {
                by_endpoint
                    .entry(delivery.endpoint_id)
                    .or_default()
                    .push(Job::new(
                        Arc::from(delivery.id),
                        delivery.subscription_id,
                        secret,
                        body.clone(),
                    ));
            }
        }
        let _ = reply.send(if unsynced {
            Err(PublishError::Storage(SYNC_FAILED.into()))
        } else {
            Ok(results)
        });
    }
    by_endpoint.into_iter().collect()
}
