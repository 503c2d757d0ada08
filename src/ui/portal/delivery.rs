//! The portal's page of one delivery
//! (`/portal/subscriptions/{id}/deliveries/{deliveryId}`): its status, the
//! payload as sent, every attempt with the endpoint's answer; and resend.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::api::State;
use crate::api::deliveries::{DeliveryDetail, detail_of, owned, resend_of};
use crate::error::ApiError;
use crate::ui::error::UiError;
use crate::ui::page::{self, Chrome, Flash};
use crate::ui::session::{Audience, PortalSession, Posted};

#[derive(Template)]
#[template(path = "portal/delivery.html", config = "src/ui/askama.toml")]
struct DeliveryPage {
    chrome: Chrome,
    subscription: i64,
    detail: DeliveryDetail,
    payload: String,
}

fn not_found(e: ApiError) -> UiError {
    match e {
        ApiError::NotFound(m) => UiError::NotFound(m),
        other => UiError::Api(other),
    }
}

/// `GET /portal/subscriptions/{id}/deliveries/{deliveryId}`.
pub async fn page(
    req: HttpRequest,
    state: State,
    PortalSession(session, caller): PortalSession,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let (raw, id) = path.into_inner();
    let sub = owned(&state, caller, &raw).await.map_err(not_found)?;
    let detail = detail_of(&state, sub, id).await.map_err(not_found)?;
    let body = DeliveryPage {
        chrome: Chrome::new(
            &req,
            &session,
            format!("Delivery {}", detail.delivery.delivery_id),
            "/portal/",
        ),
        subscription: sub,
        payload: crate::ui::text::pretty_json(detail.payload.as_deref()),
        detail,
    };
    Ok(page::show(&req, Audience::Portal, &body))
}

/// `POST …/deliveries/{deliveryId}/resend`: sent again with the same
/// `webhook-id` and a fresh retry schedule.
pub async fn resend(
    state: State,
    posted: Posted<PortalSession>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let (raw, id) = path.into_inner();
    let sub = owned(&state, posted.session.1, &raw)
        .await
        .map_err(not_found)?;
    let back = format!("/portal/subscriptions/{sub}/deliveries/{id}");
    let flash = Flash::of(resend_of(&state, sub, id.clone()).await, |_| {
        format!("Resend queued: delivery {id} is sent again now, with the same webhook-id.")
    });
    Ok(page::redirect(Audience::Portal, &back, flash))
}
