//! The operator console at `/ui/` on the internal listener: its routes,
//! signing in and out, and the overview. One file per page beside it.

mod dead_letters;
mod endpoints;
mod events;
mod notices;
mod overview;
mod subscriptions;

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::UiError;
use super::form::Fields;
use super::session::{self, Audience, ConsoleSession, Posted};

/// The console's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui", web::get().to(to_home))
        .route("/ui/", web::get().to(overview::page))
        .route("/ui/sign-in", web::post().to(sign_in))
        .route("/ui/sign-out", web::post().to(sign_out))
        .route("/ui/assets/{name}", web::get().to(super::assets::asset))
        .route("/ui/endpoints", web::get().to(endpoints::list))
        .route("/ui/endpoints/{id}", web::get().to(endpoints::one))
        .route("/ui/endpoints/{id}/pause", web::post().to(endpoints::pause))
        .route(
            "/ui/endpoints/{id}/resume",
            web::post().to(endpoints::resume),
        )
        .route(
            "/ui/endpoints/{id}/policy",
            web::post().to(endpoints::policy),
        )
        .route("/ui/dead-letters", web::get().to(dead_letters::list))
        .route(
            "/ui/dead-letters/replay-all",
            web::post().to(dead_letters::replay_all),
        )
        .route(
            "/ui/dead-letters/{id}/replay",
            web::post().to(dead_letters::replay),
        )
        .route("/ui/subscriptions", web::get().to(subscriptions::search))
        .route("/ui/events", web::get().to(events::lookup))
        .route("/ui/events/{id}", web::get().to(events::one))
        .route("/ui/notices", web::get().to(notices::list))
        .route("/ui/{rest:.*}", web::route().to(not_found));
}

/// Runs `read` on a blocking thread: reading every series of the node's
/// last hour can take tens of milliseconds with thousands of endpoints,
/// too long for an HTTP worker's async thread.
pub(crate) async fn off_thread<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> Result<T, UiError> {
    web::block(read)
        .await
        .map_err(|e| UiError::Api(crate::error::ApiError::internal("charts", e.to_string())))
}

async fn to_home() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/ui/"))
        .finish()
}

async fn sign_in(req: HttpRequest, fields: Fields) -> Result<HttpResponse, UiError> {
    session::sign_in(req, fields, Audience::Console).await
}

async fn sign_out(
    req: HttpRequest,
    posted: Posted<ConsoleSession>,
) -> Result<HttpResponse, UiError> {
    session::sign_out(&req, &posted.session.0).await
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, UiError> {
    Err(UiError::NotFound(format!(
        "there is no console page {}; the navigation lists them",
        crate::api::quote(req.path())
    )))
}
