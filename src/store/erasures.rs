//! The SQL of erasure by data subject (`crate::erasure` decides what is
//! erased): finding candidate events of a marketplace page by page,
//! erasing one batch in one short transaction (payloads, pending
//! deliveries, answer excerpts, and the audit row's counts), the audit row
//! itself, the re-check an endpoint actor makes of the deliveries it
//! holds, and, on SQLite, getting the erased bytes out of the files.
//!
//! Ingest is never stalled: candidates are read outside any write
//! transaction (readers do not block SQLite's single writer, nor
//! PostgreSQL's), and each batch is written by primary key in a
//! transaction of its own.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Integer;

use super::event_deliveries::EventDeliveries;
use super::models::{CANCELLED, PENDING};
use super::schema::{attempts, deliveries, erasures, events};
use super::{Conn, StoreError, now};
use crate::erasure::{ERASED_BODY, prefilter_pattern};

/// One event that may name the person: its id and stored body.
#[derive(Debug, Clone, Queryable)]
pub struct Candidate {
    pub id: String,
    pub body: String,
}

/// Events of `marketplace_id` after the event id `after`, oldest first,
/// whose body contains the user id's digits (`names_user` decides), at
/// most `limit`. The next page starts after the last one's id.
pub fn candidates(
    conn: &mut Conn,
    marketplace_id: i64,
    user_id: i64,
    after: &str,
    limit: i64,
) -> Result<Vec<Candidate>, StoreError> {
    let pattern = prefilter_pattern(user_id);
    Ok(crate::db_run!(conn, c => events::table
        .filter(events::id.gt(after))
        .filter(events::marketplace_id.eq(marketplace_id))
        .filter(events::body.like(&pattern))
        .order(events::id)
        .limit(limit)
        .select((events::id, events::body))
        .load(c))?)
}

/// Delivery ids bound in one statement of `erase`.
const IDS_PER_STATEMENT: usize = 1_000;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Erased {
    pub events: i64,
    /// The pending deliveries it cancelled: (endpoint id, delivery id).
    pub cancelled: Vec<(i64, String)>,
    pub attempts_cleared: i64,
}

/// The `last_error` of a delivery cancelled by erasure `erasure_id`.
pub fn cancel_reason(erasure_id: &str) -> String {
    format!("cancelled by erasure {erasure_id} (its payload was erased on request)")
}

/// Erases the events `ids` (those that name the person) in one
/// transaction: their payloads become `ERASED_BODY`, their pending
/// deliveries are cancelled, their attempts' answer excerpts removed, and
/// the counts are added to the audit row `erasure_id`. On SQLite the
/// transaction runs with `secure_delete` on, so the old bytes are
/// overwritten with zeros in the pages it changes.
pub fn erase(conn: &mut Conn, erasure_id: &str, ids: &[String]) -> Result<Erased, StoreError> {
    if ids.is_empty() {
        return Ok(Erased::default());
    }
    let at = now();
    let reason = cancel_reason(erasure_id);
    with_secure_delete(conn, |conn| {
        Ok(crate::db_transaction!(conn, c => {
            let erased_events = diesel::update(
                events::table
                    .filter(events::id.eq_any(ids))
                    .filter(events::body.ne(ERASED_BODY)),
            )
            .set(events::body.eq(ERASED_BODY))
            .execute(c)? as i64;
            let of_events: Vec<String> = c
                .deliveries_of_events(ids)?
                .into_iter()
                .map(|(delivery, _)| delivery)
                .collect();
            // Delivery ids in bounded groups: an event's fan-out is not
            // bounded, and SQLite binds at most 32,766 values per statement.
            let mut cancelled: Vec<(i64, String)> = Vec::new();
            let mut attempts_cleared = 0;
            for chunk in of_events.chunks(IDS_PER_STATEMENT) {
                let pending: Vec<(i64, String)> = deliveries::table
                    .filter(deliveries::id.eq_any(chunk))
                    .filter(deliveries::status.eq(PENDING))
                    .select((deliveries::endpoint_id, deliveries::id))
                    .load(c)?;
                let pending_ids: Vec<&str> = pending.iter().map(|(_, id)| id.as_str()).collect();
                diesel::update(
                    deliveries::table
                        .filter(deliveries::id.eq_any(&pending_ids))
                        .filter(deliveries::status.eq(PENDING)),
                )
                .set((
                    deliveries::status.eq(CANCELLED),
                    deliveries::last_error.eq(Some(&reason)),
                    deliveries::updated_at.eq(at),
                ))
                .execute(c)?;
                cancelled.extend(pending);
                attempts_cleared += diesel::update(
                    attempts::table
                        .filter(attempts::delivery_id.eq_any(chunk))
                        .filter(attempts::response_excerpt.is_not_null()),
                )
                .set(attempts::response_excerpt.eq(None::<String>))
                .execute(c)? as i64;
                // A first attempt kept on its delivery's row has its excerpt there.
                attempts_cleared += diesel::update(
                    deliveries::table
                        .filter(deliveries::id.eq_any(chunk))
                        .filter(deliveries::first_excerpt.is_not_null()),
                )
                .set(deliveries::first_excerpt.eq(None::<String>))
                .execute(c)? as i64;
            }
            diesel::update(erasures::table.find(erasure_id))
                .set((
                    erasures::events_erased.eq(erasures::events_erased + erased_events),
                    erasures::deliveries_cancelled
                        .eq(erasures::deliveries_cancelled + cancelled.len() as i64),
                    erasures::attempts_cleared.eq(erasures::attempts_cleared + attempts_cleared),
                ))
                .execute(c)?;
            Ok::<_, diesel::result::Error>(Erased {
                events: erased_events,
                cancelled,
                attempts_cleared,
            })
        })?)
    })
}

/// Runs `f` with SQLite's `secure_delete` on for this connection (freed
/// and overwritten content is zeroed), then puts the connection's setting
/// back. Nothing to do on PostgreSQL (see README, "Data protection").
fn with_secure_delete<R>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Integer)]
        secure_delete: i32,
    }
    let previous = match conn {
        Conn::Sqlite(c) => {
            let was: Setting = diesel::sql_query("PRAGMA secure_delete").get_result(&mut **c)?;
            c.batch_execute("PRAGMA secure_delete = ON")?;
            Some(was.secure_delete)
        }
        Conn::Pg(_) => None,
    };
    let result = f(conn);
    if let (Some(was), Conn::Sqlite(c)) = (previous, &mut *conn) {
        let restored = c.batch_execute(&format!("PRAGMA secure_delete = {was}"));
        if let Err(e) = restored {
            log::warn!("could not turn secure_delete back on a connection: {e}");
        }
    }
    result
}

/// How long the WAL checkpoint after an erasure keeps trying while readers
/// hold old snapshots.
const CHECKPOINT_FOR: Duration = Duration::from_secs(10);
/// How long one try waits for readers (new writers wait that long at most).
const CHECKPOINT_TRY_MS: u32 = 50;
/// Pause between tries, during which writers go on.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);

/// SQLite: copies every page in the write-ahead log into the database file
/// and truncates the log to zero bytes, so that the page images from before
/// an erasure are gone from both files (the pages written by `erase` have
/// the erased bytes zeroed). Each try holds the process's write lock and
/// waits `CHECKPOINT_TRY_MS` at most for readers, so ingest waits no
/// longer than that. `Ok(false)` when readers kept it from completing for
/// `CHECKPOINT_FOR` (the next erasure, or a restart, completes it); a
/// no-op `Ok(true)` on PostgreSQL.
pub fn checkpoint_wal(conn: &mut Conn) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Checkpoint {
        #[diesel(sql_type = Integer)]
        busy: i32,
        #[diesel(sql_type = Integer)]
        log: i32,
        #[diesel(sql_type = Integer)]
        checkpointed: i32,
    }
    let Conn::Sqlite(c) = conn else {
        return Ok(true);
    };
    let deadline = Instant::now() + CHECKPOINT_FOR;
    loop {
        let tried = {
            let _writer = super::sqlite_writer();
            c.batch_execute(&format!("PRAGMA busy_timeout = {CHECKPOINT_TRY_MS}"))?;
            let tried: QueryResult<Checkpoint> =
                diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(&mut **c);
            c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}",
                super::SQLITE_BUSY_TIMEOUT_MS
            ))?;
            tried
        };
        match tried {
            Ok(done) if done.busy == 0 => {
                log::debug!(
                    "WAL checkpointed after an erasure ({} of {} frames) and truncated",
                    done.checkpointed,
                    done.log
                );
                return Ok(true);
            }
            Ok(_) => {}
            Err(e) if is_busy(&e) => {}
            Err(e) => return Err(e.into()),
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(CHECKPOINT_PAUSE);
    }
}

fn is_busy(e: &diesel::result::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("locked") || text.contains("busy")
}

/// An erasure's audit row: no personal data.
#[derive(Debug, Clone, Queryable)]
pub struct ErasureRow {
    pub id: String,
    pub requested_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub requester: String,
    pub marketplace_id: i64,
    pub events_erased: i64,
    pub deliveries_cancelled: i64,
    pub attempts_cleared: i64,
}

/// Starts the audit row of an erasure (its counts at 0, not completed).
pub fn begin(
    conn: &mut Conn,
    id: &str,
    requester: &str,
    marketplace_id: i64,
) -> Result<(), StoreError> {
    let at = now();
    crate::db_transaction!(conn, c => diesel::insert_into(erasures::table)
        .values((
            erasures::id.eq(id),
            erasures::requested_at.eq(at),
            erasures::requester.eq(requester),
            erasures::marketplace_id.eq(marketplace_id),
        ))
        .execute(c))?;
    Ok(())
}

/// Marks an erasure done; answers its audit row.
pub fn complete(conn: &mut Conn, id: &str) -> Result<Option<ErasureRow>, StoreError> {
    let at = now();
    crate::db_transaction!(conn, c => diesel::update(erasures::table.find(id))
        .set(erasures::completed_at.eq(Some(at)))
        .execute(c))?;
    get(conn, id)
}

/// The columns of an `ErasureRow`.
const AUDIT_COLUMNS: (
    erasures::id,
    erasures::requested_at,
    erasures::completed_at,
    erasures::requester,
    erasures::marketplace_id,
    erasures::events_erased,
    erasures::deliveries_cancelled,
    erasures::attempts_cleared,
) = (
    erasures::id,
    erasures::requested_at,
    erasures::completed_at,
    erasures::requester,
    erasures::marketplace_id,
    erasures::events_erased,
    erasures::deliveries_cancelled,
    erasures::attempts_cleared,
);

/// The newest `limit` audit rows, newest first (the web console).
pub fn latest(conn: &mut Conn, limit: i64) -> Result<Vec<ErasureRow>, StoreError> {
    Ok(crate::db_run!(conn, c => erasures::table
        .select(AUDIT_COLUMNS)
        .order(erasures::requested_at.desc())
        .limit(limit)
        .load(c))?)
}

/// An erasure's audit row.
pub fn get(conn: &mut Conn, id: &str) -> Result<Option<ErasureRow>, StoreError> {
    Ok(crate::db_run!(conn, c => erasures::table
        .find(id)
        .select(AUDIT_COLUMNS)
        .first(c)
        .optional())?)
}

/// Of the delivery ids `held` (what an endpoint actor holds in memory),
/// those no longer pending (cancelled, or finished elsewhere): the actor
/// drops them.
pub fn no_longer_pending(conn: &mut Conn, held: &[String]) -> Result<Vec<String>, StoreError> {
    let mut gone = Vec::new();
    for chunk in held.chunks(500) {
        let rows: Vec<String> = crate::db_run!(conn, c => deliveries::table
            .filter(deliveries::id.eq_any(chunk))
            .filter(deliveries::status.ne(PENDING))
            .select(deliveries::id)
            .load(c))?;
        gone.extend(rows);
    }
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db_time::DbTime;
    use crate::store::deliveries::{Completion, pending_page, record};
    use crate::store::events::{FixedRoutes, PreparedEvent, store_batch};
    use crate::store::models::{NewAttempt, NewDelivery, NewEvent};
    use crate::store::{Store, subscriptions};

    const MARKER: &str = "Marker-7f3c9e1a-erased";

    fn event(id: &str, marketplace_id: i64, body: &str) -> NewEvent {
        NewEvent {
            body: body.into(),
            marketplace_id,
            ..NewEvent::example(id, DbTime::new(now()))
        }
    }

    fn named(user: i64) -> String {
        format!(
            r#"{{"event":"qti_export_ready","marketplaceId":1,"contextObjectId":3,"contextObjectType":"QUESTION_SET","triggeringUserId":{user},"triggeringUserName":"{MARKER}","timestamp":"2021-06-29T18:16:06Z"}}"#
        )
    }

    #[test]
    fn an_event_with_a_fan_out_larger_than_one_statement_is_erased_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("f.db").to_str().unwrap(), 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(conn, "http://example.com/").unwrap();
        let at = DbTime::new(now());
        let id = crate::ids::new_event_id();
        let fan_out = 2 * IDS_PER_STATEMENT + 500;
        let deliveries = (0..fan_out)
            .map(|n| {
                let delivery = crate::ids::delivery_id(&id, n);
                NewDelivery::pending(delivery, id.clone(), n as i64, endpoint, &at)
            })
            .collect();
        let mut batch = vec![PreparedEvent::fixed(event(&id, 1, &named(777)), deliveries)];
        store_batch(conn, &mut batch, &[], &mut FixedRoutes).unwrap();
        begin(conn, "x2", "dpo", 1).unwrap();
        let erased = erase(conn, "x2", std::slice::from_ref(&id)).unwrap();
        assert_eq!((erased.events, erased.cancelled.len()), (1, fan_out));
        assert!(pending_page(conn, endpoint, None, 10).unwrap().is_empty());
    }

    /// Without `secure_delete` the old row stays in the page's free space
    /// (checked by hand: this test then finds the marker twice).
    #[test]
    fn a_batch_erases_payloads_cancels_pending_deliveries_and_clears_excerpts_and_the_files_keep_nothing()
     {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        let store = Store::open(path.to_str().unwrap(), 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(conn, "http://example.com/").unwrap();
        subscriptions::insert(conn, 1, 1, "qti_export_ready", endpoint, "secret").unwrap();
        let at = DbTime::new(now());
        let d = |id: &str, ev: &str| NewDelivery::pending(id.into(), ev.into(), 1, endpoint, &at);
        let mut batch = vec![
            PreparedEvent::fixed(event("e1", 1, &named(777)), vec![d("d1", "e1")]),
            PreparedEvent::fixed(event("e2", 1, &named(777)), vec![d("d2", "e2")]),
            PreparedEvent::fixed(event("e3", 1, &named(778)), vec![d("d3", "e3")]),
            PreparedEvent::fixed(event("e4", 2, &named(777)), vec![]),
        ];
        store_batch(conn, &mut batch, &[], &mut FixedRoutes).unwrap();
        // d2 was delivered, with an answer excerpt.
        let attempt = NewAttempt {
            delivery_id: "d2".into(),
            endpoint_id: endpoint,
            attempted_at: now(),
            status_code: Some(200),
            error: None,
            duration_ms: 3,
            response_excerpt: Some("thanks".into()),
        };
        let done = Completion::Succeeded {
            id: "d2".into(),
            attempts: 1,
        };
        record(conn, &[done], &[attempt]).unwrap();

        begin(conn, "x1", "dpo", 1).unwrap();
        let found = candidates(conn, 1, 777, "", 10).unwrap();
        assert_eq!(
            found.len(),
            2,
            "e3 does not contain 777, e4 is another marketplace's"
        );
        let ids: Vec<String> = found.into_iter().map(|c| c.id).collect();
        let erased = erase(conn, "x1", &ids).unwrap();
        assert_eq!(erased.events, 2);
        assert_eq!(erased.cancelled, vec![(endpoint, "d1".to_string())]);
        assert_eq!(erased.attempts_cleared, 1);
        // Again: nothing more to do.
        assert_eq!(erase(conn, "x1", &ids).unwrap().events, 0);
        let row = complete(conn, "x1").unwrap().unwrap();
        assert_eq!(
            (
                row.events_erased,
                row.deliveries_cancelled,
                row.attempts_cleared
            ),
            (2, 1, 1)
        );
        assert!(row.completed_at.is_some());
        let pending = pending_page(conn, endpoint, None, 10).unwrap();
        assert_eq!(pending.len(), 1, "only the other user's is pending");
        assert_eq!(pending[0].id, "d3");
        assert_eq!(
            no_longer_pending(conn, &["d1".into(), "d3".into()]).unwrap(),
            vec!["d1".to_string()]
        );

        assert!(checkpoint_wal(conn).unwrap());
        for file in [path.clone(), dir.path().join("e.db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let hits = bytes
                .windows(MARKER.len())
                .filter(|w| *w == MARKER.as_bytes())
                .count();
            let expected = if file == path { 2 } else { 0 };
            assert_eq!(
                hits,
                expected,
                "{}: only the other user's event and the other marketplace's",
                file.display()
            );
        }
    }
}
