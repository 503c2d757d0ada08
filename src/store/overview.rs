//! Figures of the web console's overview: how many endpoints are in each
//! stored state (with the operator's hold), and how many deliveries are
//! pending or dead, counted up to a bound so that a huge backlog costs no
//! more than `COUNT_UP_TO` index entries.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::schema::endpoints;
use super::{Conn, StoreError};

/// Deliveries are counted up to this many; more reads as "at least".
pub const COUNT_UP_TO: i64 = 10_000;

/// Endpoints by stored state and the operator's hold:
/// `(state, operator_paused, count)`.
pub fn endpoint_states(conn: &mut Conn) -> Result<Vec<(String, bool, i64)>, StoreError> {
    Ok(crate::db_run!(conn, c => endpoints::table
        .group_by((endpoints::state, endpoints::operator_paused))
        .select((endpoints::state, endpoints::operator_paused, diesel::dsl::count_star()))
        .load(c))?)
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A bounded count of the deliveries in `status` (`pending` or `dead`,
/// each read through its partial index): at most `COUNT_UP_TO + 1`.
pub fn deliveries_in(conn: &mut Conn, status: Status) -> Result<i64, StoreError> {
    let condition = match status {
        Status::Pending => "deliveries.status = 'pending'",
        Status::Dead => "deliveries.status = 'dead'",
    };
    let sql = format!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM deliveries WHERE {condition} LIMIT {}) AS bounded",
        COUNT_UP_TO + 1
    );
    let counted: Counted = crate::db_run!(conn, c => diesel::sql_query(&sql).get_result(c))?;
    Ok(counted.n)
}

/// Which deliveries `deliveries_in` counts.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    Pending,
    Dead,
}
