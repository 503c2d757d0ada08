//! The ingest write: a group of events and their deliveries stored in one
//! transaction (the router's group commit), with idempotency keys looked up
//! in the same transaction so a repeated push stores nothing twice.

use std::collections::HashMap;

use diesel::prelude::*;

use super::models::{NewDelivery, NewEvent};
use super::prepared::insert_all;
use super::schema::{deliveries, events};
use super::{Conn, StoreError};

/// Rows per INSERT statement; keeps every statement under the bind-parameter
/// limits of both backends.
const INSERT_CHUNK: usize = 1000;

/// Telling other nodes about new work: a PostgreSQL NOTIFY; nothing on
/// SQLite, where one node owns every endpoint.
trait NotifyWork {
    fn notify_work(&mut self, endpoint_ids: &[i64]) -> QueryResult<()>;
}

impl NotifyWork for diesel::SqliteConnection {
    fn notify_work(&mut self, _endpoint_ids: &[i64]) -> QueryResult<()> {
        Ok(())
    }
}

impl NotifyWork for diesel::PgConnection {
    fn notify_work(&mut self, endpoint_ids: &[i64]) -> QueryResult<()> {
        super::leases::notify_work(self, endpoint_ids)
    }
}

/// Writing many rows the way each backend does it fastest: SQLite runs
/// fixed-shape INSERTs prepared once per connection (`prepared`);
/// PostgreSQL sends multi-row INSERTs (fewer round trips).
trait InsertRows {
    fn insert_rows(&mut self, events: &[&NewEvent], deliveries: &[&NewDelivery])
    -> QueryResult<()>;
}

impl InsertRows for diesel::SqliteConnection {
    fn insert_rows(
        &mut self,
        events: &[&NewEvent],
        deliveries: &[&NewDelivery],
    ) -> QueryResult<()> {
        insert_all(self, events)?;
        insert_all(self, deliveries)
    }
}

impl InsertRows for diesel::PgConnection {
    fn insert_rows(
        &mut self,
        events: &[&NewEvent],
        deliveries: &[&NewDelivery],
    ) -> QueryResult<()> {
        for chunk in events.chunks(INSERT_CHUNK) {
            diesel::insert_into(events::table)
                .values(chunk.to_vec())
                .execute(self)?;
        }
        for chunk in deliveries.chunks(INSERT_CHUNK) {
            diesel::insert_into(deliveries::table)
                .values(chunk.to_vec())
                .execute(self)?;
        }
        Ok(())
    }
}

/// One event ready to store, with its deliveries.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event: NewEvent,
    pub deliveries: Vec<NewDelivery>,
}

/// What happened to one prepared event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Its idempotency key was seen before: the original event's id and
    /// delivery count. Nothing was stored.
    Duplicate { event_id: String, deliveries: i32 },
}

/// Stores `batch` in one transaction and says, per event, whether it was new.
/// `notify` lists endpoints owned by other nodes, whose owners are told of
/// the new work when the transaction commits.
pub fn store_batch(
    conn: &mut Conn,
    batch: &[PreparedEvent],
    notify: &[i64],
) -> Result<Vec<Stored>, StoreError> {
    Ok(crate::db_transaction!(conn, c => {
        let keys: Vec<&str> = batch
            .iter()
            .filter_map(|p| p.event.idempotency_key.as_deref())
            .collect();
        let mut seen: HashMap<(i64, String), (String, i32)> = HashMap::new();
        for chunk in keys.chunks(INSERT_CHUNK) {
            let rows: Vec<(i64, Option<String>, String, i32)> = events::table
                .filter(events::idempotency_key.is_not_null())
                .filter(events::idempotency_key.eq_any(chunk))
                .select((events::marketplace_id, events::idempotency_key, events::id, events::delivery_count))
                .load(c)?;
            for (mp, key, id, count) in rows {
                if let Some(key) = key {
                    seen.insert((mp, key), (id, count));
                }
            }
        }
        let mut outcome = Vec::with_capacity(batch.len());
        let mut new_events: Vec<&NewEvent> = Vec::with_capacity(batch.len());
        let mut new_deliveries: Vec<&NewDelivery> = Vec::new();
        for p in batch {
            if let Some(key) = &p.event.idempotency_key {
                let k = (p.event.marketplace_id, key.clone());
                if let Some((id, count)) = seen.get(&k) {
                    outcome.push(Stored::Duplicate { event_id: id.clone(), deliveries: *count });
                    continue;
                }
                seen.insert(k, (p.event.id.clone(), p.event.delivery_count));
            }
            outcome.push(Stored::New);
            new_events.push(&p.event);
            new_deliveries.extend(p.deliveries.iter());
        }
        InsertRows::insert_rows(c, &new_events, &new_deliveries)?;
        if !notify.is_empty() {
            NotifyWork::notify_work(c, notify)?;
        }
        Ok::<_, diesel::result::Error>(outcome)
    })?)
}
