//! The console's event lookup (`/ui/events`, a form) and one event
//! (`/ui/events/{eventId}`): as accepted, with its deliveries.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::api::State;
use crate::api::event_lookup::{EventView, event_of};
use crate::ui::error::UiError;
use crate::ui::form::Fields;
use crate::ui::page::{self, Chrome};
use crate::ui::session::{Audience, ConsoleSession};

#[derive(Template)]
#[template(path = "console/events.html", config = "src/ui/askama.toml")]
struct LookupPage {
    chrome: Chrome,
}

#[derive(Template)]
#[template(path = "console/event.html", config = "src/ui/askama.toml")]
struct EventPage {
    chrome: Chrome,
    event: EventView,
    payload: String,
}

/// `GET /ui/events[?eventId=]`: the form, or straight to the event.
pub async fn lookup(
    req: HttpRequest,
    ConsoleSession(session): ConsoleSession,
) -> Result<HttpResponse, UiError> {
    if let Some(id) = Fields::query(&req).text("eventId") {
        let path: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        return Ok(HttpResponse::SeeOther()
            .insert_header(("Location", format!("/ui/events/{path}")))
            .finish());
    }
    let body = LookupPage {
        chrome: Chrome::new(&req, &session, "Event lookup", "/ui/events"),
    };
    Ok(page::show(&req, Audience::Console, &body))
}

/// `GET /ui/events/{eventId}`.
pub async fn one(
    req: HttpRequest,
    state: State,
    ConsoleSession(session): ConsoleSession,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let event = event_of(&state, id.into_inner())
        .await
        .map_err(|e| match e {
            crate::error::ApiError::NotFound(m) => UiError::NotFound(m),
            other => UiError::Api(other),
        })?;
    let body = EventPage {
        chrome: Chrome::new(
            &req,
            &session,
            format!("Event {}", event.event_id),
            "/ui/events",
        ),
        payload: crate::ui::text::pretty_json(event.payload.as_deref()),
        event,
    };
    Ok(page::show(&req, Audience::Console, &body))
}
