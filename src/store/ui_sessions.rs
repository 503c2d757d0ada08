//! Queries on `ui_sessions`: the sessions of the web console and the
//! subscriber portal (`crate::ui::session` decides what they mean). Only
//! hashes of the cookie's id and of the token signed in with are stored.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::ui_sessions::dsl;
use super::{Conn, StoreError, now};

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct SessionRow {
    pub audience: String,
    pub token_hash: String,
    pub csrf: String,
    pub expires_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = super::schema::ui_sessions)]
struct NewSession<'a> {
    id_hash: &'a str,
    audience: &'a str,
    token_hash: &'a str,
    csrf: &'a str,
    created_at: NaiveDateTime,
    expires_at: NaiveDateTime,
}

/// Stores a new session, and forgets every expired one (sign-ins are rare,
/// so this keeps the table small without a timer).
pub fn insert(
    conn: &mut Conn,
    id_hash: &str,
    audience: &str,
    token_hash: &str,
    csrf: &str,
    expires_at: NaiveDateTime,
) -> Result<(), StoreError> {
    let at = now();
    let row = NewSession {
        id_hash,
        audience,
        token_hash,
        csrf,
        created_at: at,
        expires_at,
    };
    crate::db_run!(conn, c => {
        diesel::delete(dsl::ui_sessions.filter(dsl::expires_at.le(at))).execute(c)?;
        diesel::insert_into(dsl::ui_sessions).values(&row).execute(c)
    })?;
    Ok(())
}

/// The unexpired session of `audience` with this id hash.
pub fn find(
    conn: &mut Conn,
    id_hash: &str,
    audience: &str,
) -> Result<Option<SessionRow>, StoreError> {
    Ok(crate::db_run!(conn, c => dsl::ui_sessions
        .filter(dsl::id_hash.eq(id_hash))
        .filter(dsl::audience.eq(audience))
        .filter(dsl::expires_at.gt(now()))
        .select((dsl::audience, dsl::token_hash, dsl::csrf, dsl::expires_at))
        .first::<SessionRow>(c)
        .optional())?)
}

/// Ends a session (sign-out); `false` when there was none.
pub fn delete(conn: &mut Conn, id_hash: &str) -> Result<bool, StoreError> {
    let removed = crate::db_run!(conn, c =>
        diesel::delete(dsl::ui_sessions.filter(dsl::id_hash.eq(id_hash))).execute(c))?;
    Ok(removed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_session_is_found_until_it_expires_or_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("s.db").display().to_string();
        let store = Store::open(&url, 2).unwrap();
        let conn = &mut store.conn().unwrap();
        let later = now() + chrono::Duration::hours(1);
        insert(conn, "a", "portal", "t", "c", later).unwrap();
        insert(
            conn,
            "old",
            "portal",
            "t",
            "c",
            now() - chrono::Duration::seconds(1),
        )
        .unwrap();
        let found = find(conn, "a", "portal").unwrap().unwrap();
        assert_eq!((found.token_hash.as_str(), found.csrf.as_str()), ("t", "c"));
        assert_eq!(find(conn, "a", "console").unwrap(), None, "other audience");
        assert_eq!(find(conn, "old", "portal").unwrap(), None, "expired");
        insert(conn, "b", "console", "t", "c", later).unwrap();
        assert_eq!(find(conn, "old", "portal").unwrap(), None);
        assert!(delete(conn, "a").unwrap());
        assert!(!delete(conn, "a").unwrap());
        assert_eq!(find(conn, "a", "portal").unwrap(), None);
    }
}
