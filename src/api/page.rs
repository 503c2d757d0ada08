//! Pagination shared by every list: `limit` within bounds, an opaque
//! `cursor` (a value of the previous page's `nextCursor`), and the same
//! error for a bad one.

use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};

/// `?limit=&cursor=` of a list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size: `default` when not given, else within 1..=`max`.
    pub fn limit(&self, default: i64, max: i64) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(default),
            Some(l) if (1..=max).contains(&l) => Ok(l),
            Some(l) => Err(ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("`limit` must be between 1 and {max}, not {l}"),
            )),
        }
    }

    /// The id after which the page starts (0: the first page).
    pub fn after_id(&self) -> Result<i64, ApiError> {
        id_cursor(self.cursor.as_deref())
    }
}

/// The id in a cursor of an id-ordered list; none or empty: the start.
pub fn id_cursor(cursor: Option<&str>) -> Result<i64, ApiError> {
    match cursor {
        None | Some("") => Ok(0),
        Some(c) => c
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

/// Cuts rows read with `limit + 1` down to `limit`; the cursor of the next
/// page when there is one.
pub fn next_cursor<T>(
    rows: &mut Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> Option<String> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if more {
        rows.last().map(cursor_of)
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
    fn cursors_are_ids_and_anything_else_is_refused() {
        assert_eq!(id_cursor(None).unwrap(), 0);
        assert_eq!(id_cursor(Some("")).unwrap(), 0);
        assert_eq!(id_cursor(Some("42")).unwrap(), 42);
        assert!(id_cursor(Some("-1")).is_err());
        assert!(id_cursor(Some("abc")).is_err());
    }

    #[test]
    fn the_next_cursor_is_the_last_row_of_a_full_page() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(
            next_cursor(&mut rows, 2, |r| r.to_string()),
            Some("2".into())
        );
        assert_eq!(rows, vec![1, 2]);
        let mut rows = vec![1, 2];
        assert_eq!(next_cursor(&mut rows, 2, |r| r.to_string()), None);
    }
}
