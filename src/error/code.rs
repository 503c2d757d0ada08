//! `ErrorCode`: the machine-readable `error` of every error body (the API's
//! own and the HTTP layer's), each spelled once.

use serde::{Serialize, Serializer};

/// The machine-readable `error` of every error body, written once here.
/// The JSON text of each is its `as_str` (snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body could not be read.
    InvalidBody,
    /// The body is not the JSON asked for.
    InvalidJson,
    /// A field of the body has a wrong value or type.
    InvalidField,
    /// A query parameter is malformed.
    InvalidQuery,
    /// A header is malformed (Idempotency-Key).
    InvalidHeader,
    /// A pushed event is malformed.
    InvalidEvent,
    /// An event-type name does not follow the naming rules.
    InvalidEventType,
    /// No event of a batch was accepted.
    InvalidEvents,
    /// A batch is an empty array.
    EmptyBatch,
    UnknownEventType,
    /// The endpoint URL is well-formed but refused (scheme, port, ...).
    EndpointRefused,
    /// The endpoint resolves to a private address.
    PrivateEndpoint,
    /// The endpoint did not answer the verification call.
    EndpointValidationFailed,
    /// The token has the most subscriptions allowed.
    TooManySubscriptions,
    /// A dead letter's subscription was removed.
    SubscriptionInactive,
    DuplicateSubscription,
    /// A resend of a delivery that is still being sent.
    DeliveryPending,
    /// A resend or replay of a delivery whose payload was erased.
    PayloadErased,
    /// An idempotency key was used for another event.
    IdempotencyConflict,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    Unavailable,
    StorageUnavailable,
    InternalError,
    /// The HTTP layer could not parse the request.
    BadRequest,
    UriTooLong,
    RequestHeaderFieldsTooLarge,
    /// Any other refusal of the HTTP layer.
    HttpError,
}

impl ErrorCode {
    /// The code as it appears in the error body and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::InvalidEventType => "invalid_event_type",
            ErrorCode::InvalidEvents => "invalid_events",
            ErrorCode::EmptyBatch => "empty_batch",
            ErrorCode::UnknownEventType => "unknown_event_type",
            ErrorCode::EndpointRefused => "endpoint_refused",
            ErrorCode::PrivateEndpoint => "private_endpoint",
            ErrorCode::EndpointValidationFailed => "endpoint_validation_failed",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::SubscriptionInactive => "subscription_inactive",
            ErrorCode::DuplicateSubscription => "duplicate_subscription",
            ErrorCode::DeliveryPending => "delivery_pending",
            ErrorCode::PayloadErased => "payload_erased",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::RequestHeaderFieldsTooLarge => "request_header_fields_too_large",
            ErrorCode::HttpError => "http_error",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_code_serializes_as_its_text() {
        let codes = [
            ErrorCode::InvalidEvents,
            ErrorCode::RequestHeaderFieldsTooLarge,
            ErrorCode::EndpointValidationFailed,
        ];
        for code in codes {
            assert_eq!(serde_json::json!(code), serde_json::json!(code.as_str()));
        }
        assert_eq!(ErrorCode::UriTooLong.as_str(), "uri_too_long");
    }
}
