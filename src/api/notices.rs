//! `GET /internal/v1/notices` (DESIGN.md section 9): the lifecycle notices,
//! oldest first, paged with the shared opaque cursor (`?after=&limit=`):
//! the same notices the operator webhook receives, listed whether or not
//! one is set.

use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::State;
use super::auth::Operator;
use super::deliveries::{delivery_cursor, page_limit, query};
use super::openapi::ErrorResponses;
use super::page::{DEFAULT_LIMIT, next_cursor};
use crate::error::ApiError;
use crate::notice::Notice;
use crate::store::notices::{self, NoticeRow};

/// `?after=&limit=` of the list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct NoticeQuery {
    /// The `nextCursor` of the previous page; absent for the first page.
    after: Option<String>,
    /// Notices per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One page of notices.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticeList {
    pub notices: Vec<Notice>,
    /// Give it as `after` for the next page; null on the last one (keep
    /// the last notice's id to poll for newer ones: see `after`).
    pub next_cursor: Option<String>,
}

/// A stored notice as listed (a body that no longer reads is logged and
/// skipped, never a 500 for the whole page).
pub(crate) fn listed(row: NoticeRow) -> Option<Notice> {
    match serde_json::from_str(&row.body) {
        Ok(notice) => Some(notice),
        Err(e) => {
            log::error!("notice {} has an unreadable body: {e}", row.id);
            None
        }
    }
}

#[utoipa::path(get, path = "/internal/v1/notices", tag = "notices",
    security(("bearer" = [])), params(NoticeQuery),
    responses((status = 200, body = NoticeList), ErrorResponses))]
pub(crate) async fn list_notices(
    _op: Operator,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: NoticeQuery = query(&req)?;
    let limit = page_limit(q.limit, DEFAULT_LIMIT)?;
    let after = delivery_cursor(q.after.as_deref())?;
    let mut rows = state
        .store
        .run(move |conn| notices::list(conn, after.as_deref(), limit + 1))
        .await?;
    let next = next_cursor(&mut rows, limit, |r| r.id.clone());
    Ok(HttpResponse::Ok().json(NoticeList {
        notices: rows.into_iter().filter_map(listed).collect(),
        next_cursor: next,
    }))
}
