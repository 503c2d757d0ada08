//! The in-memory window onto the durable queue: which deliveries the actor
//! holds (`queue`, `known`), which it let go of but the recorder has not
//! confirmed yet (`recently_done`), and when it reads the next page of
//! pending deliveries from the database (`Backlog`). Every delivery it
//! holds is already durable; the window only bounds memory.

use std::sync::Arc;

use actix::prelude::*;

use super::{AFTER_DB_ERROR, EndpointActor, Job};
use crate::delivery::budget::QUEUED;
use crate::metrics::{ErrorSite, internal_error};
use crate::signing::Secrets;
use crate::store::StoreError;
use crate::store::deliveries::{self, JobRow};

/// Pending deliveries read from the database per page.
const PAGE: usize = 1024;
/// Deliveries an endpoint may always hold in memory; beyond it new ones wait
/// in the database once the memory budget (`budget`) is used up.
const WINDOW: usize = 8 * PAGE;
/// Most deliveries an endpoint holds in memory, budget or not.
const MAX_WINDOW: usize = 64 * PAGE;

/// The window onto the database queue.
#[derive(Default)]
pub(super) struct Backlog {
    /// The database may hold pending deliveries not yet in memory.
    pub(super) more_in_db: bool,
    pub(super) loading: bool,
    /// Id of the last delivery read from the database (or, once the window
    /// overflowed, the newest id held in memory).
    pub(super) cursor: Option<String>,
    /// Deliveries that arrived while a page was being read.
    pub(super) arrived: Vec<Job>,
}

impl Backlog {
    /// Whether to read the next page, with `queued` deliveries in memory.
    fn wants_page(&self, queued: usize) -> bool {
        self.more_in_db && !self.loading && queued < PAGE / 2
    }

    /// Whether a delivery with this id will be read from the database later
    /// (it lies beyond what was read so far).
    fn will_read(&self, id: &str) -> bool {
        self.more_in_db && self.cursor.as_deref().is_none_or(|cursor| id > cursor)
    }
}

/// Whether a window holding `held` deliveries takes no more: past
/// `MAX_WINDOW` always, past `WINDOW` once the memory budget is used up.
fn window_full(held: usize, budget_exhausted: bool) -> bool {
    held >= MAX_WINDOW || (held >= WINDOW && budget_exhausted)
}

impl EndpointActor {
    /// Frees the slot of a finished delivery.
    pub(super) fn release(&mut self, job: &Job) {
        self.slots_used -= 1;
        self.known.remove(&job.id);
        self.recently_done.insert(job.id.clone());
        self.released.push(job.id.clone());
    }

    /// Forgets deliveries whose outcome is in the database.
    pub(super) fn forget(&mut self, recorded: Vec<Arc<str>>) {
        for id in recorded {
            self.recently_done.remove(&id);
        }
        self.prune_cancelled();
        self.shrink_when_idle();
    }

    /// Gives a delivery's slot back and puts it in the queue in id order
    /// (it stays known): it is sent again once the endpoint may be used.
    pub(super) fn hold(&mut self, mut job: Job) {
        self.slots_used -= 1;
        job.not_before = None;
        let at = self.queue.partition_point(|j| j.id < job.id);
        self.queue.insert(at, job);
    }

    fn remember(&mut self, job: Job) {
        if !self.holds_newer_than(&job) {
            self.newest = Some(job.id.clone());
        }
        self.known.insert(job.id.clone());
        self.queue.push_back(job);
    }

    /// Whether something newer than `job` is held already.
    fn holds_newer_than(&self, job: &Job) -> bool {
        self.newest.as_ref().is_some_and(|n| job.id <= *n)
    }

    /// Takes a durable delivery into memory, unless it is already there or
    /// the window will read it from the database later.
    pub(super) fn accept(&mut self, job: Job) {
        if self.known.contains(&job.id) || self.recently_done.contains(&job.id) {
            return;
        }
        if self.backlog.loading {
            self.backlog.arrived.push(job);
            return;
        }
        if self.backlog.will_read(&job.id) {
            return;
        }
        if window_full(self.queue.len(), QUEUED.exhausted()) {
            // The window is full: from here on the database holds the rest.
            self.backlog.more_in_db = true;
            self.backlog.cursor = self.newest.as_deref().map(str::to_string);
            if !self.holds_newer_than(&job) {
                return;
            }
        }
        self.remember(job);
    }

    /// Reads the next page of pending deliveries when the window runs low.
    pub(super) fn refill(&mut self, ctx: &mut Context<Self>) {
        if !self.backlog.wants_page(self.queue.len()) {
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

    /// Takes a page read from the database, then what arrived meanwhile.
    fn loaded(&mut self, result: Result<Vec<JobRow>, StoreError>, ctx: &mut Context<Self>) {
        self.backlog.loading = false;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                log::error!(
                    "endpoint {}: could not read pending deliveries: {e}",
                    self.id
                );
                internal_error(ErrorSite::Endpoint);
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
            self.take_row(row);
        }
        for job in std::mem::take(&mut self.backlog.arrived) {
            self.accept(job);
        }
        self.pump(ctx);
    }

    /// Holds a pending delivery read from the database, unless it is held
    /// or was let go of already.
    fn take_row(&mut self, row: JobRow) {
        if self.known.contains(row.id.as_str()) || self.recently_done.contains(row.id.as_str()) {
            return;
        }
        if let Some(secret) = self.secret_of(&row) {
            self.remember(Job::from_row(row, secret));
        }
    }

    /// The secret that signs a delivery read from the database.
    fn secret_of(&self, row: &JobRow) -> Option<Arc<Secrets>> {
        if let Some(secret) = self.subscriptions.get(&row.subscription_id) {
            return Some(secret.clone());
        }
        match crate::signing::Secret::parse(&row.secret) {
            Ok(secret) => Some(Arc::new(secret.into())),
            Err(e) => {
                log::error!(
                    "delivery {}: its subscription's secret is unusable ({e}); skipped",
                    row.id
                );
                internal_error(ErrorSite::Endpoint);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backlog(more_in_db: bool, loading: bool, cursor: Option<&str>) -> Backlog {
        Backlog {
            more_in_db,
            loading,
            cursor: cursor.map(str::to_string),
            arrived: Vec::new(),
        }
    }

    #[test]
    fn a_page_is_read_when_the_window_runs_low_and_the_database_holds_more() {
        assert!(backlog(true, false, None).wants_page(0));
        assert!(backlog(true, false, None).wants_page(PAGE / 2 - 1));
    }

    #[test]
    fn no_page_is_read_while_the_window_is_half_full_or_a_read_runs_or_nothing_waits() {
        assert!(!backlog(true, false, None).wants_page(PAGE / 2));
        assert!(!backlog(true, true, None).wants_page(0));
        assert!(!backlog(false, false, None).wants_page(0));
    }

    #[test]
    fn a_delivery_beyond_the_cursor_is_left_for_the_database_to_give() {
        let b = backlog(true, false, Some("d_0005"));
        assert!(b.will_read("d_0006"));
        assert!(!b.will_read("d_0005"));
        assert!(!b.will_read("d_0004"));
        assert!(backlog(true, false, None).will_read("d_0001"));
        assert!(!backlog(false, false, Some("d_0005")).will_read("d_0006"));
    }

    #[test]
    fn the_window_is_full_at_its_limit_and_earlier_once_the_budget_is_used_up() {
        assert!(!window_full(WINDOW, false));
        assert!(window_full(WINDOW, true));
        assert!(!window_full(WINDOW - 1, true));
        assert!(window_full(MAX_WINDOW, false));
    }
}
