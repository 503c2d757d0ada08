//! Queries on `deliveries` and `attempts`: paging an endpoint's pending queue
//! (with bodies and secrets) into its actor, recording outcomes and attempts
//! in batches, dead letters and their replay and resends (retention is
//! `store::retention`).

use chrono::NaiveDateTime;
use diesel::dsl::exists;
use diesel::prelude::*;

use super::db_time::DbTime;
use super::models::{CANCELLED, DEAD, NewAttempt, PENDING, SUCCEEDED};
use super::schema::{attempts, deliveries, endpoints, events, subscriptions};
use super::{Conn, StoreError, now};

/// `deliveries.status = 'pending'`, written as literal SQL: the partial
/// index `deliveries_pending` (an endpoint's queue) is used only by queries
/// that state its condition literally; a bound parameter does not qualify.
pub fn is_pending() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql(&format!("deliveries.status = '{PENDING}'"))
}

/// `deliveries.status = 'dead'`, literally, for `deliveries_dead`.
pub fn is_dead() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql(&format!("deliveries.status = '{DEAD}'"))
}

/// A pending delivery with what it takes to send it.
#[derive(Debug, Clone, Queryable)]
pub struct JobRow {
    pub id: String,
    pub event_id: String,
    pub subscription_id: i64,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub body: String,
    pub secret: String,
}

/// The pending deliveries of one endpoint after `after` (by id, which is
/// time-ordered), oldest first.
pub fn pending_page(
    conn: &mut Conn,
    endpoint_id: i64,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, StoreError> {
    let after = after.unwrap_or("");
    Ok(crate::db_run!(conn, c => deliveries::table
        .inner_join(events::table)
        .inner_join(subscriptions::table)
        .filter(deliveries::endpoint_id.eq(endpoint_id))
        .filter(is_pending())
        .filter(deliveries::id.gt(after))
        .order(deliveries::id)
        .limit(limit)
        .select((
            deliveries::id,
            deliveries::event_id,
            deliveries::subscription_id,
            deliveries::attempts,
            deliveries::next_attempt_at,
            events::body,
            subscriptions::secret,
        ))
        .load(c))?)
}

/// Endpoints that have pending deliveries.
pub fn endpoints_with_pending(conn: &mut Conn) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(crate::db_run!(conn, c => endpoints::table
        .filter(exists(
            deliveries::table
                .filter(deliveries::endpoint_id.eq(endpoints::id))
                .filter(is_pending()),
        ))
        .select((endpoints::id, endpoints::url))
        .load(c))?)
}

/// The state a finished attempt leaves a delivery in.
#[derive(Debug, Clone)]
pub enum Completion {
    Succeeded {
        id: String,
        attempts: i32,
    },
    Retry {
        id: String,
        attempts: i32,
        next_attempt_at: NaiveDateTime,
        error: String,
    },
    Dead {
        id: String,
        attempts: i32,
        error: String,
    },
}

/// A first attempt that succeeded, kept on its delivery's row (its
/// status code, duration and answer excerpt; attempted at `updated_at`)
/// rather than logged as an `attempts` row with two index entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAttempt<'a> {
    pub id: &'a str,
    pub status_code: Option<i32>,
    /// `None` only when no attempt row came with the outcome: nothing is
    /// shown for it then.
    pub duration_ms: Option<i64>,
    pub excerpt: Option<&'a str>,
}

/// Splits a batch: the attempt of each delivery that succeeded at its first
/// attempt is kept on the delivery's row, every other attempt is logged.
/// (A first-attempt success without an attempt row is still marked
/// delivered, with nothing kept.)
pub fn kept_where<'a>(
    completions: &'a [Completion],
    attempt_rows: &'a [NewAttempt],
) -> (Vec<KeptAttempt<'a>>, Vec<&'a NewAttempt>) {
    let mut first: std::collections::HashSet<&str> = completions
        .iter()
        .filter_map(|c| match c {
            Completion::Succeeded { id, attempts: 1 } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut kept = Vec::with_capacity(first.len());
    let mut logged = Vec::with_capacity(attempt_rows.len().saturating_sub(first.len()));
    for row in attempt_rows {
        if first.remove(row.delivery_id.as_str()) {
            kept.push(KeptAttempt {
                id: row.delivery_id.as_str(),
                status_code: row.status_code,
                duration_ms: Some(row.duration_ms),
                excerpt: row.response_excerpt.as_deref(),
            });
        } else {
            logged.push(row);
        }
    }
    kept.extend(first.into_iter().map(|id| KeptAttempt {
        id,
        status_code: None,
        duration_ms: None,
        excerpt: None,
    }));
    (kept, logged)
}

/// The bulk of what the recorder writes: marking deliveries that succeeded
/// at their first attempt (keeping that attempt on their row), and
/// inserting the other attempts' rows. SQLite runs fixed prepared
/// statements (`prepared`); PostgreSQL one UPDATE per 500 deliveries and
/// one INSERT per 1000 rows (fewer round trips).
trait RecorderWrites {
    fn first_attempts_succeeded(&mut self, kept: &[KeptAttempt], at: &DbTime) -> QueryResult<()>;
    fn insert_attempts(&mut self, rows: &[&NewAttempt]) -> QueryResult<()>;
}

impl RecorderWrites for diesel::SqliteConnection {
    fn first_attempts_succeeded(&mut self, kept: &[KeptAttempt], at: &DbTime) -> QueryResult<()> {
        super::prepared::first_attempts_succeeded(self, kept, at)
    }

    fn insert_attempts(&mut self, rows: &[&NewAttempt]) -> QueryResult<()> {
        super::prepared::insert_all(self, rows)
    }
}

impl RecorderWrites for diesel::PgConnection {
    fn first_attempts_succeeded(&mut self, kept: &[KeptAttempt], at: &DbTime) -> QueryResult<()> {
        use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
        for chunk in kept.chunks(500) {
            diesel::sql_query(format!(
                "UPDATE deliveries AS d SET status = CASE WHEN d.status = '{PENDING}' THEN '{SUCCEEDED}' ELSE d.status END, \
                 attempts = 1, updated_at = $1, \
                 first_status_code = f.code, first_duration_ms = f.ms, first_excerpt = f.excerpt \
                 FROM unnest($2::text[], $3::int4[], $4::int8[], $5::text[]) AS f(id, code, ms, excerpt) \
                 WHERE d.id = f.id"
            ))
            .bind::<Timestamp, _>(at)
            .bind::<Array<Text>, _>(chunk.iter().map(|k| k.id).collect::<Vec<_>>())
            .bind::<Array<Nullable<Integer>>, _>(chunk.iter().map(|k| k.status_code).collect::<Vec<_>>())
            .bind::<Array<Nullable<BigInt>>, _>(chunk.iter().map(|k| k.duration_ms).collect::<Vec<_>>())
            .bind::<Array<Nullable<Text>>, _>(chunk.iter().map(|k| k.excerpt).collect::<Vec<_>>())
            .execute(self)?;
        }
        Ok(())
    }

    fn insert_attempts(&mut self, rows: &[&NewAttempt]) -> QueryResult<()> {
        for chunk in rows.chunks(1000) {
            diesel::insert_into(attempts::table)
                .values(chunk.to_vec())
                .execute(self)?;
        }
        Ok(())
    }
}

/// Records a batch of outcomes and attempt rows in one transaction.
pub fn record(
    conn: &mut Conn,
    completions: &[Completion],
    attempt_rows: &[NewAttempt],
) -> Result<(), StoreError> {
    let at = DbTime::new(now());
    let (kept, logged) = kept_where(completions, attempt_rows);
    crate::db_transaction!(conn, c => {
        RecorderWrites::first_attempts_succeeded(c, &kept, &at)?;
        for completion in completions {
            match completion {
                Completion::Succeeded { attempts: 1, .. } => {}
                Completion::Succeeded { id, attempts: n } => {
                    diesel::update(deliveries::table.find(id))
                        .set((deliveries::status.eq(SUCCEEDED), deliveries::attempts.eq(*n), deliveries::updated_at.eq(&at)))
                        .execute(c)?;
                }
                Completion::Retry { id, attempts: n, next_attempt_at, error } => {
                    diesel::update(deliveries::table.find(id).filter(deliveries::status.eq(PENDING)))
                        .set((
                            deliveries::attempts.eq(*n),
                            deliveries::next_attempt_at.eq(*next_attempt_at),
                            deliveries::last_error.eq(Some(error)),
                            deliveries::updated_at.eq(&at),
                        ))
                        .execute(c)?;
                }
                Completion::Dead { id, attempts: n, error } => {
                    diesel::update(deliveries::table.find(id).filter(deliveries::status.eq(PENDING)))
                        .set((
                            deliveries::status.eq(DEAD),
                            deliveries::attempts.eq(*n),
                            deliveries::last_error.eq(Some(error)),
                            deliveries::updated_at.eq(&at),
                        ))
                        .execute(c)?;
                }
            }
        }
        RecorderWrites::insert_attempts(c, &logged)?;
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// A dead letter as listed to operators.
#[derive(Debug, Clone, Queryable)]
pub struct DeadLetterRow {
    pub id: String,
    pub event_id: String,
    pub subscription_id: i64,
    pub endpoint_id: i64,
    pub endpoint_url: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub failed_at: NaiveDateTime,
    pub body: String,
}

/// Dead letters, oldest first, optionally for one endpoint or subscription,
/// after the cursor (a dead letter id).
pub fn dead_letters(
    conn: &mut Conn,
    endpoint_id: Option<i64>,
    subscription_id: Option<i64>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    let after = after.unwrap_or("");
    Ok(crate::db_run!(conn, c => {
        let mut q = deliveries::table
            .inner_join(events::table)
            .inner_join(endpoints::table.on(endpoints::id.eq(deliveries::endpoint_id)))
            .filter(is_dead())
            .filter(deliveries::id.gt(after))
            .into_boxed();
        if let Some(e) = endpoint_id {
            q = q.filter(deliveries::endpoint_id.eq(e));
        }
        if let Some(s) = subscription_id {
            q = q.filter(deliveries::subscription_id.eq(s));
        }
        q.order(deliveries::id)
            .limit(limit)
            .select((
                deliveries::id,
                deliveries::event_id,
                deliveries::subscription_id,
                deliveries::endpoint_id,
                endpoints::url,
                deliveries::attempts,
                deliveries::last_error,
                deliveries::updated_at,
                events::body,
            ))
            .load(c)
    })?)
}

/// Why a delivery could not be sent again.
#[derive(Debug)]
pub enum ReplayRefused {
    NotFound,
    SubscriptionInactive,
    /// It is not in a state it may be sent again from (its stored status).
    NotFinished(String),
    /// Its event's payload was erased (`crate::erasure`): nothing to send.
    Erased,
}

/// Puts a dead letter back in its endpoint's queue with a fresh retry
/// schedule. Returns the job and its endpoint (id, URL).
pub fn replay(
    conn: &mut Conn,
    id: &str,
) -> Result<Result<(JobRow, i64, String), ReplayRefused>, StoreError> {
    requeue(conn, id, None, &[DEAD])
}

/// A subscriber's resend: puts a finished delivery of `subscription_id`
/// (delivered, dead or cancelled) back in its endpoint's queue with a fresh
/// retry schedule, as `replay` does. A pending one is refused
/// (`NotFinished`): it is still being sent on its own schedule.
pub fn resend(
    conn: &mut Conn,
    subscription_id: i64,
    id: &str,
) -> Result<Result<(JobRow, i64, String), ReplayRefused>, StoreError> {
    requeue(
        conn,
        id,
        Some(subscription_id),
        &[SUCCEEDED, DEAD, CANCELLED],
    )
}

/// Makes delivery `id` (of `subscription_id`, when given) pending again,
/// its attempts counted from 0, when its status is one of `from`.
fn requeue(
    conn: &mut Conn,
    id: &str,
    subscription_id: Option<i64>,
    from: &'static [&'static str],
) -> Result<Result<(JobRow, i64, String), ReplayRefused>, StoreError> {
    let at = now();
    Ok(crate::db_transaction!(conn, c => {
        let found: Option<(i64, i64, bool, String, String, bool)> = deliveries::table
            .inner_join(subscriptions::table)
            .inner_join(events::table)
            .inner_join(endpoints::table.on(endpoints::id.eq(deliveries::endpoint_id)))
            .filter(deliveries::id.eq(id))
            .select((
                deliveries::subscription_id,
                deliveries::endpoint_id,
                subscriptions::active,
                endpoints::url,
                deliveries::status,
                events::body.eq(crate::erasure::ERASED_BODY),
            ))
            .first(c)
            .optional()?;
        let Some((owner, endpoint_id, active, url, status, erased)) = found else {
            return Ok(Err(ReplayRefused::NotFound));
        };
        if subscription_id.is_some_and(|s| s != owner) {
            return Ok(Err(ReplayRefused::NotFound));
        }
        if !from.contains(&status.as_str()) {
            return Ok(Err(ReplayRefused::NotFinished(status)));
        }
        if !active {
            return Ok(Err(ReplayRefused::SubscriptionInactive));
        }
        if erased {
            return Ok(Err(ReplayRefused::Erased));
        }
        // A first attempt kept on the row goes into the attempt log first.
        let kept: Option<super::history::KeptRow> = deliveries::table
            .find(id)
            .select((deliveries::updated_at, deliveries::first_status_code, deliveries::first_duration_ms, deliveries::first_excerpt))
            .first(c)
            .optional()?;
        if let Some((attempted_at, status_code, Some(duration_ms), response_excerpt)) = kept {
            diesel::insert_into(attempts::table)
                .values(&NewAttempt { delivery_id: id.to_string(), endpoint_id, attempted_at, status_code, error: None, duration_ms, response_excerpt })
                .execute(c)?;
            diesel::update(deliveries::table.find(id))
                .set((deliveries::first_status_code.eq(None::<i32>), deliveries::first_duration_ms.eq(None::<i64>), deliveries::first_excerpt.eq(None::<String>)))
                .execute(c)?;
        }
        diesel::update(deliveries::table.find(id))
            .set((
                deliveries::status.eq(PENDING),
                deliveries::attempts.eq(0),
                deliveries::next_attempt_at.eq(at),
                deliveries::updated_at.eq(at),
            ))
            .execute(c)?;
        let job: JobRow = deliveries::table
            .inner_join(events::table)
            .inner_join(subscriptions::table)
            .filter(deliveries::id.eq(id))
            .select((
                deliveries::id,
                deliveries::event_id,
                deliveries::subscription_id,
                deliveries::attempts,
                deliveries::next_attempt_at,
                events::body,
                subscriptions::secret,
            ))
            .first(c)?;
        Ok::<_, diesel::result::Error>(Ok((job, endpoint_id, url)))
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(delivery: &str, code: i32) -> NewAttempt {
        NewAttempt {
            delivery_id: delivery.into(),
            endpoint_id: 1,
            attempted_at: now(),
            status_code: Some(code),
            error: None,
            duration_ms: 7,
            response_excerpt: Some("ok".into()),
        }
    }

    #[test]
    fn only_first_attempt_successes_are_kept_on_their_row() {
        let completions = vec![
            Completion::Succeeded {
                id: "a".into(),
                attempts: 1,
            },
            Completion::Succeeded {
                id: "b".into(),
                attempts: 3,
            },
            Completion::Retry {
                id: "c".into(),
                attempts: 1,
                next_attempt_at: now(),
                error: "500".into(),
            },
            Completion::Succeeded {
                id: "d".into(),
                attempts: 1,
            },
        ];
        let rows = vec![attempt("a", 200), attempt("b", 204), attempt("c", 500)];
        let (kept, logged) = kept_where(&completions, &rows);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (kept[0].id, kept[0].status_code, kept[0].duration_ms),
            ("a", Some(200), Some(7))
        );
        assert_eq!(kept[0].excerpt, Some("ok"));
        // A success without an attempt row is marked, with nothing kept.
        assert_eq!((kept[1].id, kept[1].duration_ms), ("d", None));
        let logged: Vec<&str> = logged.iter().map(|r| r.delivery_id.as_str()).collect();
        assert_eq!(logged, ["b", "c"]);
    }
    use crate::store::db_time::DbTime;
    use crate::store::events::{FixedRoutes, PreparedEvent, store_batch};
    use crate::store::models::{NewDelivery, NewEvent};
    use crate::store::{Store, subscriptions};

    fn event(id: &str, at: NaiveDateTime, key: Option<&str>) -> NewEvent {
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

    #[test]
    fn a_resend_requeues_a_finished_delivery_of_its_own_subscription_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("r.db").to_str().unwrap(), 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(conn, "http://example.com/").unwrap();
        subscriptions::insert(conn, 1, 1, "qti_export_ready", endpoint, "secret").unwrap();
        let at = chrono::Utc::now().naive_utc();
        let mut batch = vec![PreparedEvent::fixed(
            event("e1", at, None),
            vec![delivery("d1", "e1", endpoint, at)],
        )];
        store_batch(conn, &mut batch, &[], &mut FixedRoutes).unwrap();
        assert!(matches!(
            resend(conn, 1, "d1").unwrap(),
            Err(ReplayRefused::NotFinished(s)) if s == PENDING
        ));
        record(
            conn,
            &[Completion::Succeeded {
                id: "d1".into(),
                attempts: 2,
            }],
            &[],
        )
        .unwrap();
        assert!(matches!(
            resend(conn, 2, "d1").unwrap(),
            Err(ReplayRefused::NotFound)
        ));
        let (job, endpoint_id, _) = resend(conn, 1, "d1").unwrap().unwrap();
        assert_eq!(
            (job.id.as_str(), job.attempts, endpoint_id),
            ("d1", 0, endpoint)
        );
        assert_eq!(pending_page(conn, endpoint, None, 10).unwrap().len(), 1);
    }
}
