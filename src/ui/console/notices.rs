//! The console's lifecycle notices and erasures (`/ui/notices`): the
//! newest notices (what `--operator-webhook` receives), and the audit rows
//! of erasures by data subject.

use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::api::State;
use crate::api::erasure::ErasureView;
use crate::api::notices::listed;
use crate::notice::Notice;
use crate::store::{erasures, notices};
use crate::ui::error::UiError;
use crate::ui::page::{self, Chrome};
use crate::ui::session::{Audience, ConsoleSession};

/// Notices shown (the API's `GET /internal/v1/notices` pages through all).
const NOTICES_SHOWN: i64 = 200;
/// Erasures shown.
const ERASURES_SHOWN: i64 = 50;

/// A notice as a row.
pub struct Line {
    pub id: String,
    pub event: &'static str,
    pub at: String,
    pub endpoint_id: i64,
    pub endpoint: String,
    /// `marketplace/user (subscription)` of each affected subscription.
    pub owners: String,
    pub reason: String,
}

impl From<Notice> for Line {
    fn from(n: Notice) -> Line {
        let owners = n
            .subscriptions
            .iter()
            .map(|s| format!("{}/{} ({})", s.marketplace_id, s.user_id, s.subscription_id))
            .collect::<Vec<_>>()
            .join(", ");
        Line {
            id: n.notice_id,
            event: n.event.as_str(),
            at: n.at,
            endpoint_id: n.endpoint.id,
            endpoint: n.endpoint.url,
            owners,
            reason: n.reason,
        }
    }
}

#[derive(Template)]
#[template(path = "console/notices.html", config = "src/ui/askama.toml")]
struct NoticesPage {
    chrome: Chrome,
    notices: Vec<Line>,
    erasures: Vec<ErasureView>,
}

/// `GET /ui/notices`.
pub async fn list(
    req: HttpRequest,
    state: State,
    ConsoleSession(session): ConsoleSession,
) -> Result<HttpResponse, UiError> {
    let (rows, audits) = state
        .store
        .run(|conn| {
            Ok((
                notices::latest(conn, NOTICES_SHOWN)?,
                erasures::latest(conn, ERASURES_SHOWN)?,
            ))
        })
        .await?;
    let body = NoticesPage {
        chrome: Chrome::new(&req, &session, "Notices and erasures", "/ui/notices"),
        notices: rows
            .into_iter()
            .filter_map(listed)
            .map(Line::from)
            .collect(),
        erasures: audits.into_iter().map(ErasureView::from).collect(),
    };
    Ok(page::show(&req, Audience::Console, &body))
}
