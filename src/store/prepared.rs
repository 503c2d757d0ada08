//! Fixed-shape statements for SQLite's hot paths: the group commit's
//! multi-row INSERTs, and the recorder's "delivered at the first attempt"
//! UPDATE and attempt-row INSERTs. Their SQL depends only on their type, so diesel prepares each
//! once per connection and then only binds values and steps it.
//!
//! Diesel's own `insert_into(t).values(row)` builds the SQL text again for
//! every row on SQLite (the derived values are "defaultable", which makes
//! the statement cache key on the SQL string): building, escaping and hashing
//! that text was about a third of the commit thread's CPU in the batch
//! benchmark. An `eq_any` list has a new SQL text for every length, so it is
//! prepared again nearly every time. Rows are inserted in chunks of `BIG`,
//! then `SMALL`, then one at a time: three statements per table, all cached.

use diesel::QueryResult;
use diesel::RunQueryDsl;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
use diesel::sqlite::{Sqlite, SqliteConnection};

use super::db_time::DbTime;
use super::deliveries::KeptAttempt;
use super::models::{NewAttempt, NewDelivery, NewEvent, PENDING, SUCCEEDED};

/// Rows per statement of the largest chunk (10 binds each: 320 parameters,
/// far under SQLite's limit).
const BIG: usize = 32;
/// Rows per statement of the middle chunk.
const SMALL: usize = 8;

/// A row type with a fixed INSERT shape.
pub trait InsertRow: 'static {
    /// `INSERT INTO table (columns…) VALUES `
    const INSERT: &'static str;
    /// Binds this row's values, in the order of `INSERT`'s columns.
    fn walk_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()>;
}

/// The values of one row: `?, ?, …`, each bound.
pub struct Values<'p, 'a, 'b> {
    out: &'p mut AstPass<'a, 'b, Sqlite>,
    first: bool,
}

impl<'b> Values<'_, '_, 'b> {
    /// Binds the next value as SQL type `ST`.
    pub fn bind<ST, U>(&mut self, value: &'b U) -> QueryResult<&mut Self>
    where
        Sqlite: diesel::sql_types::HasSqlType<ST>,
        U: diesel::serialize::ToSql<ST, Sqlite> + ?Sized,
    {
        if !std::mem::take(&mut self.first) {
            self.out.push_sql(", ");
        }
        self.out.push_bind_param::<ST, U>(value)?;
        Ok(self)
    }
}

/// One INSERT of exactly `N` rows of `R`.
pub struct InsertRows<'a, R: InsertRow, const N: usize>(&'a [&'a R; N]);

impl<R: InsertRow, const N: usize> QueryId for InsertRows<'_, R, N> {
    type QueryId = InsertRows<'static, R, N>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<R: InsertRow, const N: usize> QueryFragment<Sqlite> for InsertRows<'_, R, N> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql(R::INSERT);
        for (i, row) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_sql("(");
            row.walk_values(&mut Values {
                out: &mut out,
                first: true,
            })?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<R: InsertRow, const N: usize> RunQueryDsl<SqliteConnection> for InsertRows<'_, R, N> {}

/// Inserts `rows` (inside the caller's transaction) with cached statements.
pub fn insert_all<R: InsertRow>(conn: &mut SqliteConnection, rows: &[&R]) -> QueryResult<()> {
    let mut big = rows.chunks_exact(BIG);
    for chunk in &mut big {
        insert_chunk::<R, BIG>(conn, chunk)?;
    }
    let mut small = big.remainder().chunks_exact(SMALL);
    for chunk in &mut small {
        insert_chunk::<R, SMALL>(conn, chunk)?;
    }
    for row in small.remainder() {
        insert_chunk::<R, 1>(conn, std::slice::from_ref(row))?;
    }
    Ok(())
}

fn insert_chunk<R: InsertRow, const N: usize>(
    conn: &mut SqliteConnection,
    chunk: &[&R],
) -> QueryResult<()> {
    let rows: &[&R; N] = chunk
        .try_into()
        .expect("insert_all passes chunks of exactly N rows");
    InsertRows(rows).execute(conn).map(|_| ())
}

/// `UPDATE deliveries SET status = 'succeeded', attempts = 1, updated_at = ?,
/// first_status_code = ?, first_duration_ms = ?, first_excerpt = ?
/// WHERE id = ?`: a delivery answered 2xx at its first attempt, which is
/// kept on its row. Only a pending one becomes succeeded: one cancelled
/// while the request was in flight (its subscription removed, its event
/// erased) stays cancelled, with its attempt kept.
pub struct FirstAttemptSucceeded<'a> {
    pub kept: &'a KeptAttempt<'a>,
    pub at: &'a DbTime,
}

impl QueryId for FirstAttemptSucceeded<'_> {
    type QueryId = FirstAttemptSucceeded<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Sqlite> for FirstAttemptSucceeded<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        out.push_sql(&format!(
            "UPDATE deliveries SET status = CASE WHEN status = '{PENDING}' THEN '{SUCCEEDED}' ELSE status END"
        ));
        out.push_sql(", attempts = 1, updated_at = ");
        out.push_bind_param::<Timestamp, _>(self.at)?;
        out.push_sql(", first_status_code = ");
        out.push_bind_param::<Nullable<Integer>, _>(&self.kept.status_code)?;
        out.push_sql(", first_duration_ms = ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.kept.duration_ms)?;
        out.push_sql(", first_excerpt = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.kept.excerpt)?;
        out.push_sql(" WHERE id = ");
        out.push_bind_param::<Text, _>(self.kept.id)
    }
}

impl RunQueryDsl<SqliteConnection> for FirstAttemptSucceeded<'_> {}

/// Marks deliveries delivered at their first attempt, keeping it on their
/// rows (inside the caller's transaction), one cached UPDATE per delivery.
pub fn first_attempts_succeeded(
    conn: &mut SqliteConnection,
    kept: &[KeptAttempt],
    at: &DbTime,
) -> QueryResult<()> {
    for kept in kept {
        FirstAttemptSucceeded { kept, at }.execute(conn)?;
    }
    Ok(())
}

impl InsertRow for NewEvent {
    const INSERT: &'static str = "INSERT INTO events \
        (id, marketplace_id, event, body, idempotency_key, delivery_count, created_at) VALUES ";

    fn walk_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        values
            .bind::<Text, _>(&self.id)?
            .bind::<BigInt, _>(&self.marketplace_id)?
            .bind::<Text, _>(&self.event)?
            .bind::<Text, _>(&self.body)?
            .bind::<Nullable<Text>, _>(&self.idempotency_key)?
            .bind::<Integer, _>(&self.delivery_count)?
            .bind::<Timestamp, _>(&self.created_at)?;
        Ok(())
    }
}

impl InsertRow for NewDelivery {
    const INSERT: &'static str = "INSERT INTO deliveries \
        (id, event_id, subscription_id, endpoint_id, status, attempts, next_attempt_at, \
        last_error, created_at, updated_at) VALUES ";

    fn walk_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        values
            .bind::<Text, _>(&self.id)?
            .bind::<Text, _>(&self.event_id)?
            .bind::<BigInt, _>(&self.subscription_id)?
            .bind::<BigInt, _>(&self.endpoint_id)?
            .bind::<Text, _>(&self.status)?
            .bind::<Integer, _>(&self.attempts)?
            .bind::<Timestamp, _>(&self.next_attempt_at)?
            .bind::<Nullable<Text>, _>(&self.last_error)?
            .bind::<Timestamp, _>(&self.created_at)?
            .bind::<Timestamp, _>(&self.updated_at)?;
        Ok(())
    }
}

impl InsertRow for NewAttempt {
    const INSERT: &'static str = "INSERT INTO attempts \
        (delivery_id, endpoint_id, attempted_at, status_code, error, duration_ms, \
        response_excerpt) VALUES ";

    fn walk_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
        values
            .bind::<Text, _>(&self.delivery_id)?
            .bind::<BigInt, _>(&self.endpoint_id)?
            .bind::<Timestamp, _>(&self.attempted_at)?
            .bind::<Nullable<Integer>, _>(&self.status_code)?
            .bind::<Nullable<Text>, _>(&self.error)?
            .bind::<BigInt, _>(&self.duration_ms)?
            .bind::<Nullable<Text>, _>(&self.response_excerpt)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;
    use diesel::prelude::*;

    use super::*;
    use crate::store::db_time::DbTime;
    use crate::store::models::PENDING;
    use crate::store::schema::{deliveries, events};
    use crate::store::{Conn, Store, subscriptions};

    type EventRow = (
        String,
        i64,
        String,
        String,
        Option<String>,
        i32,
        NaiveDateTime,
    );
    type DeliveryRow = (
        String,
        String,
        i64,
        i64,
        String,
        i32,
        NaiveDateTime,
        Option<String>,
    );

    /// 45 events (a chunk of 32, one of 8, five single rows), every other
    /// one with an idempotency key and a delivery with an error text.
    fn rows(subscription: i64, endpoint: i64) -> (Vec<NewEvent>, Vec<NewDelivery>) {
        let at = DbTime::new(
            chrono::DateTime::from_timestamp(1_790_000_000, 123_456_789)
                .unwrap()
                .naive_utc(),
        );
        (0..45)
            .map(|n| {
                let event = NewEvent {
                    id: format!("e{n:03}"),
                    marketplace_id: n,
                    event: "qti_export_ready".into(),
                    body: format!("{{\"n\":{n}}}"),
                    idempotency_key: (n % 2 == 0).then(|| format!("k{n}")),
                    delivery_count: 1,
                    created_at: at.clone(),
                };
                let delivery = NewDelivery {
                    id: format!("d{n:03}"),
                    event_id: event.id.clone(),
                    subscription_id: subscription,
                    endpoint_id: endpoint,
                    status: PENDING,
                    attempts: n as i32,
                    next_attempt_at: at.clone(),
                    last_error: (n % 2 == 1).then(|| "it's \"quoted\"".into()),
                    created_at: at.clone(),
                    updated_at: at.clone(),
                };
                (event, delivery)
            })
            .unzip()
    }

    fn dump(conn: &mut SqliteConnection) -> (Vec<EventRow>, Vec<DeliveryRow>) {
        let e = events::table
            .order(events::id)
            .select((
                events::id,
                events::marketplace_id,
                events::event,
                events::body,
                events::idempotency_key,
                events::delivery_count,
                events::created_at,
            ))
            .load(conn)
            .unwrap();
        let d = deliveries::table
            .order(deliveries::id)
            .select((
                deliveries::id,
                deliveries::event_id,
                deliveries::subscription_id,
                deliveries::endpoint_id,
                deliveries::status,
                deliveries::attempts,
                deliveries::next_attempt_at,
                deliveries::last_error,
            ))
            .load(conn)
            .unwrap();
        (e, d)
    }

    /// Fills a new database with `rows`, written by `write`, and dumps it.
    fn written_by(
        write: impl Fn(&mut SqliteConnection, &[NewEvent], &[NewDelivery]),
    ) -> (Vec<EventRow>, Vec<DeliveryRow>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("r.db").to_str().unwrap(), 1).unwrap();
        let mut conn = store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(&mut conn, "http://example.com/").unwrap();
        let subscription =
            subscriptions::insert(&mut conn, 1, 1, "qti_export_ready", endpoint, "s").unwrap();
        let Conn::Sqlite(c) = &mut conn else {
            unreachable!("a file path opens SQLite")
        };
        let (events, deliveries) = rows(subscription.id, endpoint);
        c.transaction(|c| {
            write(c, &events, &deliveries);
            QueryResult::Ok(())
        })
        .unwrap();
        dump(c)
    }

    #[test]
    fn fixed_shape_inserts_store_what_diesel_inserts_would() {
        let ours = written_by(|c, events, deliveries| {
            insert_all(c, &events.iter().collect::<Vec<_>>()).unwrap();
            insert_all(c, &deliveries.iter().collect::<Vec<_>>()).unwrap();
        });
        let diesels = written_by(|c, events, deliveries| {
            for e in events {
                diesel::insert_into(events::table)
                    .values(e)
                    .execute(c)
                    .unwrap();
            }
            for d in deliveries {
                diesel::insert_into(deliveries::table)
                    .values(d)
                    .execute(c)
                    .unwrap();
            }
        });
        assert_eq!(ours.0.len(), 45);
        assert_eq!(ours.1.len(), 45);
        assert_eq!(ours, diesels);
    }

    #[test]
    fn first_attempt_success_marks_exactly_those_deliveries() {
        let (_, after) = written_by(|c, events, deliveries| {
            insert_all(c, &events.iter().collect::<Vec<_>>()).unwrap();
            insert_all(c, &deliveries.iter().collect::<Vec<_>>()).unwrap();
            let at = DbTime::new(
                chrono::DateTime::from_timestamp(1_800_000_000, 0)
                    .unwrap()
                    .naive_utc(),
            );
            let kept = |id| KeptAttempt {
                id,
                status_code: Some(204),
                duration_ms: Some(12),
                excerpt: Some("ok"),
            };
            first_attempts_succeeded(c, &[kept("d003"), kept("d040")], &at).unwrap();
        });
        for (id, _, _, _, status, attempts, _, _) in &after {
            if id == "d003" || id == "d040" {
                assert_eq!((status.as_str(), *attempts), (SUCCEEDED, 1), "{id}");
            } else {
                assert_eq!(status, PENDING, "{id}");
            }
        }
    }

    type AttemptRow = (
        i64,
        String,
        i64,
        NaiveDateTime,
        Option<i32>,
        Option<String>,
        i64,
        Option<String>,
    );

    /// The attempt rows `write` stores in a new database, in insert order.
    fn attempts_written_by(
        write: impl Fn(&mut SqliteConnection, &[NewAttempt]),
    ) -> Vec<AttemptRow> {
        use crate::store::schema::attempts;
        let at = chrono::DateTime::from_timestamp(1_790_000_000, 987_654_321)
            .unwrap()
            .naive_utc();
        // 43 rows: a chunk of 32, one of 8, three single rows; answers,
        // failures without one, and text that needs quoting.
        let rows: Vec<NewAttempt> = (0..43)
            .map(|n| NewAttempt {
                delivery_id: format!("d{:03}", n / 2),
                endpoint_id: n,
                attempted_at: at + chrono::Duration::milliseconds(n),
                status_code: (n % 3 != 0).then_some(200 + n as i32),
                error: (n % 2 == 1).then(|| "it's \"refused\"".into()),
                duration_ms: n * 7,
                response_excerpt: (n % 3 == 1).then(|| format!("{{\"n\":{n}}}")),
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("a.db").to_str().unwrap(), 1).unwrap();
        let mut conn = store.conn().unwrap();
        let Conn::Sqlite(c) = &mut conn else {
            unreachable!("a file path opens SQLite")
        };
        write(c, &rows);
        attempts::table
            .order(attempts::id)
            .select((
                attempts::id,
                attempts::delivery_id,
                attempts::endpoint_id,
                attempts::attempted_at,
                attempts::status_code,
                attempts::error,
                attempts::duration_ms,
                attempts::response_excerpt,
            ))
            .load(c)
            .unwrap()
    }

    #[test]
    fn fixed_shape_attempt_inserts_store_what_diesel_inserts_would() {
        let ours = attempts_written_by(|c, rows| {
            insert_all(c, &rows.iter().collect::<Vec<_>>()).unwrap();
        });
        let diesels = attempts_written_by(|c, rows| {
            for row in rows {
                diesel::insert_into(crate::store::schema::attempts::table)
                    .values(row)
                    .execute(c)
                    .unwrap();
            }
        });
        assert_eq!(ours.len(), 43);
        assert_eq!(ours, diesels);
    }
}
