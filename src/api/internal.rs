//! The internal listener: event ingest (single and batch), tokens, the
//! event-type catalog, metrics and health, and the registration of all its
//! routes (endpoints, dead letters and the subscription search have files
//! of their own). Every route but `/health` (and the documentation)
//! requires the internal token when one is configured.

use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::Operator;
use super::body::{parse_json, read_body, read_json, typed};
use super::openapi::ErrorResponses;
use super::public::{EventTypeView, event_type_views};
use super::resource::Resource;
use super::{State, batch, dead_letters, endpoint_list, subscription_search};
use crate::catalog;
use crate::error::{ApiError, ErrorCode};
use crate::event::{Event, EventError, MAX_EVENT_ID_LEN};
use crate::ingest::{Incoming, PublishError, Published};
use crate::metrics::METRICS;
use crate::store::catalog as catalog_store;
use crate::token;

pub fn routes(cfg: &mut web::ServiceConfig) {
    super::openapi::internal_routes(cfg);
    for resource in [
        Resource::at("/health").get(health),
        Resource::at("/metrics").get(metrics),
        Resource::at("/internal/v1/events").post(push_one),
        Resource::at("/internal/v1/events/batch").post(batch::push_batch),
        Resource::at("/internal/v1/events/{eventId}").get(super::event_lookup::event),
        Resource::at("/internal/v1/tokens").post(create_token),
        Resource::at("/internal/v1/event-types").get(list_event_types),
        Resource::at("/internal/v1/event-types/{name}").put(put_event_type),
        Resource::at("/internal/v1/endpoints").get(endpoint_list::list_endpoints),
        Resource::at("/internal/v1/endpoints/{id}").patch(super::endpoint_policy::patch_endpoint),
        Resource::at("/internal/v1/dead-letters").get(dead_letters::list_dead_letters),
        Resource::at("/internal/v1/dead-letters/{id}/replay")
            .post(dead_letters::replay_dead_letter),
        Resource::at("/internal/v1/subscriptions").get(subscription_search::search),
        Resource::at("/internal/v1/notices").get(super::notices::list_notices),
        Resource::at("/internal/v1/erasure").post(super::erasure::erase),
        Resource::at("/internal/v1/erasure/{erasureId}").get(super::erasure::get),
    ] {
        cfg.service(resource.done());
    }
}

/// Whether this node is up and ready.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `sqlite` or `postgresql`.
    pub backend: String,
    /// This node's id.
    pub node: String,
    /// Whether it takes requests (503 when not).
    pub ready: bool,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `ok`.
    pub status: &'static str,
    /// What is wrong with its database, when that is why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<&'static str>,
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "Not ready", body = Health)))]
pub(crate) async fn health(state: State) -> HttpResponse {
    let started = state.ready.load(Ordering::Relaxed);
    let trouble = state.store.trouble();
    let ready = started && trouble.is_none();
    let mut body = Health {
        backend: format!("{:?}", state.store.backend()).to_lowercase(),
        node: state.node_id.to_string(),
        ready,
        reason: None,
        status: "ok",
        storage: None,
    };
    if let Some(trouble) = trouble {
        body.reason = Some(trouble.explain());
        body.storage = Some(trouble.kind());
    } else if !started {
        body.reason =
            Some("starting (its endpoint actors are being started) or shutting down".into());
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        ErrorResponses))]
pub(crate) async fn metrics(_op: Operator) -> HttpResponse {
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
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted<'a> {
    event_id: &'a str,
    /// How many deliveries it got (one per matching subscription).
    deliveries: usize,
}

#[utoipa::path(post, path = "/internal/v1/events", tag = "events", security(("bearer" = [])),
    request_body = Event,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 200 characters; a repeat with the same event answers the original")),
    responses((status = 202, body = Accepted), ErrorResponses))]
pub(crate) async fn push_one(
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

/// The body of `POST /internal/v1/tokens`: whose token it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateToken {
    marketplace_id: i64,
    user_id: i64,
}

/// A new subscriber token, shown only this once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    marketplace_id: i64,
    token: String,
    user_id: i64,
}

#[utoipa::path(post, path = "/internal/v1/tokens", tag = "tokens", security(("bearer" = [])),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken), ErrorResponses))]
pub(crate) async fn create_token(
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
    Ok(HttpResponse::Created().json(CreatedToken {
        marketplace_id: mp,
        token,
        user_id: user,
    }))
}

/// Every registered event type.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeList {
    event_types: Vec<EventTypeView>,
}

#[utoipa::path(get, path = "/internal/v1/event-types", tag = "event types",
    security(("bearer" = [])),
    responses((status = 200, body = EventTypeList), ErrorResponses))]
pub(crate) async fn list_event_types(_op: Operator, state: State) -> HttpResponse {
    HttpResponse::Ok().json(EventTypeList {
        event_types: event_type_views(&state),
    })
}

/// The body of `PUT /internal/v1/event-types/{name}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEventType {
    /// 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    description: String,
}

#[utoipa::path(put, path = "/internal/v1/event-types/{name}", tag = "event types",
    security(("bearer" = [])), request_body = PutEventType,
    params(("name" = String, Path, pattern = "^[a-z][a-z0-9_]{0,63}$",
        description = "The event type, e.g. `revision_status_updated`")),
    responses((status = 200, description = "Updated", body = EventTypeView),
        (status = 201, description = "Registered", body = EventTypeView), ErrorResponses))]
pub(crate) async fn put_event_type(
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
    let body = EventTypeView { description, name };
    Ok(if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}
