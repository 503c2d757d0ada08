//! The internal listener: event ingest (single and batch), tokens, the
//! event-type catalog, endpoints, dead letters and health. Every route but
//! `/health` requires the internal token when one is configured.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Operator;
use super::body::{parse_json, read_body, read_json, typed};
use super::page::{id_cursor, next_cursor};
use super::resource::Resource;
use super::{State, batch, format_time};
use crate::catalog;
use crate::delivery::endpoint::{Job, Status};
use crate::error::{ApiError, ErrorCode};
use crate::event::{Event, EventError, MAX_EVENT_ID_LEN};
use crate::ingest::{Incoming, PublishError, Published};
use crate::metrics::METRICS;
use crate::router::{EndpointAddr, Replay};
use crate::signing::Secret;
use crate::store::catalog as catalog_store;
use crate::store::deliveries::{self, ReplayRefused};
use crate::store::endpoints;
use crate::token;

/// Most items a list call returns.
const MAX_PAGE: i64 = 500;

pub fn routes(cfg: &mut web::ServiceConfig) {
    for resource in [
        Resource::at("/health").get(health),
        Resource::at("/metrics").get(metrics),
        Resource::at("/internal/v1/events").post(push_one),
        Resource::at("/internal/v1/events/batch").post(batch::push_batch),
        Resource::at("/internal/v1/events/{eventId}").get(super::event_lookup::event),
        Resource::at("/internal/v1/tokens").post(create_token),
        Resource::at("/internal/v1/event-types").get(list_event_types),
        Resource::at("/internal/v1/event-types/{name}").put(put_event_type),
        Resource::at("/internal/v1/endpoints").get(list_endpoints),
        Resource::at("/internal/v1/dead-letters").get(list_dead_letters),
        Resource::at("/internal/v1/dead-letters/{id}/replay").post(replay_dead_letter),
    ] {
        cfg.service(resource.done());
    }
}

async fn health(state: State) -> HttpResponse {
    let started = state.ready.load(Ordering::Relaxed);
    let trouble = state.store.trouble();
    let ready = started && trouble.is_none();
    let mut body = json!({
        "status": "ok",
        "ready": ready,
        "node": &*state.node_id,
        "backend": format!("{:?}", state.store.backend()).to_lowercase(),
    });
    if let Some(trouble) = trouble {
        body["reason"] = json!(trouble.explain());
        body["storage"] = json!(trouble.kind());
    } else if !started {
        body["reason"] = json!("starting (its endpoint actors are being started) or shutting down");
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(_op: Operator) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(METRICS.render())
}

fn event_error(e: EventError) -> ApiError {
    let error = match e {
        EventError::Invalid(m) => ApiError::bad_request(ErrorCode::InvalidEvent, m),
        EventError::UnknownEventType(m) => ApiError::unprocessable(ErrorCode::UnknownEventType, m),
    };
    METRICS
        .ingest_rejected
        .with_label_values(&[error.code().as_str()])
        .inc();
    error
}

/// Validates one pushed event from its JSON text: the fast typed path, or
/// else the `Value` path, which names what is wrong.
fn validated(state: &State, json: &[u8]) -> Result<Result<Event, EventError>, ApiError> {
    let known = |t: &str| state.catalog.contains(t);
    Ok(match Event::from_json(json, known) {
        Some(checked) => checked,
        None => Event::from_value(&parse_json(json)?, known),
    })
}

/// Checks pushed events; an unknown event type is looked up again in the
/// database once per request (in a cluster another node may have just
/// registered it).
#[derive(Default)]
pub(super) struct EventChecker {
    reloaded: bool,
}

impl EventChecker {
    pub(super) async fn check(&mut self, state: &State, json: &[u8]) -> Result<Event, ApiError> {
        let checked = validated(state, json)?;
        if matches!(checked, Err(EventError::UnknownEventType(_))) && !self.reloaded {
            self.reloaded = true;
            if state.reload_catalog().await {
                return validated(state, json)?.map_err(event_error);
            }
        }
        checked.map_err(event_error)
    }
}

fn publish_error(e: PublishError) -> ApiError {
    match e {
        PublishError::Overloaded(_) => ApiError::Unavailable(e.to_string()),
        PublishError::Storage(_) => ApiError::StorageUnavailable(format!(
            "{e}; push again in a few seconds (with an Idempotency-Key to avoid duplicates)"
        )),
        PublishError::Failed(_) => ApiError::internal("publish", e),
    }
}

/// Longest wait for a publish to be taken into a group commit before the
/// caller is told to retry (nothing of it is then stored). Once taken, its
/// outcome comes within the database's own bounds (a pooled connection in
/// 2 s, SQLite's lock in 10 s).
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Publishes events and waits for their commit.
pub(super) async fn publish(
    state: &State,
    events: Vec<Incoming>,
) -> Result<Vec<Published>, ApiError> {
    let publication = state
        .publisher
        .publish(events)
        .map_err(|_| ApiError::Unavailable("hookrelay is overloaded; retry shortly".into()))?;
    match publication.answer_within(COMMIT_WAIT).await {
        Some(answer) => answer
            .map_err(|e| {
                ApiError::internal(
                    "publish",
                    format!("a publish was dropped before its commit ({e})"),
                )
            })?
            .map_err(publish_error),
        None => Err(ApiError::StorageUnavailable(format!(
            "the events were not stored: the database did not take them within {} ({}); push again",
            humantime::format_duration(COMMIT_WAIT),
            state
                .store
                .trouble()
                .map_or_else(|| "it is slow or overloaded".to_string(), |t| t.explain())
        ))),
    }
}

/// The 409 for an idempotency key used before with a different event.
pub(super) fn idempotency_conflict(earlier: &str) -> ApiError {
    ApiError::Conflict {
        code: ErrorCode::IdempotencyConflict,
        message: format!(
            "this idempotency key (Idempotency-Key or eventId) was used for a different event ({earlier}) within --idempotency-retention; nothing was stored. Use a new key for a new event"
        ),
        details: Some(json!({ "eventId": earlier })),
    }
}

/// The answer to a single push.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted<'a> {
    event_id: &'a str,
    deliveries: usize,
}

async fn push_one(
    _op: Operator,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let header_key = match req.headers().get("Idempotency-Key") {
        None => None,
        Some(v) => {
            let key = v.to_str().map_err(|_| {
                ApiError::bad_request(
                    ErrorCode::InvalidHeader,
                    "Idempotency-Key must be printable ASCII",
                )
            })?;
            if key.is_empty() || key.len() > MAX_EVENT_ID_LEN {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidHeader,
                    format!("Idempotency-Key must be 1 to {MAX_EVENT_ID_LEN} characters"),
                ));
            }
            Some(key.to_string())
        }
    };
    let body = read_body(&req, payload, &state.settings).await?;
    let event = EventChecker::default().check(&state, &body).await?;
    let idempotency_key = header_key.or_else(|| event.event_id.clone());
    let mut published = publish(
        &state,
        vec![Incoming {
            event,
            idempotency_key,
        }],
    )
    .await?;
    let p = published
        .pop()
        .ok_or_else(|| ApiError::internal("push", "the router answered no result"))?;
    if p.conflicting {
        return Err(idempotency_conflict(&p.event_id));
    }
    let mut answer = HttpResponse::Accepted();
    if p.repeated {
        answer.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(answer.json(Accepted {
        event_id: &p.event_id,
        deliveries: p.deliveries,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateToken {
    marketplace_id: i64,
    user_id: i64,
}

async fn create_token(
    _op: Operator,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body: CreateToken = typed(read_json(&req, payload, &state.settings).await?)?;
    let (mp, user) = (body.marketplace_id, body.user_id);
    let token = state
        .store
        .run(move |conn| token::create(conn, mp, user))
        .await?;
    Ok(
        HttpResponse::Created()
            .json(json!({ "token": token, "marketplaceId": mp, "userId": user })),
    )
}

async fn list_event_types(_op: Operator, state: State) -> HttpResponse {
    let items: Vec<_> = state
        .catalog
        .list()
        .into_iter()
        .map(|(name, description)| json!({ "name": name, "description": description }))
        .collect();
    HttpResponse::Ok().json(json!({ "eventTypes": items }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutEventType {
    description: String,
}

async fn put_event_type(
    _op: Operator,
    state: State,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    catalog::validate_name(&name)
        .map_err(|m| ApiError::bad_request(ErrorCode::InvalidEventType, m))?;
    let body: PutEventType = typed(read_json(&req, payload, &state.settings).await?)?;
    let description = body.description.trim().to_string();
    if description.is_empty() || description.len() > 500 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "`description` must be 1 to 500 characters",
        ));
    }
    let (n, d) = (name.clone(), description.clone());
    let created = state
        .store
        .run(move |conn| catalog_store::upsert(conn, &n, &d))
        .await?;
    state.catalog.insert(name.clone(), description.clone());
    let body = json!({ "name": name, "description": description });
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
    endpoint: Option<i64>,
    subscription: Option<i64>,
}

/// Items per page when `limit` is not given.
const DEFAULT_PAGE: i64 = 100;

impl Page {
    fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_PAGE)
    }
}

fn page(req: &HttpRequest) -> Result<Page, ApiError> {
    let page = web::Query::<Page>::from_query(req.query_string())
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("bad query parameters: {e}"),
            )
        })?
        .into_inner();
    if let Some(l) = page.limit
        && !(1..=MAX_PAGE).contains(&l)
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("`limit` must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(page)
}

async fn list_endpoints(
    _op: Operator,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page = page(&req)?;
    let limit = page.limit();
    let after = id_cursor(page.cursor.as_deref())?;
    let mut rows = state
        .store
        .run(move |conn| endpoints::page(conn, after, limit + 1))
        .await?;
    let next = next_cursor(&mut rows, limit, |(r, _)| r.id.to_string());
    let single_node = state.ownership.owns_all();
    // The live figures of the endpoints whose actors run here, asked of
    // all of them at once.
    let statuses = futures_util::future::join_all(rows.iter().map(|(row, _)| {
        let router = state.router.clone();
        let id = row.id;
        async move {
            match router.send(EndpointAddr(id)).await {
                Ok(Some(addr)) => addr.send(Status).await.ok(),
                _ => None,
            }
        }
    }))
    .await;
    let mut items = Vec::with_capacity(rows.len());
    for ((row, subscriptions), local) in rows.into_iter().zip(statuses) {
        let owner = match (&local, single_node, row.health.state.as_str()) {
            (_, _, "dead") => None,
            (Some(_), _, _) | (None, true, _) => Some(state.node_id.to_string()),
            (None, false, _) => row.owner_node.clone(),
        };
        let mut item = match local {
            // The owning actor on this node knows the live figures.
            Some(s) => serde_json::to_value(&s).unwrap_or_default(),
            None => json!({
                "id": row.id,
                "url": row.url,
                "state": row.health.state,
                "queueDepth": null,
                "inFlight": null,
                "consecutiveFailures": row.health.consecutive_failures,
                "failedVerifications": row.health.failed_verifications,
                "lastSuccessAt": row.health.last_success_at.map(|t| t.and_utc()),
                "lastFailureAt": row.health.last_failure_at.map(|t| t.and_utc()),
                "lastFailureReason": row.health.last_failure_reason,
                "nextVerificationAt": row.health.next_verification_at.map(|t| t.and_utc()),
            }),
        };
        item["subscriptionCount"] = json!(subscriptions);
        item["ownerNode"] = json!(owner);
        if row.dead_reason.is_some() && row.health.state == "dead" {
            item["deadReason"] = json!(row.dead_reason);
        }
        items.push(item);
    }
    Ok(HttpResponse::Ok().json(json!({ "endpoints": items, "nextCursor": next })))
}

async fn list_dead_letters(
    _op: Operator,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let page = page(&req)?;
    let limit = page.limit();
    let (endpoint, subscription, cursor) = (page.endpoint, page.subscription, page.cursor);
    let mut rows = state
        .store
        .run(move |conn| {
            deliveries::dead_letters(conn, endpoint, subscription, cursor.as_deref(), limit + 1)
        })
        .await?;
    let next = next_cursor(&mut rows, limit, |r| r.id.clone());
    let items: Vec<_> = rows
        .into_iter()
        .map(|r| {
            json!({
                "id": r.id,
                "eventId": r.event_id,
                "subscriptionId": r.subscription_id,
                "endpointId": r.endpoint_id,
                "endpoint": r.endpoint_url,
                "attempts": r.attempts,
                "lastError": r.last_error,
                "failedAt": format_time(r.failed_at),
                "event": serde_json::from_str::<Value>(&r.body).unwrap_or(Value::String(r.body)),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "deadLetters": items, "nextCursor": next })))
}

async fn replay_dead_letter(
    _op: Operator,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let lookup = id.clone();
    let outcome = state
        .store
        .run(move |conn| deliveries::replay(conn, &lookup))
        .await?;
    let (row, endpoint_id, endpoint_url) = match outcome {
        Ok(found) => found,
        Err(ReplayRefused::NotFound | ReplayRefused::NotFinished(_)) => {
            return Err(ApiError::NotFound(format!(
                "there is no dead letter `{id}`"
            )));
        }
        Err(ReplayRefused::SubscriptionInactive) => {
            return Err(ApiError::unprocessable(
                ErrorCode::SubscriptionInactive,
                format!(
                    "dead letter `{id}` belongs to a subscription that was removed; it cannot be replayed"
                ),
            ));
        }
    };
    send_again(&state, &row, endpoint_id, endpoint_url)?;
    Ok(HttpResponse::Accepted().json(json!({ "id": row.id, "status": "pending" })))
}

/// Hands a delivery put back in its queue (`deliveries::replay`, `resend`)
/// to its endpoint's actor, wherever it runs.
pub(super) fn send_again(
    state: &State,
    row: &deliveries::JobRow,
    endpoint_id: i64,
    endpoint_url: String,
) -> Result<(), ApiError> {
    let secret = Secret::parse(&row.secret)
        .map_err(|e| ApiError::internal("replay", format!("stored secret unusable: {e}")))?;
    let job = Job::new(
        row.id.clone().into(),
        row.subscription_id,
        std::sync::Arc::new(secret.into()),
        row.body.clone().into(),
    );
    state.router.do_send(Replay {
        endpoint_id,
        endpoint_url,
        job,
    });
    Ok(())
}
