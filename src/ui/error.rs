//! Errors of the web UI and how each is answered, in one place: signing in
//! is a redirect, a wrong token the sign-in form again with a message, a
//! forged or stale form a 403 page, and an API error an HTML page with the
//! API's own status and message (internal causes are logged, never shown).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::page;
use super::session::Audience;
use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No session: sign in first.
    #[error("sign in first")]
    SignIn(Audience),
    /// A sign-in with a wrong token.
    #[error("that token is not valid")]
    WrongToken(Audience),
    /// A changing form without its session's CSRF token.
    #[error("the form is stale or forged")]
    Forged(Audience),
    /// A form that could not be read.
    #[error("{0}")]
    BadForm(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<crate::store::StoreError> for UiError {
    fn from(e: crate::store::StoreError) -> Self {
        UiError::Api(e.into())
    }
}

/// A page that says what went wrong.
#[derive(Template)]
#[template(path = "error.html", config = "src/ui/askama.toml")]
struct ErrorPage {
    home: String,
    status: u16,
    title: &'static str,
    message: String,
}

/// The sign-in form, with a message after a wrong token.
#[derive(Template)]
#[template(path = "sign_in.html", config = "src/ui/askama.toml")]
pub struct SignInPage {
    pub prefix: &'static str,
    pub title: &'static str,
    pub what: &'static str,
    pub error: Option<&'static str>,
}

impl SignInPage {
    pub fn new(audience: Audience, error: Option<&'static str>) -> SignInPage {
        let (title, what) = match audience {
            Audience::Console => (
                "hookrelay console",
                "the internal token (the value of --internal-token)",
            ),
            Audience::Portal => (
                "hookrelay subscriber portal",
                "your API token (the one your platform operator gave you)",
            ),
        };
        SignInPage {
            prefix: audience.prefix(),
            title,
            what,
            error,
        }
    }
}

/// The message shown after a wrong token.
pub const WRONG_TOKEN: &str =
    "That token is not valid. Check it and try again; nothing else was done.";

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            UiError::SignIn(_) => StatusCode::SEE_OTHER,
            UiError::WrongToken(_) => StatusCode::UNAUTHORIZED,
            UiError::Forged(_) => StatusCode::FORBIDDEN,
            UiError::BadForm(_) => StatusCode::BAD_REQUEST,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (home, title, message) = match self {
            UiError::SignIn(audience) => {
                return HttpResponse::SeeOther()
                    .insert_header(("Location", audience.home()))
                    .insert_header(("Cache-Control", "no-store"))
                    .finish();
            }
            UiError::WrongToken(audience) => {
                return page::html(status, &SignInPage::new(*audience, Some(WRONG_TOKEN)));
            }
            UiError::Forged(audience) => (
                audience.home(),
                "Form refused",
                "The form is stale or forged: it did not carry this session's CSRF token. Go back, reload the page and send it again.".to_string(),
            ),
            UiError::BadForm(m) => (String::new(), "Bad form", m.clone()),
            UiError::NotFound(m) => (String::new(), "Not found", m.clone()),
            UiError::Api(e) => {
                e.report();
                let body = e.body();
                let message = body["message"].as_str().unwrap_or_default().to_string();
                (String::new(), "Something went wrong", message)
            }
        };
        page::html(
            status,
            &ErrorPage {
                home,
                status: status.as_u16(),
                title,
                message,
            },
        )
    }
}
