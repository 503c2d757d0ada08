//! A subscription's catch-up feed (DESIGN.md section 6): every event routed
//! to it within `--history-retention`, delivered or not, oldest first. An
//! event's `cursor` is the opaque cursor (`page.rs`) of its delivery id
//! for this subscription: unique and time-ordered. `nextCursor` is the
//! last event's cursor while more follow, and null on the last page (a
//! client polling for new events keeps the cursor of the last event it
//! read).
//!
//! A delivery id is made when the event is routed, a moment before its
//! group commits; two groups (two HTTP workers, or two nodes whose clocks
//! differ) can commit out of id order. So the feed serves only settled
//! deliveries, routed more than `SETTLE` ago (`CLUSTER_SETTLE` with
//! several nodes, which also covers their clock skew): once a page was
//! served, nothing can commit behind its cursor, and paging with
//! `?after=<cursor>` never repeats or skips an event. The newest few
//! seconds appear on the next call. An event whose payload was erased on
//! request (`crate::erasure`) is no longer served.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::auth::Caller;
use super::deliveries::{delivery_cursor, owned, page_limit, payload, query};
use super::openapi::ErrorResponses;
use super::page::{encode_cursor, next_cursor};
use super::{State, format_time};
use crate::error::ApiError;
use crate::store::history::{self, FeedRow, FeedWindow};

/// Events per page when `limit` is not given.
const DEFAULT_PAGE: i64 = 100;
/// How long after routing a delivery is surely committed on one node (a
/// group commits within milliseconds; a publish waits at most this long
/// for its group before it is refused).
const SETTLE: Duration = Duration::from_secs(5);
/// The same with several nodes: the clock skew the cluster tolerates
/// (`CLOCK_SKEW_MARGIN` of the endpoint actors) on top.
const CLUSTER_SETTLE: Duration = Duration::from_secs(15);

/// The deliveries the feed may serve at `now`: within `retention`, and
/// settled.
fn window(now: NaiveDateTime, retention: Duration, clustered: bool) -> FeedWindow {
    let settle = if clustered { CLUSTER_SETTLE } else { SETTLE };
    let ago = |d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(NaiveDateTime::MIN)
    };
    FeedWindow {
        from: ago(retention),
        until: ago(settle),
    }
}

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
            // The feed leaves erased payloads out (`history::feed`).
            payload: payload(r.body).unwrap_or_else(null),
        }
    }
}

/// JSON `null`.
fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
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
    let window = window(
        crate::store::now(),
        state.settings.history_retention,
        !state.ownership.owns_all(),
    );
    let mut rows = state
        .store
        .run(move |conn| history::feed(conn, sub, &after, window, limit + 1))
        .await?;
    let next = next_cursor(&mut rows, limit, |r| r.cursor.clone());
    Ok(HttpResponse::Ok().json(Feed {
        events: rows.into_iter().map(FeedEvent::from).collect(),
        next_cursor: next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn on_one_node_the_feed_serves_deliveries_routed_more_than_five_seconds_ago() {
        let w = window(at("2026-12-06 12:00:00"), Duration::from_secs(3600), false);
        assert_eq!(w.until, at("2026-12-06 11:59:55"));
        assert_eq!(w.from, at("2026-12-06 11:00:00"));
    }

    #[test]
    fn in_a_cluster_the_feed_also_waits_out_the_clock_skew() {
        let w = window(at("2026-12-06 12:00:00"), Duration::from_secs(3600), true);
        assert_eq!(w.until, at("2026-12-06 11:59:45"));
    }

    #[test]
    fn a_retention_too_long_to_subtract_serves_everything_settled() {
        let w = window(at("2026-12-06 12:00:00"), Duration::MAX, false);
        assert!(w.from < at("2000-01-01 00:00:00"));
        assert_eq!(w.until, at("2026-12-06 11:59:55"));
    }
}
