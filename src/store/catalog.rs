//! Queries on `event_types`: seeding the defaults, listing, registering.

use diesel::prelude::*;

use super::schema::event_types::dsl;
use super::{Conn, StoreError, now};

/// Inserts each default event type that is not there yet.
pub fn seed(conn: &mut Conn, defaults: &[(&str, &str)]) -> Result<(), StoreError> {
    let at = now();
    let rows: Vec<_> = defaults
        .iter()
        .map(|(n, d)| {
            (
                dsl::name.eq(*n),
                dsl::description.eq(*d),
                dsl::created_at.eq(at),
            )
        })
        .collect();
    crate::db_run!(conn, c => diesel::insert_into(dsl::event_types)
        .values(&rows)
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(())
}

pub fn list(conn: &mut Conn) -> Result<Vec<(String, String)>, StoreError> {
    Ok(crate::db_run!(conn, c => dsl::event_types
        .select((dsl::name, dsl::description))
        .order(dsl::name)
        .load(c))?)
}

/// Registers an event type, or updates its description. Returns true when
/// it was new.
pub fn upsert(conn: &mut Conn, name: &str, description: &str) -> Result<bool, StoreError> {
    let updated = crate::db_run!(conn, c => diesel::update(dsl::event_types.filter(dsl::name.eq(name)))
        .set(dsl::description.eq(description))
        .execute(c))?;
    if updated > 0 {
        return Ok(false);
    }
    crate::db_run!(conn, c => diesel::insert_into(dsl::event_types)
        .values((dsl::name.eq(name), dsl::description.eq(description), dsl::created_at.eq(now())))
        .on_conflict_do_nothing()
        .execute(c))?;
    Ok(true)
}
