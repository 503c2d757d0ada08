//! `GET /internal/v1/subscriptions`: operators find subscriptions, active
//! or removed, by marketplace, user, endpoint and state; removed ones say
//! when and why.

use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Operator;
use super::openapi::ErrorResponses;
use super::page::{self, next_cursor};
use super::{State, format_time};
use crate::error::{ApiError, ErrorCode};
use crate::store::subscriptions::{self, EndpointFilter, RouteRow, Search};

/// A subscription's state as searched and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionState {
    Active,
    Removed,
}

/// The filters of the search; none given: every subscription.
#[derive(Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    pub marketplace_id: Option<i64>,
    pub user_id: Option<i64>,
    /// An endpoint's id, or its URL exactly as subscribed.
    pub endpoint: Option<String>,
    #[param(inline)]
    pub state: Option<SubscriptionState>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A subscription as operators see it (never its secret).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorSubscription {
    /// RFC 3339 UTC.
    pub created_at: String,
    pub endpoint: String,
    pub endpoint_id: i64,
    pub event: String,
    pub last_modified: String,
    pub marketplace_id: i64,
    /// When it was removed; only on a removed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<String>,
    /// Why it was removed (by its owner, its endpoint dead, …); only on a
    /// removed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_reason: Option<String>,
    pub state: SubscriptionState,
    pub subscription_id: i64,
    pub user_id: i64,
}

impl From<RouteRow> for OperatorSubscription {
    fn from(row: RouteRow) -> Self {
        let s = row.subscription;
        let state = if s.active {
            SubscriptionState::Active
        } else {
            SubscriptionState::Removed
        };
        OperatorSubscription {
            created_at: format_time(s.created_at),
            endpoint: row.endpoint_url,
            endpoint_id: s.endpoint_id,
            event: s.event,
            last_modified: format_time(s.last_modified),
            marketplace_id: s.marketplace_id,
            removed_at: s.deactivated_at.filter(|_| !s.active).map(format_time),
            removed_reason: s.deactivation_reason.filter(|_| !s.active),
            state,
            subscription_id: s.id,
            user_id: s.user_id,
        }
    }
}

/// One page of the search.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorSubscriptionList {
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<String>,
    pub subscriptions: Vec<OperatorSubscription>,
}

/// The `endpoint` filter: digits are an endpoint's id, anything else its
/// URL; empty is refused.
fn endpoint_filter(raw: &str) -> Result<EndpointFilter, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            "`endpoint` must be an endpoint's id or its URL; leave it out to match any",
        ));
    }
    Ok(match raw.parse::<i64>() {
        Ok(id) => EndpointFilter::Id(id),
        Err(_) => EndpointFilter::Url(raw.to_string()),
    })
}

/// The store's search from the query's filters.
fn search_of(query: &SearchQuery) -> Result<Search, ApiError> {
    Ok(Search {
        marketplace_id: query.marketplace_id,
        user_id: query.user_id,
        endpoint: query.endpoint.as_deref().map(endpoint_filter).transpose()?,
        active: query.state.map(|s| s == SubscriptionState::Active),
    })
}

#[utoipa::path(get, path = "/internal/v1/subscriptions", tag = "subscriptions",
    security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = OperatorSubscriptionList), ErrorResponses))]
pub(crate) async fn search(
    _op: Operator,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: SearchQuery = page::query(req.query_string())?;
    Ok(HttpResponse::Ok().json(search_page(&state, &query).await?))
}

/// One page of the search (the web console calls this too).
pub(crate) async fn search_page(
    state: &State,
    query: &SearchQuery,
) -> Result<OperatorSubscriptionList, ApiError> {
    let limit = page::limit_within(query.limit, page::DEFAULT_LIMIT, page::MAX_LIMIT)?;
    let after = page::id_cursor(query.cursor.as_deref())?;
    let search = search_of(query)?;
    let mut rows = state
        .store
        .run(move |conn| subscriptions::search(conn, &search, after, limit + 1))
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |r| r.subscription.id.to_string());
    Ok(OperatorSubscriptionList {
        next_cursor,
        subscriptions: rows.into_iter().map(OperatorSubscription::from).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_filter_of_digits_is_an_id_and_anything_else_a_url() {
        assert_eq!(endpoint_filter("42").unwrap(), EndpointFilter::Id(42));
        assert_eq!(
            endpoint_filter("https://example.com/hook").unwrap(),
            EndpointFilter::Url("https://example.com/hook".into())
        );
        assert!(endpoint_filter("").is_err());
    }

    #[test]
    fn the_state_filter_picks_active_or_removed_ones_and_none_picks_both() {
        let query = |state| SearchQuery {
            marketplace_id: Some(1),
            user_id: None,
            endpoint: None,
            state,
            limit: None,
            cursor: None,
        };
        assert_eq!(search_of(&query(None)).unwrap().active, None);
        let active = search_of(&query(Some(SubscriptionState::Active))).unwrap();
        assert_eq!(active.active, Some(true));
        assert_eq!(active.marketplace_id, Some(1));
        let removed = search_of(&query(Some(SubscriptionState::Removed))).unwrap();
        assert_eq!(removed.active, Some(false));
    }
}
