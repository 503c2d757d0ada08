//! Erasure by data subject (DESIGN.md section 9), on whichever backend the
//! run uses: events whose payloads name user 777 (as `triggeringUserId`,
//! and as a `CANDIDATE` associated object) lose their payloads; their
//! pending deliveries, held by a paused endpoint and by one failing with a
//! retry waiting, are never delivered; the delivery view, the event lookup
//! and the feed no longer show them; on SQLite the database file and its
//! WAL no longer hold their bytes; other users' and other marketplaces'
//! events are untouched and delivered; the audit row holds no user id.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const MARKETPLACE: i64 = 4700;
const OTHER_MARKETPLACE: i64 = 4701;
const USER: i64 = 777;

/// The events of user 777 in MARKETPLACE carry this in `triggeringUserName`.
fn erase_marker() -> String {
    format!("ERASE-ME-{}", unique_i64())
}

/// An event of MARKETPLACE (or another) with the given context id and
/// extra fields.
fn named_event(marketplace_id: i64, context_id: i64, fields: Value) -> Value {
    let mut e = event(CONFIRM_FINAL_GRADES, marketplace_id, context_id);
    for (k, v) in fields.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn event_id(answer: &Value) -> String {
    answer["eventId"].as_str().unwrap().to_string()
}

/// The ids of the deliveries of `event` per subscription, from the
/// operators' event lookup.
async fn delivery_of(app: &TestApp, event: &str, sub: i64) -> String {
    let (status, found) = app.event_lookup(event).await;
    assert_eq!(status, 200, "{found}");
    found["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["subscriptionId"] == sub)
        .and_then(|d| d["deliveryId"].as_str())
        .unwrap_or_else(|| panic!("no delivery of {event} for {sub}: {found}"))
        .to_string()
}

fn bodies_with(receiver: &Receiver, needle: &str) -> usize {
    receiver
        .deliveries()
        .iter()
        .filter(|r| r.body_text().contains(needle))
        .count()
}

#[actix_rt::test]
async fn an_erasure_removes_a_persons_payloads_everywhere_and_their_pending_deliveries_are_never_sent()
 {
    // Arrange: one endpoint held by its operator (its deliveries wait in
    // its queue), one that refuses deliveries (its first one waits for a
    // retry, holding the only slot), both subscribed by MARKETPLACE, the
    // held one by OTHER_MARKETPLACE too.
    let app = TestApp::spawn_with(&[
        "--retry-schedule",
        "3s,3s,3s,3s",
        "--max-in-flight-per-endpoint",
        "1",
        "--probe-interval",
        "100ms",
    ])
    .await;
    let held = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_verification_reply(Reply::status(200));
    let token = app.token(MARKETPLACE, 1).await;
    let other_token = app.token(OTHER_MARKETPLACE, 1).await;
    let secret = "erasure-secret-0123456";
    let sub_held = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &held.url(), secret)
        .await;
    let sub_failing = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &failing.url(), secret)
        .await;
    let sub_other_mp = app
        .subscribe_ok(&other_token, CONFIRM_FINAL_GRADES, &held.url(), secret)
        .await;
    let held_endpoint = app.endpoint_id(&held.url()).await;
    app.patch_endpoint_ok(&held_endpoint, json!({"paused": true}))
        .await;
    failing.set_reply(Reply::with_body(500, "not now, try later"));

    let marker = erase_marker();
    let keep = format!("KEEP-ME-{}", unique_i64());
    let as_trigger = event_id(
        &app.push_event_ok(&named_event(
            MARKETPLACE,
            1,
            json!({"triggeringUserId": USER, "triggeringUserName": marker}),
        ))
        .await,
    );
    // The failing endpoint's first attempt of it fails; its retry waits.
    failing
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await;
    let as_candidate = event_id(
        &app.push_event_ok(&named_event(
            MARKETPLACE,
            2,
            json!({"associatedObjectId": USER, "associatedObjectType": "CANDIDATE",
                   "triggeringUserId": 5, "triggeringUserName": marker}),
        ))
        .await,
    );
    let other_user = event_id(
        &app.push_event_ok(&named_event(
            MARKETPLACE,
            3,
            json!({"triggeringUserId": 778, "triggeringUserName": keep,
                   "associatedObjectId": USER, "associatedObjectType": "QUESTION_SET"}),
        ))
        .await,
    );
    let other_mp = event_id(
        &app.push_event_ok(&named_event(
            OTHER_MARKETPLACE,
            4,
            json!({"triggeringUserId": USER, "triggeringUserName": keep}),
        ))
        .await,
    );
    let failing_attempt = delivery_of(&app, &as_trigger, sub_failing).await;
    // Its failed attempt is logged, with the answer's excerpt.
    wait_for(
        Duration::from_secs(10),
        "the failed attempt logged",
        || async {
            let detail = app.delivery(&token, sub_failing, &failing_attempt).await.1;
            (detail["attempts"][0]["responseExcerpt"] == "not now, try later").then_some(())
        },
    )
    .await;
    let sent_before = bodies_with(&failing, &marker);
    assert_eq!(sent_before, 1, "one failed attempt before the erasure");

    // Act.
    let (status, done) = app
        .erase(
            json!({"marketplaceId": MARKETPLACE, "userId": USER}),
            &[("X-Requested-By", "dpo ticket 42")],
        )
        .await;

    // Assert: the answer.
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["eventsErased"], 2, "{done}");
    assert_eq!(
        done["deliveriesCancelled"], 4,
        "two events, two subscriptions each, all pending: {done}"
    );
    let erasure_id = done["erasureId"].as_str().unwrap().to_string();

    // On SQLite, the bytes are gone from the files, while the server runs.
    if app.backend() == Backend::Sqlite {
        let files = app.sqlite_files();
        assert!(!files.is_empty());
        for file in &files {
            assert_eq!(
                occurrences_in_file(file, &marker),
                0,
                "{} still holds the erased marker",
                file.display()
            );
        }
        let kept: usize = files.iter().map(|f| occurrences_in_file(f, &keep)).sum();
        assert!(kept >= 2, "the other events are still stored ({kept})");
    }

    // The views no longer show the payloads.
    for erased in [&as_trigger, &as_candidate] {
        let (status, found) = app.event_lookup(erased).await;
        assert_eq!(status, 200, "{found}");
        assert!(found["payload"].is_null(), "{found}");
        let id = delivery_of(&app, erased, sub_held).await;
        let (status, detail) = app.delivery(&token, sub_held, &id).await;
        assert_eq!(status, 200, "{detail}");
        assert!(detail["payload"].is_null(), "{detail}");
        assert_eq!(detail["status"], "cancelled", "{detail}");
        assert!(
            detail["lastError"]
                .as_str()
                .is_some_and(|e| e.contains(&erasure_id)),
            "{detail}"
        );
        assert!(!text_of(&detail).contains(&marker));
    }
    let after = app.delivery(&token, sub_failing, &failing_attempt).await.1;
    assert!(after["payload"].is_null(), "{after}");
    assert!(
        after["attempts"][0]["responseExcerpt"].is_null(),
        "the answer excerpt is gone: {after}"
    );
    // Nothing erased can be sent again by hand.
    let (status, refused) = app.resend(&token, sub_failing, &failing_attempt).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"], "payload_erased", "{refused}");

    // The pending ones are never delivered: with one request at a time,
    // each endpoint sends what it still holds in order, so once a later
    // event arrived, anything erased it still held would have come first.
    failing.set_status(200);
    app.patch_endpoint_ok(&held_endpoint, json!({"paused": false}))
        .await;
    let later = event_id(
        &app.push_event_ok(&named_event(MARKETPLACE, 5, json!({"triggeringUserId": 9})))
            .await,
    );
    let five: std::collections::HashSet<i64> = [5].into();
    held.wait_for_context_ids(&five, Duration::from_secs(20))
        .await;
    failing
        .wait_for_context_ids(&five, Duration::from_secs(20))
        .await;
    assert_eq!(bodies_with(&held, &marker), 0, "held: nothing erased sent");
    assert_eq!(
        bodies_with(&failing, &marker),
        sent_before,
        "failing: nothing erased sent after the erasure"
    );
    // Other users' and other marketplaces' events are delivered.
    assert_eq!(held.deliveries_of(3).len(), 1, "the other user's event");
    assert_eq!(failing.deliveries_of(3).len(), 1, "the other user's event");
    assert_eq!(
        held.deliveries_of(4).len(),
        1,
        "the other marketplace's event of user 777"
    );
    for kept in [&other_user, &other_mp, &later] {
        let (_, found) = app.event_lookup(kept).await;
        assert!(found["payload"].is_object(), "{found}");
    }

    // The feed no longer serves them (it serves events settled for 5 s).
    let feed = wait_for(
        Duration::from_secs(30),
        "the later event in the feed",
        || async {
            let (status, feed) = app.feed(&token, sub_held, &[("limit", "100")]).await;
            assert_eq!(status, 200, "{feed}");
            let events = feed["events"].as_array().cloned().unwrap_or_default();
            events
                .iter()
                .any(|e| e["eventId"] == later.as_str())
                .then_some(events)
        },
    )
    .await;
    let ids: Vec<&str> = feed.iter().filter_map(|e| e["eventId"].as_str()).collect();
    assert_eq!(ids, vec![other_user.as_str(), later.as_str()], "{feed:?}");
    assert!(!text_of(&json!(feed)).contains(&marker));
    let (_, other_feed) = app.feed(&other_token, sub_other_mp, &[]).await;
    assert!(text_of(&other_feed).contains(&keep), "{other_feed}");

    // The audit row: who, when, what; no user id.
    let (status, audit) = app.erasure(&erasure_id).await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["erasureId"], erasure_id.as_str());
    assert_eq!(audit["requester"], "dpo ticket 42");
    assert_eq!(audit["marketplaceId"], MARKETPLACE);
    assert_eq!(audit["eventsErased"], 2);
    assert_eq!(audit["deliveriesCancelled"], 4);
    assert_eq!(audit["attemptsCleared"], 1);
    assert!(audit["completedAt"].is_string(), "{audit}");
    let fields = audit.as_object().unwrap();
    assert!(
        fields
            .iter()
            .all(|(k, v)| !k.to_lowercase().contains("user") && *v != json!(USER)),
        "{audit}"
    );

    // Asked again: nothing left to erase.
    let (status, again) = app
        .erase(json!({"marketplaceId": MARKETPLACE, "userId": USER}), &[])
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (
            again["eventsErased"].clone(),
            again["deliveriesCancelled"].clone()
        ),
        (json!(0), json!(0))
    );
    let (_, audit) = app.erasure(again["erasureId"].as_str().unwrap()).await;
    assert_eq!(audit["requester"], "internal token", "{audit}");
}

#[actix_rt::test]
async fn bad_erasure_requests_get_a_json_400_naming_what_is_wrong_and_an_unknown_id_404() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"marketplaceId": 1}), "userId"),
        (json!({"userId": 777}), "marketplaceId"),
        (
            json!({"marketplaceId": "1", "userId": 777}),
            "marketplaceId",
        ),
        (json!({"marketplaceId": 1, "userId": 77.7}), "userId"),
        (
            json!({"marketplaceId": 1, "userId": 777, "email": "a@b.c"}),
            "email",
        ),
        (json!([1, 777]), "object"),
    ];
    for (body, field) in cases {
        let answer = app.erase(body.clone(), &[]).await;
        let message = assert_json_error(&answer, 400, &format!("erase {body}"));
        assert!(message.contains(field), "{body}: {message}");
    }
    let too_long = "x".repeat(201);
    let answer = app
        .erase(
            json!({"marketplaceId": 1, "userId": 777}),
            &[("X-Requested-By", too_long.as_str())],
        )
        .await;
    let message = assert_json_error(&answer, 400, "a requester too long");
    assert!(message.contains("X-Requested-By"), "{message}");
    let answer = app.erasure("no-such-erasure").await;
    assert_json_error(&answer, 404, "an unknown erasure id");
}

/// PostgreSQL cluster: the erasure is asked of a node that does not own
/// the endpoint; the owner, holding the pending delivery in memory (its
/// endpoint paused), is told by NOTIFY, re-checks and drops it.
#[actix_rt::test]
async fn in_a_cluster_the_node_owning_the_endpoint_drops_what_another_node_erased() {
    let Some(db) = PostgresDb::create_from_env() else {
        eprintln!("skipped: {POSTGRES_ENV} is not set (cluster tests need PostgreSQL)");
        return;
    };
    let args = ["--max-in-flight-per-endpoint", "1"];
    let a = TestApp::spawn_cluster_node(&db, "erase-a", &args).await;
    let b = TestApp::spawn_cluster_node(&db, "erase-b", &args).await;
    let receiver = Receiver::start().await;
    let token = a.token(MARKETPLACE, 1).await;
    a.subscribe_ok(
        &token,
        CONFIRM_FINAL_GRADES,
        &receiver.url(),
        "cluster-erasure-secret-1",
    )
    .await;
    let owner_name = wait_for(
        Duration::from_secs(30),
        "an owner of the endpoint",
        || async {
            let listed = a.endpoint_with_url(&receiver.url()).await?;
            listed["ownerNode"].as_str().map(str::to_string)
        },
    )
    .await;
    let (owner, other) = if owner_name == "erase-a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let endpoint = owner.endpoint_id(&receiver.url()).await;
    owner
        .patch_endpoint_ok(&endpoint, json!({"paused": true}))
        .await;

    // Pushed to the owner: its actor holds them in memory, paused.
    let marker = erase_marker();
    owner
        .push_event_ok(&named_event(
            MARKETPLACE,
            1,
            json!({"triggeringUserId": USER, "triggeringUserName": marker}),
        ))
        .await;
    owner
        .push_event_ok(&named_event(MARKETPLACE, 2, json!({"triggeringUserId": 5})))
        .await;

    let (status, done) = other
        .erase(json!({"marketplaceId": MARKETPLACE, "userId": USER}), &[])
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["eventsErased"], 1, "{done}");
    assert_eq!(done["deliveriesCancelled"], 1, "{done}");
    wait_until(
        Duration::from_secs(10),
        "the owner to drop the cancelled delivery",
        || owner.log_tail(200).contains("cancelled on another node"),
    )
    .await;

    owner
        .patch_endpoint_ok(&endpoint, json!({"paused": false}))
        .await;
    let two: std::collections::HashSet<i64> = [2].into();
    receiver
        .wait_for_context_ids(&two, Duration::from_secs(20))
        .await;
    assert_eq!(
        bodies_with(&receiver, &marker),
        0,
        "nothing erased was sent"
    );
    assert!(receiver.deliveries_of(1).is_empty());
}

/// A delivery in flight when it is erased completes (it was sent), but its
/// attempt keeps no answer excerpt.
#[actix_rt::test]
async fn an_attempt_in_flight_during_the_erasure_keeps_no_answer_excerpt() {
    let app = TestApp::spawn().await;
    let slow = Receiver::start_with(Reply::delayed(Duration::from_secs(2), 200)).await;
    slow.set_verification_reply(Reply::status(200));
    let token = app.token(MARKETPLACE, 1).await;
    let sub = app
        .subscribe_ok(
            &token,
            CONFIRM_FINAL_GRADES,
            &slow.url(),
            "in-flight-secret-0123",
        )
        .await;
    let erased = event_id(
        &app.push_event_ok(&named_event(
            MARKETPLACE,
            1,
            json!({"triggeringUserId": USER, "triggeringUserName": erase_marker()}),
        ))
        .await,
    );
    slow.wait_for_deliveries(1, Duration::from_secs(10)).await;

    let (status, done) = app
        .erase(json!({"marketplaceId": MARKETPLACE, "userId": USER}), &[])
        .await;

    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done["deliveriesCancelled"], 1,
        "in flight, still pending: {done}"
    );
    let id = delivery_of(&app, &erased, sub).await;
    let detail = wait_for(Duration::from_secs(20), "the attempt logged", || async {
        let detail = app.delivery(&token, sub, &id).await.1;
        detail["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(detail)
    })
    .await;
    assert_eq!(detail["attempts"][0]["statusCode"], 200, "{detail}");
    assert!(
        detail["attempts"][0]["responseExcerpt"].is_null(),
        "{detail}"
    );
    assert!(detail["payload"].is_null(), "{detail}");
}
