//! Pagination shared by every list: `limit` within the same bounds, an
//! opaque `cursor` (a value of the previous page's `nextCursor`), and the
//! same error for a bad one. A cursor is the position of a page's last row
//! (an id), versioned and base64url-encoded here and nowhere else, so that
//! callers cannot build one and every list refuses a made-up one alike.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// Items per page of an operator's list when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// Most items per page of any list.
pub const MAX_LIMIT: i64 = 1000;

/// What every encoded cursor starts with; a new format gets a new one.
const CURSOR_VERSION: &str = "c1:";

/// `?limit=&cursor=` of a list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size: `default` when not given, else within 1..=`max`.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        limit_within(self.limit, default, max)
    }

    /// The id after which the page starts (0: the first page).
    pub fn after_id(&self) -> Result<i64, ApiError> {
        id_cursor(self.cursor.as_deref())
    }
}

/// The query string of a list as `T`; an unknown or malformed parameter
/// is a JSON 400 that names it.
pub fn query<T: DeserializeOwned>(query_string: &str) -> Result<T, ApiError> {
    serde_urlencoded_query(query_string).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("bad query parameters: {e}"),
        )
    })
}

fn serde_urlencoded_query<T: DeserializeOwned>(
    query_string: &str,
) -> Result<T, actix_web::error::QueryPayloadError> {
    actix_web::web::Query::<T>::from_query(query_string).map(actix_web::web::Query::into_inner)
}

/// A page size: `default` when not given, else within 1..=`max`.
pub fn limit_within(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match limit {
        None => Ok(default),
        Some(l) if (1..=max).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("`limit` must be between 1 and {max}, not {l}"),
        )),
    }
}

/// The cursor a caller is given for a position.
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}{position}"))
}

/// The position in a cursor; none or empty: the start (`None`).
pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix(CURSOR_VERSION).map(str::to_string))
        .map(Some)
        .ok_or_else(bad_cursor)
}

/// The id in a cursor of an id-ordered list; none or empty: the start.
pub fn id_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match decode_cursor(cursor)? {
        None => Ok(0),
        Some(position) => position
            .parse::<i64>()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(bad_cursor),
    }
}

/// The answer to a cursor that no `nextCursor` gave.
pub fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        ErrorCode::InvalidQuery,
        "`cursor` must be a value of a previous page's `nextCursor`",
    )
}

/// Cuts rows read with `limit + 1` down to `limit`; the (encoded) cursor
/// of the next page when there is one, from the position of the last row.
pub fn next_cursor<T>(
    rows: &mut Vec<T>,
    limit: i64,
    position_of: impl Fn(&T) -> String,
) -> Option<String> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if more {
        rows.last().map(|row| encode_cursor(&position_of(row)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_outside_its_bounds_is_refused_and_a_missing_one_is_the_default() {
        let q = |limit| PageQuery {
            limit,
            cursor: None,
        };
        assert_eq!(q(None).limit(100, 500).unwrap(), 100);
        assert_eq!(q(Some(500)).limit(100, 500).unwrap(), 500);
        assert!(q(Some(0)).limit(100, 500).is_err());
        assert!(q(Some(501)).limit(100, 500).is_err());
    }

    #[test]
    fn an_id_cursor_reads_back_the_id_it_was_made_from() {
        assert_eq!(id_cursor(None).unwrap(), 0);
        assert_eq!(id_cursor(Some("")).unwrap(), 0);
        assert_eq!(id_cursor(Some(&encode_cursor("42"))).unwrap(), 42);
    }

    #[test]
    fn a_cursor_no_page_gave_is_refused() {
        assert!(id_cursor(Some("42")).is_err(), "a bare id is not a cursor");
        assert!(id_cursor(Some("abc")).is_err());
        assert!(id_cursor(Some("!!")).is_err());
        assert!(id_cursor(Some(&encode_cursor("-1"))).is_err());
        assert!(id_cursor(Some(&encode_cursor("x"))).is_err());
        assert!(decode_cursor(Some(&URL_SAFE_NO_PAD.encode("c0:1"))).is_err());
    }

    #[test]
    fn a_cursor_is_opaque_and_safe_in_a_query_string() {
        let c = encode_cursor("0190a1b2-c3d4");
        assert!(!c.contains("0190a1b2"), "{c}");
        assert!(
            c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch))
        );
        assert_eq!(
            decode_cursor(Some(&c)).unwrap().as_deref(),
            Some("0190a1b2-c3d4")
        );
    }

    #[test]
    fn the_next_cursor_is_the_last_row_of_a_full_page() {
        let mut rows = vec![1, 2, 3];
        let next = next_cursor(&mut rows, 2, |r| r.to_string());
        assert_eq!(id_cursor(next.as_deref()).unwrap(), 2);
        assert_eq!(rows, vec![1, 2]);
        let mut rows = vec![1, 2];
        assert_eq!(next_cursor(&mut rows, 2, |r| r.to_string()), None);
    }
}
