//! Queries on `tokens`: API tokens are stored as hashes only.

use diesel::prelude::*;

use super::models::NewToken;
use super::schema::tokens::dsl;
use super::{Conn, StoreError, now};

pub fn insert(
    conn: &mut Conn,
    token_hash: &str,
    marketplace_id: i64,
    user_id: i64,
) -> Result<(), StoreError> {
    let row = NewToken {
        token_hash,
        marketplace_id,
        user_id,
        created_at: now(),
    };
    crate::db_run!(conn, c => diesel::insert_into(dsl::tokens).values(&row).execute(c))?;
    Ok(())
}

/// The (marketplaceId, userId) a token hash belongs to.
pub fn find(conn: &mut Conn, token_hash: &str) -> Result<Option<(i64, i64)>, StoreError> {
    Ok(crate::db_run!(conn, c => dsl::tokens
        .filter(dsl::token_hash.eq(token_hash))
        .select((dsl::marketplace_id, dsl::user_id))
        .first::<(i64, i64)>(c)
        .optional())?)
}
