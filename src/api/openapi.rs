//! The OpenAPI 3.1 documents of both listeners (`GET /openapi.json`) and the
//! Swagger UI that shows them (`GET /docs`, from assets vendored into the
//! binary: nothing is fetched from a CDN, at build or at run time).
//!
//! The documents are generated from the handlers' own types, so they
//! cannot drift from the code. To add a route to a document:
//! 1. give its handler `#[utoipa::path(<method>, path = "<the path given to
//!    Resource::at>", tag = "...", security(("bearer" = [])) (not for a
//!    route without a token), params(...) (path parameters as
//!    `("id" = String, Path, description = "...")`, query parameters as an
//!    `IntoParams` struct, e.g. `PageQuery`), request_body = <a ToSchema
//!    type>, responses((status = 200, body = <a ToSchema type>),
//!    ErrorResponses))]` and make it `pub(crate)`;
//! 2. derive `ToSchema` on its request and response bodies (answer with
//!    those structs, not ad-hoc `json!`, so the document is what is sent);
//! 3. list the handler in `paths(...)` of `PublicApi` or `InternalApi` below
//!    and the path in `tests/it/openapi.rs`.
//!
//! Every 4xx/5xx answers `ErrorBody`; `ErrorResponses` lists them once.

use std::sync::{Arc, LazyLock};

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use super::resource::Resource;
use super::{
    batch, dead_letters, deliveries, endpoint_list, endpoint_policy, erasure, event_lookup, feed,
    internal, notices, public, subscription_changes, subscription_search,
};
use crate::error::ApiError;

/// The body of every error answer. Some add fields (a 409 for a duplicate
/// subscription adds `subscriptionId`).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable, snake case (e.g. `invalid_query`, `not_found`).
    pub error: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// The error answers any route may give, each with `ErrorBody`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ErrorResponses {
    /// Malformed: bad JSON, a wrong field, an unknown query parameter.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or a wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such resource (or another caller's).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Another method is allowed here (see `Allow`).
    #[response(status = 405)]
    MethodNotAllowed(ErrorBody),
    /// The request did not arrive in time.
    #[response(status = 408)]
    RequestTimeout(ErrorBody),
    /// It conflicts with what exists (a duplicate, an idempotency key).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is too large.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Well-formed but refused (an unknown event type, an endpoint that
    /// failed its verification call).
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    /// hookrelay's fault; the cause is in its log.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Overloaded or its database unavailable: retry.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Adds the bearer scheme named `bearer` that the routes' `security` use.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Public listener: a subscriber token (POST /internal/v1/tokens). \
                         Internal listener: the --internal-token.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The public listener's document.
#[derive(OpenApi)]
#[openapi(
    info(title = "hookrelay public API", license(name = "see the repository"), description = "Subscriptions of one subscriber (DESIGN.md section 3 and 6)."),
    paths(
        public::list_event_types,
        public::list,
        public::create,
        public::get,
        public::delete,
        subscription_changes::patch,
        subscription_changes::rotate_secret,
        subscription_changes::send_test,
        deliveries::list,
        deliveries::get,
        deliveries::resend,
        feed::feed,
        document,
        docs_index,
        docs_file,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
)]
pub struct PublicApi;

/// The internal listener's document.
#[derive(OpenApi)]
#[openapi(
    info(title = "hookrelay internal API", license(name = "see the repository"), description = "Ingest and operations (DESIGN.md sections 3 and 7)."),
    paths(
        internal::health,
        internal::metrics,
        internal::push_one,
        batch::push_batch,
        internal::create_token,
        internal::list_event_types,
        internal::put_event_type,
        endpoint_list::list_endpoints,
        endpoint_policy::patch_endpoint,
        dead_letters::list_dead_letters,
        dead_letters::replay_dead_letter,
        subscription_search::search,
        event_lookup::event,
        notices::list_notices,
        erasure::erase,
        erasure::get,
        document,
        docs_index,
        docs_file,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
)]
pub struct InternalApi;

/// Which listener a document describes.
#[derive(Clone, Copy)]
pub(crate) enum Listener {
    Public,
    Internal,
}

/// A listener's document as JSON text, made once.
fn document_text(listener: Listener) -> &'static str {
    static PUBLIC: LazyLock<String> = LazyLock::new(|| to_json(PublicApi::openapi()));
    static INTERNAL: LazyLock<String> = LazyLock::new(|| to_json(InternalApi::openapi()));
    match listener {
        Listener::Public => &PUBLIC,
        Listener::Internal => &INTERNAL,
    }
}

fn to_json(doc: utoipa::openapi::OpenApi) -> String {
    doc.to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"internal_error\",\"message\":\"{e}\"}}"))
}

/// The public listener's `/openapi.json` and `/docs`.
pub fn public_routes(cfg: &mut web::ServiceConfig) {
    routes(cfg, Listener::Public);
}

/// The internal listener's `/openapi.json` and `/docs`.
pub fn internal_routes(cfg: &mut web::ServiceConfig) {
    routes(cfg, Listener::Internal);
}

fn routes(cfg: &mut web::ServiceConfig, listener: Listener) {
    cfg.app_data(web::Data::new(listener));
    for resource in [
        Resource::at("/openapi.json").get(document),
        Resource::at("/docs").get(docs_index),
        Resource::at("/docs/{file}").get(docs_file),
    ] {
        cfg.service(resource.done());
    }
}

/// This listener's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "documentation",
    responses((status = 200, description = "The OpenAPI 3.1 document of this listener",
        content_type = "application/json", body = Object)))]
pub(crate) async fn document(listener: web::Data<Listener>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_text(**listener))
}

/// The Swagger UI's page.
#[utoipa::path(get, path = "/docs", tag = "documentation",
    responses((status = 200, description = "Swagger UI", content_type = "text/html", body = String)))]
pub(crate) async fn docs_index() -> Result<HttpResponse, ApiError> {
    swagger_file("index.html")
}

/// One of the Swagger UI's files (relative to `/docs/`).
#[utoipa::path(get, path = "/docs/{file}", tag = "documentation",
    params(("file" = String, Path, description = "A file of the Swagger UI")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = String),
        ErrorResponses))]
pub(crate) async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    swagger_file(&file)
}

/// The Swagger UI's settings: this listener's document, and no online
/// validator (its badge would call validator.swagger.io).
static SWAGGER: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"))
});

fn swagger_file(name: &str) -> Result<HttpResponse, ApiError> {
    let name = if name == "index.html" || name.is_empty() {
        "index.html"
    } else {
        name
    };
    match utoipa_swagger_ui::serve(name, SWAGGER.clone()) {
        Ok(Some(file)) => Ok(HttpResponse::Ok()
            .content_type(file.content_type)
            .body(local_page(name, file.bytes.into_owned()))),
        Ok(None) => Err(ApiError::NotFound(format!(
            "there is no file `{}` in the API documentation; open /docs",
            super::quote(name)
        ))),
        Err(e) => Err(ApiError::internal("docs", e.to_string())),
    }
}

/// The page's file names are relative to `/docs/`; served at `/docs` the
/// page would look for them at `/`, so its links are made absolute.
fn local_page(name: &str, bytes: Vec<u8>) -> Vec<u8> {
    if name != "index.html" {
        return bytes;
    }
    String::from_utf8_lossy(&bytes)
        .replace("\"./", "\"/docs/")
        .replace("href=\"index.css\"", "href=\"/docs/index.css\"")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_swagger_page_names_its_files_under_docs() {
        let page = local_page(
            "index.html",
            br#"<script src="./swagger-ui-bundle.js">"#.to_vec(),
        );
        assert_eq!(
            page,
            br#"<script src="/docs/swagger-ui-bundle.js">"#.to_vec()
        );
        assert_eq!(
            local_page("a.css", b"\"./x\"".to_vec()),
            b"\"./x\"".to_vec()
        );
    }

    #[test]
    fn both_documents_are_openapi_3_1_with_the_bearer_scheme() {
        for listener in [Listener::Public, Listener::Internal] {
            let doc: serde_json::Value = serde_json::from_str(document_text(listener)).unwrap();
            assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
            assert_eq!(
                doc["components"]["securitySchemes"]["bearer"]["scheme"],
                "bearer"
            );
        }
    }
}
