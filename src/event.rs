//! The platform's event format (DESIGN.md section 2): validation of a pushed
//! JSON value into an `Event`, with an error that names the field and says
//! what was expected. The validated event is serialized once; those bytes are
//! stored and delivered.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::quote;

/// Allowed `contextObjectType` values.
pub const CONTEXT_OBJECT_TYPES: &[&str] = &[
    "ASSESSMENT_RUN",
    "QUESTION_SET",
    "QUESTION",
    "ITEM_BANK",
    "QTI_SECTION",
    "DOCUMENT",
    "MARKETPLACE",
    "USER",
    "PRESET",
    "ASSET",
    "CUSTOM_USER_ROLE",
];

/// Allowed `associatedObjectType` values.
pub const ASSOCIATED_OBJECT_TYPES: &[&str] = &[
    "QUESTION_SET",
    "CANDIDATE",
    "COMMITTEE",
    "GROUP",
    "GRADING_INSTRUCTIONS",
    "USER",
    "DOCUMENT",
    "USER_ASSESSMENT",
    "USER_QUESTION",
    "QUESTION",
    "MARKETPLACE_PROPERTY",
];

/// Allowed `extraInfo.type` values.
pub const EXTRA_INFO_TYPES: &[&str] = &[
    "String",
    "Date",
    "customUserRole",
    "role",
    "xml",
    "accessLevel",
    "adminLevel",
    "scoreDisplayMode",
    "JSON",
];

/// Longest `eventId` (idempotency key) accepted.
pub const MAX_EVENT_ID_LEN: usize = 200;

/// A validated event, in the platform's field order. Optional fields that were
/// not given are absent from the serialized form.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// A registered event type.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub event: String,
    pub marketplace_id: i64,
    pub context_object_id: i64,
    pub context_object_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associated_object_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associated_object_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggering_user_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triggering_user_name: Option<String>,
    /// UTC, whole seconds: `2021-06-29T18:16:06Z`.
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")]
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub extra_info: Option<Value>,
    /// The publisher's own id for the event; doubles as an idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub event_id: Option<String>,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A field is missing, has the wrong type or an unknown value (400).
    #[error("{0}")]
    Invalid(String),
    /// The event type is not in the catalog (422).
    #[error("{0}")]
    UnknownEventType(String),
}

const KNOWN_FIELDS: &[&str] = &[
    "event",
    "marketplaceId",
    "contextObjectId",
    "contextObjectType",
    "associatedObjectId",
    "associatedObjectType",
    "triggeringUserId",
    "triggeringUserName",
    "timestamp",
    "extraInfo",
    "eventId",
];

fn invalid(msg: String) -> EventError {
    EventError::Invalid(msg)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(invalid(format!("`{field}` is required"))),
        Some(v) => Ok(v),
    }
}

fn optional<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn integer(field: &str, v: &Value) -> Result<i64, EventError> {
    v.as_i64().ok_or_else(|| {
        let whole = v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0);
        invalid(if whole {
            format!(
                "`{field}` is {}, out of range: it must be an integer from {} to {}",
                quote(&v.to_string()),
                i64::MIN,
                i64::MAX
            )
        } else {
            format!(
                "`{field}` must be an integer (a whole number within 64 bits), got {}",
                type_name(v)
            )
        })
    })
}

fn string<'a>(field: &str, v: &'a Value) -> Result<&'a str, EventError> {
    v.as_str()
        .ok_or_else(|| invalid(format!("`{field}` must be a string, got {}", type_name(v))))
}

fn one_of(field: &str, s: &str, allowed: &[&str]) -> Result<String, EventError> {
    if allowed.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(invalid(format!(
            "`{field}` is `{}`, which is not one of: {}",
            quote(s),
            allowed.join(", ")
        )))
    }
}

/// `yyyy-MM-dd'T'HH:mm:ss'Z'`, exactly, and a real date and time.
fn timestamp(s: &str) -> Result<String, EventError> {
    let shape_ok = s.len() == 20
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok || !real_date_time(s.as_bytes()) {
        return Err(invalid(format!(
            "`timestamp` is `{}`; it must be a UTC time in the form yyyy-MM-ddTHH:mm:ssZ, like 2021-06-29T18:16:06Z",
            quote(s)
        )));
    }
    Ok(s.to_string())
}

/// Whether a text of the right shape names a real date and time: what
/// chrono's `%Y-%m-%dT%H:%M:%SZ` accepts (a leap second included), without
/// parsing a format string for every event.
fn real_date_time(s: &[u8]) -> bool {
    let number = |range: std::ops::Range<usize>| {
        s[range]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    chrono::NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10)).is_some()
        && number(11..13) < 24
        && number(14..16) < 60
        && number(17..19) <= 60
}

fn extra_info(v: Value) -> Result<Value, EventError> {
    let obj = v.as_object().ok_or_else(|| {
        invalid(format!(
            "`extraInfo` must be an object with `type` and `value`, got {}",
            type_name(&v)
        ))
    })?;
    for key in obj.keys() {
        if !["type", "value", "previousValue"].contains(&key.as_str()) {
            return Err(invalid(format!(
                "`extraInfo.{}` is not a known field; extraInfo has `type`, `value` and optional `previousValue`",
                quote(key)
            )));
        }
    }
    let kind = one_of(
        "extraInfo.type",
        string(
            "extraInfo.type",
            required(obj, "type").map_err(|_| invalid("`extraInfo.type` is required".into()))?,
        )?,
        EXTRA_INFO_TYPES,
    )?;
    let check_value = |field: &str, value: &Value| -> Result<(), EventError> {
        let ok = match value {
            Value::String(_) => true,
            Value::Object(_) => kind == "JSON",
            _ => false,
        };
        if ok {
            Ok(())
        } else if kind == "JSON" {
            Err(invalid(format!(
                "`extraInfo.{field}` must be a string or a JSON object when type is JSON, got {}",
                type_name(value)
            )))
        } else {
            Err(invalid(format!(
                "`extraInfo.{field}` must be a string when type is {kind}, got {}",
                type_name(value)
            )))
        }
    };
    let value = obj
        .get("value")
        .filter(|v| !v.is_null())
        .ok_or_else(|| invalid("`extraInfo.value` is required".into()))?;
    check_value("value", value)?;
    if let Some(prev) = obj.get("previousValue").filter(|v| !v.is_null()) {
        check_value("previousValue", prev)?;
    }
    Ok(v)
}

/// An event's fields with their JSON types checked, their values not yet.
/// Deserialized straight from the request body when every field has the
/// right type (no intermediate `Value` tree); otherwise `fields_of` finds
/// the field to blame.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fields<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    marketplace_id: i64,
    context_object_id: i64,
    #[serde(borrow)]
    context_object_type: Cow<'a, str>,
    associated_object_id: Option<i64>,
    #[serde(borrow)]
    associated_object_type: Option<Cow<'a, str>>,
    triggering_user_id: Option<i64>,
    #[serde(borrow)]
    triggering_user_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(default, deserialize_with = "crate::json::strict_option")]
    extra_info: Option<Value>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
}

/// The fields of a pushed JSON value, or the first one that is missing or
/// of the wrong type.
fn fields_of(value: &Value) -> Result<Fields<'_>, EventError> {
    let obj = value.as_object().ok_or_else(|| {
        invalid(format!(
            "an event must be a JSON object, got {}",
            type_name(value)
        ))
    })?;
    if let Some(unknown) = obj.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "`{}` is not a known event field; the fields are: {}",
            quote(unknown),
            KNOWN_FIELDS.join(", ")
        )));
    }
    let text = |field: &str| -> Result<Cow<'_, str>, EventError> {
        Ok(Cow::Borrowed(string(field, required(obj, field)?)?))
    };
    let optional_text = |field: &str| -> Result<Option<Cow<'_, str>>, EventError> {
        optional(obj, field)
            .map(|v| string(field, v).map(Cow::Borrowed))
            .transpose()
    };
    let optional_integer = |field: &str| -> Result<Option<i64>, EventError> {
        optional(obj, field).map(|v| integer(field, v)).transpose()
    };
    Ok(Fields {
        event: text("event")?,
        event_id: optional_text("eventId")?,
        marketplace_id: integer("marketplaceId", required(obj, "marketplaceId")?)?,
        context_object_id: integer("contextObjectId", required(obj, "contextObjectId")?)?,
        context_object_type: text("contextObjectType")?,
        associated_object_id: optional_integer("associatedObjectId")?,
        associated_object_type: optional_text("associatedObjectType")?,
        triggering_user_id: optional_integer("triggeringUserId")?,
        triggering_user_name: optional_text("triggeringUserName")?,
        timestamp: text("timestamp")?,
        extra_info: optional(obj, "extraInfo").cloned(),
    })
}

impl Event {
    /// Validates a pushed JSON value. `is_known_type` answers whether an event
    /// type is in the catalog.
    pub fn from_value(
        value: &Value,
        is_known_type: impl Fn(&str) -> bool,
    ) -> Result<Event, EventError> {
        Event::checked(fields_of(value)?, is_known_type)
    }

    /// Validates one pushed event straight from its JSON text, the fast way;
    /// `None` when a field is missing, unknown or of the wrong type (or the
    /// text is not a JSON object): `from_value` then names the culprit.
    pub fn from_json(
        json: &[u8],
        is_known_type: impl Fn(&str) -> bool,
    ) -> Option<Result<Event, EventError>> {
        let fields: Fields = serde_json::from_slice(json).ok()?;
        Some(Event::checked(fields, is_known_type))
    }

    /// Checks the values of well-typed fields.
    fn checked(f: Fields, is_known_type: impl Fn(&str) -> bool) -> Result<Event, EventError> {
        if f.event.is_empty() {
            return Err(invalid("`event` must not be empty".into()));
        }
        if let Some(id) = &f.event_id
            && (id.is_empty() || id.len() > MAX_EVENT_ID_LEN)
        {
            return Err(invalid(format!(
                "`eventId` must be 1 to {MAX_EVENT_ID_LEN} characters"
            )));
        }
        let parsed = Event {
            marketplace_id: f.marketplace_id,
            context_object_id: f.context_object_id,
            context_object_type: one_of(
                "contextObjectType",
                &f.context_object_type,
                CONTEXT_OBJECT_TYPES,
            )?,
            associated_object_id: f.associated_object_id,
            associated_object_type: f
                .associated_object_type
                .as_deref()
                .map(|s| one_of("associatedObjectType", s, ASSOCIATED_OBJECT_TYPES))
                .transpose()?,
            triggering_user_id: f.triggering_user_id,
            triggering_user_name: f.triggering_user_name.map(Cow::into_owned),
            timestamp: timestamp(&f.timestamp)?,
            extra_info: f.extra_info.map(extra_info).transpose()?,
            event_id: f.event_id.map(Cow::into_owned),
            event: f.event.into_owned(),
        };
        if !is_known_type(&parsed.event) {
            return Err(EventError::UnknownEventType(format!(
                "`event` is `{}`, which is not a registered event type; GET /internal/v1/event-types lists them and PUT /internal/v1/event-types/{{name}} adds one",
                quote(&parsed.event)
            )));
        }
        Ok(parsed)
    }

    /// The body delivered to subscribers.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("an event always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Result<Event, EventError> {
        Event::from_value(&v, |t| t == "qti_export_ready")
    }

    fn base() -> Value {
        json!({
            "event": "qti_export_ready",
            "marketplaceId": 1357554,
            "contextObjectId": 74379551,
            "contextObjectType": "QUESTION_SET",
            "timestamp": "2021-06-29T18:16:06Z"
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v[field] = value;
        v
    }

    fn error_of(v: Value) -> String {
        ok(v).unwrap_err().to_string()
    }

    #[test]
    fn the_platform_example_is_valid_and_round_trips() {
        let e = ok(base()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&e.to_body()).unwrap(), base());
    }

    #[test]
    fn a_full_event_keeps_every_field() {
        let mut v = base();
        v["associatedObjectId"] = json!(5);
        v["associatedObjectType"] = json!("CANDIDATE");
        v["triggeringUserId"] = json!(7);
        v["triggeringUserName"] = json!("abc");
        v["extraInfo"] = json!({"type": "JSON", "value": {"a": 1}, "previousValue": "x"});
        v["eventId"] = json!("evt-1");
        let e = ok(v.clone()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&e.to_body()).unwrap(), v);
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut missing = base();
        missing.as_object_mut().unwrap().remove("event");
        assert!(error_of(missing).contains("`event` is required"));
        assert!(error_of(with("marketplaceId", json!("1"))).contains("marketplaceId"));
        assert!(error_of(with("contextObjectId", json!(1.5))).contains("contextObjectId"));
        assert!(error_of(with("contextObjectType", json!("NOPE"))).contains("contextObjectType"));
        assert!(
            error_of(with("associatedObjectType", json!("NOPE"))).contains("associatedObjectType")
        );
        assert!(error_of(with("timestamp", json!("2021-06-29 18:16:06"))).contains("timestamp"));
        assert!(
            error_of(with("timestamp", json!("2021-06-29T18:16:06.123Z"))).contains("timestamp")
        );
        assert!(error_of(with("timestamp", json!("2021-02-30T18:16:06Z"))).contains("timestamp"));
        assert!(
            error_of(with("extraInfo", json!({"type": "Bogus", "value": "x"})))
                .contains("extraInfo.type")
        );
        assert!(error_of(with("extraInfo", json!({"type": "String"}))).contains("extraInfo.value"));
        assert!(
            error_of(with(
                "extraInfo",
                json!({"type": "String", "value": {"a": 1}})
            ))
            .contains("extraInfo.value")
        );
        assert!(error_of(with("surprise", json!(1))).contains("surprise"));
        assert!(error_of(json!([1])).contains("object"));
    }

    #[test]
    fn an_unknown_event_type_is_its_own_error() {
        assert!(matches!(
            ok(with("event", json!("made_up"))),
            Err(EventError::UnknownEventType(_))
        ));
    }

    /// What the API does: the fast path, or `from_value` when it cannot tell.
    fn via_json(v: &Value) -> Result<Event, EventError> {
        let text = serde_json::to_vec(v).unwrap();
        let known = |t: &str| t == "qti_export_ready";
        Event::from_json(&text, known).unwrap_or_else(|| Event::from_value(v, known))
    }

    #[test]
    fn the_fast_path_decides_exactly_as_from_value() {
        let mut full = base();
        full["associatedObjectId"] = json!(5);
        full["associatedObjectType"] = json!("CANDIDATE");
        full["triggeringUserId"] = json!(7);
        full["triggeringUserName"] = json!("Zoë \"the\" grader\n");
        full["extraInfo"] = json!({"type": "JSON", "value": {"a": [1, 2]}});
        full["eventId"] = json!("evt-1");
        let mut nulls = base();
        nulls["associatedObjectId"] = Value::Null;
        nulls["extraInfo"] = Value::Null;
        let cases = [
            base(),
            full,
            nulls,
            with("event", json!("")),
            with("event", json!("made_up")),
            with("event", Value::Null),
            with("eventId", json!("")),
            with("eventId", json!("x".repeat(MAX_EVENT_ID_LEN + 1))),
            with("marketplaceId", json!("1")),
            with("marketplaceId", json!(u64::MAX)),
            with("contextObjectId", json!(1.5)),
            with("contextObjectType", json!("NOPE")),
            with("associatedObjectType", json!("NOPE")),
            with("triggeringUserName", json!(3)),
            with("timestamp", json!("2021-02-30T18:16:06Z")),
            with("extraInfo", json!({"type": "String", "value": {"a": 1}})),
            with("extraInfo", json!("text")),
            with("surprise", json!(1)),
            json!([1]),
            json!("event"),
        ];
        for case in cases {
            assert_eq!(via_json(&case), ok(case.clone()), "{case}");
        }
    }

    #[test]
    fn the_fast_path_takes_well_typed_events_and_their_value_errors() {
        let known = |t: &str| t == "qti_export_ready";
        let body = serde_json::to_vec(&base()).unwrap();
        let event = Event::from_json(&body, known).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&event.to_body()).unwrap(),
            base()
        );
        let bad_type = serde_json::to_vec(&with("contextObjectType", json!("NOPE"))).unwrap();
        assert!(matches!(
            Event::from_json(&bad_type, known),
            Some(Err(EventError::Invalid(_)))
        ));
        let wrong_type = serde_json::to_vec(&with("marketplaceId", json!("1"))).unwrap();
        assert!(Event::from_json(&wrong_type, known).is_none());
        assert!(Event::from_json(b"{not json", known).is_none());
    }

    #[test]
    fn timestamps_are_checked_as_chrono_would() {
        for (text, valid) in [
            ("2021-06-29T18:16:06Z", true),
            ("2020-02-29T00:00:00Z", true),
            ("2021-06-30T23:59:60Z", true),
            ("0000-01-01T00:00:00Z", true),
            ("2021-02-29T00:00:00Z", false),
            ("2021-13-01T00:00:00Z", false),
            ("2021-00-10T00:00:00Z", false),
            ("2021-06-00T00:00:00Z", false),
            ("2021-06-29T24:00:00Z", false),
            ("2021-06-29T18:60:00Z", false),
            ("2021-06-29T18:16:61Z", false),
        ] {
            assert_eq!(timestamp(text).is_ok(), valid, "{text}");
            assert_eq!(
                chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%SZ").is_ok(),
                valid,
                "chrono on {text}"
            );
        }
    }
}
