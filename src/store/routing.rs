//! The routing version: one counter in the database that every change to
//! what routes where increments, in the transaction that makes the change
//! (a subscription created, deleted, auto-removed), stamping the changed
//! subscriptions with the new value. It is what makes routing read its own
//! writes across nodes:
//!
//! - the increment is a row update, so the changes commit one after the
//!   other in version order: whoever sees version `v` also sees every
//!   change up to `v`, and `changes_since(v)` lists each subscription
//!   changed after `v` in its latest state;
//! - the transaction that stores a group of events reads the version
//!   (`for_group`; on PostgreSQL under a share lock, so no change commits
//!   while the group is being stored). When it is newer than the version the
//!   group was routed at, the group is routed again with the changes
//!   (`store::events::store_batch`).

use diesel::prelude::*;

use super::models::{RouteRow, Subscription};
use super::schema::{endpoints, routing_version, subscriptions};
use super::{Conn, StoreError};

/// The key of the one row of `routing_version`.
const ROW: i32 = 1;

/// The routing version's queries, the same on both backends but for the
/// lock taken by `for_group`.
pub trait RoutingVersion {
    /// Increments the version; call it first in the changing transaction
    /// (so it waits for groups being stored) and stamp the changed
    /// subscriptions with the result.
    fn bump_routing_version(&mut self) -> QueryResult<i64>;
    /// The version, read by a group's transaction: on PostgreSQL it holds a
    /// share lock until the group commits, so that a change commits either
    /// before the group (and the group sees it) or after it (and the change
    /// sees the group's deliveries, to cancel them).
    fn routing_version_for_group(&mut self) -> QueryResult<i64>;
    /// Every subscription changed after `version`, in its latest state.
    fn route_changes_since(&mut self, version: i64) -> QueryResult<Vec<RouteRow>>;
}

macro_rules! routing_version_impl {
    ($conn:ty, $c:ident => $read:expr) => {
        impl RoutingVersion for $conn {
            fn bump_routing_version(&mut self) -> QueryResult<i64> {
                diesel::update(routing_version::table.find(ROW))
                    .set(routing_version::version.eq(routing_version::version + 1))
                    .returning(routing_version::version)
                    .get_result(self)
            }

            fn routing_version_for_group(&mut self) -> QueryResult<i64> {
                let $c = self;
                $read
            }

            fn route_changes_since(&mut self, version: i64) -> QueryResult<Vec<RouteRow>> {
                let rows: Vec<(Subscription, String)> = subscriptions::table
                    .inner_join(endpoints::table)
                    .filter(subscriptions::route_version.gt(version))
                    .order(subscriptions::route_version)
                    .select((Subscription::as_select(), endpoints::url))
                    .load(self)?;
                Ok(rows
                    .into_iter()
                    .map(|(subscription, endpoint_url)| RouteRow {
                        subscription,
                        endpoint_url,
                    })
                    .collect())
            }
        }
    };
}

// SQLite: a group's transaction holds the database's one write lock, so
// no change can commit while it runs.
routing_version_impl!(diesel::SqliteConnection, c => routing_version::table
    .find(ROW)
    .select(routing_version::version)
    .get_result(c));
routing_version_impl!(diesel::PgConnection, c => routing_version::table
    .find(ROW)
    .select(routing_version::version)
    .for_share()
    .get_result(c));

/// The current version, without a lock.
pub fn current(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(crate::db_run!(conn, c => routing_version::table
        .find(ROW)
        .select(routing_version::version)
        .get_result(c))?)
}

/// What a node needs to bring its routing table from `known` up to date:
/// the version now (or newer) and the subscriptions changed after `known`.
/// `None` when nothing changed.
pub fn catch_up(conn: &mut Conn, known: i64) -> Result<Option<(i64, Vec<RouteRow>)>, StoreError> {
    let now = current(conn)?;
    if now <= known {
        return Ok(None);
    }
    let rows = crate::db_run!(conn, c => c.route_changes_since(known))?;
    // Read after `now`: changes up to the newest row's version are all
    // committed and seen too.
    let as_of = rows
        .iter()
        .map(|r| r.subscription.route_version)
        .fold(now, i64::max);
    Ok(Some((as_of, rows)))
}
