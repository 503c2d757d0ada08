//! Queries on `endpoints`: the saved health of each endpoint (so a restart
//! or another node continues where the actor was), and the transaction that
//! removes a dead endpoint's subscriptions; an operator's policy of each
//! endpoint (stored, changed with a notification to its owner node).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::db_time::DbTime;
use super::models::DEAD;
use super::notices::{OperatorRoute, QueuedNotice, store_drafts};
use super::routing::RoutingVersion;
use super::schema::{deliveries, endpoints, subscriptions};
use super::{Conn, StoreError, now};
use crate::notice::Draft;

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
    in_chunks(ids, |chunk| {
        Ok(crate::db_run!(conn, c => endpoints::table
            .filter(endpoints::id.eq_any(chunk))
            .select((endpoints::id, HealthRow::as_select()))
            .load(c))?)
    })
}

/// Rows of the endpoints in `ids`, read a thousand ids per query (the
/// backends' limits on bound parameters).
fn in_chunks<T>(
    ids: &[i64],
    mut load: impl FnMut(&[i64]) -> Result<Vec<T>, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(1000) {
        out.extend(load(chunk)?);
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
/// the reason), turns their pending deliveries into dead letters and
/// stores the notices of its death, in one transaction: a crash loses all
/// of it or none. `notices` words those notices from the ids of the
/// subscriptions removed; they are stamped here, inside the transaction
/// (on SQLite under the writer lock, so their ids sort after every notice
/// stored before), and with `operator` each gets its delivery there.
/// Returns the ids of the subscriptions it removed and those deliveries,
/// to hand to the operator webhook's actor.
pub fn bury(
    conn: &mut Conn,
    endpoint_id: i64,
    reason: &str,
    notices: impl FnOnce(&[i64]) -> Vec<Draft>,
    operator: Option<&OperatorRoute>,
) -> Result<(Vec<i64>, Vec<QueuedNotice>), StoreError> {
    let at = now();
    let stored_at = DbTime::new(at);
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
        let mut drafts = notices(&ids);
        for draft in &mut drafts {
            draft.stamp();
        }
        let queued = store_drafts!(c, &drafts, operator, &stored_at)?;
        Ok::<_, diesel::result::Error>((ids, queued))
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
    pub policy: PolicyRow,
}

/// Endpoints after `after` (by id), with their active subscription counts.
pub fn page(
    conn: &mut Conn,
    after: i64,
    limit: i64,
) -> Result<Vec<(EndpointRow, i64)>, StoreError> {
    page_in_state(conn, None, after, limit)
}

/// Which endpoints a page lists, by the state an operator sees (an
/// operator's hold shows as paused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownState {
    Healthy,
    Failing,
    Paused,
    Dead,
}

impl ShownState {
    pub fn parse(text: &str) -> Option<ShownState> {
        Some(match text {
            "healthy" => ShownState::Healthy,
            "failing" => ShownState::Failing,
            "paused" => ShownState::Paused,
            "dead" => ShownState::Dead,
            _ => return None,
        })
    }
}

/// Like `page`, only the endpoints in `state` as stored (all of them
/// without one).
pub fn page_in_state(
    conn: &mut Conn,
    state: Option<ShownState>,
    after: i64,
    limit: i64,
) -> Result<Vec<(EndpointRow, i64)>, StoreError> {
    use diesel::dsl::not;
    let stored = match state {
        None => "",
        Some(ShownState::Healthy) => "healthy",
        Some(ShownState::Failing) => "failing",
        Some(ShownState::Paused) => "paused",
        Some(ShownState::Dead) => DEAD,
    };
    let rows: Vec<EndpointRow> = crate::db_run!(conn, c => {
        let base = endpoints::table
            .filter(endpoints::id.gt(after))
            .order(endpoints::id)
            .limit(limit)
            .select((
                endpoints::id,
                endpoints::url,
                HealthRow::as_select(),
                endpoints::owner_node,
                endpoints::dead_reason,
                PolicyRow::as_select(),
            ))
            .into_boxed();
        let filtered = match state {
            None => base,
            Some(ShownState::Healthy | ShownState::Failing) => base
                .filter(endpoints::state.eq(stored))
                .filter(not(endpoints::operator_paused)),
            Some(ShownState::Paused) => base.filter(
                endpoints::state
                    .eq(stored)
                    .or(endpoints::operator_paused.and(endpoints::state.ne(DEAD))),
            ),
            Some(ShownState::Dead) => base.filter(endpoints::state.eq(stored)),
        };
        filtered.load(c)
    })?;
    with_counts(conn, rows)
}

/// One endpoint as listed, with its active subscription count.
pub fn one(conn: &mut Conn, id: i64) -> Result<Option<(EndpointRow, i64)>, StoreError> {
    let rows: Vec<EndpointRow> = crate::db_run!(conn, c => endpoints::table
        .filter(endpoints::id.eq(id))
        .select((
            endpoints::id,
            endpoints::url,
            HealthRow::as_select(),
            endpoints::owner_node,
            endpoints::dead_reason,
            PolicyRow::as_select(),
        ))
        .load(c))?;
    Ok(with_counts(conn, rows)?.pop())
}

/// `rows` with their active subscription counts.
fn with_counts(
    conn: &mut Conn,
    rows: Vec<EndpointRow>,
) -> Result<Vec<(EndpointRow, i64)>, StoreError> {
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

/// An endpoint's stored policy: the operator's hold and its overrides of
/// the global settings (`None`: the global default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Queryable, Selectable, AsChangeset)]
#[diesel(table_name = endpoints, treat_none_as_null = true)]
pub struct PolicyRow {
    pub operator_paused: bool,
    pub max_in_flight: Option<i32>,
    pub max_per_second: Option<i32>,
    pub timeout_ms: Option<i64>,
}

/// The notification channel of policy changes; payload: the endpoint id
/// and its new policy (`policy_payload`), which its owner node hands to
/// the actor before any work notified after it.
pub const POLICY_CHANNEL: &str = "hookrelay_policy";

/// The payload of a policy change: `id;paused;maxInFlight;maxPerSecond;
/// timeoutMs`, an empty field for a NULL.
pub fn policy_payload(id: i64, row: &PolicyRow) -> String {
    let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    format!(
        "{id};{};{};{};{}",
        u8::from(row.operator_paused),
        opt(row.max_in_flight.map(i64::from)),
        opt(row.max_per_second.map(i64::from)),
        opt(row.timeout_ms)
    )
}

/// The endpoint and policy of a `policy_payload`; `None` when malformed.
pub fn parse_policy_payload(payload: &str) -> Option<(i64, PolicyRow)> {
    let parts: Vec<&str> = payload.split(';').collect();
    let [id, paused, in_flight, per_second, timeout] = parts.as_slice() else {
        return None;
    };
    fn opt<T: std::str::FromStr>(s: &str) -> Option<Option<T>> {
        if s.is_empty() {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    }
    Some((
        id.parse().ok()?,
        PolicyRow {
            operator_paused: match *paused {
                "1" => true,
                "0" => false,
                _ => return None,
            },
            max_in_flight: opt(in_flight)?,
            max_per_second: opt(per_second)?,
            timeout_ms: opt(timeout)?,
        },
    ))
}

/// Changes an endpoint's policy to `change(stored)` and, on PostgreSQL,
/// notifies the nodes (delivered at commit), in one transaction. `None`
/// when there is no such endpoint.
pub fn change_policy(
    conn: &mut Conn,
    id: i64,
    change: impl FnOnce(PolicyRow) -> PolicyRow,
) -> Result<Option<PolicyRow>, StoreError> {
    let at = now();
    Ok(crate::db_transaction!(conn, c => {
        let stored: Option<PolicyRow> = endpoints::table
            .find(id)
            .select(PolicyRow::as_select())
            .first(c)
            .optional()?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let changed = change(stored);
        diesel::update(endpoints::table.find(id))
            .set((changed, endpoints::policy_updated_at.eq(Some(at))))
            .execute(c)?;
        c.notify_policy(&policy_payload(id, &changed))?;
        Ok::<_, diesel::result::Error>(Some(changed))
    })?)
}

/// The endpoints with a policy other than the default (what a single node
/// starts its actors with).
pub fn policies_set(conn: &mut Conn) -> Result<Vec<(i64, PolicyRow)>, StoreError> {
    Ok(crate::db_run!(conn, c => endpoints::table
        .filter(
            endpoints::operator_paused
                .eq(true)
                .or(endpoints::max_in_flight.is_not_null())
                .or(endpoints::max_per_second.is_not_null())
                .or(endpoints::timeout_ms.is_not_null()),
        )
        .select((endpoints::id, PolicyRow::as_select()))
        .load(c))?)
}

/// The stored policies of the endpoints in `ids`.
pub fn policies_of(conn: &mut Conn, ids: &[i64]) -> Result<Vec<(i64, PolicyRow)>, StoreError> {
    in_chunks(ids, |chunk| {
        Ok(crate::db_run!(conn, c => endpoints::table
            .filter(endpoints::id.eq_any(chunk))
            .select((endpoints::id, PolicyRow::as_select()))
            .load(c))?)
    })
}

/// Endpoints held by `node` whose policy changed after `since` (the
/// fallback when a change notification was missed).
pub fn policies_changed_since(
    conn: &mut Conn,
    node: &str,
    since: NaiveDateTime,
) -> Result<Vec<i64>, StoreError> {
    Ok(crate::db_run!(conn, c => endpoints::table
        .filter(endpoints::owner_node.eq(node))
        .filter(endpoints::policy_updated_at.gt(since))
        .select(endpoints::id)
        .load(c))?)
}

/// Tells the nodes of a policy change, inside the changing transaction.
trait NotifyPolicy {
    fn notify_policy(&mut self, payload: &str) -> QueryResult<()>;
}

impl NotifyPolicy for diesel::SqliteConnection {
    /// A SQLite database has one node: its router is told directly.
    fn notify_policy(&mut self, _payload: &str) -> QueryResult<()> {
        Ok(())
    }
}

impl NotifyPolicy for diesel::PgConnection {
    fn notify_policy(&mut self, payload: &str) -> QueryResult<()> {
        use diesel::sql_types::Text;
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(POLICY_CHANNEL)
            .bind::<Text, _>(payload)
            .execute(self)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::{Kind, Scope};
    use crate::store::{Store, notices, subscriptions};

    /// The notices of a death are written by the burial's own transaction:
    /// once `bury` has returned they are there (before it, nothing of the
    /// death is), worded from the subscriptions it removed, and their ids
    /// sort after every notice stored before.
    #[test]
    fn a_burial_stores_the_notices_of_the_death_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("d.db").to_str().unwrap(), 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let endpoint = subscriptions::endpoint_id_for(conn, "http://example.com/").unwrap();
        let a = subscriptions::insert(conn, 1, 10, "qti_export_ready", endpoint, "s").unwrap();
        let b = subscriptions::insert(conn, 2, 20, "qti_export_ready", endpoint, "s").unwrap();
        let mut expiring = Draft::new(
            Kind::Expiring,
            endpoint,
            "http://example.com/",
            Scope::Active,
            "one check left".into(),
        );
        expiring.stamp();
        notices::insert(conn, &[expiring], None).unwrap();
        let words = |ids: &[i64]| {
            crate::delivery::notices::on_death(ids)
                .into_iter()
                .map(|(kind, scope)| {
                    Draft::new(kind, endpoint, "http://example.com/", scope, "dead".into())
                })
                .collect()
        };
        let (ids, queued) = bury(conn, endpoint, "dead", words, None).unwrap();
        assert_eq!(ids, vec![a.id, b.id]);
        assert!(queued.is_empty(), "no operator webhook: nothing to deliver");
        let stored = notices::list(conn, None, 10).unwrap();
        let kinds: Vec<String> = stored
            .iter()
            .map(|n| {
                let body: serde_json::Value = serde_json::from_str(&n.body).unwrap();
                body["event"].as_str().unwrap_or("?").to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "subscription.expiring",
                "endpoint.dead",
                "subscription.auto_removed",
                "subscription.auto_removed"
            ],
            "{stored:?}"
        );
        use crate::store::schema::subscriptions as rows;
        let active: i64 = crate::db_run!(conn, c => rows::table
            .filter(rows::active.eq(true))
            .count()
            .get_result(c))
        .unwrap();
        assert_eq!(active, 0, "both subscriptions removed by the same call");
    }

    #[test]
    fn a_policy_notification_carries_the_whole_policy() {
        let row = PolicyRow {
            operator_paused: true,
            max_in_flight: Some(1),
            max_per_second: None,
            timeout_ms: Some(250),
        };
        assert_eq!(policy_payload(7, &row), "7;1;1;;250");
        assert_eq!(parse_policy_payload("7;1;1;;250"), Some((7, row)));
        let default = PolicyRow::default();
        assert_eq!(
            parse_policy_payload(&policy_payload(9, &default)),
            Some((9, default))
        );
    }

    #[test]
    fn a_malformed_policy_notification_is_ignored() {
        for bad in ["", "7", "x;1;;;", "7;yes;;;", "7;0;-;;", "7;0;;;;"] {
            assert_eq!(parse_policy_payload(bad), None, "{bad}");
        }
    }
}
