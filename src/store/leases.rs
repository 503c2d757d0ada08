//! Endpoint leases for several nodes on one PostgreSQL database: node
//! heartbeats, renewing, acquiring (skipping rows another node is taking)
//! and releasing leases, and the fallback poll for new work. Lease times use
//! the database clock (UTC), never a node's own, so clock skew between nodes
//! cannot make two of them believe they own one endpoint. PostgreSQL only:
//! a SQLite database has one node, which owns every endpoint.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamp};
use diesel::{PgConnection, sql_query};

use super::endpoints::{HealthRow, PolicyRow};
use super::{Conn, StoreError};

/// The database's current UTC time, as stored.
const NOW: &str = "(now() AT TIME ZONE 'UTC')";

fn pg(conn: &mut Conn) -> Result<&mut PgConnection, StoreError> {
    match conn {
        Conn::Pg(c) => Ok(&mut *c),
        Conn::Sqlite(_) => Err(StoreError::Query(diesel::result::Error::QueryBuilderError(
            "leases exist only on PostgreSQL".into(),
        ))),
    }
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Renewed {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    needed: bool,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// An endpoint whose lease this node just took, with its saved health.
#[derive(Debug, Clone, QueryableByName)]
pub struct Acquired {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub state: String,
    #[diesel(sql_type = Integer)]
    pub consecutive_failures: i32,
    #[diesel(sql_type = Integer)]
    pub failed_verifications: i32,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub last_success_at: Option<chrono::NaiveDateTime>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub last_failure_at: Option<chrono::NaiveDateTime>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_failure_reason: Option<String>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    pub next_verification_at: Option<chrono::NaiveDateTime>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub operator_paused: bool,
    #[diesel(sql_type = Nullable<Integer>)]
    pub max_in_flight: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    pub max_per_second: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub timeout_ms: Option<i64>,
}

impl Acquired {
    pub fn health(&self) -> HealthRow {
        HealthRow {
            state: self.state.clone(),
            consecutive_failures: self.consecutive_failures,
            failed_verifications: self.failed_verifications,
            last_success_at: self.last_success_at,
            last_failure_at: self.last_failure_at,
            last_failure_reason: self.last_failure_reason.clone(),
            next_verification_at: self.next_verification_at,
        }
    }

    /// Its stored policy, which its actor starts with.
    pub fn policy(&self) -> PolicyRow {
        PolicyRow {
            operator_paused: self.operator_paused,
            max_in_flight: self.max_in_flight,
            max_per_second: self.max_per_second,
            timeout_ms: self.timeout_ms,
        }
    }
}

/// What one lease round found.
#[derive(Debug, Default)]
pub struct Round {
    /// Endpoints this node still holds (renewed).
    pub held: Vec<i64>,
    /// Of those, the ones that need an owner (what the fair share counts:
    /// an endpoint left with no subscription and nothing pending is held
    /// until its actor retires, but is nobody's share).
    pub needed: Vec<i64>,
    /// Endpoints this node took now.
    pub acquired: Vec<Acquired>,
    /// This node's fair share: endpoints needing an owner / live nodes.
    pub fair_share: usize,
    pub live_nodes: i64,
    /// Milliseconds until the earliest lease held by another node expires
    /// (negative when one has expired already), if any is held.
    pub next_foreign_expiry_ms: Option<i64>,
}

#[derive(QueryableByName)]
struct Millis {
    #[diesel(sql_type = Nullable<BigInt>)]
    ms: Option<i64>,
}

/// The columns of `Acquired`.
const ACQUIRED_COLUMNS: &str =
    "id, url, state, consecutive_failures, failed_verifications, last_success_at,
    last_failure_at, last_failure_reason, next_verification_at,
    operator_paused, max_in_flight, max_per_second, timeout_ms";

/// Endpoints that need an owner: not dead, with an active subscription or a
/// pending delivery.
const NEEDS_OWNER: &str = "e.state <> 'dead' AND (
        EXISTS (SELECT 1 FROM subscriptions s WHERE s.endpoint_id = e.id AND s.active)
        OR EXISTS (SELECT 1 FROM deliveries d WHERE d.endpoint_id = e.id AND d.status = 'pending'))";

/// One lease round: heartbeat, renew what this node holds, and take
/// unowned or expired endpoints up to the fair share.
pub fn round(conn: &mut Conn, node: &str, ttl_ms: i64) -> Result<Round, StoreError> {
    let c = pg(conn)?;
    sql_query(format!(
        "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, {NOW}, {NOW})
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = {NOW}"
    ))
    .bind::<Text, _>(node)
    .execute(c)?;
    let renewed: Vec<Renewed> = sql_query(format!(
        "UPDATE endpoints e SET lease_expires_at = {NOW} + $2 * interval '1 millisecond'
         WHERE e.owner_node = $1 AND e.state <> 'dead'
         RETURNING e.id, ({NEEDS_OWNER}) AS needed"
    ))
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(ttl_ms)
    .load::<Renewed>(c)?;
    let held: Vec<i64> = renewed.iter().map(|r| r.id).collect();
    let needed: Vec<i64> = renewed.iter().filter(|r| r.needed).map(|r| r.id).collect();
    let live_nodes = sql_query(format!(
        "SELECT count(*) AS n FROM nodes WHERE heartbeat_at > {NOW} - $1 * interval '1 millisecond'"
    ))
    .bind::<BigInt, _>(ttl_ms)
    .get_result::<Count>(c)?
    .n
    .max(1);
    let needing = sql_query(format!(
        "SELECT count(*) AS n FROM endpoints e WHERE {NEEDS_OWNER}"
    ))
    .get_result::<Count>(c)?
    .n;
    let fair_share = ((needing + live_nodes - 1) / live_nodes) as usize;
    let mut acquired = Vec::new();
    if needed.len() < fair_share {
        acquired = sql_query(format!(
            "UPDATE endpoints SET owner_node = $1, lease_expires_at = {NOW} + $2 * interval '1 millisecond'
             WHERE id IN (
                 SELECT e.id FROM endpoints e
                 WHERE (e.owner_node IS NULL OR e.lease_expires_at IS NULL OR e.lease_expires_at < {NOW})
                   AND {NEEDS_OWNER}
                 ORDER BY e.id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING {ACQUIRED_COLUMNS}"
        ))
        .bind::<Text, _>(node)
        .bind::<BigInt, _>(ttl_ms)
        .bind::<BigInt, _>((fair_share - needed.len()) as i64)
        .load::<Acquired>(c)?;
    }
    let next_foreign_expiry_ms = sql_query(format!(
        "SELECT CAST(EXTRACT(EPOCH FROM (min(lease_expires_at) - {NOW})) * 1000 AS BIGINT) AS ms
         FROM endpoints WHERE owner_node IS NOT NULL AND owner_node <> $1 AND state <> 'dead'"
    ))
    .bind::<Text, _>(node)
    .get_result::<Millis>(c)?
    .ms;
    Ok(Round {
        held,
        needed,
        acquired,
        fair_share,
        live_nodes,
        next_foreign_expiry_ms,
    })
}

/// The endpoints of `ids` that `node` holds, with their saved health (its
/// leases renewed after a time without actors: a database outage).
pub fn describe(conn: &mut Conn, node: &str, ids: &[i64]) -> Result<Vec<Acquired>, StoreError> {
    let c = pg(conn)?;
    Ok(sql_query(format!(
        "SELECT {ACQUIRED_COLUMNS} FROM endpoints WHERE owner_node = $1 AND id = ANY($2)"
    ))
    .bind::<Text, _>(node)
    .bind::<Array<BigInt>, _>(ids)
    .load::<Acquired>(c)?)
}

/// Gives up leases (after their actors stopped), so another node can take
/// them at once: the other nodes are told to run a lease round.
pub fn release(conn: &mut Conn, node: &str, ids: &[i64]) -> Result<usize, StoreError> {
    let c = pg(conn)?;
    Ok(c.transaction(|c| {
        let released = sql_query(
            "UPDATE endpoints SET owner_node = NULL, lease_expires_at = NULL
             WHERE owner_node = $1 AND id = ANY($2)",
        )
        .bind::<Text, _>(node)
        .bind::<Array<BigInt>, _>(ids)
        .execute(c)?;
        notify_leases(c, node)?;
        Ok::<_, diesel::result::Error>(released)
    })?)
}

/// Leaves the cluster (graceful shutdown): releases every lease and removes
/// the node's heartbeat, so the fair shares are recomputed at once, and
/// tells the other nodes to take the endpoints now.
pub fn leave(conn: &mut Conn, node: &str) -> Result<(), StoreError> {
    let c = pg(conn)?;
    c.transaction(|c| {
        sql_query(
            "UPDATE endpoints SET owner_node = NULL, lease_expires_at = NULL WHERE owner_node = $1",
        )
        .bind::<Text, _>(node)
        .execute(c)?;
        sql_query("DELETE FROM nodes WHERE id = $1")
            .bind::<Text, _>(node)
            .execute(c)?;
        notify_leases(c, node)
    })?;
    Ok(())
}

/// Channel on which nodes say that leases are free or that the fair shares
/// changed (a node joined, released endpoints or left); payload: the node.
pub const LEASES_CHANNEL: &str = "hookrelay_leases";

fn notify_leases(c: &mut PgConnection, node: &str) -> QueryResult<()> {
    sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(LEASES_CHANNEL)
        .bind::<Text, _>(node)
        .execute(c)
        .map(|_| ())
}

/// Tells the other nodes to run a lease round now (this node joined).
pub fn announce(conn: &mut Conn, node: &str) -> Result<(), StoreError> {
    Ok(notify_leases(pg(conn)?, node)?)
}

/// Endpoints held by `node` that received deliveries in the last
/// `window_ms` (the fallback when a notification was missed).
pub fn recent_work(conn: &mut Conn, node: &str, window_ms: i64) -> Result<Vec<i64>, StoreError> {
    let c = pg(conn)?;
    // created_at is written by the node that accepted the event; the window
    // is wide enough to cover clock skew between nodes.
    Ok(sql_query(
        "SELECT DISTINCT d.endpoint_id AS id FROM deliveries d
         JOIN endpoints e ON e.id = d.endpoint_id
         WHERE e.owner_node = $1 AND d.status = 'pending'
           AND d.created_at > (now() AT TIME ZONE 'UTC') - $2 * interval '1 millisecond'",
    )
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(window_ms)
    .load::<Id>(c)?
    .into_iter()
    .map(|r| r.id)
    .collect())
}

/// Channel of the work notifications: payload is comma-separated endpoint ids.
pub const WORK_CHANNEL: &str = "hookrelay_work";

/// Notifies the owners of `endpoint_ids` that they have new deliveries
/// (delivered when the surrounding transaction commits).
pub fn notify_work(c: &mut PgConnection, endpoint_ids: &[i64]) -> QueryResult<()> {
    let mut ids: Vec<i64> = endpoint_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    // NOTIFY payloads are limited to 8000 bytes.
    for chunk in ids.chunks(400) {
        let payload = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(WORK_CHANNEL)
            .bind::<Text, _>(payload)
            .execute(c)?;
    }
    Ok(())
}

/// The channel that tells the owners of endpoints that some of their
/// pending deliveries were cancelled (an erasure): payload as
/// `WORK_CHANNEL`'s.
pub const CANCEL_CHANNEL: &str = "hookrelay_cancel";

/// Tells the owners of `endpoint_ids` that deliveries of theirs were
/// cancelled, so that they drop those they hold. Nothing to do on SQLite,
/// where this node owns everything.
pub fn notify_cancelled(conn: &mut Conn, endpoint_ids: &[i64]) -> Result<(), StoreError> {
    let Conn::Pg(c) = conn else {
        return Ok(());
    };
    let mut ids: Vec<i64> = endpoint_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(400) {
        let payload = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        sql_query("SELECT pg_notify($1, $2)")
            .bind::<Text, _>(CANCEL_CHANNEL)
            .bind::<Text, _>(payload)
            .execute(&mut **c)?;
    }
    Ok(())
}

/// Notifies the owners of `endpoint_ids` now, outside a commit (after a
/// replay). Nothing to do on SQLite, where this node owns everything.
pub fn notify(conn: &mut Conn, endpoint_ids: &[i64]) -> Result<(), StoreError> {
    match conn {
        Conn::Pg(c) => Ok(notify_work(c, endpoint_ids)?),
        Conn::Sqlite(_) => Ok(()),
    }
}

/// Takes the leases of `ids` that nobody holds (a subscription was just
/// created for a new endpoint), so its first deliveries need not wait for a
/// lease round. Surplus is handed over by later rounds.
pub fn claim(
    conn: &mut Conn,
    node: &str,
    ttl_ms: i64,
    ids: &[i64],
) -> Result<Vec<Acquired>, StoreError> {
    let c = pg(conn)?;
    Ok(sql_query(format!(
        "UPDATE endpoints SET owner_node = $1, lease_expires_at = {NOW} + $2 * interval '1 millisecond'
         WHERE id IN (
             SELECT e.id FROM endpoints e
             WHERE e.id = ANY($3) AND e.state <> 'dead'
               AND (e.owner_node IS NULL OR e.owner_node = $1
                    OR e.lease_expires_at IS NULL OR e.lease_expires_at < {NOW})
             FOR UPDATE SKIP LOCKED)
         RETURNING {ACQUIRED_COLUMNS}"
    ))
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(ttl_ms)
    .bind::<Array<BigInt>, _>(ids)
    .load::<Acquired>(c)?)
}
