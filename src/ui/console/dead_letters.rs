//! The console's dead letters (`/ui/dead-letters`, filtered by endpoint or
//! subscription, paged): replay one, or all of an endpoint's.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use crate::api::State;
use crate::api::dead_letters::{DeadLetter, DeadLetterQuery, page_of, replay_one};
use crate::ui::error::UiError;
use crate::ui::form::Fields;
use crate::ui::page::{self, Chrome, Flash};
use crate::ui::session::{Audience, ConsoleSession, Posted};

/// Dead letters per page.
const PAGE: i64 = 100;
/// Most dead letters one "replay all" puts back (the rest wait for the
/// next click, so one request never runs for long).
const REPLAY_AT_MOST: i64 = 1000;

/// A dead letter as a row.
pub struct Line {
    pub id: String,
    pub endpoint_id: i64,
    pub endpoint: String,
    pub subscription_id: i64,
    pub event: String,
    pub event_id: String,
    pub failed_at: String,
    pub attempts: i32,
    pub last_error: String,
}

impl From<DeadLetter> for Line {
    fn from(d: DeadLetter) -> Line {
        let event = d
            .event
            .as_ref()
            .and_then(|e| e["event"].as_str())
            .unwrap_or("(payload erased)")
            .to_string();
        Line {
            id: d.id,
            endpoint_id: d.endpoint_id,
            endpoint: d.endpoint,
            subscription_id: d.subscription_id,
            event,
            event_id: d.event_id,
            failed_at: d.failed_at,
            attempts: d.attempts,
            last_error: d.last_error.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/dead_letters.html", config = "src/ui/askama.toml")]
struct DeadLettersPage {
    chrome: Chrome,
    endpoint: String,
    subscription: String,
    lines: Vec<Line>,
    next: Option<String>,
}

/// The filters of the page and of its links.
fn filters(q: &Fields) -> Result<(Option<i64>, Option<i64>), UiError> {
    let endpoint = q.number("endpoint", "Endpoint").map_err(UiError::BadForm)?;
    let subscription = q
        .number("subscription", "Subscription")
        .map_err(UiError::BadForm)?;
    Ok((endpoint, subscription))
}

/// The page's address with its filters and `cursor`.
fn href(endpoint: Option<i64>, subscription: Option<i64>, cursor: &str) -> String {
    let mut parts = Vec::new();
    if let Some(e) = endpoint {
        parts.push(format!("endpoint={e}"));
    }
    if let Some(s) = subscription {
        parts.push(format!("subscription={s}"));
    }
    let mut query = url::form_urlencoded::Serializer::new(parts.join("&"));
    query.append_pair("cursor", cursor);
    format!("/ui/dead-letters?{}", query.finish())
}

/// `GET /ui/dead-letters?endpoint=&subscription=&cursor=`.
pub async fn list(
    req: HttpRequest,
    state: State,
    ConsoleSession(session): ConsoleSession,
) -> Result<HttpResponse, UiError> {
    let q = Fields::query(&req);
    let (endpoint, subscription) = filters(&q)?;
    let query = DeadLetterQuery {
        endpoint,
        subscription,
        limit: Some(PAGE),
        cursor: q.text("cursor").map(str::to_string),
    };
    let found = page_of(&state, query).await?;
    let body = DeadLettersPage {
        chrome: Chrome::new(&req, &session, "Dead letters", "/ui/dead-letters"),
        endpoint: endpoint.map(|e| e.to_string()).unwrap_or_default(),
        subscription: subscription.map(|s| s.to_string()).unwrap_or_default(),
        lines: found.dead_letters.into_iter().map(Line::from).collect(),
        next: found.next_cursor.map(|c| href(endpoint, subscription, &c)),
    };
    Ok(page::show(&req, Audience::Console, &body))
}

/// Where to go back to after replaying: the list as it was filtered.
fn back_to(fields: &Fields) -> String {
    match fields.number("endpoint", "Endpoint") {
        Ok(Some(e)) => format!("/ui/dead-letters?endpoint={e}"),
        _ => "/ui/dead-letters".to_string(),
    }
}

/// `POST /ui/dead-letters/{id}/replay`.
pub async fn replay(
    state: State,
    posted: Posted<ConsoleSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = id.into_inner();
    let flash = Flash::of(replay_one(&state, id.clone()).await, |_| {
        format!("Dead letter {id} is queued again and will be sent now.")
    });
    Ok(page::redirect(
        Audience::Console,
        &back_to(&posted.fields),
        flash,
    ))
}

/// `POST /ui/dead-letters/replay-all` (form field `endpoint`): replays the
/// endpoint's dead letters, at most `REPLAY_AT_MOST` per click.
pub async fn replay_all(
    state: State,
    posted: Posted<ConsoleSession>,
) -> Result<HttpResponse, UiError> {
    let endpoint = match posted.fields.number("endpoint", "Endpoint") {
        Ok(Some(e)) => e,
        Ok(None) => {
            return Err(UiError::BadForm(
                "say which endpoint's dead letters to replay".into(),
            ));
        }
        Err(m) => return Err(UiError::BadForm(m)),
    };
    let query = DeadLetterQuery {
        endpoint: Some(endpoint),
        limit: Some(REPLAY_AT_MOST),
        ..DeadLetterQuery::default()
    };
    let found = page_of(&state, query).await?;
    let (mut replayed, mut refused) = (0usize, Vec::new());
    for d in found.dead_letters {
        match replay_one(&state, d.id.clone()).await {
            Ok(_) => replayed += 1,
            Err(e) => refused.push(format!(
                "{}: {}",
                d.id,
                e.body()["message"].as_str().unwrap_or_default()
            )),
        }
    }
    let mut text = format!("Replayed {replayed} dead letter(s) of endpoint {endpoint}.");
    if found.next_cursor.is_some() {
        text.push_str(&format!(
            " More than {REPLAY_AT_MOST} were dead: replay all again for the rest."
        ));
    }
    let flash = if refused.is_empty() {
        Flash::ok(text)
    } else {
        Flash::error(format!("{text} Not replayed: {}", refused.join("; ")))
    };
    Ok(page::redirect(
        Audience::Console,
        &format!("/ui/dead-letters?endpoint={endpoint}"),
        flash,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_keeps_its_filters_and_escapes_the_cursor() {
        assert_eq!(
            href(Some(3), None, "a+b"),
            "/ui/dead-letters?endpoint=3&cursor=a%2Bb"
        );
        assert_eq!(
            href(None, Some(4), "c"),
            "/ui/dead-letters?subscription=4&cursor=c"
        );
        assert_eq!(
            back_to(&Fields::parse(b"endpoint=9")),
            "/ui/dead-letters?endpoint=9"
        );
        assert_eq!(back_to(&Fields::parse(b"")), "/ui/dead-letters");
    }
}
