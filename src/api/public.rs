//! The public listener: the subscription API for subscribers (DESIGN.md
//! section 3). A caller sees and changes only its own subscriptions; any
//! other id answers 404.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::body::{read_json, typed};
use super::page::{PageQuery, next_cursor};
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSubscription {
    event: String,
    endpoint: String,
    secret: String,
}

pub(super) fn subscription_json(row: &RouteRow) -> serde_json::Value {
    json!({
        "subscriptionId": row.subscription.id,
        "event": row.subscription.event,
        "endpoint": row.endpoint_url,
        "lastModified": format_time(row.subscription.last_modified),
        "secretRotatedAt": row.subscription.secret_rotated_at.map(format_time),
    })
}

async fn list_event_types(_caller: Caller, state: State) -> HttpResponse {
    let events: Vec<_> = state
        .catalog
        .list()
        .into_iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    HttpResponse::Ok().json(json!({ "events": events }))
}

/// `GET /v1/subscription?limit=&cursor=`: oldest first; the default page
/// holds as many as a token may have, so one call lists them all.
async fn list(caller: Caller, state: State, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let query = web::Query::<PageQuery>::from_query(req.query_string())
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("bad query parameters: {e}"),
            )
        })?
        .into_inner();
    let max = i64::from(state.settings.max_subscriptions_per_token);
    let limit = query.limit(max, max.max(1000))?;
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
    let next = next_cursor(&mut rows, limit, |r| r.subscription.id.to_string());
    let items: Vec<_> = rows.iter().map(subscription_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "subscriptions": items, "nextCursor": next })))
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
async fn create(
    caller: Caller,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CreateSubscription = typed(read_json(&req, payload, &state.settings).await?)?;
    let (secret, endpoint) = parse_create(&body)?;
    check_event_type(&state, &body.event).await?;
    let max = i64::from(state.settings.max_subscriptions_per_token);
    // Before the verification call: nothing is sent for a refused create.
    // (Checked again when storing, against concurrent creates.)
    check_room(&state, caller, &body.event, &endpoint, max).await?;
    verify_endpoint(&state, &endpoint, &secret).await?;
    let row = store_subscription(&state, caller, body.event, endpoint, secret, max).await?;
    log::info!(
        "subscription {} created: marketplace {} user {} event {} endpoint {}",
        row.subscription.id,
        caller.marketplace_id,
        caller.user_id,
        row.subscription.event,
        row.subscription.endpoint_id
    );
    crate::metrics::EndpointMetrics::subscribe_verification(row.subscription.endpoint_id);
    let answer = subscription_json(&row);
    // Every event stored from now on, on any node, is routed to it (the
    // insert was a routing change); this also starts its endpoint here.
    catch_up(&state).await;
    Ok(HttpResponse::Created().json(answer))
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

async fn get(
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
    let mut answer = subscription_json(&row);
    let health = match state
        .router
        .send(EndpointAddr(row.subscription.endpoint_id))
        .await
    {
        Ok(Some(addr)) => addr.send(Status).await.ok(),
        _ => None,
    };
    answer["endpointHealth"] = match health {
        Some(s) => json!({
            "state": s.state,
            "consecutiveFailures": s.consecutive_failures,
            "lastSuccessAt": s.last_success_at,
            "lastFailureAt": s.last_failure_at,
            "lastFailureReason": s.last_failure_reason,
        }),
        None => json!({ "state": "unknown" }),
    };
    Ok(HttpResponse::Ok().json(answer))
}

async fn delete(
    caller: Caller,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_id(&id, "subscription")?;
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
    catch_up(&state).await;
    Ok(HttpResponse::NoContent().finish())
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
