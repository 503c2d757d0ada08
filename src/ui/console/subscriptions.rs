//! The console's subscription search (`/ui/subscriptions`): by
//! marketplace, user, endpoint and state; removed ones with the reason.

use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::api::State;
use crate::api::subscription_search::{
    OperatorSubscription, SearchQuery, SubscriptionState, search_page,
};
use crate::ui::error::UiError;
use crate::ui::form::Fields;
use crate::ui::page::{self, Chrome};
use crate::ui::session::{Audience, ConsoleSession};

/// Subscriptions per page.
const PAGE: i64 = 100;

#[derive(Template)]
#[template(path = "console/subscriptions.html", config = "src/ui/askama.toml")]
struct SubscriptionsPage {
    chrome: Chrome,
    marketplace_id: String,
    user_id: String,
    endpoint: String,
    state: String,
    found: Vec<OperatorSubscription>,
    next: Option<String>,
}

/// The search of a filled-in form: blank fields match anything.
fn search_of(q: &Fields) -> Result<SearchQuery, UiError> {
    let state = match q.text("state") {
        None => None,
        Some("active") => Some(SubscriptionState::Active),
        Some("removed") => Some(SubscriptionState::Removed),
        Some(other) => {
            return Err(UiError::BadForm(format!(
                "`{}` is not a state; choose active or removed",
                crate::api::quote(other)
            )));
        }
    };
    Ok(SearchQuery {
        marketplace_id: q
            .number("marketplaceId", "Marketplace")
            .map_err(UiError::BadForm)?,
        user_id: q.number("userId", "User").map_err(UiError::BadForm)?,
        endpoint: q.text("endpoint").map(str::to_string),
        state,
        limit: Some(PAGE),
        cursor: q.text("cursor").map(str::to_string),
    })
}

/// `GET /ui/subscriptions?marketplaceId=&userId=&endpoint=&state=&cursor=`.
pub async fn search(
    req: HttpRequest,
    state: State,
    ConsoleSession(session): ConsoleSession,
) -> Result<HttpResponse, UiError> {
    let q = Fields::query(&req);
    let query = search_of(&q)?;
    let found = search_page(&state, &query).await?;
    let field = |name| q.text(name).unwrap_or("").to_string();
    let next = found.next_cursor.map(|cursor| {
        let mut link = url::form_urlencoded::Serializer::new(String::new());
        for name in ["marketplaceId", "userId", "endpoint", "state"] {
            if let Some(v) = q.text(name) {
                link.append_pair(name, v);
            }
        }
        link.append_pair("cursor", &cursor);
        format!("/ui/subscriptions?{}", link.finish())
    });
    let body = SubscriptionsPage {
        chrome: Chrome::new(&req, &session, "Subscriptions", "/ui/subscriptions"),
        marketplace_id: field("marketplaceId"),
        user_id: field("userId"),
        endpoint: field("endpoint"),
        state: field("state"),
        found: found.subscriptions,
        next,
    };
    Ok(page::show(&req, Audience::Console, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_search_fields_match_anything_and_bad_ones_are_named() {
        let q = search_of(&Fields::parse(
            b"marketplaceId=7&userId=&endpoint=&state=removed",
        ))
        .unwrap();
        assert_eq!(q.marketplace_id, Some(7));
        assert_eq!((q.user_id, q.endpoint), (None, None));
        assert_eq!(q.state, Some(SubscriptionState::Removed));
        assert!(search_of(&Fields::parse(b"userId=x")).is_err());
        assert!(search_of(&Fields::parse(b"state=gone")).is_err());
    }
}
