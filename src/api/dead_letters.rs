//! Dead letters for operators: `GET /internal/v1/dead-letters` (oldest
//! first, by endpoint or subscription) and
//! `POST /internal/v1/dead-letters/{id}/replay`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::Operator;
use super::openapi::ErrorResponses;
use super::page::{self, next_cursor};
use super::{State, format_time};
use crate::delivery::endpoint::Job;
use crate::error::{ApiError, ErrorCode};
use crate::router::Replay;
use crate::signing::Secret;
use crate::store::deliveries::{self, DeadLetterRow, ReplayRefused};

/// `?endpoint=&subscription=&limit=&cursor=` of the dead letters.
#[derive(Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Only those of this endpoint (its id).
    pub endpoint: Option<i64>,
    /// Only those of this subscription (its id).
    pub subscription: Option<i64>,
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A delivery that exhausted its retries.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub attempts: i32,
    pub endpoint: String,
    pub endpoint_id: i64,
    /// The event as stored; null once its payload was erased on request.
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
    pub event_id: String,
    /// RFC 3339 UTC.
    pub failed_at: String,
    pub id: String,
    pub last_error: Option<String>,
    pub subscription_id: i64,
}

impl From<DeadLetterRow> for DeadLetter {
    fn from(r: DeadLetterRow) -> Self {
        DeadLetter {
            attempts: r.attempts,
            endpoint: r.endpoint_url,
            endpoint_id: r.endpoint_id,
            event: (!crate::erasure::is_erased(&r.body))
                .then(|| serde_json::from_str::<Value>(&r.body).unwrap_or(Value::String(r.body))),
            event_id: r.event_id,
            failed_at: format_time(r.failed_at),
            id: r.id,
            last_error: r.last_error,
            subscription_id: r.subscription_id,
        }
    }
}

/// One page of dead letters.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
    /// The `cursor` of the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// The answer to a replay: the delivery is pending again.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    pub id: String,
    /// `pending`.
    pub status: &'static str,
}

#[utoipa::path(get, path = "/internal/v1/dead-letters", tag = "dead letters",
    security(("bearer" = [])), params(DeadLetterQuery),
    responses((status = 200, body = DeadLetterList), ErrorResponses))]
pub(crate) async fn list_dead_letters(
    _op: Operator,
    state: State,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: DeadLetterQuery = page::query(req.query_string())?;
    Ok(HttpResponse::Ok().json(page_of(&state, query).await?))
}

/// One page of dead letters (the web console calls this too).
pub(crate) async fn page_of(
    state: &State,
    query: DeadLetterQuery,
) -> Result<DeadLetterList, ApiError> {
    let limit = page::limit_within(query.limit, page::DEFAULT_LIMIT, page::MAX_LIMIT)?;
    let after = page::decode_cursor(query.cursor.as_deref())?;
    let (endpoint, subscription) = (query.endpoint, query.subscription);
    let mut rows = state
        .store
        .run(move |conn| {
            deliveries::dead_letters(conn, endpoint, subscription, after.as_deref(), limit + 1)
        })
        .await?;
    let next_cursor = next_cursor(&mut rows, limit, |r| r.id.clone());
    Ok(DeadLetterList {
        dead_letters: rows.into_iter().map(DeadLetter::from).collect(),
        next_cursor,
    })
}

#[utoipa::path(post, path = "/internal/v1/dead-letters/{id}/replay", tag = "dead letters",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The dead letter's id")),
    responses((status = 202, body = Replayed), ErrorResponses))]
pub(crate) async fn replay_dead_letter(
    _op: Operator,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(replay_one(&state, id.into_inner()).await?))
}

/// Puts dead letter `id` back in its endpoint's queue (the web console
/// calls this too).
pub(crate) async fn replay_one(state: &State, id: String) -> Result<Replayed, ApiError> {
    let lookup = id.clone();
    let outcome = state
        .store
        .run(move |conn| deliveries::replay(conn, &lookup))
        .await?;
    let (row, endpoint_id, endpoint_url) =
        outcome.map_err(|refused| replay_refused(&id, refused))?;
    send_again(state, &row, endpoint_id, endpoint_url)?;
    Ok(Replayed {
        id: row.id,
        status: "pending",
    })
}

fn replay_refused(id: &str, refused: ReplayRefused) -> ApiError {
    match refused {
        ReplayRefused::NotFound | ReplayRefused::NotFinished(_) => {
            ApiError::NotFound(format!("there is no dead letter `{}`", super::quote(id)))
        }
        ReplayRefused::Erased => payload_erased(id),
        ReplayRefused::SubscriptionInactive => ApiError::unprocessable(
            ErrorCode::SubscriptionInactive,
            format!(
                "dead letter `{}` belongs to a subscription that was removed; it cannot be replayed",
                super::quote(id)
            ),
        ),
    }
}

/// The refusal to send again a delivery whose payload was erased.
pub(super) fn payload_erased(id: &str) -> ApiError {
    ApiError::unprocessable(
        ErrorCode::PayloadErased,
        format!(
            "the payload of delivery `{}` was erased on request (POST /internal/v1/erasure); there is nothing left to send",
            super::quote(id)
        ),
    )
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
