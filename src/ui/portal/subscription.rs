//! The portal's page of one subscription (`/portal/subscriptions/{id}`):
//! its endpoint and health, its deliveries (newest first, filtered by
//! status, paged), and the subscriber's actions on it: send a test event,
//! rotate the secret, move to another endpoint, delete. Each action runs
//! the same code as its API route.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::api::State;
use crate::api::auth::Caller;
use crate::api::deliveries::{Delivery, delivery_cursor, page_of, status_filter};
use crate::api::public::delete_for;
use crate::api::subscription_changes::{
    SecretRotation, SubscriptionPatch, apply_patch, owned, rotate as rotate_secret, test_event,
};
use crate::store::subscriptions::RouteRow;
use crate::ui::error::UiError;
use crate::ui::form::Fields;
use crate::ui::page::{self, Chrome, Flash};
use crate::ui::session::{Audience, PortalSession, Posted};

/// Deliveries per page.
const PAGE: i64 = 50;

#[derive(Template)]
#[template(path = "portal/subscription.html", config = "src/ui/askama.toml")]
struct SubscriptionPage {
    chrome: Chrome,
    id: i64,
    event: String,
    endpoint: String,
    health: String,
    last_failure: String,
    secret_rotated_at: String,
    status: String,
    deliveries: Vec<Delivery>,
    next: Option<String>,
}

/// The caller's subscription `raw`, or a 404 page.
async fn mine(state: &State, caller: Caller, raw: &str) -> Result<RouteRow, UiError> {
    owned(state, caller, raw).await.map_err(|e| match e {
        crate::error::ApiError::NotFound(m) => UiError::NotFound(m),
        other => UiError::Api(other),
    })
}

/// `GET /portal/subscriptions/{id}?status=&cursor=`.
pub async fn page(
    req: HttpRequest,
    state: State,
    PortalSession(session, caller): PortalSession,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let row = mine(&state, caller, &id).await?;
    let q = Fields::query(&req);
    let status_text = q.text("status").unwrap_or("").to_string();
    let status = status_filter(q.text("status")).map_err(|e| UiError::BadForm(e.to_string()))?;
    let before = delivery_cursor(q.text("cursor")).map_err(|e| UiError::BadForm(e.to_string()))?;
    let sub = row.subscription.id;
    let found = page_of(&state, sub, status, before, PAGE).await?;
    let (health, last_failure) =
        match crate::api::public::live_status(&state, row.subscription.endpoint_id).await {
            Some(s) => (
                s.state.to_string(),
                s.last_failure_reason.unwrap_or_default(),
            ),
            None => ("unknown".to_string(), String::new()),
        };
    let next = found.next_cursor.map(|c| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        if !status_text.is_empty() {
            link.append_pair("status", &status_text);
        }
        link.append_pair("cursor", &c);
        format!("/portal/subscriptions/{sub}?{}", link.finish())
    });
    let body = SubscriptionPage {
        chrome: Chrome::new(&req, &session, format!("Subscription {sub}"), "/portal/"),
        id: sub,
        event: row.subscription.event.clone(),
        endpoint: row.endpoint_url.clone(),
        health,
        last_failure,
        secret_rotated_at: row
            .subscription
            .secret_rotated_at
            .map(crate::api::format_time)
            .unwrap_or_else(|| "never".into()),
        status: status_text,
        deliveries: found.deliveries,
        next,
    };
    Ok(page::show(&req, Audience::Portal, &body))
}

fn back(id: i64) -> String {
    format!("/portal/subscriptions/{id}")
}

/// `POST /portal/subscriptions/{id}/test`: what the endpoint did with one
/// signed example event.
pub async fn test(
    state: State,
    posted: Posted<PortalSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let row = mine(&state, posted.session.1, &id).await?;
    let flash = match test_event(&state, &row).await {
        Ok(r) => {
            let answered = r
                .status_code
                .map(|c| format!("answered {c}"))
                .unwrap_or_else(|| "did not answer".into());
            let mut text = format!(
                "Test event: your endpoint {answered} in {} ms.",
                r.duration_ms
            );
            if let Some(e) = r.error {
                text.push_str(&format!(" {e}."));
            }
            Flash::test_result(r.ok, text)
        }
        Err(e) => Flash::refused(&e),
    };
    Ok(page::redirect(
        Audience::Portal,
        &back(row.subscription.id),
        flash,
    ))
}

/// `POST /portal/subscriptions/{id}/secret`: form fields `secret` and
/// `previousSecretValidFor` (blank: 24h).
pub async fn rotate(
    state: State,
    posted: Posted<PortalSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let caller = posted.session.1;
    let row = mine(&state, caller, &id).await?;
    let sub = row.subscription.id;
    let body = SecretRotation {
        secret: posted.fields.get("secret").unwrap_or("").to_string(),
        previous_secret_valid_for: posted
            .fields
            .text("previousSecretValidFor")
            .map(str::to_string),
    };
    let flash = Flash::of(rotate_secret(&state, caller, row, body).await, |done| {
        format!(
            "Secret rotated. Deliveries are signed with the new secret and, until {}, with the previous one too.",
            done.previous_secret_valid_until
        )
    });
    Ok(page::redirect(Audience::Portal, &back(sub), flash))
}

/// `POST /portal/subscriptions/{id}/endpoint`: form field `endpoint`,
/// verified like a new subscription's.
pub async fn move_to(
    state: State,
    posted: Posted<PortalSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let caller = posted.session.1;
    let row = mine(&state, caller, &id).await?;
    let sub = row.subscription.id;
    let body = SubscriptionPatch {
        endpoint: Some(posted.fields.text("endpoint").unwrap_or("").to_string()),
    };
    let flash = Flash::of(apply_patch(&state, caller, row, body).await, |moved| {
        format!(
            "Endpoint changed: deliveries go to {} from now on.",
            moved.endpoint
        )
    });
    Ok(page::redirect(Audience::Portal, &back(sub), flash))
}

/// `POST /portal/subscriptions/{id}/delete`.
pub async fn delete(
    state: State,
    posted: Posted<PortalSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let caller = posted.session.1;
    let row = mine(&state, caller, &id).await?;
    let sub = row.subscription.id;
    Ok(match delete_for(&state, caller, sub).await {
        Ok(()) => page::redirect(
            Audience::Portal,
            "/portal/",
            Flash::ok(format!(
                "Subscription {sub} deleted; its pending deliveries are cancelled."
            )),
        ),
        Err(e) => page::redirect(Audience::Portal, &back(sub), Flash::refused(&e)),
    })
}
