//! Internal event ingestion: single events, validation, idempotency, size
//! limits. Batches are in `ingest_batches`.

use serde_json::{Value, json};
use std::collections::HashSet;

use crate::helpers::*;

const SECRET: &str = "ingest-secret-0123456789";

#[actix_rt::test]
async fn pushing_an_event_answers_202_with_an_event_id_and_the_number_of_deliveries() {
    let app = TestApp::spawn().await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let token = app.token(1000, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &a.url(), SECRET)
        .await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &b.url(), SECRET)
        .await;

    let body = app.push_event_ok(&event(QTI_EXPORT_READY, 1000, 1)).await;
    assert!(
        body["eventId"].as_str().is_some_and(|s| !s.is_empty()),
        "eventId should be a non-empty string: {body}"
    );
    assert_eq!(body["deliveries"], 2, "two matching subscriptions: {body}");

    let other = app.push_event_ok(&event(QTI_EXPORT_READY, 1000, 2)).await;
    assert_ne!(
        other["eventId"], body["eventId"],
        "two events got the same eventId"
    );

    let nobody = app
        .push_event_ok(&event(CONFIRM_FINAL_GRADES, 1000, 3))
        .await;
    assert_eq!(nobody["deliveries"], 0, "no subscription matches: {nobody}");
}

#[actix_rt::test]
async fn each_invalid_event_field_is_refused_with_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let base = event(REVISION_STATUS_UPDATED, 1357554, 74379551);
    let with = |field: &str, value: Value| {
        let mut e = base.clone();
        e[field] = value;
        e
    };
    let without = |field: &str| {
        let mut e = base.clone();
        e.as_object_mut().unwrap().remove(field);
        e
    };
    let cases: Vec<(&str, Value)> = vec![
        ("event", without("event")),
        ("event", with("event", json!(17))),
        ("marketplaceId", without("marketplaceId")),
        ("marketplaceId", with("marketplaceId", json!("1357554"))),
        ("marketplaceId", with("marketplaceId", Value::Null)),
        ("contextObjectId", without("contextObjectId")),
        (
            "contextObjectId",
            with("contextObjectId", json!(74379551.5)),
        ),
        ("contextObjectType", without("contextObjectType")),
        (
            "contextObjectType",
            with("contextObjectType", json!("NOT_A_TYPE")),
        ),
        (
            "contextObjectType",
            with("contextObjectType", json!("question_set")),
        ),
        ("timestamp", without("timestamp")),
        ("timestamp", with("timestamp", json!("2021-06-29 18:16:06"))),
        ("timestamp", with("timestamp", json!("yesterday"))),
        ("timestamp", with("timestamp", json!(1624990566))),
        (
            "associatedObjectId",
            with("associatedObjectId", json!("12")),
        ),
        (
            "associatedObjectType",
            with("associatedObjectType", json!("NOPE")),
        ),
        ("triggeringUserId", with("triggeringUserId", json!("abc"))),
        ("triggeringUserName", with("triggeringUserName", json!(12))),
        (
            "extraInfo",
            with("extraInfo", json!({"type": "Banana", "value": "x"})),
        ),
        (
            "extraInfo",
            with("extraInfo", json!({"type": "String", "value": 5})),
        ),
        ("extraInfo", with("extraInfo", json!("just a string"))),
        ("surprise", with("surprise", json!(1))),
    ];
    let mut failures = Vec::new();
    for (field, ev) in &cases {
        let (status, body) = app.push_event(ev).await;
        let message = body["message"].as_str().unwrap_or_default();
        if status != 400 || !body["error"].is_string() || !message.contains(field) {
            failures.push(format!(
                "event {ev}\n  -> {status} {body} (expected 400 naming {field:?})"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid events were not refused properly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    app.assert_healthy("after invalid events").await;
}

#[actix_rt::test]
async fn timestamps_that_are_not_whole_utc_seconds_with_z_are_refused() {
    let app = TestApp::spawn().await;
    let mut failures = Vec::new();
    for ts in [
        "2021-06-29T18:16:06+02:00",
        "2021-06-29T18:16:06.123Z",
        "2021-06-29T18:16:06",
        "2021-13-29T18:16:06Z",
    ] {
        let mut ev = event(REVISION_STATUS_UPDATED, 1, 1);
        ev["timestamp"] = json!(ts);
        let (status, body) = app.push_event(&ev).await;
        if status != 400
            || !body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("timestamp")
        {
            failures.push(format!("{ts}: {status} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expected 400 naming timestamp for:\n{}",
        failures.join("\n")
    );
}

#[actix_rt::test]
async fn every_documented_object_type_and_extra_info_type_is_accepted() {
    let app = TestApp::spawn().await;
    let mut failures = Vec::new();
    let context_types = [
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
    for t in context_types {
        let mut ev = event(REVISION_STATUS_UPDATED, 1, 1);
        ev["contextObjectType"] = json!(t);
        let (status, body) = app.push_event(&ev).await;
        if status != 202 {
            failures.push(format!("contextObjectType {t}: {status} {body}"));
        }
    }
    let associated_types = [
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
    for t in associated_types {
        let mut ev = event(REVISION_STATUS_UPDATED, 1, 1);
        ev["associatedObjectType"] = json!(t);
        ev["associatedObjectId"] = json!(5);
        let (status, body) = app.push_event(&ev).await;
        if status != 202 {
            failures.push(format!("associatedObjectType {t}: {status} {body}"));
        }
    }
    let extra_infos = [
        json!({"type": "String", "value": "a"}),
        json!({"type": "Date", "value": "2021-06-29T18:16:06Z", "previousValue": "2021-06-28T18:16:06Z"}),
        json!({"type": "customUserRole", "value": "x"}),
        json!({"type": "role", "value": "x"}),
        json!({"type": "xml", "value": "<a/>"}),
        json!({"type": "accessLevel", "value": "x"}),
        json!({"type": "adminLevel", "value": "x"}),
        json!({"type": "scoreDisplayMode", "value": "x"}),
        json!({"type": "JSON", "value": {"a": [1, 2]}, "previousValue": {"a": []}}),
        json!({"type": "JSON", "value": "{\"a\":1}"}),
    ];
    for info in extra_infos {
        let mut ev = event(REVISION_STATUS_UPDATED, 1, 1);
        ev["extraInfo"] = info.clone();
        let (status, body) = app.push_event(&ev).await;
        if status != 202 {
            failures.push(format!("extraInfo {info}: {status} {body}"));
        }
    }
    let (status, body) = app
        .push_event(&full_event(REVISION_STATUS_UPDATED, 1, 1))
        .await;
    if status != 202 {
        failures.push(format!("event with every optional field: {status} {body}"));
    }
    assert!(
        failures.is_empty(),
        "valid events were refused:\n{}",
        failures.join("\n")
    );
}

#[actix_rt::test]
async fn an_event_of_an_unknown_type_gets_422() {
    let app = TestApp::spawn().await;
    let resp = app.push_event(&event("no_such_event_type", 1, 1)).await;
    assert_json_error(&resp, 422, "push of an unknown event type");
    let resp = app.push_event(&event("verification", 1, 1)).await;
    assert_json_error(&resp, 422, "push of the reserved verification type");
}

#[actix_rt::test]
async fn malformed_event_and_batch_bodies_get_a_json_400() {
    let app = TestApp::spawn().await;
    for (what, raw) in [
        (
            "truncated JSON",
            "{\"event\":\"qti_export_ready\",".to_string(),
        ),
        ("empty body", String::new()),
        (
            "an array to the single-event route",
            format!("[{}]", event(QTI_EXPORT_READY, 1, 1)),
        ),
        ("a bare string", "\"hello\"".to_string()),
    ] {
        let resp = app.push_event_raw(Some("application/json"), raw).await;
        assert_json_error(&resp, 400, what);
    }
    let resp = app
        .push_batch_raw(
            Some("application/json"),
            event(QTI_EXPORT_READY, 1, 1).to_string(),
        )
        .await;
    assert_json_error(&resp, 400, "a single object to the batch route");
    let resp = app
        .push_batch_raw(Some("application/json"), "[{\"event\":")
        .await;
    assert_json_error(&resp, 400, "truncated batch");
    app.assert_healthy("after malformed events").await;
}

#[actix_rt::test]
async fn an_event_sent_as_text_plain_gets_a_json_415() {
    let app = TestApp::spawn().await;
    let resp = app
        .push_event_raw(
            Some("text/plain"),
            event(QTI_EXPORT_READY, 1, 1).to_string(),
        )
        .await;
    assert_json_error(&resp, 415, "event with Content-Type text/plain");
}

#[actix_rt::test]
async fn an_event_over_max_body_bytes_gets_413() {
    let app = TestApp::spawn_with(&["--max-body-bytes", "2048"]).await;
    let mut ev = event(REVISION_STATUS_UPDATED, 1, 1);
    ev["triggeringUserName"] = json!("x".repeat(4096));
    let resp = app.push_event(&ev).await;
    assert_json_error(&resp, 413, "event of ~4 KiB with --max-body-bytes 2048");
    let batch: Vec<Value> = (0..50)
        .map(|i| event(REVISION_STATUS_UPDATED, 1, i))
        .collect();
    let resp = app.push_batch(&batch).await;
    assert_json_error(&resp, 413, "batch of ~8 KiB with --max-body-bytes 2048");
    app.assert_healthy("after oversized events").await;
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 1, 2))
        .await;
}

#[actix_rt::test]
async fn a_repeated_idempotency_key_returns_the_same_event_id_and_delivers_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(1300, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;

    let key = format!("key-{}", uuid::Uuid::new_v4());
    let ev = event(QTI_EXPORT_READY, 1300, 1);
    let (s1, first) = app.push_event_with_idempotency_key(&ev, &key).await;
    let (s2, second) = app.push_event_with_idempotency_key(&ev, &key).await;
    assert_eq!(s1, 202, "{first}");
    assert!(s2 == 202 || s2 == 200, "repeat answered {s2}: {second}");
    assert_eq!(
        first["eventId"], second["eventId"],
        "same Idempotency-Key, different eventIds: {first} vs {second}"
    );

    // The same content under a new key is a new event.
    let (s3, third) = app
        .push_event_with_idempotency_key(&event(QTI_EXPORT_READY, 1300, 2), &format!("{key}-other"))
        .await;
    assert_eq!(s3, 202, "{third}");
    assert_ne!(third["eventId"], first["eventId"]);

    // Wait for a later event, then count.
    app.push_event_ok(&event(QTI_EXPORT_READY, 1300, 99)).await;
    receiver
        .wait_for_context_ids(&HashSet::from([1, 2, 99]), SOON)
        .await;
    assert_eq!(
        receiver.deliveries_of(1).len(),
        1,
        "the idempotent event was delivered more than once"
    );
}

#[actix_rt::test]
async fn a_repeated_event_id_field_returns_the_same_event_id_and_delivers_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(1310, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;

    let given = format!("evt-{}", uuid::Uuid::new_v4());
    let mut ev = event(QTI_EXPORT_READY, 1310, 1);
    ev["eventId"] = json!(given);
    let (s1, first) = app.push_event(&ev).await;
    assert_eq!(s1, 202, "{first}");
    assert!(
        first["eventId"].as_str().is_some_and(|s| !s.is_empty()),
        "{first}"
    );
    let (s2, second) = app.push_event(&ev).await;
    assert!(s2 == 202 || s2 == 200, "repeat answered {s2}: {second}");
    assert_eq!(
        second["eventId"], first["eventId"],
        "same eventId field, different eventIds: {first} vs {second}"
    );

    // The same eventId inside a batch is deduplicated too.
    let (s3, third) = app.push_batch(&[ev.clone()]).await;
    assert_eq!(s3, 202, "{third}");
    assert_eq!(third["results"][0]["eventId"], first["eventId"], "{third}");

    app.push_event_ok(&event(QTI_EXPORT_READY, 1310, 99)).await;
    receiver
        .wait_for_context_ids(&HashSet::from([1, 99]), SOON)
        .await;
    assert_eq!(
        receiver.deliveries_of(1).len(),
        1,
        "an event with a repeated eventId was delivered more than once"
    );
}
