//! Erasure by data subject (DESIGN.md section 9): the decisions, as pure
//! functions. Which stored event names a person (`names_user`), how an
//! erased payload is stored (`ERASED_BODY`, `is_erased`), and who asked
//! (`requester`). The SQL is `store::erasures`; the request and its
//! batches are `api::erasure`.
//!
//! An event names user U of its marketplace when U is its
//! `triggeringUserId`, or its `contextObjectId` or `associatedObjectId`
//! with that object's type `USER` or `CANDIDATE`. Other object types
//! (a question set, a document) carry ids of other things that happen to
//! be numbers, and never match.

use serde_json::Value;

/// The stored body of an event whose payload was erased: the empty string.
/// No accepted event is empty (every one is a JSON object), so it cannot be
/// mistaken for a payload. Every reader of `events.body` honours it: the
/// views show `payload: null`, the catch-up feed leaves the event out, and
/// an endpoint actor never sends it.
pub const ERASED_BODY: &str = "";

/// Whether a stored event body is an erased payload.
pub fn is_erased(body: &str) -> bool {
    body == ERASED_BODY
}

/// The object types whose id is a person's user id.
const PERSON_TYPES: [&str; 2] = ["USER", "CANDIDATE"];

/// Whether the stored event `body` names `user_id`. A body that is not a
/// JSON object (or is erased already) names nobody.
pub fn names_user(body: &str, user_id: i64) -> bool {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let id_is_user = |field: &str| event.get(field).and_then(Value::as_i64) == Some(user_id);
    let person = |type_field: &str| {
        event
            .get(type_field)
            .and_then(Value::as_str)
            .is_some_and(|t| PERSON_TYPES.contains(&t))
    };
    id_is_user("triggeringUserId")
        || (person("contextObjectType") && id_is_user("contextObjectId"))
        || (person("associatedObjectType") && id_is_user("associatedObjectId"))
}

/// The text a cheap SQL prefilter looks for (`body LIKE '%<it>%'`): every
/// body that names the user contains the user id's digits. `names_user`
/// decides.
pub fn prefilter_pattern(user_id: i64) -> String {
    format!("%{user_id}%")
}

/// Who asked for an erasure when no `X-Requested-By` header names anyone.
pub const DEFAULT_REQUESTER: &str = "internal token";
/// Longest `X-Requested-By` kept in the audit row.
pub const MAX_REQUESTER_LEN: usize = 200;

/// The requester recorded in the audit row: the `X-Requested-By` header
/// (1 to `MAX_REQUESTER_LEN` printable ASCII characters, trimmed) when
/// given, else `DEFAULT_REQUESTER`. `Err` says what is wrong with it.
pub fn requester(header: Option<&[u8]>) -> Result<String, String> {
    let Some(raw) = header else {
        return Ok(DEFAULT_REQUESTER.to_string());
    };
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .ok_or("X-Requested-By must be printable ASCII (an operator's name or ticket)")?
        .trim();
    if text.is_empty() || text.len() > MAX_REQUESTER_LEN {
        return Err(format!(
            "X-Requested-By must be 1 to {MAX_REQUESTER_LEN} characters (an operator's name or ticket), or left out"
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(fields: Value) -> String {
        let mut event = json!({
            "event": "confirm_final_grades",
            "marketplaceId": 5,
            "contextObjectId": 1,
            "contextObjectType": "QUESTION_SET",
            "timestamp": "2021-06-29T18:16:06Z",
        });
        for (k, v) in fields.as_object().unwrap() {
            event[k] = v.clone();
        }
        event.to_string()
    }

    #[test]
    fn the_triggering_user_is_named() {
        assert!(names_user(&body(json!({"triggeringUserId": 777})), 777));
    }

    #[test]
    fn a_candidate_or_user_object_in_either_position_is_named() {
        for t in ["CANDIDATE", "USER"] {
            let context = body(json!({"contextObjectId": 777, "contextObjectType": t}));
            assert!(names_user(&context, 777), "context {t}");
            let associated = body(json!({"associatedObjectId": 777, "associatedObjectType": t}));
            assert!(names_user(&associated, 777), "associated {t}");
        }
    }

    #[test]
    fn an_object_of_another_type_with_the_same_number_is_not_a_person() {
        let context = body(json!({"contextObjectId": 777, "contextObjectType": "QUESTION_SET"}));
        let associated =
            body(json!({"associatedObjectId": 777, "associatedObjectType": "DOCUMENT"}));
        assert!(!names_user(&context, 777));
        assert!(!names_user(&associated, 777));
        // The type of one position does not make the other's id a person.
        let crossed = body(
            json!({"contextObjectId": 777, "contextObjectType": "QUESTION",
            "associatedObjectId": 1, "associatedObjectType": "CANDIDATE"}),
        );
        assert!(!names_user(&crossed, 777));
    }

    #[test]
    fn another_user_is_not_named() {
        let other = body(json!({"triggeringUserId": 778, "triggeringUserName": "777",
            "associatedObjectId": 7770, "associatedObjectType": "CANDIDATE"}));
        assert!(!names_user(&other, 777));
    }

    #[test]
    fn a_malformed_or_erased_body_names_nobody() {
        for bad in [
            "",
            "not json",
            "[777]",
            "{\"triggeringUserId\":\"777\"}",
            "777",
        ] {
            assert!(!names_user(bad, 777), "{bad}");
        }
        assert!(is_erased(ERASED_BODY));
        assert!(!is_erased("{}"));
    }

    #[test]
    fn every_body_that_names_a_user_passes_the_prefilter() {
        let pattern = prefilter_pattern(777);
        let inner = pattern.trim_matches('%');
        for b in [
            body(json!({"triggeringUserId": 777})),
            body(json!({"associatedObjectId": 777, "associatedObjectType": "CANDIDATE"})),
        ] {
            assert!(names_user(&b, 777) && b.contains(inner));
        }
    }

    #[test]
    fn the_requester_is_the_header_trimmed_or_the_internal_token() {
        assert_eq!(requester(None).unwrap(), DEFAULT_REQUESTER);
        assert_eq!(
            requester(Some(b" dpo ticket 42 ")).unwrap(),
            "dpo ticket 42"
        );
        assert!(requester(Some(b"")).is_err());
        assert!(requester(Some(b"   ")).is_err());
        assert!(requester(Some("Zoë".as_bytes())).is_err());
        assert!(requester(Some(b"tab\there")).is_err());
        assert!(requester(Some(&[b'a'; MAX_REQUESTER_LEN])).is_ok());
        assert!(requester(Some(&[b'a'; MAX_REQUESTER_LEN + 1])).is_err());
    }
}
