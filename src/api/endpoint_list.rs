//! `GET /internal/v1/endpoints`: every endpoint with its health, the live
//! figures of those whose actors run on this node, and which node
//! delivers for it.

use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::State;
use super::auth::Operator;
use super::endpoint_policy::PolicyView;
use super::openapi::ErrorResponses;
use super::page::{self, PageQuery, next_cursor};
use crate::delivery::endpoint::{EndpointStatus, Status, paused_by, shown_state};
use crate::delivery::health::State as Health;
use crate::error::ApiError;
use crate::router::EndpointAddr;
use crate::store::endpoints;

/// An endpoint as operators see it. The live figures (`queueDepth`,
/// `inFlight`, …) are null when no actor on this node runs it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub backlog_in_database: Option<bool>,
    /// The current adaptive concurrency window: how many requests may be
    /// in flight at once; null when its actor does not run on this node.
    pub concurrency: Option<u32>,
    pub consecutive_failures: u32,
    /// What an operator set for it (`PATCH /internal/v1/endpoints/{id}`).
    pub policy: PolicyView,
    /// Why it was declared dead; only on a dead endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_reason: Option<String>,
    pub failed_verifications: u32,
    pub held_until: Option<DateTime<Utc>>,
    pub id: i64,
    pub in_flight: Option<u32>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure_reason: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub next_verification_at: Option<DateTime<Utc>>,
    /// The node delivering for it; null when dead or unknown.
    pub owner_node: Option<String>,
    /// `operator` while an operator holds it, `health` while self-healing
    /// paused it, else null.
    pub paused_by: Option<String>,
    pub queue_depth: Option<usize>,
    /// `healthy`, `failing`, `paused` (also while an operator holds it),
    /// `dead`.
    pub state: String,
    /// Its active subscriptions.
    pub subscription_count: i64,
    pub url: String,
    pub waiting_for_retry: Option<u32>,
}

/// One page of endpoints.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointList {
    pub endpoints: Vec<EndpointView>,
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<String>,
}

pub(crate) type Row = (endpoints::EndpointRow, i64);

#[utoipa::path(get, path = "/internal/v1/endpoints", tag = "endpoints",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = EndpointList), ErrorResponses))]
pub(crate) async fn list_endpoints(
    _op: Operator,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: PageQuery = page::query(req.query_string())?;
    let limit = query.limit(page::DEFAULT_LIMIT, page::MAX_LIMIT)?;
    let after = query.after_id()?;
    let mut rows: Vec<Row> = state
        .store
        .run(move |conn| endpoints::page(conn, after, limit + 1))
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |(r, _)| r.id.to_string());
    let endpoints = views(&state, rows).await;
    Ok(HttpResponse::Ok().json(EndpointList {
        endpoints,
        next_cursor,
    }))
}

/// The views of stored endpoints, each as listed: with the live figures of
/// those whose actors run here.
pub(crate) async fn views(state: &State, rows: Vec<Row>) -> Vec<EndpointView> {
    let statuses = live_statuses(state, &rows).await;
    let single_node = state.ownership.owns_all();
    rows.into_iter()
        .zip(statuses)
        .map(|((row, subscriptions), live)| {
            let owner = owner_node(&row, live.is_some(), single_node, &state.node_id);
            view(row, subscriptions, live, owner)
        })
        .collect()
}

/// The live figures of the endpoints whose actors run here, asked of all
/// of them at once.
async fn live_statuses(state: &State, rows: &[Row]) -> Vec<Option<EndpointStatus>> {
    futures_util::future::join_all(rows.iter().map(|(row, _)| {
        let router = state.router.clone();
        let id = row.id;
        async move {
            match router.send(EndpointAddr(id)).await {
                Ok(Some(addr)) => addr.send(Status).await.ok(),
                _ => None,
            }
        }
    }))
    .await
}

/// The node delivering for an endpoint: none when dead; this one when its
/// actor runs here (or it is the only node); else the stored owner.
fn owner_node(
    row: &endpoints::EndpointRow,
    runs_here: bool,
    single_node: bool,
    this_node: &str,
) -> Option<String> {
    if row.health.state == "dead" {
        None
    } else if runs_here || single_node {
        Some(this_node.to_string())
    } else {
        row.owner_node.clone()
    }
}

/// An endpoint's view: the owning actor's live figures when it runs here,
/// else the stored ones.
fn view(
    row: endpoints::EndpointRow,
    subscriptions: i64,
    live: Option<EndpointStatus>,
    owner_node: Option<String>,
) -> EndpointView {
    let dead_reason = row
        .dead_reason
        .clone()
        .filter(|_| row.health.state == "dead");
    let h = row.health;
    let operator_hold = row.policy.operator_paused;
    let health_state = Health::parse(&h.state);
    let stored = |t: Option<chrono::NaiveDateTime>| t.map(|t| t.and_utc());
    let mut view = EndpointView {
        backlog_in_database: None,
        concurrency: None,
        consecutive_failures: h.consecutive_failures as u32,
        dead_reason,
        failed_verifications: h.failed_verifications as u32,
        held_until: None,
        id: row.id,
        in_flight: None,
        last_failure_at: stored(h.last_failure_at),
        last_failure_reason: h.last_failure_reason,
        last_success_at: stored(h.last_success_at),
        next_verification_at: stored(h.next_verification_at),
        owner_node,
        paused_by: paused_by(operator_hold, health_state).map(str::to_string),
        policy: PolicyView::from(row.policy),
        queue_depth: None,
        state: shown_state(operator_hold, health_state).to_string(),
        subscription_count: subscriptions,
        url: row.url,
        waiting_for_retry: None,
    };
    if let Some(s) = live {
        view.backlog_in_database = Some(s.backlog_in_database);
        view.concurrency = Some(s.concurrency);
        view.paused_by = s.paused_by.map(str::to_string);
        view.consecutive_failures = s.consecutive_failures;
        view.failed_verifications = s.failed_verifications;
        view.held_until = s.held_until;
        view.in_flight = Some(s.in_flight);
        view.last_failure_at = s.last_failure_at;
        view.last_failure_reason = s.last_failure_reason;
        view.last_success_at = s.last_success_at;
        view.next_verification_at = s.next_verification_at;
        view.queue_depth = Some(s.queue_depth);
        view.state = s.state.to_string();
        view.waiting_for_retry = Some(s.waiting_for_retry);
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::endpoints::HealthRow;

    fn row(state: &str, stored_owner: Option<&str>) -> endpoints::EndpointRow {
        endpoints::EndpointRow {
            id: 7,
            url: "https://example.com/hook".into(),
            health: HealthRow {
                state: state.into(),
                consecutive_failures: 2,
                failed_verifications: 0,
                last_success_at: None,
                last_failure_at: None,
                last_failure_reason: Some("503".into()),
                next_verification_at: None,
            },
            owner_node: stored_owner.map(str::to_string),
            dead_reason: Some("gone".into()),
            policy: endpoints::PolicyRow::default(),
        }
    }

    #[test]
    fn a_dead_endpoint_has_no_owner_node() {
        assert_eq!(owner_node(&row("dead", Some("b")), true, true, "a"), None);
    }

    #[test]
    fn an_endpoint_run_here_or_on_a_single_node_is_owned_by_this_node() {
        let r = row("healthy", Some("b"));
        assert_eq!(owner_node(&r, true, false, "a").as_deref(), Some("a"));
        assert_eq!(owner_node(&r, false, true, "a").as_deref(), Some("a"));
    }

    #[test]
    fn an_endpoint_run_elsewhere_in_a_cluster_is_owned_by_the_stored_node() {
        let r = row("healthy", Some("b"));
        assert_eq!(owner_node(&r, false, false, "a").as_deref(), Some("b"));
    }

    #[test]
    fn an_endpoint_not_run_here_shows_stored_figures_and_no_live_ones() {
        let v = view(row("failing", None), 3, None, None);
        assert_eq!(v.consecutive_failures, 2);
        assert_eq!(v.subscription_count, 3);
        assert_eq!(v.queue_depth, None);
        assert_eq!(v.concurrency, None);
        assert_eq!(v.paused_by, None);
        assert_eq!(
            view(row("paused", None), 1, None, None)
                .paused_by
                .as_deref(),
            Some("health")
        );
        assert_eq!(
            v.dead_reason, None,
            "only a dead endpoint has a dead reason"
        );
        assert_eq!(
            view(row("dead", None), 0, None, None)
                .dead_reason
                .as_deref(),
            Some("gone")
        );
    }
}
