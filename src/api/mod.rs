//! The HTTP API: the public listener's subscription routes (`public`), the
//! internal listener's ingest and operations routes (`internal`), and what
//! they share: application state, authentication (`auth`) and request body
//! parsing (`body`).

pub mod auth;
pub mod body;
pub mod internal;
pub mod public;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::publisher::Publisher;
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
}

/// Shared by every handler of both listeners.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub router: Addr<Router>,
    pub publisher: Publisher,
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
        if self.store.backend() != crate::store::Backend::Postgres {
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

/// Unknown paths answer a JSON 404.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "there is no route {} {}; see the README for the API",
        req.method(),
        req.path()
    )))
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
