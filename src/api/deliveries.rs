//! A subscriber's deliveries (DESIGN.md section 6): the list, newest first
//! and by status; one delivery with its body and its logged attempts (with
//! the first 1 KiB of each answer); and a resend. Also the `Delivery` view
//! the operators' event lookup (`events`) shows. Every route answers 404
//! for another caller's subscription.
//!
//! A resend puts a finished delivery (succeeded, dead or cancelled) back in
//! its endpoint's queue the way an operator's dead-letter replay does: with a
//! fresh retry schedule and the same `webhook-id` (its delivery id). A
//! delivery still pending (never tried, or waiting for a retry) answers 409
//! `delivery_pending`: it is already being sent.
//!
//! Every attempt is logged (a first attempt that succeeded too; see
//! `delivery::recorder`), and `lastStatusCode` and `lastAttemptAt` come from
//! the newest one. A delivery that succeeded at once before attempts were
//! all logged has none: its `lastAttemptAt` is when it was recorded.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::auth::Caller;
use super::openapi::ErrorResponses;
use super::page::{MAX_LIMIT, bad_cursor, decode_cursor, limit_within, next_cursor};
use super::resource::Resource;
use super::{State, format_time, path_id};
use crate::error::{ApiError, ErrorCode};
use crate::store::deliveries::{self, ReplayRefused};
use crate::store::history::{self, AttemptRow, DeliveryRow, DeliveryStatus, LastAttempt};
use crate::store::subscriptions;

/// Deliveries per page when `limit` is not given.
const DEFAULT_PAGE: i64 = 50;

pub fn routes(cfg: &mut web::ServiceConfig) {
    for resource in [
        Resource::at("/v1/subscription/{id}/deliveries").get(list),
        Resource::at("/v1/subscription/{id}/deliveries/{deliveryId}").get(get),
        Resource::at("/v1/subscription/{id}/deliveries/{deliveryId}/resend").post(resend),
        Resource::at("/v1/subscription/{id}/events").get(super::feed::feed),
    ] {
        cfg.service(resource.done());
    }
}

/// One delivery as subscribers (and operators) see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub delivery_id: String,
    pub event_id: String,
    pub event: String,
    /// `pending`, `succeeded`, `failed` (waiting for a retry), `dead` or
    /// `cancelled`.
    #[schema(value_type = StatusName)]
    pub status: &'static str,
    pub attempt_count: i32,
    pub created_at: String,
    pub last_attempt_at: Option<String>,
    /// When it is tried next; only while it is pending or failed.
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
}

impl Delivery {
    /// The view of a row and its newest logged attempt.
    pub fn of(row: DeliveryRow, last: Option<&LastAttempt>) -> Delivery {
        let status = DeliveryStatus::of(&row.status, row.attempts);
        let waiting = matches!(status, DeliveryStatus::Pending | DeliveryStatus::Failed);
        let last_attempt_at = match last {
            Some(a) => Some(a.at),
            None => (row.attempts > 0).then_some(row.updated_at),
        };
        Delivery {
            delivery_id: row.id,
            event_id: row.event_id,
            event: row.event,
            status: status.as_str(),
            attempt_count: row.attempts,
            created_at: format_time(row.created_at),
            last_attempt_at: last_attempt_at.map(format_time),
            next_attempt_at: waiting.then(|| format_time(row.next_attempt_at)),
            last_status_code: last.and_then(|a| a.status_code),
            last_error: row.last_error,
        }
    }
}

/// A delivery's status, as the document names it.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum StatusName {
    Pending,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

/// `GET …/deliveries`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

/// One logged attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub at: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// At most the first 1 KiB of the endpoint's answer, as text.
    pub response_excerpt: Option<String>,
}

impl From<AttemptRow> for AttemptView {
    fn from(a: AttemptRow) -> AttemptView {
        AttemptView {
            at: format_time(a.at),
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
            response_excerpt: a.response_excerpt,
        }
    }
}

/// `GET …/deliveries/{deliveryId}`: a delivery, its body, its attempts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The body as sent; null once its payload was erased on request.
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<Box<RawValue>>,
    /// Oldest first.
    pub attempts: Vec<AttemptView>,
}

/// `POST …/resend`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resent {
    pub delivery_id: String,
}

/// A stored body as JSON (it was checked when accepted; should it not
/// parse, it is given as a JSON string); `None` once it was erased on
/// request (`crate::erasure::ERASED_BODY`).
pub fn payload(body: String) -> Option<Box<RawValue>> {
    if crate::erasure::is_erased(&body) {
        return None;
    }
    Some(
        RawValue::from_string(body.clone()).unwrap_or_else(|_| {
            serde_json::value::to_raw_value(&body).expect("a string serializes")
        }),
    )
}

/// `?status=&limit=&cursor=` of the deliveries list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only deliveries in this status.
    #[param(value_type = Option<StatusName>)]
    status: Option<String>,
    /// Items per page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The `nextCursor` of the previous page; absent for the first page.
    cursor: Option<String>,
}

/// Parses a query string into `T`, or a 400 that says what is wrong.
pub(super) fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("bad query parameters: {e}"),
            )
        })
}

/// The status filter of a list, if one is given.
pub(crate) fn status_filter(text: Option<&str>) -> Result<Option<DeliveryStatus>, ApiError> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => DeliveryStatus::parse(t).map(Some).ok_or_else(|| {
            let names: Vec<_> = DeliveryStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(
                ErrorCode::InvalidQuery,
                format!("`status` must be one of {}, not `{t}`", names.join(", ")),
            )
        }),
    }
}

/// The delivery id in an opaque cursor (`page.rs`; every `nextCursor` of
/// these lists holds one); none or empty: the start.
pub(crate) fn delivery_cursor(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    match decode_cursor(cursor)? {
        None => Ok(None),
        Some(id) if is_delivery_id(&id) => Ok(Some(id)),
        Some(_) => Err(bad_cursor()),
    }
}

/// Whether `text` is spelled as hookrelay writes delivery ids (a
/// lowercase hyphenated UUID).
fn is_delivery_id(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}

/// The page size: the default when not given, else within the bounds of
/// every list (`page.rs`).
pub(super) fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    limit_within(limit, default, MAX_LIMIT)
}

/// The id of a subscription of the caller's, or 404.
pub(crate) async fn owned(state: &State, caller: Caller, raw: &str) -> Result<i64, ApiError> {
    let id = path_id(raw, "subscription")?;
    let found = state
        .store
        .run(move |conn| {
            subscriptions::get_for_owner(conn, id, caller.marketplace_id, caller.user_id)
        })
        .await?;
    match found {
        Some(_) => Ok(id),
        None => Err(ApiError::NotFound(format!(
            "there is no subscription {id} of yours"
        ))),
    }
}

fn no_delivery(id: &str, subscription: i64) -> ApiError {
    ApiError::NotFound(format!(
        "there is no delivery `{id}` of subscription {subscription}"
    ))
}

#[utoipa::path(get, path = "/v1/subscription/{id}/deliveries", tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id"), ListQuery),
    responses((status = 200, body = DeliveryList), ErrorResponses))]
pub(crate) async fn list(
    caller: Caller,
    state: State,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q: ListQuery = query(&req)?;
    let status = status_filter(q.status.as_deref())?;
    let limit = page_limit(q.limit, DEFAULT_PAGE)?;
    let before = delivery_cursor(q.cursor.as_deref())?;
    let sub = owned(&state, caller, &path).await?;
    Ok(HttpResponse::Ok().json(page_of(&state, sub, status, before, limit).await?))
}

/// One page of subscription `sub`'s deliveries, newest first, before the
/// delivery id `before` (the web portal calls this too).
pub(crate) async fn page_of(
    state: &State,
    sub: i64,
    status: Option<DeliveryStatus>,
    before: Option<String>,
    limit: i64,
) -> Result<DeliveryList, ApiError> {
    let (mut rows, last) = state
        .store
        .run(move |conn| {
            let rows = history::deliveries_of(conn, sub, status, before.as_deref(), limit + 1)?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            Ok((rows, history::last_attempts(conn, &ids)?))
        })
        .await?;
    let next = next_cursor(&mut rows, limit, |r| r.id.clone());
    let deliveries = rows
        .into_iter()
        .map(|r| {
            let l = last.get(&r.id);
            Delivery::of(r, l)
        })
        .collect();
    Ok(DeliveryList {
        deliveries,
        next_cursor: next,
    })
}

#[utoipa::path(get, path = "/v1/subscription/{id}/deliveries/{deliveryId}", tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id"),
        ("deliveryId" = String, Path, description = "The delivery's id")),
    responses((status = 200, body = DeliveryDetail), ErrorResponses))]
pub(crate) async fn get(
    caller: Caller,
    state: State,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw, id) = path.into_inner();
    let sub = owned(&state, caller, &raw).await?;
    Ok(HttpResponse::Ok().json(detail_of(&state, sub, id).await?))
}

/// Delivery `id` of subscription `sub` with its payload and attempts (the
/// web portal calls this too).
pub(crate) async fn detail_of(
    state: &State,
    sub: i64,
    id: String,
) -> Result<DeliveryDetail, ApiError> {
    let lookup = id.clone();
    let found = state
        .store
        .run(move |conn| {
            let Some(found) = history::delivery_of(conn, sub, &lookup)? else {
                return Ok(None);
            };
            Ok(Some((found, history::attempts_of(conn, &lookup)?)))
        })
        .await?;
    let Some(((row, body), attempts)) = found else {
        return Err(no_delivery(&id, sub));
    };
    let last = attempts.last().map(|a| LastAttempt {
        at: a.at,
        status_code: a.status_code,
    });
    Ok(DeliveryDetail {
        delivery: Delivery::of(row, last.as_ref()),
        payload: payload(body),
        attempts: attempts.into_iter().map(AttemptView::from).collect(),
    })
}

/// The refusal of a resend of a delivery in `stored` status.
fn not_resendable(id: &str, stored: &str) -> ApiError {
    ApiError::Conflict {
        code: ErrorCode::DeliveryPending,
        message: format!(
            "delivery `{id}` is still {} and is being sent on its own retry schedule; it can be resent once it has succeeded or is dead",
            if stored == crate::store::models::PENDING {
                "pending"
            } else {
                stored
            }
        ),
        details: None,
    }
}

#[utoipa::path(post, path = "/v1/subscription/{id}/deliveries/{deliveryId}/resend", tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id"),
        ("deliveryId" = String, Path, description = "The delivery's id")),
    responses((status = 202, body = Resent), ErrorResponses))]
pub(crate) async fn resend(
    caller: Caller,
    state: State,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw, id) = path.into_inner();
    let sub = owned(&state, caller, &raw).await?;
    Ok(HttpResponse::Accepted().json(resend_of(&state, sub, id).await?))
}

/// Sends delivery `id` of subscription `sub` again (the web portal calls
/// this too).
pub(crate) async fn resend_of(state: &State, sub: i64, id: String) -> Result<Resent, ApiError> {
    let lookup = id.clone();
    let outcome = state
        .store
        .run(move |conn| deliveries::resend(conn, sub, &lookup))
        .await?;
    let (row, endpoint_id, endpoint_url) = match outcome {
        Ok(found) => found,
        Err(ReplayRefused::NotFound) => return Err(no_delivery(&id, sub)),
        Err(ReplayRefused::NotFinished(stored)) => return Err(not_resendable(&id, &stored)),
        Err(ReplayRefused::Erased) => return Err(super::dead_letters::payload_erased(&id)),
        Err(ReplayRefused::SubscriptionInactive) => {
            return Err(ApiError::unprocessable(
                ErrorCode::SubscriptionInactive,
                format!("subscription {sub} was removed; its deliveries cannot be resent"),
            ));
        }
    };
    super::dead_letters::send_again(state, &row, endpoint_id, endpoint_url)?;
    Ok(Resent {
        delivery_id: row.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, attempts: i32) -> DeliveryRow {
        let t = chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc();
        DeliveryRow {
            id: "d".into(),
            event_id: "e".into(),
            subscription_id: 1,
            event: "qti_export_ready".into(),
            status: status.into(),
            attempts,
            next_attempt_at: t,
            last_error: None,
            created_at: t,
            updated_at: t + chrono::Duration::seconds(5),
        }
    }

    #[test]
    fn only_a_delivery_still_waiting_has_a_next_attempt() {
        assert!(
            Delivery::of(row("pending", 0), None)
                .next_attempt_at
                .is_some()
        );
        assert!(
            Delivery::of(row("pending", 2), None)
                .next_attempt_at
                .is_some()
        );
        assert!(
            Delivery::of(row("succeeded", 1), None)
                .next_attempt_at
                .is_none()
        );
        assert!(Delivery::of(row("dead", 3), None).next_attempt_at.is_none());
    }

    #[test]
    fn the_last_attempt_is_the_newest_logged_one_else_when_the_row_was_recorded() {
        let untried = Delivery::of(row("pending", 0), None);
        assert_eq!(untried.last_attempt_at, None);
        let first_time = Delivery::of(row("succeeded", 1), None);
        assert_eq!(
            first_time.last_attempt_at.as_deref(),
            Some("2027-01-15T08:00:05Z")
        );
        let at = chrono::DateTime::from_timestamp(1_800_000_001, 0)
            .unwrap()
            .naive_utc();
        let logged = LastAttempt {
            at,
            status_code: Some(500),
        };
        let failed = Delivery::of(row("pending", 1), Some(&logged));
        assert_eq!(failed.status, "failed");
        assert_eq!(failed.last_status_code, Some(500));
        assert_eq!(
            failed.last_attempt_at.as_deref(),
            Some("2027-01-15T08:00:01Z")
        );
    }

    #[test]
    fn a_cursor_must_be_a_delivery_id_as_written() {
        let id = uuid::Uuid::now_v7().to_string();
        let opaque = |p: &str| super::super::page::encode_cursor(p);
        assert_eq!(
            delivery_cursor(Some(&opaque(&id))).unwrap(),
            Some(id.clone())
        );
        assert_eq!(delivery_cursor(None).unwrap(), None);
        assert!(delivery_cursor(Some(&id)).is_err());
        assert!(delivery_cursor(Some(&opaque(&id.to_uppercase()))).is_err());
        assert!(delivery_cursor(Some(&opaque(&id.replace('-', "")))).is_err());
        assert!(delivery_cursor(Some(&opaque("12"))).is_err());
    }

    #[test]
    fn an_unknown_status_or_a_limit_out_of_range_is_refused() {
        assert_eq!(
            status_filter(Some("failed")).unwrap(),
            Some(DeliveryStatus::Failed)
        );
        assert_eq!(status_filter(None).unwrap(), None);
        let refused = status_filter(Some("ok")).unwrap_err().to_string();
        assert!(
            refused.contains("pending, succeeded, failed, dead, cancelled"),
            "{refused}"
        );
        assert_eq!(page_limit(None, 50).unwrap(), 50);
        assert!(page_limit(Some(0), 50).is_err());
        assert!(page_limit(Some(MAX_LIMIT + 1), 50).is_err());
        assert_eq!(page_limit(Some(MAX_LIMIT), 50).unwrap(), MAX_LIMIT);
    }

    #[test]
    fn a_stored_body_is_given_as_its_json_or_else_as_a_string() {
        assert_eq!(payload(r#"{"a": 1}"#.into()).unwrap().get(), r#"{"a": 1}"#);
        assert_eq!(payload("not json".into()).unwrap().get(), r#""not json""#);
        assert!(payload(crate::erasure::ERASED_BODY.into()).is_none());
    }
}
