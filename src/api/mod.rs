//! The HTTP API: the public listener's subscription routes (`public`), the
//! internal listener's ingest and operations routes (`internal`), and what
//! they share: application state, authentication (`auth`) and request body
//! parsing (`body`).

pub mod auth;
pub mod batch;
pub mod body;
pub mod dead_letters;
pub mod deliveries;
pub mod endpoint_list;
pub mod endpoint_policy;
pub mod erasure;
pub mod event_lookup;
pub mod feed;
pub mod framing;
pub mod internal;
pub mod notices;
pub mod openapi;
pub mod page;
pub mod public;
pub mod resource;
pub mod subscription_changes;
pub mod subscription_search;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::catalog::Catalog;
use crate::cluster::Ownership;
use crate::error::{ApiError, ErrorCode};
use crate::ingest::publisher::Publisher;
use crate::router::Router;
use crate::store::Store;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub allow_private_endpoints: bool,
    pub verification_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_batch_events: usize,
    /// SHA-256 of the internal token, when one is configured.
    pub internal_token_hash: Option<String>,
    pub max_subscriptions_per_token: u32,
    /// Time a request body may take to arrive.
    pub request_timeout: Duration,
    /// `--history-retention`: how far back the catch-up feed reaches.
    pub history_retention: Duration,
}

/// Shared by every handler of both listeners.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub router: Addr<Router>,
    pub publisher: Publisher,
    /// Which endpoints this node delivers for.
    pub ownership: Ownership,
    pub catalog: Catalog,
    pub settings: Arc<ApiSettings>,
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// This node's id.
    pub node_id: Arc<str>,
}

pub type State = web::Data<AppState>;

impl AppState {
    /// Reads the event-type catalog again when other nodes may have changed
    /// it (a cluster), so that a type registered on any node is known here
    /// at once; `false` when nothing was read.
    pub async fn reload_catalog(&self) -> bool {
        if self.ownership.owns_all() {
            return false;
        }
        match self.store.run(crate::store::catalog::list).await {
            Ok(entries) => {
                self.catalog.replace(entries);
                true
            }
            Err(e) => {
                log::warn!("could not read the event-type catalog: {e}");
                false
            }
        }
    }
}

/// Makes every error answer JSON `{"error","message"}`, also those the
/// framework writes itself (a malformed path or query, a body it could not
/// read): an answer of 400 or more without a JSON (or, from the web UI,
/// HTML) body gets one.
pub fn json_errors<B: actix_web::body::MessageBody + 'static>()
-> actix_web::middleware::ErrorHandlers<B> {
    actix_web::middleware::ErrorHandlers::new().default_handler(json_error_body)
}

fn json_error_body<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;
    // JSON already, or a page of the web UI (which answers in HTML).
    let answered = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if answered {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, hint) = match status.as_u16() {
        400 => (ErrorCode::BadRequest, "the request is malformed"),
        404 => (
            ErrorCode::NotFound,
            "there is no such route; see the README for the API",
        ),
        405 => (
            ErrorCode::MethodNotAllowed,
            "this method is not allowed here",
        ),
        408 => (
            ErrorCode::RequestTimeout,
            "the request did not arrive in time; send it at once",
        ),
        413 => (ErrorCode::PayloadTooLarge, "the request is too large"),
        414 => (ErrorCode::UriTooLong, "the request path is too long"),
        431 => (
            ErrorCode::RequestHeaderFieldsTooLarge,
            "the request headers are too large",
        ),
        s if s >= 500 => (
            ErrorCode::InternalError,
            "hookrelay hit an internal error; the cause is in its log",
        ),
        _ => (ErrorCode::HttpError, "the request was refused"),
    };
    let (req, original) = res.into_parts();
    let mut answer = HttpResponse::build(status);
    for (name, value) in original.headers() {
        if name != actix_web::http::header::CONTENT_TYPE
            && name != actix_web::http::header::CONTENT_LENGTH
        {
            answer.insert_header((name.clone(), value.clone()));
        }
    }
    let answer =
        answer.json(serde_json::json!({ "error": code, "message": format!("{hint} ({status})") }));
    Ok(ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, answer).map_into_right_body(),
    ))
}

/// Unknown paths answer a JSON 404.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "there is no route {} {}; see the README for the API",
        req.method(),
        req.path()
    )))
}

/// Most characters of a caller's value quoted back in an error message.
pub const QUOTE_AT_MOST: usize = 100;

/// A caller's value as quoted in an error message: at most
/// `QUOTE_AT_MOST` characters, and `…` when it was cut.
pub fn quote(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(QUOTE_AT_MOST) {
        None => value.into(),
        Some((cut, _)) => format!("{}…", &value[..cut]).into(),
    }
}

/// RFC 3339 UTC with whole seconds, as in the event format.
pub fn format_time(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a numeric path id; anything else is simply not found.
pub fn path_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("there is no {what} `{raw}`")))
}
