//! A subscription's catch-up feed (DESIGN.md section 6): every event routed
//! to it that the history cleanup (`--history-retention`) has left,
//! delivered or not, oldest first. An event's `cursor` is the opaque cursor (`page.rs`) of its delivery id
//! for this subscription: unique and time-ordered, so paging with
//! `?after=<cursor>` never repeats or skips an event. `nextCursor` is the
//! last event's cursor while more follow, and null on the last page (a
//! client polling for new events keeps the cursor of the last event it
//! read).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::auth::Caller;
use super::deliveries::{delivery_cursor, owned, page_limit, payload, query};
use super::openapi::ErrorResponses;
use super::page::{encode_cursor, next_cursor};
use super::{State, format_time};
use crate::error::ApiError;
use crate::store::history::{self, FeedRow};

/// Events per page when `limit` is not given.
const DEFAULT_PAGE: i64 = 100;

/// `?after=&limit=` of the feed.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// An event's `cursor` (or a `nextCursor`); absent for the first page.
    after: Option<String>,
    /// Events per page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// One event of the feed.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeedEvent {
    pub event_id: String,
    /// Give it as `after` to read the events that follow this one.
    pub cursor: String,
    pub accepted_at: String,
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
}

impl From<FeedRow> for FeedEvent {
    fn from(r: FeedRow) -> FeedEvent {
        FeedEvent {
            event_id: r.event_id,
            cursor: encode_cursor(&r.cursor),
            accepted_at: format_time(r.accepted_at),
            payload: payload(r.body),
        }
    }
}

/// `GET /v1/subscription/{id}/events`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Feed {
    pub events: Vec<FeedEvent>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/subscription/{id}/events", tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id"), FeedQuery),
    responses((status = 200, body = Feed), ErrorResponses))]
pub(crate) async fn feed(
    caller: Caller,
    state: State,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: FeedQuery = query(&req)?;
    let limit = page_limit(q.limit, DEFAULT_PAGE)?;
    let after = delivery_cursor(q.after.as_deref())?.unwrap_or_default();
    let sub = owned(&state, caller, &path).await?;
    let mut rows = state
        .store
        .run(move |conn| history::feed(conn, sub, &after, limit + 1))
        .await?;
    let next = next_cursor(&mut rows, limit, |r| r.cursor.clone());
    Ok(HttpResponse::Ok().json(Feed {
        events: rows.into_iter().map(FeedEvent::from).collect(),
        next_cursor: next,
    }))
}
