//! Group commit: stores what is published and answers each
//! publisher once its events are durable. Two threads form a pipeline:
//!
//! - the *writer* stores every publish that arrived while its previous
//!   transaction ran in one transaction (`Store::write_unsynced`);
//! - the *syncer* makes every transaction written so far durable with one
//!   `Store::sync_commits` (an `fdatasync` of SQLite's WAL; nothing on
//!   PostgreSQL, whose commits are durable already), then answers their
//!   publishers in the order written and hands the deliveries to their
//!   endpoint actors (`Directory::hand_over`: directly, or through the
//!   router as `Committed`).
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
//!
//! The pipeline pays only under load. When the writer had been idle for
//! a while before the group's first publish came (`IDLE_BEFORE_INLINE`),
//! nothing else waits to be written and the syncer holds no group, the
//! writer syncs and answers the group itself (`Inline::decide`): at a
//! trickle of events that spares a thread hand-off (a wake-up of the
//! syncer, and the writer's own sleep) per event, and the answers still go
//! out in the order written, since the syncer has nothing older to answer.
//! Under load (publishes following each other closely, as from clients
//! that push again as soon as they are answered) the next group is written
//! while this one syncs, as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};

use actix::prelude::*;

use super::directory::Directory;
use super::publisher::Waiting;
use super::settle::{IngestCounters, settle};
use super::{PublishError, PublishReply, Ticket};
use crate::delivery::endpoint::Job;
use crate::metrics::{self, ErrorSite, METRICS};
use crate::routing::RouteTable;
use crate::store::db_time::DbTime;
use crate::store::events::{PreparedEvent, Reroute, Stored, store_batch};
use crate::store::subscriptions::RouteRow;
use crate::store::{Store, StoreError};

/// Most events stored by one transaction.
const MAX_GROUP: usize = 10_000;
/// How long the writer must have waited for a group's first publish for
/// it to sync that group itself: publishes further apart than this are a
/// trickle, closer ones are load that the pipeline serves better.
const IDLE_BEFORE_INLINE: std::time::Duration = std::time::Duration::from_millis(1);

const STORE_FAILED: &str = "the database refused the write; see the server log";

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
        handoff: (Directory, Waiting),
    ) -> std::io::Result<GroupCommit> {
        let (tx, rx) = mpsc::channel();
        // Rendezvous: the writer hands a group over only once the syncer
        // is ready to sync it.
        let (written_tx, written_rx) = mpsc::sync_channel(0);
        let syncing = Syncing::default();
        let (actors, waiting) = handoff;
        let syncer = Stage {
            store: store.clone(),
            done: done.clone(),
            actors: actors.clone(),
            waiting: waiting.clone(),
            syncing: syncing.clone(),
        };
        std::thread::Builder::new()
            .name("hr-sync".into())
            .spawn(move || sync(syncer, written_rx))?;
        let writer = Stage {
            store,
            done,
            actors,
            waiting,
            syncing,
        };
        std::thread::Builder::new()
            .name("hr-commit".into())
            .spawn(move || write(writer, table, rx, written_tx))?;
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

/// Groups handed to the syncer whose publishers it has not answered yet.
#[derive(Clone, Default)]
struct Syncing(Arc<AtomicUsize>);

/// What the writer and the syncer both need to finish a group.
struct Stage {
    store: Store,
    /// The router, and the actors its deliveries go to directly.
    done: Recipient<Committed>,
    actors: Directory,
    waiting: Waiting,
    syncing: Syncing,
}

/// Who syncs a written group.
#[derive(Debug, PartialEq, Eq)]
enum Inline {
    /// The writer, at once: nothing else waits to be written and the
    /// syncer has nothing older to answer.
    Writer,
    /// The syncer, while the writer goes on with what waits.
    Syncer,
}

impl Inline {
    /// `idle`: the writer waited at least `IDLE_BEFORE_INLINE` for the
    /// group's first publish; `more_waiting`: another publish is queued;
    /// `syncer_holds`: groups the syncer has not answered yet.
    fn decide(idle: bool, more_waiting: bool, syncer_holds: usize) -> Inline {
        if idle && !more_waiting && syncer_holds == 0 {
            Inline::Writer
        } else {
            Inline::Syncer
        }
    }
}

/// The writer: one transaction for whatever has queued up. A publish whose
/// publisher gave up waiting (and told its client that nothing was stored)
/// is dropped unstored. It syncs and answers a group itself when nothing
/// else waits (`Inline`).
fn write(stage: Stage, table: RouteTable, rx: Receiver<Pending>, written: SyncSender<Written>) {
    let mut ingested = IngestCounters::default();
    let mut carried: Option<Pending> = None;
    loop {
        let waited = std::time::Instant::now();
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv() {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let idle = waited.elapsed() >= IDLE_BEFORE_INLINE;
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
            stage
                .store
                .write_unsynced(|conn| store_batch(conn, &mut rows, &notify, &mut Rerouter(&table)))
        };
        let group = Written {
            events: count,
            rows,
            parts,
            stored,
        };
        let disconnected = match rx.try_recv() {
            Ok(next) => {
                carried = Some(next);
                false
            }
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => true,
        };
        let holds = stage.syncing.0.load(Ordering::Acquire);
        match Inline::decide(idle, carried.is_some(), holds) {
            Inline::Writer => finish(&stage, vec![group], &mut ingested),
            Inline::Syncer => {
                stage.syncing.0.fetch_add(1, Ordering::AcqRel);
                if written.send(group).is_err() {
                    return;
                }
            }
        }
        if disconnected && carried.is_none() {
            return;
        }
    }
}

/// The syncer: one disk sync for every group written since the last one,
/// then the answers, in the order written.
fn sync(stage: Stage, rx: Receiver<Written>) {
    let mut ingested = IngestCounters::default();
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(next) = rx.try_recv() {
            groups.push(next);
        }
        let n = groups.len();
        finish(&stage, groups, &mut ingested);
        stage.syncing.0.fetch_sub(n, Ordering::AcqRel);
    }
}

/// One disk sync for `groups` (written in this order), then their answers,
/// and their deliveries to their actors (`Directory::hand_over`).
fn finish(stage: &Stage, groups: Vec<Written>, ingested: &mut IngestCounters) {
    let synced = stage.store.sync_commits();
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
            stage.store.write_succeeded();
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
                    None => {
                        metrics::internal_error(ErrorSite::Ingest);
                        PublishError::Failed(STORE_FAILED.into())
                    }
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
            Ok(stored) => settle(group.parts, group.rows, stored, synced.is_err(), ingested),
        };
        stage
            .actors
            .hand_over(group.events, deliveries, &stage.done, &stage.waiting);
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::ingest::Outcome;
    use crate::store::models::NewEvent;

    fn event(id: &str) -> PreparedEvent {
        PreparedEvent::fixed(
            NewEvent::example(id, DbTime::new(crate::store::now())),
            Vec::new(),
        )
    }

    fn pending(ids: &[&str], remote: &[i64]) -> (Pending, oneshot::Receiver<Outcome>) {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            events: ids.iter().map(|id| event(id)).collect(),
            remote: remote.to_vec(),
            ticket: Ticket::default(),
            reply,
        };
        (pending, answer)
    }

    fn row_ids(taken: &Taken) -> Vec<&str> {
        taken.rows.iter().map(|r| r.event.id.as_str()).collect()
    }

    #[test]
    fn a_group_is_taken_in_the_order_published_with_one_part_per_publish() {
        let (first, _a) = pending(&["e1", "e2"], &[]);
        let (second, _b) = pending(&["e3"], &[]);
        let taken = take(vec![first, second], 3);
        assert_eq!(row_ids(&taken), vec!["e1", "e2", "e3"]);
        let counts: Vec<usize> = taken.parts.iter().map(|(n, _)| *n).collect();
        assert_eq!(counts, vec![2, 1]);
    }

    #[test]
    fn a_publish_given_up_on_is_left_out_of_its_group_unstored() {
        let (kept, _a) = pending(&["e1"], &[]);
        let (abandoned, _b) = pending(&["e2"], &[5]);
        assert!(abandoned.ticket.abandon());
        let taken = take(vec![kept, abandoned], 2);
        assert_eq!(row_ids(&taken), vec!["e1"]);
        assert_eq!(taken.parts.len(), 1);
        assert!(taken.notify.is_empty());
    }

    #[test]
    fn a_taken_publish_can_no_longer_be_given_up_on() {
        let (queued, _a) = pending(&["e1"], &[]);
        let ticket = queued.ticket.clone();
        take(vec![queued], 1);
        assert!(!ticket.abandon());
    }

    #[test]
    fn the_writer_syncs_a_group_itself_only_after_idling_when_nothing_else_waits() {
        assert_eq!(Inline::decide(true, false, 0), Inline::Writer);
        assert_eq!(Inline::decide(false, false, 0), Inline::Syncer);
        assert_eq!(Inline::decide(true, true, 0), Inline::Syncer);
        assert_eq!(Inline::decide(true, false, 1), Inline::Syncer);
        assert_eq!(Inline::decide(false, true, 2), Inline::Syncer);
    }

    #[test]
    fn the_endpoints_to_notify_are_gathered_once_each_in_order() {
        let (first, _a) = pending(&["e1"], &[9, 3]);
        let (second, _b) = pending(&["e2"], &[3, 4]);
        let taken = take(vec![first, second], 2);
        assert_eq!(taken.notify, vec![3, 4, 9]);
    }
}
