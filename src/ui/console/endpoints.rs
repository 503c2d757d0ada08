//! The console's endpoints (`/ui/endpoints`, filtered by state, paged) and
//! one endpoint (`/ui/endpoints/{id}`: its live figures, policy, recent
//! failures with their answers, subscriptions), with the operator's
//! actions on it: pause, resume, change its policy. Both pages refresh
//! their state on their own.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde_json::{Map, Value};

use crate::api::State;
use crate::api::endpoint_list::{EndpointView, Row, views};
use crate::api::endpoint_policy::{PolicyChange, change_policy, parse_change};
use crate::api::subscription_search::{
    OperatorSubscription, SearchQuery, SubscriptionState, search_page,
};
use crate::metrics::recent::{self, Minute};
use crate::store::endpoints::{self, ShownState};
use crate::store::history;
use crate::ui::charts;
use crate::ui::console::off_thread;
use crate::ui::error::UiError;
use crate::ui::form::Fields;
use crate::ui::page::{self, Chrome, Flash};
use crate::ui::session::{Audience, ConsoleSession, Posted};
use crate::ui::text;

/// Endpoints per page.
const PAGE: i64 = 100;
/// Recent failures shown on an endpoint's page.
const FAILURES_SHOWN: i64 = 20;

/// One endpoint as a row of the list, worded.
pub struct Line {
    pub id: i64,
    pub url: String,
    pub state: String,
    pub paused_by: String,
    pub queue: String,
    pub in_flight: String,
    pub subscriptions: i64,
    pub last_status: String,
    pub last_failure: String,
    pub last_failure_reason: String,
    /// Of this node's last hour.
    pub success_rate: String,
    pub worst_p99: String,
}

impl Line {
    fn of(v: &EndpointView, hour: &[Minute]) -> Line {
        let now = Utc::now();
        let summary = text::hour_summary(hour.iter().map(|m| (&m.attempts, m.p99_ms)));
        Line {
            success_rate: summary.success_rate,
            worst_p99: summary.worst_p99,
            id: v.id,
            url: v.url.clone(),
            state: v.state.clone(),
            paused_by: v.paused_by.clone().unwrap_or_default(),
            queue: text::count(v.queue_depth),
            in_flight: text::count(v.in_flight),
            subscriptions: v.subscription_count,
            last_status: text::last_status(v.last_failure_reason.as_deref()),
            last_failure: text::ago(v.last_failure_at, now),
            last_failure_reason: v.last_failure_reason.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/endpoints.html", config = "src/ui/askama.toml")]
struct EndpointsPage {
    chrome: Chrome,
    filter: String,
    lines: Vec<Line>,
    next: Option<String>,
    refreshed_at: String,
}

/// The state filter of a list: none, or one of the four states.
fn state_filter(fields: &Fields) -> Result<Option<ShownState>, UiError> {
    match fields.text("state") {
        None => Ok(None),
        Some(s) => ShownState::parse(s).map(Some).ok_or_else(|| {
            UiError::BadForm(format!(
                "`{}` is not a state; choose healthy, failing, paused or dead",
                crate::api::quote(s)
            ))
        }),
    }
}

/// `GET /ui/endpoints?state=&after=`.
pub async fn list(
    req: HttpRequest,
    state: State,
    ConsoleSession(session): ConsoleSession,
) -> Result<HttpResponse, UiError> {
    let q = Fields::query(&req);
    let filter = state_filter(&q)?;
    let after = q
        .number("after", "`after`")
        .map_err(UiError::BadForm)?
        .unwrap_or(0);
    let mut rows: Vec<Row> = state
        .store
        .run(move |conn| endpoints::page_in_state(conn, filter, after, PAGE + 1))
        .await?;
    let next = (rows.len() as i64 > PAGE).then(|| {
        rows.truncate(PAGE as usize);
        rows.last().map(|(r, _)| r.id).unwrap_or(0)
    });
    let filter_text = q.text("state").unwrap_or("").to_string();
    let next = next.map(|id| {
        if filter_text.is_empty() {
            format!("/ui/endpoints?after={id}")
        } else {
            format!("/ui/endpoints?state={filter_text}&after={id}")
        }
    });
    let ids: Vec<i64> = rows.iter().map(|(r, _)| r.id).collect();
    let hours = off_thread(move || recent::endpoint_hours(&ids)).await?;
    let lines = views(&state, rows)
        .await
        .iter()
        .map(|v| Line::of(v, hours.get(&v.id).map_or(&[][..], Vec::as_slice)))
        .collect();
    let body = EndpointsPage {
        chrome: Chrome::new(&req, &session, "Endpoints", "/ui/endpoints").live(),
        filter: filter_text,
        lines,
        next,
        refreshed_at: Utc::now().format("%H:%M:%S").to_string(),
    };
    Ok(page::show(&req, Audience::Console, &body))
}

/// A failed attempt as shown on an endpoint's page.
pub struct FailureLine {
    pub at: String,
    pub delivery_id: String,
    pub answer: String,
    pub duration: String,
    pub excerpt: String,
}

#[derive(Template)]
#[template(path = "console/endpoint.html", config = "src/ui/askama.toml")]
struct EndpointPage {
    chrome: Chrome,
    line: Line,
    view: EndpointView,
    facts: Vec<(&'static str, String)>,
    failures: Vec<FailureLine>,
    subscriptions: Vec<OperatorSubscription>,
    more_subscriptions: bool,
    refreshed_at: String,
    /// Inline SVG: attempts by outcome, latency, queue depth.
    charts: Vec<(&'static str, String)>,
}

/// What an operator reads about one endpoint, in order.
fn facts_of(v: &EndpointView) -> Vec<(&'static str, String)> {
    let now = Utc::now();
    let at = |t| {
        let shown = text::when(t);
        if shown.is_empty() {
            "never".to_string()
        } else {
            format!("{shown} ({})", text::ago(t, now))
        }
    };
    let mut facts = vec![
        (
            "Paused by",
            v.paused_by.clone().unwrap_or_else(|| "nobody".into()),
        ),
        (
            "Delivered by node",
            v.owner_node.clone().unwrap_or_else(|| "none".into()),
        ),
        ("Queue", text::count(v.queue_depth)),
        ("In flight", text::count(v.in_flight)),
        ("Waiting for a retry", text::count(v.waiting_for_retry)),
        ("Concurrency window", text::count(v.concurrency)),
        ("Consecutive failures", v.consecutive_failures.to_string()),
        (
            "Failed scheduled checks",
            v.failed_verifications.to_string(),
        ),
        ("Last success", at(v.last_success_at)),
        ("Last failure", at(v.last_failure_at)),
        (
            "Last failure reason",
            v.last_failure_reason.clone().unwrap_or_default(),
        ),
        ("Next check", at(v.next_verification_at)),
        ("Held until", at(v.held_until)),
        ("Active subscriptions", v.subscription_count.to_string()),
    ];
    if let Some(reason) = &v.dead_reason {
        facts.push(("Declared dead because", reason.clone()));
    }
    if v.queue_depth.is_none() {
        facts.push((
            "Live figures",
            "this node does not deliver for it; open the console of the node named above".into(),
        ));
    }
    facts
}

fn endpoint_id(raw: &str) -> Result<i64, UiError> {
    raw.parse().map_err(|_| {
        UiError::NotFound(format!("there is no endpoint `{}`", crate::api::quote(raw)))
    })
}

/// `GET /ui/endpoints/{id}`.
pub async fn one(
    req: HttpRequest,
    state: State,
    ConsoleSession(session): ConsoleSession,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let id = endpoint_id(&id)?;
    let (row, failures) = state
        .store
        .run(move |conn| {
            Ok((
                endpoints::one(conn, id)?,
                history::recent_failures(conn, id, FAILURES_SHOWN)?,
            ))
        })
        .await?;
    let row = row.ok_or_else(|| UiError::NotFound(format!("there is no endpoint {id}")))?;
    let view = views(&state, vec![row])
        .await
        .pop()
        .ok_or_else(|| UiError::NotFound(format!("there is no endpoint {id}")))?;
    let search = SearchQuery {
        endpoint: Some(id.to_string()),
        state: Some(SubscriptionState::Active),
        limit: Some(PAGE),
        ..SearchQuery::default()
    };
    let found = search_page(&state, &search).await?;
    let failures = failures
        .into_iter()
        .map(|(delivery_id, a)| FailureLine {
            at: text::when(Some(a.at.and_utc())),
            delivery_id,
            answer: match (a.status_code, a.error) {
                (Some(code), _) => code.to_string(),
                (None, Some(e)) => e,
                (None, None) => String::new(),
            },
            duration: text::millis(Some(a.duration_ms as f64)),
            excerpt: a.response_excerpt.unwrap_or_default(),
        })
        .collect();
    let hour = off_thread(move || recent::endpoint_hour(id)).await?;
    let charts = vec![
        (
            "Attempts by outcome per minute",
            charts::attempts_by_outcome(&hour),
        ),
        ("Latency p50 and p99 (ms)", charts::latency(&hour)),
        ("Queue depth", charts::queue_depth(&hour)),
    ];
    let body = EndpointPage {
        chrome: Chrome::new(&req, &session, format!("Endpoint {id}"), "/ui/endpoints").live(),
        line: Line::of(&view, &hour),
        charts,
        facts: facts_of(&view),
        view,
        failures,
        subscriptions: found.subscriptions,
        more_subscriptions: found.next_cursor.is_some(),
        refreshed_at: Utc::now().format("%H:%M:%S").to_string(),
    };
    Ok(page::show(&req, Audience::Console, &body))
}

/// Applies `change` to endpoint `raw` and goes back to its page with
/// `done` (or the refusal) as the message.
async fn act(
    state: &State,
    raw: &str,
    change: PolicyChange,
    done: &str,
) -> Result<HttpResponse, UiError> {
    let id = endpoint_id(raw)?;
    let back = format!("/ui/endpoints/{id}");
    let flash = match change_policy(state, id, change).await {
        Ok(_) => Flash::ok(done),
        Err(crate::error::ApiError::NotFound(m)) => return Err(UiError::NotFound(m)),
        Err(e) => Flash::refused(&e),
    };
    Ok(page::redirect(Audience::Console, &back, flash))
}

/// `POST /ui/endpoints/{id}/pause`.
pub async fn pause(
    state: State,
    _posted: Posted<ConsoleSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let change = PolicyChange {
        paused: Some(true),
        ..PolicyChange::default()
    };
    act(
        &state,
        &id,
        change,
        "Paused: its deliveries wait, in order, until you resume it.",
    )
    .await
}

/// `POST /ui/endpoints/{id}/resume`.
pub async fn resume(
    state: State,
    _posted: Posted<ConsoleSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let change = PolicyChange {
        paused: Some(false),
        ..PolicyChange::default()
    };
    act(
        &state,
        &id,
        change,
        "Resumed: its waiting deliveries are being sent.",
    )
    .await
}

/// The policy form as the API's body: an empty field clears that limit.
fn policy_body(fields: &Fields) -> Result<Value, String> {
    let mut body = Map::new();
    for (name, label) in [
        ("maxInFlight", "Most in flight"),
        ("maxPerSecond", "Most per second"),
    ] {
        let value = match fields.number(name, label)? {
            Some(n) => Value::from(n),
            None => Value::Null,
        };
        body.insert(name.into(), value);
    }
    let timeout = fields
        .text("timeout")
        .map_or(Value::Null, |t| Value::from(t.to_string()));
    body.insert("timeout".into(), timeout);
    Ok(Value::Object(body))
}

/// `POST /ui/endpoints/{id}/policy`: its limits and timeout, checked as
/// `PATCH /internal/v1/endpoints/{id}` checks them.
pub async fn policy(
    state: State,
    posted: Posted<ConsoleSession>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let parsed = policy_body(&posted.fields).and_then(|body| parse_change(&body));
    match parsed {
        Ok(change) => act(&state, &id, change, "Policy saved.").await,
        Err(message) => {
            let id = endpoint_id(&id)?;
            Ok(page::redirect(
                Audience::Console,
                &format!("/ui/endpoints/{id}"),
                Flash::error(message),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_policy_field_clears_its_limit_and_a_word_is_refused() {
        let body = policy_body(&Fields::parse(b"maxInFlight=4&maxPerSecond=&timeout=2s")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"maxInFlight": 4, "maxPerSecond": null, "timeout": "2s"})
        );
        let change = parse_change(&body).unwrap();
        assert_eq!(change.max_in_flight, Some(Some(4)));
        assert_eq!(change.max_per_second, Some(None));
        assert!(
            policy_body(&Fields::parse(b"maxInFlight=many"))
                .unwrap_err()
                .contains("Most in flight")
        );
    }

    #[test]
    fn a_state_filter_is_one_of_the_four_states() {
        assert_eq!(
            state_filter(&Fields::parse(b"state=paused")).unwrap(),
            Some(ShownState::Paused)
        );
        assert_eq!(state_filter(&Fields::parse(b"state=")).unwrap(), None);
        assert!(state_filter(&Fields::parse(b"state=sleepy")).is_err());
    }
}
