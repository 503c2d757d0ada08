//! The one error type of the HTTP API and its mapping to status codes. Every
//! handler returns `ApiError`; this is the only place that decides a status
//! and writes an error body (`{"error": code, "message": text}`), with the
//! codes of `ErrorCode`. Internal errors answer an opaque 500, keep their
//! cause for the log (written once, with its whole chain, when the answer
//! is built) and are counted in `hookrelay_internal_errors_total`.

mod code;

use std::error::Error;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

pub use code::ErrorCode;

use crate::metrics::{self, ErrorSite};
use crate::store::StoreError;

/// The cause of an internal error, kept for the log.
pub type Cause = Box<dyn Error + Send + Sync>;

/// The message of every 500: the cause stays in the log.
const INTERNAL_MESSAGE: &str =
    "hookrelay hit an internal error; the cause is in its log. Retry the request.";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a wrong type, a missing field.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, not with this method; `allow` lists those it has.
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body did not arrive in time; the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but refused: an unknown event type, an endpoint that failed
    /// validation, a private address.
    #[error("{message}")]
    Unprocessable { code: ErrorCode, message: String },
    /// It conflicts with what exists: a duplicate, an idempotency key used
    /// for another event. `details` are more fields of the error body.
    #[error("{message}")]
    Conflict {
        code: ErrorCode,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// The node cannot take the request now; the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The database does not answer or cannot store: retry later.
    #[error("{0}")]
    StorageUnavailable(String),
    /// Our fault (database, bug) at `place`. The cause is logged, never shown.
    #[error("internal error in {place}")]
    Internal { place: &'static str, source: Cause },
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// An internal error at `place` (a short name of the step that failed).
    pub fn internal(place: &'static str, cause: impl Into<Cause>) -> Self {
        ApiError::Internal {
            place,
            source: cause.into(),
        }
    }

    /// The machine-readable code of the error body.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Conflict { code, .. } => *code,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::RequestTimeout(_) => ErrorCode::RequestTimeout,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
            ApiError::Internal { .. } => ErrorCode::InternalError,
        }
    }

    /// The error body as a JSON value (also used inside batch results).
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            ApiError::Internal { .. } => INTERNAL_MESSAGE.to_string(),
            other => other.to_string(),
        };
        let mut body = json!({ "error": self.code(), "message": message });
        if let ApiError::Conflict {
            details: Some(serde_json::Value::Object(more)),
            ..
        } = self
        {
            for (k, v) in more {
                body[k] = v.clone();
            }
        }
        body
    }

    /// The headers its answer carries besides the body's.
    fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            ApiError::Unauthorized(_) => vec![("WWW-Authenticate", "Bearer".into())],
            ApiError::Unavailable(_) => vec![("Retry-After", "1".into())],
            ApiError::StorageUnavailable(_) => vec![("Retry-After", "2".into())],
            ApiError::MethodNotAllowed { allow, .. } => vec![("Allow", allow.clone())],
            _ => Vec::new(),
        }
    }

    /// Logs an internal error with its whole cause chain, and counts it.
    pub(crate) fn report(&self) {
        if let ApiError::Internal { place, source } = self {
            log::error!(
                "internal error in {place}: {}",
                cause_chain(source.as_ref())
            );
            metrics::internal_error(ErrorSite::Api);
        }
    }
}

/// An error and every error beneath it, outermost first, for the log.
pub fn cause_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        // A message that quotes its cause (`"...: {0}"`) is not repeated.
        if !text.contains(&line) {
            text.push_str(": caused by: ");
            text.push_str(&line);
        }
        next = cause.source();
    }
    text
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) | ApiError::StorageUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.report();
        let mut response = HttpResponse::build(self.status_code());
        for header in self.headers() {
            response.insert_header(header);
        }
        if let ApiError::RequestTimeout(_) = self {
            response.force_close();
        }
        response.json(self.body())
    }
}

impl From<StoreError> for ApiError {
    /// The database's own trouble is a 503 that says what is wrong; any
    /// other failure is ours (500).
    fn from(e: StoreError) -> Self {
        match e.unavailable() {
            Some(why) => ApiError::StorageUnavailable(format!("{why}; retry after a few seconds")),
            None => ApiError::internal("store", e),
        }
    }
}

impl From<actix_web::error::PayloadError> for ApiError {
    fn from(e: actix_web::error::PayloadError) -> Self {
        match e {
            actix_web::error::PayloadError::Overflow => body_too_large(),
            other => ApiError::bad_request(
                ErrorCode::InvalidBody,
                format!("could not read the request body: {other}"),
            ),
        }
    }
}

/// The 413 answer for a body over `--max-body-bytes`.
pub fn body_too_large() -> ApiError {
    ApiError::PayloadTooLarge(
        "the request body is larger than this server accepts (--max-body-bytes); send less, or split a batch".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn header(response: &HttpResponse, name: &str) -> Option<String> {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }

    fn body_text(response: HttpResponse) -> String {
        let bytes = response.into_body().try_into_bytes().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A cause that wraps another, like a store error over a driver's.
    #[derive(Debug, thiserror::Error)]
    #[error("query failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_variant_answers_its_status_and_code() {
        let cases = [
            (
                ApiError::bad_request(ErrorCode::InvalidJson, "m"),
                400,
                "invalid_json",
            ),
            (ApiError::Unauthorized("m".into()), 401, "unauthorized"),
            (ApiError::NotFound("m".into()), 404, "not_found"),
            (
                ApiError::MethodNotAllowed {
                    message: "m".into(),
                    allow: "GET".into(),
                },
                405,
                "method_not_allowed",
            ),
            (
                ApiError::PayloadTooLarge("m".into()),
                413,
                "payload_too_large",
            ),
            (ApiError::RequestTimeout("m".into()), 408, "request_timeout"),
            (
                ApiError::UnsupportedMediaType("m".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::unprocessable(ErrorCode::PrivateEndpoint, "m"),
                422,
                "private_endpoint",
            ),
            (
                ApiError::Conflict {
                    code: ErrorCode::DuplicateSubscription,
                    message: "m".into(),
                    details: None,
                },
                409,
                "duplicate_subscription",
            ),
            (ApiError::Unavailable("m".into()), 503, "unavailable"),
            (
                ApiError::StorageUnavailable("m".into()),
                503,
                "storage_unavailable",
            ),
            (ApiError::internal("test", "cause"), 500, "internal_error"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status_code().as_u16(), status, "{error:?}");
            assert_eq!(error.body()["error"], code, "{error:?}");
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert!(body_text(response).contains(&format!("\"error\":\"{code}\"")));
        }
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let response = ApiError::Unauthorized("m".into()).error_response();
        assert_eq!(
            header(&response, "WWW-Authenticate").as_deref(),
            Some("Bearer")
        );
    }

    #[test]
    fn unavailable_asks_to_retry_after_one_second() {
        let response = ApiError::Unavailable("m".into()).error_response();
        assert_eq!(header(&response, "Retry-After").as_deref(), Some("1"));
    }

    #[test]
    fn storage_unavailable_asks_to_retry_after_two_seconds() {
        let response = ApiError::StorageUnavailable("m".into()).error_response();
        assert_eq!(header(&response, "Retry-After").as_deref(), Some("2"));
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let error = ApiError::MethodNotAllowed {
            message: "m".into(),
            allow: "GET, POST".into(),
        };
        let response = error.error_response();
        assert_eq!(header(&response, "Allow").as_deref(), Some("GET, POST"));
    }

    #[test]
    fn other_errors_carry_no_extra_headers() {
        let response = ApiError::NotFound("m".into()).error_response();
        for name in ["WWW-Authenticate", "Retry-After", "Allow"] {
            assert_eq!(header(&response, name), None, "{name}");
        }
    }

    #[test]
    fn a_request_timeout_closes_the_connection() {
        let response = ApiError::RequestTimeout("m".into()).error_response();
        assert!(!response.head().keep_alive());
    }

    #[test]
    fn a_conflict_adds_its_details_to_the_body() {
        let error = ApiError::Conflict {
            code: ErrorCode::IdempotencyConflict,
            message: "used before".into(),
            details: Some(json!({ "eventId": "e1" })),
        };
        assert_eq!(
            error.body(),
            json!({ "error": "idempotency_conflict", "message": "used before", "eventId": "e1" })
        );
    }

    #[test]
    fn an_internal_error_never_shows_its_cause() {
        let cause = Outer(std::io::Error::other("password=hunter2 at db.example"));
        let error = ApiError::internal("store", cause);
        let body = error.body();
        assert_eq!(body["message"], INTERNAL_MESSAGE);
        let text = body_text(error.error_response());
        for secret in ["hunter2", "query failed", "store"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn the_cause_chain_names_every_cause_once() {
        let cause = Outer(std::io::Error::other("disk full"));
        assert_eq!(cause_chain(&cause), "query failed: caused by: disk full");
        let quoting = StoreError::Migration("bad column".into());
        assert_eq!(
            cause_chain(&quoting),
            "database migration failed: bad column"
        );
    }

    #[test]
    fn an_internal_error_keeps_its_cause_as_its_source() {
        let error = ApiError::internal("store", Outer(std::io::Error::other("disk full")));
        assert_eq!(
            cause_chain(&error),
            "internal error in store: caused by: query failed: caused by: disk full"
        );
    }
}
