//! The recorder actor: collects delivery outcomes and attempt rows from every
//! endpoint actor, and their saved health, and writes them in batches (one
//! blocking task per flush, at most `FLUSH_EVERY` apart), so finishing a
//! delivery or changing health costs no database round trip of its own, and
//! thousands of endpoints failing at once make one write, not thousands. Losing an unflushed batch in a crash only means a
//! delivery is sent again (at-least-once). For the same reason a write
//! does not wait for the disk (`Store::run_background_unsynced`): a kill
//! of the process loses nothing written, a power cut at most what the next
//! sync of the WAL (the group commit's, every accepted event) had not
//! covered yet, and no `fsync` runs per flush while SQLite's write lock is
//! held. `FLUSH_EVERY` is long enough that a trickle of deliveries shares
//! its writes, and short enough that what an operator reads is current. After each write it tells the
//! endpoint actors which of their finished deliveries are now recorded
//! (`Recorded`), so they need remember them only that long.
//!
//! Lifecycle notices (`Notify`) are stored with the same writes; when an
//! operator webhook is set, each gets its delivery there in the same
//! transaction, and the recorder reports those upward (`NoticesQueued`) to
//! be handed to that endpoint's actor.
//!
//! A dead endpoint is buried here too (`Bury`), with its write after the
//! notices taken before it: the burial and the notices of the death are
//! one transaction (`store::endpoints::bury`), so a crash between them
//! cannot lose the notices.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::endpoint::Job;
use crate::notice::Draft;
use crate::store::deliveries::{self, Completion};
use crate::store::endpoints::{self, HealthRow};
use crate::store::models::NewAttempt;
use crate::store::notices::{self, OperatorRoute, QueuedNotice};
use crate::store::{Store, StoreError};

/// Longest time an outcome waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Outcomes that trigger a flush without waiting.
const FLUSH_AT: usize = 2000;

/// One finished attempt: the delivery's new state, and the attempt's row
/// (every attempt has one; the store keeps a first attempt that
/// succeeded on its delivery's row, `deliveries::kept_where`).
pub struct Record {
    pub completion: Completion,
    pub attempt: NewAttempt,
}

/// Finished attempts from one endpoint actor, sent together, and the
/// deliveries it let go of meanwhile: once their outcomes are written the
/// recorder tells `from` (`Recorded`), which may then forget them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Records {
    pub records: Vec<Record>,
    pub released: Vec<Arc<str>>,
    pub from: Recipient<Recorded>,
}

/// These deliveries' outcomes are in the database (and were before any
/// read that starts from now on).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recorded(pub Vec<Arc<str>>);

/// Who to tell of a write, and what.
type Ack = (Recipient<Recorded>, Vec<Arc<str>>);

/// An endpoint's health to save (the latest one per endpoint is written).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SaveHealth(pub i64, pub HealthRow);

/// Lifecycle notices to store, in order (`crate::notice`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Notify(pub Vec<Draft>);

/// Reported upward once notices are stored: their deliveries to the
/// operator webhook (endpoint id, URL, the delivery), in order, for that
/// endpoint's actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct NoticesQueued(pub Vec<(i64, String, Job)>);

/// An endpoint is dead: bury it with the notices of its death (worded by
/// `notices` from the ids of the subscriptions removed; none for a spare
/// actor), in one transaction, with the next write. Answers the ids of
/// the subscriptions removed.
#[derive(Message)]
#[rtype(result = "Result<Vec<i64>, StoreError>")]
pub struct Bury {
    pub endpoint_id: i64,
    pub reason: String,
    pub notices: DeathNotices,
}

/// Words the notices of a death from the ids of the subscriptions it
/// removed.
pub type DeathNotices = Box<dyn FnOnce(&[i64]) -> Vec<Draft> + Send>;

/// A burial waiting for the next write, and who waits for its answer.
type Burial = (
    Bury,
    tokio::sync::oneshot::Sender<Result<Vec<i64>, StoreError>>,
);

/// Writes everything buffered; answers once it is stored (used on shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

pub struct Recorder {
    store: Store,
    completions: Vec<Completion>,
    attempts: Vec<NewAttempt>,
    health: HashMap<i64, HealthRow>,
    notices: Vec<Draft>,
    burials: Vec<Burial>,
    /// Where notices are delivered, when an operator webhook is set.
    operator: Option<Arc<OperatorRoute>>,
    /// Who hands notices' deliveries to their actor (the router).
    queued: Recipient<NoticesQueued>,
    acks: Vec<Ack>,
    writing: bool,
    timer: Option<SpawnHandle>,
}

/// One write's rows.
#[derive(Clone)]
struct Batch {
    completions: Vec<Completion>,
    attempts: Vec<NewAttempt>,
    health: Vec<(i64, HealthRow)>,
    notices: Vec<Draft>,
}

impl Recorder {
    /// A recorder writing to `store`; notices go to `operator` when set,
    /// and their deliveries are reported to `queued`.
    pub fn new(
        store: Store,
        operator: Option<OperatorRoute>,
        queued: Recipient<NoticesQueued>,
    ) -> Recorder {
        Recorder {
            store,
            completions: Vec::new(),
            attempts: Vec::new(),
            health: HashMap::new(),
            notices: Vec::new(),
            burials: Vec::new(),
            operator: operator.map(Arc::new),
            queued,
            acks: Vec::new(),
            writing: false,
            timer: None,
        }
    }

    /// One write of what is buffered, as a future of this actor; `None`
    /// when there is nothing to write. A failed write (our database, not
    /// the endpoints) puts its batch back to be written again.
    fn take_write(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> Option<impl ActorFuture<Self, Output = ()> + 'static> {
        if self.completions.is_empty()
            && self.attempts.is_empty()
            && self.health.is_empty()
            && self.notices.is_empty()
            && self.burials.is_empty()
        {
            // Nothing to write: the outcomes of what the actors ask about
            // were written by an earlier write (or need none).
            for (to, ids) in self.acks.drain(..) {
                to.do_send(Recorded(ids));
            }
            return None;
        }
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        self.writing = true;
        let batch: Arc<Batch> = Arc::new(Batch {
            completions: std::mem::take(&mut self.completions),
            attempts: std::mem::take(&mut self.attempts),
            health: std::mem::take(&mut self.health).into_iter().collect(),
            notices: std::mem::take(&mut self.notices),
        });
        let acks = std::mem::take(&mut self.acks);
        let burials = std::mem::take(&mut self.burials);
        let (store, written) = (self.store.clone(), batch.clone());
        let operator = self.operator.clone();
        let write = async move {
            store
                .run_background_unsynced(move |conn| {
                    deliveries::record(conn, &written.completions, &written.attempts)?;
                    endpoints::save_health(conn, &written.health)?;
                    let mut queued = notices::insert(conn, &written.notices, operator.as_deref())?;
                    // After the notices above: those of a death sort after
                    // every notice taken before it.
                    queued.extend(bury(conn, burials, operator.as_deref()));
                    Ok(queued)
                })
                .await
        };
        Some(write.into_actor(self).map(move |result, act, _| {
            act.writing = false;
            match result {
                Ok(queued) => {
                    for (to, ids) in acks {
                        to.do_send(Recorded(ids));
                    }
                    act.hand_over(queued);
                }
                Err(e) => {
                    log::error!("could not record delivery outcomes ({e}); retrying");
                    crate::metrics::internal_error(crate::metrics::ErrorSite::Recorder);
                    let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
                    act.completions.splice(0..0, batch.completions);
                    act.attempts.splice(0..0, batch.attempts);
                    // Stored twice is harmless: a stored notice is skipped.
                    act.notices.splice(0..0, batch.notices);
                    for (id, row) in batch.health {
                        // A newer one may have come meanwhile.
                        act.health.entry(id).or_insert(row);
                    }
                    act.acks.splice(0..0, acks);
                }
            }
        }))
    }

    /// Reports the notices' deliveries to the operator webhook upward.
    fn hand_over(&self, queued: Vec<QueuedNotice>) {
        let Some(route) = &self.operator else {
            return;
        };
        if queued.is_empty() {
            return;
        }
        let jobs = queued
            .into_iter()
            .map(|q| {
                let job = Job::new(
                    Arc::from(q.delivery_id),
                    q.subscription_id,
                    route.secrets.clone(),
                    bytes::Bytes::from(q.body),
                );
                (q.endpoint_id, q.endpoint_url, job)
            })
            .collect();
        self.queued.do_send(NoticesQueued(jobs));
    }

    /// Starts one write of what is buffered, unless one is running already.
    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if let Some(write) = self.take_write(ctx) {
            ctx.spawn(write.map(|_, act, ctx| {
                if act.completions.len() >= FLUSH_AT {
                    act.write(ctx);
                } else {
                    act.schedule(ctx);
                }
            }));
        }
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_none()
            && !(self.completions.is_empty()
                && self.acks.is_empty()
                && self.health.is_empty()
                && self.notices.is_empty()
                && self.burials.is_empty())
        {
            self.timer = Some(ctx.run_later(FLUSH_EVERY, |act, ctx| {
                act.timer = None;
                act.write(ctx);
            }));
        }
    }
}

/// Buries each endpoint in its own transaction and answers whoever waits
/// (a failed burial is answered with its error and retried by the actor;
/// a write that fails before the burials drops them, and the actor hears
/// `TaskFailed`). The notices' deliveries to the operator webhook.
fn bury(
    conn: &mut crate::store::Conn,
    burials: Vec<Burial>,
    operator: Option<&OperatorRoute>,
) -> Vec<QueuedNotice> {
    let mut queued = Vec::new();
    for (burial, answer) in burials {
        let buried = endpoints::bury(
            conn,
            burial.endpoint_id,
            &burial.reason,
            burial.notices,
            operator,
        )
        .map(|(ids, notices)| {
            queued.extend(notices);
            ids
        });
        let _ = answer.send(buried);
    }
    queued
}

impl Actor for Recorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(100_000);
    }
}

impl Handler<Records> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: Records, ctx: &mut Self::Context) {
        for record in msg.records {
            self.completions.push(record.completion);
            self.attempts.push(record.attempt);
        }
        if !msg.released.is_empty() {
            self.acks.push((msg.from, msg.released));
        }
        if self.completions.len() >= FLUSH_AT {
            self.write(ctx);
        } else {
            self.schedule(ctx);
        }
    }
}

impl Handler<SaveHealth> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: SaveHealth, ctx: &mut Self::Context) {
        self.health.insert(msg.0, msg.1);
        self.schedule(ctx);
    }
}

impl Handler<Notify> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: Notify, ctx: &mut Self::Context) {
        // Ids in the order notices are written, one write at a time: a
        // reader paging by id never skips one stored later.
        self.notices.extend(msg.0.into_iter().map(|mut draft| {
            draft.stamp();
            draft
        }));
        self.schedule(ctx);
    }
}

impl Handler<Bury> for Recorder {
    type Result = ResponseFuture<Result<Vec<i64>, StoreError>>;

    fn handle(&mut self, msg: Bury, ctx: &mut Self::Context) -> Self::Result {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.burials.push((msg, answer));
        self.schedule(ctx);
        Box::pin(async move { answered.await.unwrap_or(Err(StoreError::TaskFailed)) })
    }
}

impl Handler<Flush> for Recorder {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        if self.writing {
            // Let the running write finish, then flush what is left.
            let addr = ctx.address();
            return Box::pin(
                async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let _ = addr.send(Flush).await;
                }
                .into_actor(self),
            );
        }
        match self.take_write(ctx) {
            Some(write) => Box::pin(write),
            None => Box::pin(actix::fut::ready(())),
        }
    }
}
