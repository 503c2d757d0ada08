//! Erasure by data subject (DESIGN.md section 9) on the internal listener:
//! `POST /internal/v1/erasure` erases every stored event of a marketplace
//! that names a user (`crate::erasure::names_user`) and answers what it
//! did; `GET /internal/v1/erasure/{erasureId}` shows its audit row.
//!
//! The work goes in bounded batches: read up to `BATCH` candidate events
//! (outside any write transaction), erase those that name the person in
//! one short transaction (`store::erasures::erase`), then tell the actors
//! holding their cancelled deliveries to drop them (the router: here, or
//! on the owning node). Ingest goes on between batches. On SQLite the
//! write-ahead log is checkpointed and truncated at the end, so the old
//! bytes are gone from the files. The work runs as a task of its own: a
//! caller who disconnects does not stop it halfway.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Operator;
use super::body::read_json;
use super::openapi::ErrorResponses;
use super::{State, format_time, quote};
use crate::erasure::{self, names_user};
use crate::error::{ApiError, ErrorCode};
use crate::router::CancelDeliveries;
use crate::store::erasures::{self as store, ErasureRow};

/// Candidate events read, and at most erased, per transaction.
const BATCH: i64 = 500;

/// The body of `POST /internal/v1/erasure`: whose data, in which
/// marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EraseRequest {
    /// The tenant whose stored events are searched.
    pub marketplace_id: i64,
    /// The person: events naming them as `triggeringUserId`, or as a
    /// `USER` or `CANDIDATE` context or associated object, are erased.
    pub user_id: i64,
}

impl EraseRequest {
    /// Reads the body strictly: an object with exactly the two integer
    /// fields; `Err` names the field that is wrong.
    pub fn parse(body: &Value) -> Result<EraseRequest, String> {
        let Value::Object(fields) = body else {
            return Err(
                "the body must be a JSON object {\"marketplaceId\": <integer>, \"userId\": <integer>}"
                    .into(),
            );
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| *k != "marketplaceId" && *k != "userId")
        {
            return Err(format!(
                "unknown field `{}`: the body has only `marketplaceId` and `userId`",
                quote(unknown)
            ));
        }
        let integer = |name: &str| match fields.get(name) {
            None => Err(format!("missing field `{name}` (an integer)")),
            Some(v) => v.as_i64().ok_or_else(|| {
                format!(
                    "`{name}` must be an integer, not `{}`",
                    quote(&v.to_string())
                )
            }),
        };
        Ok(EraseRequest {
            marketplace_id: integer("marketplaceId")?,
            user_id: integer("userId")?,
        })
    }
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureDone {
    /// Its audit row: `GET /internal/v1/erasure/{erasureId}`.
    pub erasure_id: String,
    /// Events whose payload was erased now.
    pub events_erased: i64,
    /// Their pending deliveries, cancelled (never sent).
    pub deliveries_cancelled: i64,
    /// Their logged attempts whose answer excerpt was removed.
    pub attempts_cleared: i64,
}

/// An erasure's audit row: who asked, when, what it did; no personal data.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureView {
    pub erasure_id: String,
    /// RFC 3339 UTC.
    pub requested_at: String,
    /// Null while it runs (or when its node stopped before it finished:
    /// ask again, it erases what is left).
    pub completed_at: Option<String>,
    /// The `X-Requested-By` header of the request, or `internal token`.
    pub requester: String,
    pub marketplace_id: i64,
    pub events_erased: i64,
    pub deliveries_cancelled: i64,
    pub attempts_cleared: i64,
}

impl From<ErasureRow> for ErasureView {
    fn from(r: ErasureRow) -> ErasureView {
        ErasureView {
            erasure_id: r.id,
            requested_at: format_time(r.requested_at),
            completed_at: r.completed_at.map(format_time),
            requester: r.requester,
            marketplace_id: r.marketplace_id,
            events_erased: r.events_erased,
            deliveries_cancelled: r.deliveries_cancelled,
            attempts_cleared: r.attempts_cleared,
        }
    }
}

#[utoipa::path(post, path = "/internal/v1/erasure", tag = "erasure", security(("bearer" = [])),
    request_body = EraseRequest,
    params(("X-Requested-By" = Option<String>, Header,
        description = "Who asks (an operator, a ticket): 1 to 200 printable ASCII characters, kept in the audit row; default `internal token`")),
    responses((status = 200, body = ErasureDone), ErrorResponses))]
pub(crate) async fn erase(
    _op: Operator,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let requester = erasure::requester(req.headers().get("X-Requested-By").map(|v| v.as_bytes()))
        .map_err(|m| ApiError::bad_request(ErrorCode::InvalidHeader, m))?;
    let body = read_json(&req, payload, &state.settings).await?;
    let request = EraseRequest::parse(&body)
        .map_err(|m| ApiError::bad_request(ErrorCode::InvalidField, m))?;
    let state = state.into_inner();
    // Its own task: a caller who goes away does not stop it halfway.
    let done = actix_rt::spawn(async move { run(&state, request, requester).await })
        .await
        .map_err(|e| ApiError::internal("erasure", format!("the erasure task failed: {e}")))??;
    Ok(HttpResponse::Ok().json(done))
}

/// Erases, batch by batch, and completes the audit row.
async fn run(
    state: &super::AppState,
    request: EraseRequest,
    requester: String,
) -> Result<ErasureDone, ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    let (mp, user) = (request.marketplace_id, request.user_id);
    let audit = id.clone();
    state
        .store
        .run(move |conn| store::begin(conn, &audit, &requester, mp))
        .await?;
    let mut after = String::new();
    loop {
        let from = after.clone();
        let candidates = state
            .store
            .run(move |conn| store::candidates(conn, mp, user, &from, BATCH))
            .await?;
        let Some(last) = candidates.last() else {
            break;
        };
        after = last.id.clone();
        let full_page = candidates.len() as i64 == BATCH;
        let ids: Vec<String> = candidates
            .into_iter()
            .filter(|c| names_user(&c.body, user))
            .map(|c| c.id)
            .collect();
        let audit = id.clone();
        let erased = state
            .store
            .run(move |conn| store::erase(conn, &audit, &ids))
            .await?;
        if !erased.cancelled.is_empty() {
            state
                .router
                .send(CancelDeliveries(erased.cancelled))
                .await
                .map_err(|e| ApiError::internal("erasure", e))?;
        }
        if !full_page {
            break;
        }
    }
    let checkpointed = state.store.run(store::checkpoint_wal).await?;
    if !checkpointed {
        log::warn!(
            "erasure {id}: readers kept the SQLite write-ahead log from being checkpointed; the old page images leave it at the next checkpoint that completes"
        );
    }
    let audit = id.clone();
    let row = state
        .store
        .run(move |conn| store::complete(conn, &audit))
        .await?
        .ok_or_else(|| ApiError::internal("erasure", "its audit row is gone"))?;
    log::info!(
        "erasure {id} of marketplace {mp}: {} events erased, {} deliveries cancelled, {} attempt excerpts removed",
        row.events_erased,
        row.deliveries_cancelled,
        row.attempts_cleared
    );
    Ok(ErasureDone {
        erasure_id: row.id,
        events_erased: row.events_erased,
        deliveries_cancelled: row.deliveries_cancelled,
        attempts_cleared: row.attempts_cleared,
    })
}

#[utoipa::path(get, path = "/internal/v1/erasure/{erasureId}", tag = "erasure",
    security(("bearer" = [])),
    params(("erasureId" = String, Path, description = "The `erasureId` an erasure answered")),
    responses((status = 200, body = ErasureView), ErrorResponses))]
pub(crate) async fn get(
    _op: Operator,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let lookup = id.clone();
    let row = state
        .store
        .run(move |conn| store::get(conn, &lookup))
        .await?;
    match row {
        Some(row) => Ok(HttpResponse::Ok().json(ErasureView::from(row))),
        None => Err(ApiError::NotFound(format!(
            "there is no erasure `{}`; use the `erasureId` a POST /internal/v1/erasure answered",
            quote(&id)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_has_exactly_two_integers() {
        assert_eq!(
            EraseRequest::parse(&json!({"marketplaceId": 5, "userId": 777})),
            Ok(EraseRequest {
                marketplace_id: 5,
                user_id: 777
            })
        );
    }

    #[test]
    fn each_wrong_request_names_its_field() {
        let cases = [
            (json!({"userId": 777}), "marketplaceId"),
            (json!({"marketplaceId": 5}), "userId"),
            (
                json!({"marketplaceId": "5", "userId": 777}),
                "marketplaceId",
            ),
            (json!({"marketplaceId": 5, "userId": 7.5}), "userId"),
            (json!({"marketplaceId": 5, "userId": null}), "userId"),
            (
                json!({"marketplaceId": 5, "userId": 777, "email": "x"}),
                "email",
            ),
        ];
        for (body, field) in cases {
            let error = EraseRequest::parse(&body).unwrap_err();
            assert!(error.contains(field), "{body}: {error}");
        }
        assert!(EraseRequest::parse(&json!([5, 777])).is_err());
    }
}
