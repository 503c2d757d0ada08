//! The ingest write: a group of events and their deliveries stored in one
//! transaction (the router's group commit), with idempotency keys looked up
//! in the same transaction so a repeated push stores nothing twice.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::prelude::*;

use super::models::{NewDelivery, NewEvent};
use super::prepared::insert_all;
use super::routing::RoutingVersion;
use super::schema::{deliveries, events};
use super::subscriptions::RouteRow;
use super::{Conn, StoreError};
use crate::signing::Secrets;

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

/// One event ready to store, with its deliveries as routed at routing
/// version `routed_at`.
#[derive(Clone)]
pub struct PreparedEvent {
    pub event: NewEvent,
    pub deliveries: Vec<NewDelivery>,
    /// The secret of each delivery's subscription, in the same order.
    pub secrets: Vec<Arc<Secrets>>,
    /// Its `triggeringUserId`, whose own subscriptions are skipped.
    pub triggering_user_id: Option<i64>,
    pub routed_at: i64,
}

impl PreparedEvent {
    /// An event with deliveries its caller chose (seeding, tests): never
    /// routed again, and carrying no secrets.
    pub fn fixed(event: NewEvent, deliveries: Vec<NewDelivery>) -> PreparedEvent {
        PreparedEvent {
            event,
            deliveries,
            secrets: Vec::new(),
            triggering_user_id: None,
            routed_at: FIXED_ROUTES,
        }
    }
}

/// Routing a group again inside its transaction, when the routing version
/// moved since the group was routed (the layer above owns the table).
pub trait Reroute {
    /// `changes` are the subscriptions changed after the group's oldest
    /// routing, as of `version`: apply them and route every event of
    /// `batch` routed before `version` again. Returns endpoints to notify
    /// (their owners may be other nodes).
    fn reroute(
        &mut self,
        version: i64,
        changes: Vec<RouteRow>,
        batch: &mut [PreparedEvent],
    ) -> Vec<i64>;
}

/// `routed_at` of events whose deliveries their caller chose itself
/// (seeding, tests): they are never routed again.
pub const FIXED_ROUTES: i64 = i64::MAX;

/// `Reroute` for batches of `FIXED_ROUTES` events.
pub struct FixedRoutes;

impl Reroute for FixedRoutes {
    fn reroute(&mut self, _: i64, _: Vec<RouteRow>, _: &mut [PreparedEvent]) -> Vec<i64> {
        Vec::new()
    }
}

/// What happened to one prepared event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Its idempotency key was seen before, with the same event: the
    /// original event's id and delivery count. Nothing was stored.
    Duplicate { event_id: String, deliveries: i32 },
    /// Its idempotency key was seen before with a different event: the
    /// earlier event's id. Nothing was stored.
    Conflict { event_id: String },
}

/// Stores `batch` in one transaction and says, per event, whether it was new.
/// The transaction first reads the routing version; when it moved past the
/// version an event was routed at, `reroute` routes the batch again (so an
/// event is routed by every subscription change answered before it was
/// stored). `notify` lists endpoints owned by other nodes, whose owners are
/// told of the new work when the transaction commits.
pub fn store_batch(
    conn: &mut Conn,
    batch: &mut [PreparedEvent],
    notify: &[i64],
    reroute: &mut dyn Reroute,
) -> Result<Vec<Stored>, StoreError> {
    let oldest = batch.iter().map(|p| p.routed_at).min();
    Ok(crate::db_transaction!(conn, c => {
        let mut notify = std::borrow::Cow::Borrowed(notify);
        if let Some(oldest) = oldest {
            let version = c.routing_version_for_group()?;
            if version > oldest {
                let changes = c.route_changes_since(oldest)?;
                let more = reroute.reroute(version, changes, batch);
                notify.to_mut().extend(more);
            }
        }
        let batch = &*batch;
        let keys: Vec<&str> = batch
            .iter()
            .filter_map(|p| p.event.idempotency_key.as_deref())
            .collect();
        // (marketplace, key) → the event stored under it: id, delivery
        // count, and its body (the canonical event, to tell a replay from a
        // different event under the same key).
        let mut seen: HashMap<(i64, String), (String, i32, String)> = HashMap::new();
        for chunk in keys.chunks(INSERT_CHUNK) {
            let rows: Vec<(i64, Option<String>, String, i32, String)> = events::table
                .filter(events::idempotency_key.is_not_null())
                .filter(events::idempotency_key.eq_any(chunk))
                .select((
                    events::marketplace_id,
                    events::idempotency_key,
                    events::id,
                    events::delivery_count,
                    events::body,
                ))
                .load(c)?;
            for (mp, key, id, count, body) in rows {
                if let Some(key) = key {
                    seen.insert((mp, key), (id, count, body));
                }
            }
        }
        let mut outcome = Vec::with_capacity(batch.len());
        let mut new_events: Vec<&NewEvent> = Vec::with_capacity(batch.len());
        let mut new_deliveries: Vec<&NewDelivery> = Vec::new();
        for p in batch {
            if let Some(key) = &p.event.idempotency_key {
                let k = (p.event.marketplace_id, key.clone());
                if let Some((id, count, body)) = seen.get(&k) {
                    outcome.push(if *body == p.event.body {
                        Stored::Duplicate { event_id: id.clone(), deliveries: *count }
                    } else {
                        Stored::Conflict { event_id: id.clone() }
                    });
                    continue;
                }
                seen.insert(k, (p.event.id.clone(), p.event.delivery_count, p.event.body.clone()));
            }
            outcome.push(Stored::New);
            new_events.push(&p.event);
            new_deliveries.extend(p.deliveries.iter());
        }
        InsertRows::insert_rows(c, &new_events, &new_deliveries)?;
        if !notify.is_empty() {
            NotifyWork::notify_work(c, &notify)?;
        }
        Ok::<_, diesel::result::Error>(outcome)
    })?)
}
