//! Test data and small assertions: events, unique ids, the JSON error shape.

use serde_json::{Value, json};

use super::Resp;

/// The event types every test relies on.
pub const REVISION_STATUS_UPDATED: &str = "revision_status_updated";
pub const QTI_EXPORT_READY: &str = "qti_export_ready";
pub const CONFIRM_FINAL_GRADES: &str = "confirm_final_grades";

/// A minimal valid event.
pub fn event(name: &str, marketplace_id: i64, context_object_id: i64) -> Value {
    json!({
        "event": name,
        "marketplaceId": marketplace_id,
        "contextObjectId": context_object_id,
        "contextObjectType": "QUESTION_SET",
        "timestamp": "2021-06-29T18:16:06Z",
    })
}

/// An event with every optional field set.
pub fn full_event(name: &str, marketplace_id: i64, context_object_id: i64) -> Value {
    json!({
        "event": name,
        "marketplaceId": marketplace_id,
        "contextObjectId": context_object_id,
        "contextObjectType": "ASSESSMENT_RUN",
        "associatedObjectId": 987654,
        "associatedObjectType": "CANDIDATE",
        "triggeringUserId": 424242,
        "triggeringUserName": "Ada Lovelace (ÆØÅ \"quoted\")",
        "timestamp": "2021-06-29T18:16:06Z",
        "extraInfo": {"type": "String", "value": "Approved", "previousValue": "Draft"},
    })
}

/// Asserts `resp` is the JSON error shape `{"error": code, "message": text}`
/// with the given status; returns the message.
#[track_caller]
pub fn assert_json_error(resp: &Resp, status: u16, context: &str) -> String {
    let (got, body) = resp;
    assert_eq!(
        *got, status,
        "{context}: expected status {status}, got {got} with body {body}"
    );
    let code = body.get("error").and_then(Value::as_str);
    let message = body.get("message").and_then(Value::as_str);
    assert!(
        code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
        "{context}: expected a JSON error {{\"error\",\"message\"}}, got {body}"
    );
    message.unwrap().to_string()
}

/// The body as JSON text, for "never contains X" checks.
pub fn text_of(v: &Value) -> String {
    v.to_string()
}

/// A unique-ish id so tests sharing nothing still use distinct values.
pub fn unique_i64() -> i64 {
    (uuid::Uuid::new_v4().as_u128() as i64 & 0x0000_ffff_ffff_ffff).max(1)
}
