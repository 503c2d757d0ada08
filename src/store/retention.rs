//! Retention in bounded batches: removes history older than
//! `--history-retention` (attempts, finished deliveries, events left with no
//! delivery) and forgets idempotency keys older than
//! `--idempotency-retention`, a few hundred rows at a time, each batch in a
//! transaction of its own, so that ingest, which shares SQLite's one writer,
//! waits for one short batch at most, never for the whole clean-up.
//!
//! A pass is a walk through the steps below; `run_step` does one batch and
//! names the next step, and `Step::next` (pure) decides it from what the
//! batch saw:
//!
//! ```text
//!  Attempts ──► Deliveries{after} ──► Events{after} ──► Keys{after} ──► Done{keys_after}
//!     ↺ full         ↺ full               ↺ full            ↺ full
//! ```
//!
//! - `Attempts`: attempts made before the cut (of any delivery, as before:
//!   attempts are history), oldest first by the `attempts_time` index.
//! - `Deliveries`: walks the primary key below the cut (ids are
//!   time-ordered, `store::id_floor`) by cursor; removes the finished ones
//!   (succeeded, cancelled, dead) and then their attempts. Pending and
//!   failed (waiting for a retry) deliveries stay.
//! - `Events`: walks the events below the cut by cursor; removes those no
//!   delivery refers to any more (index `deliveries_event`).
//! - `Keys`: walks the events below the keys' cut by cursor and forgets
//!   their keys. Its cursor outlives the pass (`Done{keys_after}`, handed
//!   to the next pass as `Cutoffs::keys_from`), so a pass reads only the
//!   events that aged past the cut since the last one.
//!
//! After a batch that wrote, the caller checkpoints SQLite's WAL passively
//! on the batch's own connection (`checkpoint`) and paces the next batch
//! (`server::retention`).
//!
//! Each step reads its candidates first (readers never wait for SQLite's
//! writer) and writes only when there is something to remove, re-checking
//! the condition in the write itself; nothing is removed that a concurrent
//! change (a resend) made current again.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{exists, not};
use diesel::prelude::*;

use super::event_deliveries::event_unreferenced;
use super::models::{CANCELLED, DEAD, SUCCEEDED};
use super::schema::{attempts, deliveries, events, notices};
use super::{Conn, StoreError};

/// Rows a step looks at (and at most removes) in one transaction.
pub const BATCH: usize = 250;

/// The statuses of a finished delivery (its history may go).
const FINISHED: [&str; 3] = [SUCCEEDED, CANCELLED, DEAD];

/// Where one pass cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutoffs {
    /// Attempts made before this are removed.
    pub history_before: NaiveDateTime,
    /// Finished deliveries and events whose id sorts below this (created
    /// before `history_before`) are removed.
    pub history_cut: String,
    /// Events whose id sorts below this forget their idempotency key.
    pub keys_cut: String,
    /// Where the key walk starts: an earlier pass forgot the keys below it.
    pub keys_from: String,
}

impl Cutoffs {
    /// The cut-offs of a pass at `now`, keeping `history` of history and
    /// `keys` of idempotency keys; the key walk resumes at `keys_from`
    /// (empty: from the start). A retention too long to subtract keeps
    /// everything.
    pub fn at(
        now: DateTime<Utc>,
        history: std::time::Duration,
        keys: std::time::Duration,
        keys_from: String,
    ) -> Cutoffs {
        let before = |kept: std::time::Duration| {
            chrono::Duration::from_std(kept)
                .ok()
                .and_then(|kept| now.checked_sub_signed(kept))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        let history_before = before(history);
        Cutoffs {
            history_before: history_before.naive_utc(),
            history_cut: super::id_floor(history_before),
            keys_cut: super::id_floor(before(keys)),
            keys_from,
        }
    }
}

/// Where a pass is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Attempts,
    Deliveries {
        after: String,
    },
    Events {
        after: String,
    },
    /// Lifecycle notices past retention (removed as found, oldest first).
    Notices,
    Keys {
        after: String,
    },
    /// The pass is over; the next one's key walk starts at `keys_after`.
    Done {
        keys_after: String,
    },
}

/// What one batch looked at: how many rows, and the last one's id (the
/// cursor of the walks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub rows: usize,
    pub last: Option<String>,
}

impl Seen {
    /// What a batch of `rows` saw: their number and the last one's id.
    fn of<T>(rows: &[T], id: impl Fn(&T) -> &str) -> Seen {
        Seen {
            rows: rows.len(),
            last: rows.last().map(|r| id(r).to_string()),
        }
    }
}

impl Step {
    /// The first step of a pass.
    pub fn first() -> Step {
        Step::Attempts
    }

    /// What the step removes, in a word (for the log).
    pub fn name(&self) -> &'static str {
        match self {
            Step::Attempts => "attempts",
            Step::Deliveries { .. } => "deliveries",
            Step::Events { .. } => "events",
            Step::Notices => "notices",
            Step::Keys { .. } => "keys",
            Step::Done { .. } => "done",
        }
    }

    /// The step after this one, once its batch saw `seen` and removed
    /// `removed` rows: the same walk from the last row while batches come
    /// back full, else the next walk. Attempts are removed as they are
    /// found (no cursor), so a full batch that removed nothing also moves
    /// on, rather than finding the same rows again.
    pub fn next(&self, seen: &Seen, removed: usize, cut: &Cutoffs) -> Step {
        let full = seen.rows >= BATCH;
        let from = |after: &String| seen.last.clone().unwrap_or_else(|| after.clone());
        match self {
            Step::Attempts if full && removed > 0 => Step::Attempts,
            Step::Attempts => Step::Deliveries {
                after: String::new(),
            },
            Step::Deliveries { after } if full => Step::Deliveries { after: from(after) },
            Step::Deliveries { .. } => Step::Events {
                after: String::new(),
            },
            Step::Events { after } if full => Step::Events { after: from(after) },
            Step::Events { .. } => Step::Notices,
            Step::Notices if full && removed > 0 => Step::Notices,
            Step::Notices => Step::Keys {
                after: cut.keys_from.clone(),
            },
            Step::Keys { after } if full => Step::Keys { after: from(after) },
            Step::Keys { after } => Step::Done {
                keys_after: from(after),
            },
            Step::Done { keys_after } => Step::Done {
                keys_after: keys_after.clone(),
            },
        }
    }
}

/// Rows removed (and keys forgotten), by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub attempts: usize,
    pub deliveries: usize,
    pub events: usize,
    pub keys: usize,
    pub notices: usize,
}

impl Removed {
    pub fn total(&self) -> usize {
        self.attempts + self.deliveries + self.events + self.keys + self.notices
    }
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Removed) {
        self.attempts += other.attempts;
        self.deliveries += other.deliveries;
        self.events += other.events;
        self.keys += other.keys;
        self.notices += other.notices;
    }
}

/// Does one batch of `step`: what it removed, and the step that follows.
pub fn run_step(
    conn: &mut Conn,
    cut: &Cutoffs,
    step: &Step,
) -> Result<(Removed, Step), StoreError> {
    let (seen, removed) = match step {
        Step::Attempts => old_attempts(conn, cut.history_before)?,
        Step::Deliveries { after } => finished_deliveries(conn, after, &cut.history_cut)?,
        Step::Events { after } => orphan_events(conn, after, &cut.history_cut)?,
        Step::Notices => old_notices(conn, &cut.history_cut)?,
        Step::Keys { after } => old_keys(conn, after, &cut.keys_cut)?,
        Step::Done { .. } => (Seen::default(), Removed::default()),
    };
    Ok((removed, step.next(&seen, removed.total(), cut)))
}

/// What a passive checkpoint found: frames in the WAL, and how many of
/// them are now in the database file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalFrames {
    pub busy: bool,
    pub log: i64,
    pub checkpointed: i64,
}

#[derive(diesel::QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    checkpointed: i64,
}

/// SQLite: copies what is in the WAL into the database file now (a
/// passive checkpoint: it takes no write lock, and is run outside the
/// process's writer mutex), so that the automatic checkpoint, which runs
/// inside whichever commit finds the WAL long, does not fall to an ingest
/// commit. PostgreSQL: nothing (`None`).
pub fn checkpoint(conn: &mut Conn) -> Result<Option<WalFrames>, StoreError> {
    match conn {
        Conn::Sqlite(c) => {
            let row: CheckpointRow =
                diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(&mut **c)?;
            Ok(Some(WalFrames {
                busy: row.busy != 0,
                log: row.log,
                checkpointed: row.checkpointed,
            }))
        }
        Conn::Pg(_) => Ok(None),
    }
}

/// Removes up to a batch of notices older than the cut (their ids are
/// time-ordered like events'), oldest first.
fn old_notices(conn: &mut Conn, cut: &str) -> Result<(Seen, Removed), StoreError> {
    let batch = BATCH as i64;
    let ids: Vec<String> = crate::db_run!(conn, c => notices::table
        .filter(notices::id.lt(cut))
        .order(notices::id)
        .select(notices::id)
        .limit(batch)
        .load(c))?;
    let seen = Seen::of(&ids, String::as_str);
    if ids.is_empty() {
        return Ok((seen, Removed::default()));
    }
    let removed = crate::db_transaction!(conn, c => diesel::delete(
        notices::table.filter(notices::id.eq_any(&ids)),
    )
    .execute(c))?;
    Ok((
        seen,
        Removed {
            notices: removed,
            ..Removed::default()
        },
    ))
}

/// Removes up to a batch of attempts made before `before`, oldest first.
fn old_attempts(conn: &mut Conn, before: NaiveDateTime) -> Result<(Seen, Removed), StoreError> {
    let batch = BATCH as i64;
    let ids: Vec<i64> = crate::db_run!(conn, c => attempts::table
        .filter(attempts::attempted_at.lt(before))
        .order(attempts::attempted_at)
        .select(attempts::id)
        .limit(batch)
        .load(c))?;
    let seen = Seen {
        rows: ids.len(),
        last: None,
    };
    if ids.is_empty() {
        return Ok((seen, Removed::default()));
    }
    let removed = crate::db_transaction!(conn, c => diesel::delete(
        attempts::table
            .filter(attempts::id.eq_any(&ids))
            .filter(attempts::attempted_at.lt(before)),
    )
    .execute(c))?;
    Ok((
        seen,
        Removed {
            attempts: removed,
            ..Removed::default()
        },
    ))
}

/// The next batch of deliveries after `after` and below `cut`: removes the
/// finished ones, then their attempts.
fn finished_deliveries(
    conn: &mut Conn,
    after: &str,
    cut: &str,
) -> Result<(Seen, Removed), StoreError> {
    let batch = BATCH as i64;
    let rows: Vec<(String, String)> = crate::db_run!(conn, c => deliveries::table
        .filter(deliveries::id.gt(after))
        .filter(deliveries::id.lt(cut))
        .order(deliveries::id)
        .select((deliveries::id, deliveries::status))
        .limit(batch)
        .load(c))?;
    let seen = Seen::of(&rows, |(id, _)| id.as_str());
    let finished: Vec<&str> = rows
        .iter()
        .filter(|(_, status)| FINISHED.contains(&status.as_str()))
        .map(|(id, _)| id.as_str())
        .collect();
    if finished.is_empty() {
        return Ok((seen, Removed::default()));
    }
    let (deliveries, attempts) = crate::db_transaction!(conn, c => {
        let gone = diesel::delete(
            deliveries::table
                .filter(deliveries::id.eq_any(&finished))
                .filter(deliveries::status.eq_any(FINISHED)),
        )
        .execute(c)?;
        // Only the attempts of deliveries that are gone: one made pending
        // again meanwhile keeps its own.
        let attempts = diesel::delete(
            attempts::table
                .filter(attempts::delivery_id.eq_any(&finished))
                .filter(not(exists(
                    deliveries::table.filter(deliveries::id.eq(attempts::delivery_id)),
                ))),
        )
        .execute(c)?;
        Ok::<_, diesel::result::Error>((gone, attempts))
    })?;
    Ok((
        seen,
        Removed {
            attempts,
            deliveries,
            ..Removed::default()
        },
    ))
}

/// The next batch of events after `after` and below `cut`: removes those
/// no delivery refers to.
fn orphan_events(conn: &mut Conn, after: &str, cut: &str) -> Result<(Seen, Removed), StoreError> {
    let batch = BATCH as i64;
    let ids: Vec<String> = crate::db_run!(conn, c => events::table
        .filter(events::id.gt(after))
        .filter(events::id.lt(cut))
        .order(events::id)
        .select(events::id)
        .limit(batch)
        .load(c))?;
    let seen = Seen::of(&ids, String::as_str);
    if ids.is_empty() {
        return Ok((seen, Removed::default()));
    }
    let unreferenced = || {
        events::table
            .filter(events::id.eq_any(&ids))
            .filter(event_unreferenced())
    };
    let orphans: Vec<String> =
        crate::db_run!(conn, c => unreferenced().select(events::id).load(c))?;
    if orphans.is_empty() {
        return Ok((seen, Removed::default()));
    }
    let removed = crate::db_transaction!(conn, c => diesel::delete(
        events::table
            .filter(events::id.eq_any(&orphans))
            .filter(event_unreferenced()),
    )
    .execute(c))?;
    Ok((
        seen,
        Removed {
            events: removed,
            ..Removed::default()
        },
    ))
}

/// The next batch of events after `after` and below `cut`: forgets their
/// idempotency keys (the key can be used again).
fn old_keys(conn: &mut Conn, after: &str, cut: &str) -> Result<(Seen, Removed), StoreError> {
    let batch = BATCH as i64;
    let rows: Vec<(String, bool)> = crate::db_run!(conn, c => events::table
        .filter(events::id.gt(after))
        .filter(events::id.lt(cut))
        .order(events::id)
        .select((events::id, events::idempotency_key.is_not_null()))
        .limit(batch)
        .load(c))?;
    let seen = Seen::of(&rows, |(id, _)| id.as_str());
    let keyed: Vec<&str> = rows
        .iter()
        .filter(|(_, keyed)| *keyed)
        .map(|(id, _)| id.as_str())
        .collect();
    if keyed.is_empty() {
        return Ok((seen, Removed::default()));
    }
    let forgotten = crate::db_transaction!(conn, c => diesel::update(
        events::table
            .filter(events::id.eq_any(&keyed))
            .filter(events::idempotency_key.is_not_null()),
    )
    .set(events::idempotency_key.eq(None::<String>))
    .execute(c))?;
    Ok((
        seen,
        Removed {
            keys: forgotten,
            ..Removed::default()
        },
    ))
}

/// Runs a whole pass on the current thread (tests and tools; the server
/// runs its steps apart, see `server::retention`): what it removed, and
/// where the next pass's key walk starts.
pub fn run_pass(conn: &mut Conn, cut: &Cutoffs) -> Result<(Removed, String), StoreError> {
    let mut total = Removed::default();
    let mut step = Step::first();
    loop {
        let (removed, next) = run_step(conn, cut, &step)?;
        total += removed;
        if let Step::Done { keys_after } = next {
            return Ok((total, keys_after));
        }
        step = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db_time::DbTime;
    use crate::store::deliveries::{Completion, pending_page, record};
    use crate::store::events::{FixedRoutes, PreparedEvent, Stored, store_batch};
    use crate::store::models::{NewAttempt, NewDelivery, NewEvent};
    use crate::store::{Store, history, id_floor, subscriptions};
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(86_400);

    fn cut(keys_from: &str) -> Cutoffs {
        Cutoffs::at(Utc::now(), DAY, DAY, keys_from.into())
    }

    fn seen(rows: usize, last: &str) -> Seen {
        Seen {
            rows,
            last: Some(last.into()),
        }
    }

    #[test]
    fn the_cutoffs_are_the_id_floors_of_now_less_each_retention() {
        let now = Utc::now();
        let c = Cutoffs::at(now, 7 * DAY, DAY, "k".into());
        assert_eq!(
            c.history_before,
            (now - chrono::Duration::days(7)).naive_utc()
        );
        assert_eq!(c.history_cut, id_floor(now - chrono::Duration::days(7)));
        assert_eq!(c.keys_cut, id_floor(now - chrono::Duration::days(1)));
        assert_eq!(c.keys_from, "k");
    }

    #[test]
    fn a_retention_too_long_to_subtract_keeps_everything() {
        let c = Cutoffs::at(Utc::now(), Duration::MAX, Duration::MAX, String::new());
        assert_eq!(c.history_cut, "00000000-0000-0000-0000-000000000000");
        assert_eq!(c.history_before, DateTime::<Utc>::MIN_UTC.naive_utc());
    }

    #[test]
    fn a_walk_goes_on_from_its_last_row_while_batches_come_back_full() {
        let c = cut("");
        let step = Step::Deliveries { after: "a".into() };
        assert_eq!(
            step.next(&seen(BATCH, "m"), 0, &c),
            Step::Deliveries { after: "m".into() }
        );
        let step = Step::Events { after: "a".into() };
        assert_eq!(
            step.next(&seen(BATCH, "n"), 3, &c),
            Step::Events { after: "n".into() }
        );
    }

    #[test]
    fn a_short_batch_ends_its_walk_and_starts_the_next_from_the_beginning() {
        let c = cut("k0");
        let deliveries = Step::Deliveries { after: "a".into() };
        assert_eq!(
            deliveries.next(&seen(3, "b"), 3, &c),
            Step::Events {
                after: String::new()
            }
        );
        let events = Step::Events { after: "a".into() };
        assert_eq!(events.next(&Seen::default(), 0, &c), Step::Notices);
        assert_eq!(
            Step::Notices.next(&seen(BATCH, "n"), BATCH, &c),
            Step::Notices,
            "old notices are removed as found while batches come back full"
        );
        assert_eq!(
            Step::Notices.next(&seen(2, "n"), 2, &c),
            Step::Keys { after: "k0".into() },
            "the key walk resumes where the last pass ended"
        );
    }

    #[test]
    fn the_key_walk_ends_the_pass_and_remembers_where_it_stopped() {
        let c = cut("k0");
        let keys = Step::Keys { after: "k0".into() };
        assert_eq!(
            keys.next(&seen(BATCH, "k9"), 0, &c),
            Step::Keys { after: "k9".into() }
        );
        assert_eq!(
            keys.next(&seen(2, "k5"), 1, &c),
            Step::Done {
                keys_after: "k5".into()
            }
        );
        assert_eq!(
            keys.next(&Seen::default(), 0, &c),
            Step::Done {
                keys_after: "k0".into()
            },
            "nothing new: the cursor stays"
        );
    }

    #[test]
    fn attempts_are_removed_until_a_batch_is_short_or_removes_nothing() {
        let c = cut("");
        let none = Seen {
            rows: BATCH,
            last: None,
        };
        assert_eq!(Step::Attempts.next(&none, BATCH, &c), Step::Attempts);
        let next = Step::Deliveries {
            after: String::new(),
        };
        assert_eq!(Step::Attempts.next(&none, 0, &c), next);
        let short = Seen {
            rows: 7,
            last: None,
        };
        assert_eq!(Step::Attempts.next(&short, 7, &c), next);
    }

    fn event(id: &str, at: chrono::NaiveDateTime, key: Option<&str>) -> NewEvent {
        NewEvent {
            id: id.into(),
            marketplace_id: 1,
            event: "qti_export_ready".into(),
            body: "{}".into(),
            idempotency_key: key.map(str::to_string),
            delivery_count: 1,
            created_at: DbTime::new(at),
        }
    }

    fn delivery(id: &str, event_id: &str, endpoint_id: i64, at: NaiveDateTime) -> NewDelivery {
        NewDelivery::pending(id.into(), event_id.into(), 1, endpoint_id, &DbTime::new(at))
    }

    fn attempt(delivery_id: &str, endpoint_id: i64, at: NaiveDateTime) -> NewAttempt {
        NewAttempt {
            delivery_id: delivery_id.into(),
            endpoint_id,
            attempted_at: at,
            status_code: Some(500),
            error: Some("endpoint answered 500".into()),
            duration_ms: 3,
            response_excerpt: None,
        }
    }

    fn count(conn: &mut Conn, table: &str) -> i64 {
        let sql = format!("(SELECT count(*) FROM {table})");
        crate::db_run!(conn, c => diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&sql)).get_result(c))
            .unwrap()
    }

    /// The behaviour of the one-statement cleanup this replaces, kept:
    /// old finished deliveries, their events and old attempts go; pending
    /// deliveries and their events stay; old keys are forgotten.
    #[test]
    fn a_pass_removes_old_finished_history_and_keeps_what_is_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("c.db").to_str().unwrap(), 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(conn, "http://example.com/").unwrap();
        subscriptions::insert(conn, 1, 1, "qti_export_ready", endpoint, "secret").unwrap();
        let old = Utc::now() - chrono::Duration::days(30);
        let id = |n: u32| format!("{}{n:04}", &id_floor(old)[..32]);
        let at = old.naive_utc();
        let mut batch = vec![
            PreparedEvent::fixed(
                event(&id(1), at, Some("k1")),
                vec![delivery(&id(2), &id(1), endpoint, at)],
            ),
            PreparedEvent::fixed(
                event(&id(3), at, None),
                vec![delivery(&id(4), &id(3), endpoint, at)],
            ),
        ];
        store_batch(conn, &mut batch, &[], &mut FixedRoutes).unwrap();
        let recent = (Utc::now() - chrono::Duration::hours(1)).naive_utc();
        let attempts = [
            attempt(&id(2), endpoint, at),
            attempt(&id(4), endpoint, at),
            attempt(&id(4), endpoint, recent),
        ];
        let completions = [Completion::Succeeded {
            id: id(2),
            attempts: 2,
        }];
        record(conn, &completions, &attempts).unwrap();
        crate::db_run!(conn, c => diesel::insert_into(notices::table)
            .values((
                notices::id.eq(id(5)),
                notices::kind.eq("endpoint.failing"),
                notices::endpoint_id.eq(endpoint),
                notices::body.eq("{}"),
                notices::created_at.eq(at),
            ))
            .execute(c))
        .unwrap();
        let (removed, keys_after) = run_pass(conn, &cut("")).unwrap();
        assert_eq!(
            removed,
            Removed {
                attempts: 2,
                deliveries: 1,
                events: 1,
                keys: 0,
                notices: 1,
            },
            "the old attempts, the finished delivery and its event (and its key with it), the old notice"
        );
        assert_eq!(keys_after, id(3), "the key walk saw the remaining event");
        let pending = pending_page(conn, endpoint, None, 10).unwrap();
        assert_eq!(pending.len(), 1, "the pending delivery and its event stay");
        assert_eq!(pending[0].id, id(4));
        let left = history::attempts_of(conn, &id(4)).unwrap();
        assert_eq!(left.len(), 1, "its attempt within retention stays");
        // A second pass finds nothing more.
        let (removed, _) = run_pass(conn, &cut(&keys_after)).unwrap();
        assert_eq!(removed, Removed::default());
        // The key of the removed event is forgotten: it can be used again.
        let fresh = uuid::Uuid::now_v7().to_string();
        let mut again = vec![PreparedEvent::fixed(
            event(&fresh, crate::store::now(), Some("k1")),
            vec![],
        )];
        assert_eq!(
            store_batch(conn, &mut again, &[], &mut FixedRoutes).unwrap(),
            vec![Stored::New]
        );
    }

    /// Many batches: every finished delivery goes however many there are,
    /// a key kept past the history is forgotten, and the pending one in
    /// the middle stays with its event.
    #[test]
    fn a_pass_walks_every_batch_and_forgets_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("b.db").to_str().unwrap(), 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(conn, "http://example.com/").unwrap();
        subscriptions::insert(conn, 1, 1, "qti_export_ready", endpoint, "secret").unwrap();
        let old = Utc::now() - chrono::Duration::days(3);
        let at = old.naive_utc();
        let id = |n: usize| format!("{}{n:06}", &id_floor(old)[..30]);
        let total = 2 * BATCH + 7;
        let mut batch: Vec<PreparedEvent> = (0..total)
            .map(|n| {
                PreparedEvent::fixed(
                    event(&id(2 * n), at, Some(&format!("k{n}"))),
                    vec![delivery(&id(2 * n + 1), &id(2 * n), endpoint, at)],
                )
            })
            .collect();
        store_batch(conn, &mut batch, &[], &mut FixedRoutes).unwrap();
        let completions: Vec<Completion> = (0..total)
            .filter(|n| *n != BATCH)
            .map(|n| Completion::Succeeded {
                id: id(2 * n + 1),
                attempts: 1,
            })
            .collect();
        record(conn, &completions, &[]).unwrap();
        // History kept 7 days, keys 1 day: only the keys go.
        let keys_only = Cutoffs::at(Utc::now(), 7 * DAY, DAY, String::new());
        let (removed, keys_after) = run_pass(conn, &keys_only).unwrap();
        assert_eq!(
            removed,
            Removed {
                keys: total,
                ..Removed::default()
            }
        );
        assert_eq!(keys_after, id(2 * (total - 1)));
        let (removed, _) = run_pass(conn, &cut(&keys_after)).unwrap();
        assert_eq!((removed.deliveries, removed.events), (total - 1, total - 1));
        assert_eq!(count(conn, "deliveries"), 1);
        assert_eq!(count(conn, "events"), 1);
        let pending = pending_page(conn, endpoint, None, 10).unwrap();
        assert_eq!(pending[0].id, id(2 * BATCH + 1));
    }
}
