//! A subscriber's changes to its own subscription (DESIGN.md section 6):
//! moving it to another endpoint (`PATCH /v1/subscription/{id}`), rotating
//! its secret (`PUT /v1/subscription/{id}/secret`) and sending it a test
//! event (`POST /v1/subscription/{id}/test`). Another caller's subscription
//! answers 404 on each, before its body is read.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::openapi::ErrorResponses;

use super::auth::Caller;
use super::body::{read_json, typed};
use super::public::{
    SubscriptionView, catch_up, duplicate, parse_endpoint, parse_new_secret, verify_endpoint,
};
use super::{State, path_id};
use crate::delivery::sender;
use crate::error::{ApiError, ErrorCode};
use crate::event::Event;
use crate::signing::Secrets;
use crate::store::subscriptions::{self, Moved, RouteRow};

/// How long the replaced secret keeps signing when the request does not say.
pub const DEFAULT_PREVIOUS_SECRET_VALID_FOR: Duration = Duration::from_secs(24 * 3600);
/// The longest the replaced secret may keep signing.
pub const MAX_PREVIOUS_SECRET_VALID_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// `PATCH /v1/subscription/{id}` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscriptionPatch {
    /// The endpoint URL to deliver to from now on; verified like a create.
    pub endpoint: Option<String>,
}

/// `PUT /v1/subscription/{id}/secret` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretRotation {
    /// The new secret (at least 16 characters, or a `whsec_` key of at
    /// least 16 bytes).
    pub secret: String,
    /// How long the replaced secret keeps signing too, like `24h` (the
    /// default); at most `7d`.
    pub previous_secret_valid_for: Option<String>,
}

/// `PUT /v1/subscription/{id}/secret` answer: the subscription and until
/// when the secret it replaced still signs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRotated {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// RFC 3339 UTC, whole seconds.
    pub previous_secret_valid_until: String,
}

/// `POST /v1/subscription/{id}/test` answer: what the endpoint did.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// The endpoint answered 2xx.
    pub ok: bool,
    /// Its HTTP status, when it answered at all.
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    /// Why it failed (refused, timed out, a non-2xx status), if it did.
    pub error: Option<String>,
}

/// The caller's active subscription `raw_id`, or 404.
pub(crate) async fn owned(
    state: &State,
    caller: Caller,
    raw_id: &str,
) -> Result<RouteRow, ApiError> {
    let id = path_id(raw_id, "subscription")?;
    state
        .store
        .run(move |conn| {
            subscriptions::get_for_owner(conn, id, caller.marketplace_id, caller.user_id)
        })
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("there is no subscription {id} of yours"))
}

/// `PATCH /v1/subscription/{id}`: a new endpoint is checked like a create's
/// (refused ones answer 422 and change nothing), then the subscription
/// moves there: deliveries routed from now on go to it.
#[utoipa::path(patch, path = "/v1/subscription/{id}", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = SubscriptionPatch,
    responses((status = 200, body = SubscriptionView), ErrorResponses))]
pub async fn patch(
    caller: Caller,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, caller, &id).await?;
    let body: SubscriptionPatch = typed(read_json(&req, payload, &state.settings).await?)?;
    Ok(HttpResponse::Ok().json(apply_patch(&state, caller, row, body).await?))
}

/// Applies a `PATCH` to the caller's subscription `row` (the web portal
/// calls this too).
pub async fn apply_patch(
    state: &State,
    caller: Caller,
    row: RouteRow,
    body: SubscriptionPatch,
) -> Result<SubscriptionView, ApiError> {
    let Some(raw) = body.endpoint else {
        return Ok(SubscriptionView::from(&row));
    };
    let endpoint = parse_endpoint(&raw)?;
    if endpoint.as_str() == row.endpoint_url {
        return Ok(SubscriptionView::from(&row));
    }
    let (sub_id, event, url) = (
        row.subscription.id,
        row.subscription.event.clone(),
        endpoint.as_str().to_string(),
    );
    let same = state
        .store
        .run(move |conn| {
            subscriptions::find_same(conn, caller.marketplace_id, caller.user_id, &event, &url)
        })
        .await?;
    if let Some(other) = same.filter(|other| *other != sub_id) {
        return Err(duplicate(other));
    }
    let secrets = stored_secrets(&row)?;
    verify_endpoint(state, &endpoint, &secrets.current).await?;
    let moved = move_to(state, caller, sub_id, endpoint.as_str().to_string()).await?;
    log::info!(
        "subscription {sub_id} moved by its owner from endpoint {} to endpoint {}",
        row.subscription.endpoint_id,
        moved.subscription.endpoint_id
    );
    catch_up(state).await;
    Ok(SubscriptionView::from(&moved))
}

/// Stores the move (the endpoint row created or revived as for a create).
async fn move_to(
    state: &State,
    caller: Caller,
    id: i64,
    url: String,
) -> Result<RouteRow, ApiError> {
    let owner = (caller.marketplace_id, caller.user_id);
    let moved = state
        .store
        .run(move |conn| {
            let endpoint_id = subscriptions::endpoint_id_for(conn, &url)?;
            crate::store::endpoints::revive(conn, endpoint_id)?;
            subscriptions::move_endpoint(conn, id, owner, endpoint_id)
        })
        .await?;
    match moved {
        Moved::Done(row) => Ok(*row),
        Moved::NotFound => Err(not_found(id)),
        Moved::Duplicate(other) => Err(duplicate(other)),
    }
}

/// The subscription's stored key set; unusable only through a bug.
fn stored_secrets(row: &RouteRow) -> Result<Secrets, ApiError> {
    row.subscription.secrets().map_err(|e| {
        ApiError::internal(
            "subscription secret",
            format!("stored secret unusable: {e}"),
        )
    })
}

/// `PUT /v1/subscription/{id}/secret`: the new secret signs from now on;
/// the one it replaces signs too for `previousSecretValidFor`.
#[utoipa::path(put, path = "/v1/subscription/{id}/secret", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = SecretRotation,
    responses((status = 200, body = SecretRotated), ErrorResponses))]
pub async fn rotate_secret(
    caller: Caller,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, caller, &id).await?;
    let body: SecretRotation = typed(read_json(&req, payload, &state.settings).await?)?;
    Ok(HttpResponse::Ok().json(rotate(&state, caller, row, body).await?))
}

/// Rotates the secret of the caller's subscription `row` (the web portal
/// calls this too).
pub async fn rotate(
    state: &State,
    caller: Caller,
    row: RouteRow,
    body: SecretRotation,
) -> Result<SecretRotated, ApiError> {
    let secret = parse_new_secret(&body.secret)?;
    let window = previous_window(body.previous_secret_valid_for.as_deref())
        .map_err(|m| ApiError::bad_request(ErrorCode::InvalidField, m))?;
    let until = crate::store::now()
        + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
    let sub_id = row.subscription.id;
    let owner = (caller.marketplace_id, caller.user_id);
    let rotated = state
        .store
        .run(move |conn| subscriptions::rotate_secret(conn, sub_id, owner, secret.as_str(), until))
        .await?
        .ok_or_else(|| not_found(sub_id))?;
    log::info!("subscription {sub_id}: secret rotated by its owner");
    // Every node signs with the new secret from now on (a routing change).
    catch_up(state).await;
    Ok(SecretRotated {
        subscription: SubscriptionView::from(&rotated),
        previous_secret_valid_until: super::format_time(until),
    })
}

/// How long a replaced secret keeps signing: `raw` (a duration like `24h`)
/// or the default, at most `MAX_PREVIOUS_SECRET_VALID_FOR`.
pub fn previous_window(raw: Option<&str>) -> Result<Duration, String> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_PREVIOUS_SECRET_VALID_FOR);
    };
    let window =
        crate::config::parse_duration(raw).map_err(|e| format!("`previousSecretValidFor`: {e}"))?;
    if window > MAX_PREVIOUS_SECRET_VALID_FOR {
        return Err(format!(
            "`previousSecretValidFor` is {}, longer than the most allowed, 7d",
            humantime::format_duration(window)
        ));
    }
    Ok(window)
}

/// `POST /v1/subscription/{id}/test`: one signed example event of the
/// subscription's type, sent now through the same client and address
/// check as deliveries; not stored, not retried.
#[utoipa::path(post, path = "/v1/subscription/{id}/test", tag = "subscriptions",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, body = TestResult), ErrorResponses))]
pub async fn send_test(
    caller: Caller,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, caller, &id).await?;
    Ok(HttpResponse::Ok().json(test_event(&state, &row).await?))
}

/// Sends the test event to subscription `row`'s endpoint and says what it
/// did (the web portal calls this too).
pub async fn test_event(state: &State, row: &RouteRow) -> Result<TestResult, ApiError> {
    let secrets = stored_secrets(row)?;
    let endpoint = parse_endpoint(&row.endpoint_url)?;
    let body = example_event(&row.subscription.event, row.subscription.marketplace_id).to_body();
    let message_id = format!("test_{}", uuid::Uuid::now_v7().simple());
    let attempt = sender::post_test(
        &endpoint,
        body.into(),
        &secrets,
        &message_id,
        state.settings.verification_timeout,
    )
    .await;
    Ok(TestResult {
        ok: attempt.succeeded(),
        status_code: attempt.status,
        duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
        error: attempt.error,
    })
}

/// A valid event of type `event` in `marketplace_id`, about nothing:
/// `contextObjectId` 0, the marketplace itself as context, stamped now.
pub fn example_event(event: &str, marketplace_id: i64) -> Event {
    Event {
        event: event.to_string(),
        marketplace_id,
        context_object_id: 0,
        context_object_type: "MARKETPLACE".into(),
        associated_object_id: None,
        associated_object_type: None,
        triggering_user_id: None,
        triggering_user_name: None,
        timestamp: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        extra_info: None,
        event_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_secret_signs_for_a_day_unless_told_otherwise() {
        assert_eq!(previous_window(None).unwrap(), Duration::from_secs(86_400));
        assert_eq!(previous_window(Some("2s")).unwrap(), Duration::from_secs(2));
        assert_eq!(
            previous_window(Some("7d")).unwrap(),
            MAX_PREVIOUS_SECRET_VALID_FOR
        );
    }

    #[test]
    fn a_window_over_seven_days_or_not_a_duration_is_refused_with_a_reason() {
        assert!(previous_window(Some("8d")).unwrap_err().contains("7d"));
        assert!(
            previous_window(Some("soon"))
                .unwrap_err()
                .contains("previousSecretValidFor")
        );
    }

    #[test]
    fn the_example_event_passes_the_ingest_validation() {
        let example = example_event("qti_export_ready", 7);
        let value = serde_json::to_value(&example).unwrap();
        let parsed = Event::from_value(&value, |t| t == "qti_export_ready").unwrap();
        assert_eq!(parsed, example);
        assert_eq!(value["contextObjectId"], 0);
        assert_eq!(value["marketplaceId"], 7);
    }
}
