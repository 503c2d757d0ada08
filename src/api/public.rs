//! The public listener: the subscription API for subscribers (DESIGN.md
//! section 3). A caller sees and changes only its own subscriptions; any
//! other id answers 404.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::{read_json, typed};
use super::openapi::ErrorResponses;
use super::page::{self, PageQuery, next_cursor};
use super::resource::Resource;
use super::{State, format_time, path_id};
use crate::catalog;
use crate::delivery::endpoint::Status;
use crate::delivery::sender;
use crate::endpoint_url::{EndpointError, EndpointUrl};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::AttemptOutcome;
use crate::router::EndpointAddr;
use crate::signing::Secret;
use crate::store::subscriptions::{self, Created, RouteRow};

pub fn routes(cfg: &mut web::ServiceConfig) {
    super::openapi::public_routes(cfg);
    for resource in [
        Resource::at("/v1/subscription/events").get(list_event_types),
        Resource::at("/v1/subscription").get(list).post(create),
        Resource::at("/v1/subscription/{id}")
            .get(get)
            .patch(super::subscription_changes::patch)
            .delete(delete),
        Resource::at("/v1/subscription/{id}/secret")
            .put(super::subscription_changes::rotate_secret),
        Resource::at("/v1/subscription/{id}/test").post(super::subscription_changes::send_test),
    ] {
        cfg.service(resource.done());
    }
    super::deliveries::routes(cfg);
}

/// The body of `POST /v1/subscription`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// A subscribable event type (`GET /v1/subscription/events`).
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub event: String,
    /// A public `https://` (or `http://`) URL that answers a signed
    /// verification POST with a 2xx.
    #[schema(format = "uri")]
    pub endpoint: String,
    /// The signing secret: at least 16 characters, or a `whsec_` key.
    #[schema(min_length = 16)]
    pub secret: String,
}

/// A subscription as its owner sees it (never its secret).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub endpoint: String,
    pub event: String,
    /// RFC 3339 UTC, whole seconds.
    pub last_modified: String,
    /// When its secret was last rotated (RFC 3339 UTC); null if never.
    pub secret_rotated_at: Option<String>,
    pub subscription_id: i64,
}

impl From<&RouteRow> for SubscriptionView {
    fn from(row: &RouteRow) -> Self {
        SubscriptionView {
            endpoint: row.endpoint_url.clone(),
            event: row.subscription.event.clone(),
            last_modified: format_time(row.subscription.last_modified),
            secret_rotated_at: row.subscription.secret_rotated_at.map(format_time),
            subscription_id: row.subscription.id,
        }
    }
}

/// One page of the caller's subscriptions.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionList {
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<String>,
    pub subscriptions: Vec<SubscriptionView>,
}

/// A subscribable event type.
#[derive(Serialize, ToSchema)]
pub struct EventTypeView {
    pub description: String,
    pub name: String,
}

/// Every event type, by name.
pub fn event_type_views(state: &State) -> Vec<EventTypeView> {
    state
        .catalog
        .list()
        .into_iter()
        .map(|(name, description)| EventTypeView { description, name })
        .collect()
}

/// The event types a subscriber may subscribe to.
#[derive(Serialize, ToSchema)]
pub struct SubscribableEvents {
    pub events: Vec<EventTypeView>,
}

#[utoipa::path(get, path = "/v1/subscription/events", tag = "subscriptions",
    security(("bearer" = [])),
    responses((status = 200, body = SubscribableEvents), ErrorResponses))]
pub(crate) async fn list_event_types(_caller: Caller, state: State) -> HttpResponse {
    HttpResponse::Ok().json(SubscribableEvents {
        events: event_type_views(&state),
    })
}

/// `GET /v1/subscription?limit=&cursor=`: oldest first; the default page
/// holds as many as a token may have, so one call lists them all.
#[utoipa::path(get, path = "/v1/subscription", tag = "subscriptions",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = SubscriptionList), ErrorResponses))]
pub(crate) async fn list(
    caller: Caller,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: PageQuery = page::query(req.query_string())?;
    let max = i64::from(state.settings.max_subscriptions_per_token);
    let limit = query.limit(max, max.max(page::MAX_LIMIT))?;
    let after = query.after_id()?;
    let mut rows = state
        .store
        .run(move |conn| {
            subscriptions::page_for_owner(
                conn,
                caller.marketplace_id,
                caller.user_id,
                after,
                limit + 1,
            )
        })
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |r| r.subscription.id.to_string());
    Ok(HttpResponse::Ok().json(SubscriptionList {
        next_cursor,
        subscriptions: rows.iter().map(SubscriptionView::from).collect(),
    }))
}

/// The 409 for a subscription the caller has already.
pub(super) fn duplicate(id: i64) -> ApiError {
    ApiError::Conflict {
        code: ErrorCode::DuplicateSubscription,
        message: format!(
            "you are subscribed to this event at this endpoint already (subscription {id}); nothing was changed"
        ),
        details: Some(json!({ "subscriptionId": id })),
    }
}

/// The 422 past `--max-subscriptions-per-token`.
fn too_many(count: i64) -> ApiError {
    ApiError::unprocessable(
        ErrorCode::TooManySubscriptions,
        format!(
            "this token has {count} active subscriptions, the most allowed (--max-subscriptions-per-token); delete one first"
        ),
    )
}

/// `POST /v1/subscription`: checks the request, then the endpoint (one
/// signed verification call), then stores the subscription.
#[utoipa::path(post, path = "/v1/subscription", tag = "subscriptions",
    security(("bearer" = [])), request_body = CreateSubscription,
    responses((status = 201, body = SubscriptionView), ErrorResponses))]
pub(crate) async fn create(
    caller: Caller,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CreateSubscription = typed(read_json(&req, payload, &state.settings).await?)?;
    Ok(HttpResponse::Created().json(create_for(&state, caller, body).await?))
}

/// Creates a subscription for `caller` (the web portal calls this too).
pub(crate) async fn create_for(
    state: &State,
    caller: Caller,
    body: CreateSubscription,
) -> Result<SubscriptionView, ApiError> {
    let (secret, endpoint) = parse_create(&body)?;
    check_event_type(state, &body.event).await?;
    let max = i64::from(state.settings.max_subscriptions_per_token);
    // Before the verification call: nothing is sent for a refused create.
    // (Checked again when storing, against concurrent creates.)
    check_room(state, caller, &body.event, &endpoint, max).await?;
    verify_endpoint(state, &endpoint, &secret).await?;
    let row = store_subscription(state, caller, body.event, endpoint, secret, max).await?;
    log::info!(
        "subscription {} created: marketplace {} user {} event {} endpoint {}",
        row.subscription.id,
        caller.marketplace_id,
        caller.user_id,
        row.subscription.event,
        row.subscription.endpoint_id
    );
    crate::metrics::EndpointMetrics::subscribe_verification(row.subscription.endpoint_id);
    let answer = SubscriptionView::from(&row);
    // Every event stored from now on, on any node, is routed to it (the
    // insert was a routing change); this also starts its endpoint here.
    catch_up(state).await;
    Ok(answer)
}

/// The secret and the endpoint URL of a create, each parsed.
fn parse_create(body: &CreateSubscription) -> Result<(Secret, EndpointUrl), ApiError> {
    let secret = parse_new_secret(&body.secret)?;
    Ok((secret, parse_endpoint(&body.endpoint)?))
}

/// A secret the caller chose (create, rotation): 400 when it is unusable
/// or too short.
pub(super) fn parse_new_secret(raw: &str) -> Result<Secret, ApiError> {
    Secret::parse_new(raw).map_err(|m| ApiError::bad_request(ErrorCode::InvalidField, m))
}

/// An endpoint URL the caller gave (create, move): 400 when malformed,
/// 422 when well-formed but refused.
pub(super) fn parse_endpoint(raw: &str) -> Result<EndpointUrl, ApiError> {
    EndpointUrl::parse(raw).map_err(|e| match e {
        EndpointError::Invalid(m) => ApiError::bad_request(ErrorCode::InvalidField, m),
        other => ApiError::unprocessable(ErrorCode::EndpointRefused, other.to_string()),
    })
}

/// Refuses an event type nobody may subscribe to: `verification`, or one
/// not in the catalog (read again once, another node may have added it).
async fn check_event_type(state: &State, event: &str) -> Result<(), ApiError> {
    if event == catalog::VERIFICATION {
        return Err(ApiError::unprocessable(
            ErrorCode::UnknownEventType,
            "`verification` is hookrelay's own endpoint check and cannot be subscribed to",
        ));
    }
    let known = state.catalog.contains(event)
        || (state.reload_catalog().await && state.catalog.contains(event));
    if !known {
        return Err(ApiError::unprocessable(
            ErrorCode::UnknownEventType,
            format!(
                "`{event}` is not a subscribable event type; GET /v1/subscription/events lists them"
            ),
        ));
    }
    Ok(())
}

/// Refuses a subscription the caller has already, or one past the most
/// a token may have.
async fn check_room(
    state: &State,
    caller: Caller,
    event: &str,
    endpoint: &EndpointUrl,
    max: i64,
) -> Result<(), ApiError> {
    let (event, url) = (event.to_string(), endpoint.as_str().to_string());
    let (same, count) = state
        .store
        .run(move |conn| {
            let (mp, user) = (caller.marketplace_id, caller.user_id);
            Ok((
                subscriptions::find_same(conn, mp, user, &event, &url)?,
                subscriptions::count_for_owner(conn, mp, user)?,
            ))
        })
        .await?;
    if let Some(id) = same {
        return Err(duplicate(id));
    }
    if count >= max {
        return Err(too_many(count));
    }
    Ok(())
}

/// Checks the endpoint is public and answers a signed verification call.
pub(super) async fn verify_endpoint(
    state: &State,
    endpoint: &EndpointUrl,
    secret: &Secret,
) -> Result<(), ApiError> {
    endpoint
        .check_reachable_safely(state.settings.allow_private_endpoints)
        .await
        .map_err(|e| match e {
            EndpointError::Private(m) => ApiError::unprocessable(ErrorCode::PrivateEndpoint, m),
            other => {
                ApiError::unprocessable(ErrorCode::EndpointValidationFailed, other.to_string())
            }
        })?;
    let attempt = sender::verify(endpoint, secret, state.settings.verification_timeout).await;
    if matches!(attempt.outcome, AttemptOutcome::Refused) {
        // The client's own check at connect time (DNS changed since above).
        let why = attempt.error.unwrap_or_default();
        return Err(ApiError::unprocessable(ErrorCode::PrivateEndpoint, why));
    }
    if let Some(error) = attempt.error {
        return Err(ApiError::unprocessable(
            ErrorCode::EndpointValidationFailed,
            format!(
                "the endpoint did not accept the verification call ({error}); it must answer a signed POST with any 2xx status within {}. Nothing was stored",
                humantime::format_duration(state.settings.verification_timeout)
            ),
        ));
    }
    Ok(())
}

/// Stores the subscription (and its endpoint, revived if it was dead);
/// a duplicate or one too many created meanwhile is refused.
async fn store_subscription(
    state: &State,
    caller: Caller,
    event: String,
    endpoint: EndpointUrl,
    secret: Secret,
    max: i64,
) -> Result<RouteRow, ApiError> {
    let endpoint_url = endpoint.as_str().to_string();
    let url = endpoint_url.clone();
    let created = state
        .store
        .run(move |conn| {
            let endpoint_id = subscriptions::endpoint_id_for(conn, &url)?;
            crate::store::endpoints::revive(conn, endpoint_id)?;
            subscriptions::create(
                conn,
                caller.marketplace_id,
                caller.user_id,
                &event,
                endpoint_id,
                secret.as_str(),
                max,
            )
        })
        .await?;
    match created {
        Created::New(subscription) => Ok(RouteRow {
            subscription,
            endpoint_url,
        }),
        Created::Duplicate(id) => Err(duplicate(id)),
        Created::TooMany(count) => Err(too_many(count)),
    }
}

/// One subscription of the caller's, with its endpoint's health.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDetail {
    pub endpoint: String,
    pub endpoint_health: EndpointHealth,
    pub event: String,
    pub last_modified: String,
    pub subscription_id: i64,
}

/// The health of a subscription's endpoint, as its actor on this node
/// knows it; only `state` (`unknown`) when no actor here runs it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub last_failure_at: Option<Option<chrono::DateTime<chrono::Utc>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub last_failure_reason: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub last_success_at: Option<Option<chrono::DateTime<chrono::Utc>>>,
    /// `healthy`, `failing`, `dead`, … or `unknown`.
    pub state: String,
}

impl EndpointHealth {
    pub fn of(status: Option<crate::delivery::endpoint::EndpointStatus>) -> Self {
        match status {
            Some(s) => EndpointHealth {
                consecutive_failures: Some(s.consecutive_failures),
                last_failure_at: Some(s.last_failure_at),
                last_failure_reason: Some(s.last_failure_reason),
                last_success_at: Some(s.last_success_at),
                state: s.state.to_string(),
            },
            None => EndpointHealth {
                consecutive_failures: None,
                last_failure_at: None,
                last_failure_reason: None,
                last_success_at: None,
                state: "unknown".into(),
            },
        }
    }
}

#[utoipa::path(get, path = "/v1/subscription/{id}", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, body = SubscriptionDetail), ErrorResponses))]
pub(crate) async fn get(
    caller: Caller,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "subscription")?;
    let row = state
        .store
        .run(move |conn| {
            subscriptions::get_for_owner(conn, id, caller.marketplace_id, caller.user_id)
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no subscription {id} of yours")))?;
    let health = EndpointHealth::of(live_status(&state, row.subscription.endpoint_id).await);
    let view = SubscriptionView::from(&row);
    Ok(HttpResponse::Ok().json(SubscriptionDetail {
        endpoint: view.endpoint,
        endpoint_health: health,
        event: view.event,
        last_modified: view.last_modified,
        subscription_id: view.subscription_id,
    }))
}

/// The live figures of an endpoint whose actor runs on this node.
pub(crate) async fn live_status(
    state: &State,
    endpoint_id: i64,
) -> Option<crate::delivery::endpoint::EndpointStatus> {
    match state.router.send(EndpointAddr(endpoint_id)).await {
        Ok(Some(addr)) => addr.send(Status).await.ok(),
        _ => None,
    }
}

#[utoipa::path(delete, path = "/v1/subscription/{id}", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Removed; its pending deliveries are cancelled"),
        ErrorResponses))]
pub(crate) async fn delete(
    caller: Caller,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "subscription")?;
    delete_for(&state, caller, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes the caller's subscription `id` (the web portal calls this too).
pub(crate) async fn delete_for(state: &State, caller: Caller, id: i64) -> Result<(), ApiError> {
    let removed = state
        .store
        .run(move |conn| {
            if subscriptions::get_for_owner(conn, id, caller.marketplace_id, caller.user_id)?
                .is_none()
            {
                return Ok(0);
            }
            subscriptions::deactivate(conn, &[id], "deleted by its owner")
        })
        .await?;
    if removed == 0 {
        return Err(ApiError::NotFound(format!(
            "there is no subscription {id} of yours"
        )));
    }
    // Every event stored from now on, on any node, skips it (the delete
    // was a routing change); this also updates this node's table now.
    catch_up(state).await;
    Ok(())
}

/// Brings this node's routing table up to date after a subscription
/// change it made. Not needed for correctness (a group of events stored
/// later routes itself again when the table is stale), so a failure is
/// only logged.
pub(super) async fn catch_up(state: &State) {
    if let Err(e) = state.publisher.routes().catch_up(&state.store).await {
        log::warn!("could not read the routing change back: {e}");
    }
}
