//! The console's overview (`/ui/`, where signing in happens too): how many
//! endpoints are in each state, what is pending and dead, and this node's
//! last hour as charts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::api::State;
use crate::delivery::endpoint::shown_state;
use crate::delivery::health::State as Health;
use crate::metrics::recent;
use crate::store::overview::{self, COUNT_UP_TO, Status};
use crate::ui::error::{SignInPage, UiError};
use crate::ui::page::{self, Chrome};
use crate::ui::session::{self, Audience};
use crate::ui::{charts, text};

#[derive(Template)]
#[template(path = "console/overview.html", config = "src/ui/askama.toml")]
struct Overview {
    chrome: Chrome,
    /// `(state, count)` in the order healthy, failing, paused, dead.
    states: Vec<(&'static str, i64)>,
    pending: String,
    dead_letters: String,
    /// This node's last hour: `(label, value)` cards and inline SVG charts.
    hour: Vec<(&'static str, String)>,
    charts: Vec<(&'static str, String)>,
}

/// A bounded count as shown: `10000+` past the bound.
fn bounded(n: i64) -> String {
    if n > COUNT_UP_TO {
        format!("{COUNT_UP_TO}+")
    } else {
        n.to_string()
    }
}

/// Stored states and holds summed by the state an operator sees.
fn by_shown_state(rows: &[(String, bool, i64)]) -> Vec<(&'static str, i64)> {
    let mut counts = vec![("healthy", 0), ("failing", 0), ("paused", 0), ("dead", 0)];
    for (state, held, n) in rows {
        let shown = shown_state(*held, Health::parse(state));
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == shown) {
            slot.1 += n;
        }
    }
    counts
}

/// `GET /ui/`: the overview, or the sign-in form without a session (an
/// open console, with no internal token, starts one at once).
pub async fn page(req: HttpRequest, state: State) -> Result<HttpResponse, UiError> {
    let (session, new_cookie) = match session::console_session(&req).await? {
        Some(s) => (s, None),
        None if session::console_is_open(&state) => {
            let (s, cookie) = session::open_console(&req).await?;
            (s, Some(cookie))
        }
        None => {
            return Ok(page::html(
                StatusCode::OK,
                &SignInPage::new(Audience::Console, None),
            ));
        }
    };
    let (states, pending, dead) = state
        .store
        .run(|conn| {
            Ok((
                overview::endpoint_states(conn)?,
                overview::deliveries_in(conn, Status::Pending)?,
                overview::deliveries_in(conn, Status::Dead)?,
            ))
        })
        .await?;
    let chrome = Chrome::new(&req, &session, "Overview", "/ui/");
    let minutes = crate::ui::console::off_thread(recent::node_hour).await?;
    let summary = text::hour_summary(minutes.iter().map(|m| (&m.attempts, m.p99_ms)));
    let hour = vec![
        (
            "events in",
            minutes.iter().map(|m| m.events_in).sum::<u64>().to_string(),
        ),
        (
            "deliveries out",
            minutes.iter().map(|m| m.delivered).sum::<u64>().to_string(),
        ),
        ("attempts succeeded", summary.success_rate),
        ("p99 latency (worst minute)", summary.worst_p99),
    ];
    let charts = vec![
        (
            "Events in and deliveries out per minute",
            charts::node_traffic(&minutes),
        ),
        (
            "Attempts that succeeded",
            charts::node_success_ratio(&minutes),
        ),
        (
            "Delivery latency p50 and p99 (ms)",
            charts::node_latency(&minutes),
        ),
    ];
    let body = Overview {
        chrome,
        states: by_shown_state(&states),
        pending: bounded(pending),
        dead_letters: bounded(dead),
        hour,
        charts,
    };
    let mut answer = page::show(&req, Audience::Console, &body);
    if let Some(cookie) = new_cookie {
        let _ = answer.add_cookie(&cookie);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_hold_counts_as_paused_and_death_wins() {
        let rows = vec![
            ("healthy".to_string(), false, 3),
            ("healthy".to_string(), true, 1),
            ("failing".to_string(), false, 2),
            ("dead".to_string(), true, 4),
        ];
        assert_eq!(
            by_shown_state(&rows),
            vec![("healthy", 3), ("failing", 2), ("paused", 1), ("dead", 4)]
        );
        assert_eq!(bounded(COUNT_UP_TO + 1), format!("{COUNT_UP_TO}+"));
        assert_eq!(bounded(7), "7");
    }
}
