//! The one error type of the HTTP API and its mapping to status codes. Every
//! handler returns `ApiError`; this is the only place that decides a status
//! and writes an error body (`{"error": code, "message": text}`). Internal
//! errors answer an opaque 500 and keep their cause for the log.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a wrong type, a missing field.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
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
    Unprocessable { code: &'static str, message: String },
    /// It conflicts with what exists: a duplicate, an idempotency key used
    /// for another event. `details` are more fields of the error body.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Option<serde_json::Value>,
    },
    /// The node cannot take the request now; the caller should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The database does not answer or cannot store: retry later.
    #[error("{0}")]
    StorageUnavailable(String),
    /// Our fault (database, bug). The cause is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// The machine-readable code of the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Conflict { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The error body as a JSON value (also used inside batch results).
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            ApiError::Internal(_) => {
                "hookrelay hit an internal error; the cause is in its log. Retry the request."
                    .to_string()
            }
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
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            log::error!("internal error: {cause}");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized(_) = self {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        match self {
            ApiError::Unavailable(_) => {
                response.insert_header(("Retry-After", "1"));
            }
            ApiError::StorageUnavailable(_) => {
                response.insert_header(("Retry-After", "2"));
            }
            ApiError::RequestTimeout(_) => {
                response.force_close();
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header(("Allow", allow.as_str()));
            }
            _ => {}
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
            None => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<actix_web::error::PayloadError> for ApiError {
    fn from(e: actix_web::error::PayloadError) -> Self {
        match e {
            actix_web::error::PayloadError::Overflow => body_too_large(),
            other => ApiError::bad_request(
                "invalid_body",
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
