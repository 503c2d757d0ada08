//! Deliveries cancelled under the actor (an erasure by data subject): the
//! `Cancel` it is told on this node, and the `Recheck` it makes when it
//! may have been cancelled under on another node (PostgreSQL cluster).
//!
//! ```text
//!   Cancel(ids) ─► queued: dropped now (let go of, like a finished one)
//!                  in flight / waiting for a retry: marked; `send` drops them
//!                  not held: remembered as let go of, so a page read under way
//!                             cannot bring them back
//!   Recheck ─► database: which held ids are no longer pending? ─► Cancel(those)
//! ```
//!
//! Every cancelled row is in the database already, so nothing is written
//! here; the ids let go of go to the recorder like finished ones, whose
//! answer (`Recorded`) lets the actor forget them.

use std::sync::Arc;

use actix::prelude::*;
use foldhash::{HashSet, HashSetExt};

use super::{AFTER_DB_ERROR, Cancel, EndpointActor, Recheck};
use crate::metrics::{ErrorSite, internal_error};
use crate::store::erasures;

impl Handler<Cancel> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) {
        self.drop_cancelled(msg.0);
        self.send_records(ctx);
        self.update_gauges();
        self.pump(ctx);
    }
}

impl Handler<Recheck> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Recheck, ctx: &mut Self::Context) {
        self.recheck(ctx);
    }
}

impl EndpointActor {
    /// Drops the deliveries `ids` (cancelled in the database) from memory;
    /// one in flight or waiting for a retry is never started again.
    fn drop_cancelled(&mut self, ids: Vec<String>) {
        let ids: HashSet<Arc<str>> = ids.into_iter().map(Arc::from).collect();
        let mut queued = HashSet::new();
        self.queue.retain(|job| {
            let cancelled = ids.contains(&job.id);
            if cancelled {
                queued.insert(job.id.clone());
            }
            !cancelled
        });
        self.backlog.arrived.retain(|job| !ids.contains(&job.id));
        for id in ids {
            if !queued.contains(&id)
                && let Some(held) = self.known.get(&id)
            {
                // In flight or waiting for its retry: it holds a slot,
                // which `send` frees instead of sending it.
                self.cancelled.insert(held.clone());
                continue;
            }
            self.known.remove(&id);
            self.recently_done.insert(id.clone());
            self.released.push(id);
        }
    }

    /// Whether `job`, about to be started, was cancelled meanwhile (or its
    /// payload erased): if so its slot is freed and it is never sent.
    pub(super) fn cancelled_before_start(&mut self, job: &super::Job) -> bool {
        let erased = job.body.as_ref() == crate::erasure::ERASED_BODY.as_bytes();
        if !self.cancelled.remove(&job.id) && !erased {
            return false;
        }
        self.release(job);
        true
    }

    /// Forgets cancellation marks of deliveries no longer held (one that
    /// was in flight when cancelled and then finished).
    pub(super) fn prune_cancelled(&mut self) {
        if !self.cancelled.is_empty() {
            let known = &self.known;
            self.cancelled.retain(|id| known.contains(id));
        }
    }

    /// Reads which held deliveries are no longer pending and drops them;
    /// one read at a time, and once more if asked meanwhile.
    fn recheck(&mut self, ctx: &mut Context<Self>) {
        if self.rechecking {
            self.recheck_again = true;
            return;
        }
        if self.known.is_empty() {
            return;
        }
        self.rechecking = true;
        let held: Vec<String> = self.known.iter().map(|id| id.to_string()).collect();
        let store = self.store.clone();
        let read = async move {
            store
                .run_background(move |conn| erasures::no_longer_pending(conn, &held))
                .await
        };
        ctx.spawn(read.into_actor(self).map(|result, act, ctx| {
            act.rechecking = false;
            match result {
                Ok(gone) if !gone.is_empty() => {
                    log::info!(
                        "endpoint {}: dropped {} held deliveries that are no longer pending (cancelled on another node)",
                        act.id,
                        gone.len()
                    );
                    act.drop_cancelled(gone);
                    act.send_records(ctx);
                    act.update_gauges();
                    act.pump(ctx);
                }
                Ok(_) => {}
                Err(e) => {
                    log::error!(
                        "endpoint {}: could not re-check its held deliveries: {e}",
                        act.id
                    );
                    internal_error(ErrorSite::Endpoint);
                    act.recheck_again = true;
                    ctx.run_later(AFTER_DB_ERROR, |act, ctx| {
                        if std::mem::take(&mut act.recheck_again) {
                            act.recheck(ctx);
                        }
                    });
                    return;
                }
            }
            if std::mem::take(&mut act.recheck_again) {
                act.recheck(ctx);
            }
        }));
    }
}
