//! The subscriber portal at `/portal/` on the public listener: its routes,
//! signing in and out with the subscriber's own token, and the start page
//! (their subscriptions with their endpoints' health, and a form to
//! create one). One file per page beside it.

mod delivery;
mod subscription;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::api::State;
use crate::api::auth::Caller;
use crate::api::public::{CreateSubscription, EventTypeView, create_for, event_type_views};
use crate::store::{endpoints, subscriptions};
use crate::ui::error::{SignInPage, UiError};
use crate::ui::form::Fields;
use crate::ui::page::{self, Chrome, Flash};
use crate::ui::session::{self, Audience, PortalSession, Posted};

/// The portal's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/portal", web::get().to(to_home))
        .route("/portal/", web::get().to(home))
        .route("/portal/sign-in", web::post().to(sign_in))
        .route("/portal/sign-out", web::post().to(sign_out))
        .route(
            "/portal/assets/{name}",
            web::get().to(crate::ui::assets::asset),
        )
        .route("/portal/subscriptions", web::post().to(create))
        .route(
            "/portal/subscriptions/{id}",
            web::get().to(subscription::page),
        )
        .route(
            "/portal/subscriptions/{id}/test",
            web::post().to(subscription::test),
        )
        .route(
            "/portal/subscriptions/{id}/secret",
            web::post().to(subscription::rotate),
        )
        .route(
            "/portal/subscriptions/{id}/endpoint",
            web::post().to(subscription::move_to),
        )
        .route(
            "/portal/subscriptions/{id}/delete",
            web::post().to(subscription::delete),
        )
        .route(
            "/portal/subscriptions/{id}/deliveries/{delivery}",
            web::get().to(delivery::page),
        )
        .route(
            "/portal/subscriptions/{id}/deliveries/{delivery}/resend",
            web::post().to(delivery::resend),
        )
        .route("/portal/{rest:.*}", web::route().to(not_found));
}

async fn to_home() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/portal/"))
        .finish()
}

async fn sign_in(req: HttpRequest, fields: Fields) -> Result<HttpResponse, UiError> {
    session::sign_in(req, fields, Audience::Portal).await
}

async fn sign_out(
    req: HttpRequest,
    posted: Posted<PortalSession>,
) -> Result<HttpResponse, UiError> {
    session::sign_out(&req, &posted.session.0).await
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, UiError> {
    Err(UiError::NotFound(format!(
        "there is no portal page {}",
        crate::api::quote(req.path())
    )))
}

/// One of the caller's subscriptions as a row.
pub struct Line {
    pub id: i64,
    pub event: String,
    pub endpoint: String,
    pub health: String,
    pub last_failure: String,
}

#[derive(Template)]
#[template(path = "portal/home.html", config = "src/ui/askama.toml")]
struct HomePage {
    chrome: Chrome,
    lines: Vec<Line>,
    events: Vec<EventTypeView>,
}

/// The health of an endpoint as a subscriber reads it: its actor's on this
/// node, else the stored one.
async fn health_of(state: &State, endpoint_id: i64, stored: &str) -> (String, String) {
    match crate::api::public::live_status(state, endpoint_id).await {
        Some(s) => (
            s.state.to_string(),
            s.last_failure_reason.unwrap_or_default(),
        ),
        None => (stored.to_string(), String::new()),
    }
}

/// The caller's subscriptions with their endpoints' health.
async fn lines_of(state: &State, caller: Caller) -> Result<Vec<Line>, UiError> {
    let max = i64::from(state.settings.max_subscriptions_per_token);
    let (rows, stored) = state
        .store
        .run(move |conn| {
            let rows =
                subscriptions::page_for_owner(conn, caller.marketplace_id, caller.user_id, 0, max)?;
            let ids: Vec<i64> = rows.iter().map(|r| r.subscription.endpoint_id).collect();
            Ok((rows, endpoints::health_of(conn, &ids)?))
        })
        .await?;
    let stored: std::collections::HashMap<i64, String> =
        stored.into_iter().map(|(id, h)| (id, h.state)).collect();
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let endpoint_id = row.subscription.endpoint_id;
        let stored_state = stored.get(&endpoint_id).map_or("unknown", String::as_str);
        let (health, last_failure) = health_of(state, endpoint_id, stored_state).await;
        lines.push(Line {
            id: row.subscription.id,
            event: row.subscription.event,
            endpoint: row.endpoint_url,
            health,
            last_failure,
        });
    }
    Ok(lines)
}

/// `GET /portal/`: the caller's subscriptions, or the sign-in form.
pub async fn home(req: HttpRequest, state: State) -> Result<HttpResponse, UiError> {
    let Some((session, caller)) = session::portal_session(&req).await? else {
        return Ok(page::html(
            StatusCode::OK,
            &SignInPage::new(Audience::Portal, None),
        ));
    };
    let body = HomePage {
        chrome: Chrome::new(&req, &session, "Your subscriptions", "/portal/"),
        lines: lines_of(&state, caller).await?,
        events: event_type_views(&state),
    };
    Ok(page::show(&req, Audience::Portal, &body))
}

/// `POST /portal/subscriptions`: creates a subscription as
/// `POST /v1/subscription` does (the endpoint is verified first).
pub async fn create(state: State, posted: Posted<PortalSession>) -> Result<HttpResponse, UiError> {
    let PortalSession(_, caller) = posted.session;
    let f = &posted.fields;
    let body = CreateSubscription {
        event: f.text("event").unwrap_or("").to_string(),
        endpoint: f.text("endpoint").unwrap_or("").to_string(),
        secret: f.get("secret").unwrap_or("").to_string(),
    };
    Ok(match create_for(&state, caller, body).await {
        Ok(created) => page::redirect(
            Audience::Portal,
            &format!("/portal/subscriptions/{}", created.subscription_id),
            Flash::ok(format!(
                "Subscribed: the endpoint answered the verification call. Subscription {} receives {} events.",
                created.subscription_id, created.event
            )),
        ),
        Err(e) => page::redirect(Audience::Portal, "/portal/", Flash::refused(&e)),
    })
}
