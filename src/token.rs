//! API tokens: random, shown once, stored as a SHA-256 hash, each bound to
//! one (marketplaceId, userId). Used by `POST /internal/v1/tokens`, by
//! `hookrelay token create`, and by bearer authentication.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::store::{Conn, StoreError, tokens};

/// Prefix of every token, so a leaked one is recognizable in logs and scans.
pub const PREFIX: &str = "hr_";

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates and stores a token for (marketplace, user); returns the plain
/// token, which is never stored.
pub fn create(conn: &mut Conn, marketplace_id: i64, user_id: i64) -> Result<String, StoreError> {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    tokens::insert(conn, &hash(&token), marketplace_id, user_id)?;
    Ok(token)
}

/// The (marketplace, user) a presented token belongs to.
pub fn lookup(conn: &mut Conn, token: &str) -> Result<Option<(i64, i64)>, StoreError> {
    tokens::find(conn, &hash(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
