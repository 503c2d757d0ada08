//! Queries on `endpoints`: the saved health of each endpoint (so a restart
//! or another node continues where the actor was), and the transaction that
//! removes a dead endpoint's subscriptions.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::DEAD;
use super::routing::RoutingVersion;
use super::schema::{deliveries, endpoints, subscriptions};
use super::{Conn, StoreError, now};

/// An endpoint's saved health.
#[derive(Debug, Clone, Queryable, Selectable, AsChangeset)]
#[diesel(table_name = endpoints, treat_none_as_null = true)]
pub struct HealthRow {
    pub state: String,
    pub consecutive_failures: i32,
    pub failed_verifications: i32,
    pub last_success_at: Option<NaiveDateTime>,
    pub last_failure_at: Option<NaiveDateTime>,
    pub last_failure_reason: Option<String>,
    pub next_verification_at: Option<NaiveDateTime>,
}

/// The saved health of every endpoint in `ids`.
pub fn health_of(conn: &mut Conn, ids: &[i64]) -> Result<Vec<(i64, HealthRow)>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        let rows: Vec<(i64, HealthRow)> = crate::db_run!(conn, c => endpoints::table
            .filter(endpoints::id.eq_any(chunk))
            .select((endpoints::id, HealthRow::as_select()))
            .load(c))?;
        out.extend(rows);
    }
    Ok(out)
}

/// Saves the health of several endpoints in one transaction.
pub fn save_health(conn: &mut Conn, rows: &[(i64, HealthRow)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    crate::db_transaction!(conn, c => {
        for (id, row) in rows {
            diesel::update(endpoints::table.find(id)).set(row).execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
    })?;
    Ok(())
}

/// Marks the endpoint dead, deactivates its active subscriptions (kept with
/// the reason) and turns their pending deliveries into dead letters, in one
/// transaction. Returns the ids of the subscriptions it removed.
pub fn bury(conn: &mut Conn, endpoint_id: i64, reason: &str) -> Result<Vec<i64>, StoreError> {
    let at = now();
    let why = format!("auto-unsubscribed: {reason}");
    Ok(crate::db_transaction!(conn, c => {
        // First: it waits for groups of events being stored, and the
        // dead-lettering below then sees their deliveries.
        let version = c.bump_routing_version()?;
        let ids: Vec<i64> = subscriptions::table
            .filter(subscriptions::endpoint_id.eq(endpoint_id))
            .filter(subscriptions::active.eq(true))
            .select(subscriptions::id)
            .load(c)?;
        diesel::update(subscriptions::table.filter(subscriptions::id.eq_any(&ids)))
            .set((
                subscriptions::active.eq(false),
                subscriptions::deactivated_at.eq(Some(at)),
                subscriptions::deactivation_reason.eq(Some(&why)),
                subscriptions::last_modified.eq(at),
                subscriptions::route_version.eq(version),
            ))
            .execute(c)?;
        diesel::update(
            deliveries::table
                .filter(deliveries::endpoint_id.eq(endpoint_id))
                .filter(super::deliveries::is_pending()),
        )
        .set((
            deliveries::status.eq(DEAD),
            deliveries::last_error.eq(Some(format!("endpoint removed: {reason}"))),
            deliveries::updated_at.eq(at),
        ))
        .execute(c)?;
        diesel::update(endpoints::table.find(endpoint_id))
            .set((
                endpoints::state.eq(DEAD),
                endpoints::dead_at.eq(Some(at)),
                endpoints::dead_reason.eq(Some(reason)),
            ))
            .execute(c)?;
        Ok::<_, diesel::result::Error>(ids)
    })?)
}

/// Clears the dead mark of an endpoint that is subscribed to again (its new
/// subscription just passed the verification call).
pub fn revive(conn: &mut Conn, endpoint_id: i64) -> Result<(), StoreError> {
    crate::db_run!(conn, c => diesel::update(
        endpoints::table
            .find(endpoint_id)
            .filter(endpoints::state.eq(DEAD)),
    )
    .set((
        endpoints::state.eq("healthy"),
        endpoints::consecutive_failures.eq(0),
        endpoints::failed_verifications.eq(0),
        endpoints::dead_at.eq(None::<NaiveDateTime>),
        endpoints::dead_reason.eq(None::<String>),
    ))
    .execute(c))?;
    Ok(())
}

/// An endpoint as listed to operators.
#[derive(Debug, Clone, Queryable)]
pub struct EndpointRow {
    pub id: i64,
    pub url: String,
    pub health: HealthRow,
    pub owner_node: Option<String>,
    pub dead_reason: Option<String>,
}

/// Endpoints after `after` (by id), with their active subscription counts.
pub fn page(
    conn: &mut Conn,
    after: i64,
    limit: i64,
) -> Result<Vec<(EndpointRow, i64)>, StoreError> {
    let rows: Vec<EndpointRow> = crate::db_run!(conn, c => endpoints::table
        .filter(endpoints::id.gt(after))
        .order(endpoints::id)
        .limit(limit)
        .select((
            endpoints::id,
            endpoints::url,
            HealthRow::as_select(),
            endpoints::owner_node,
            endpoints::dead_reason,
        ))
        .load(c))?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let counts: Vec<(i64, i64)> = crate::db_run!(conn, c => subscriptions::table
        .filter(subscriptions::endpoint_id.eq_any(&ids))
        .filter(subscriptions::active.eq(true))
        .group_by(subscriptions::endpoint_id)
        .select((subscriptions::endpoint_id, diesel::dsl::count_star()))
        .load(c))?;
    let counts: std::collections::HashMap<i64, i64> = counts.into_iter().collect();
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = counts.get(&r.id).copied().unwrap_or(0);
            (r, n)
        })
        .collect())
}
