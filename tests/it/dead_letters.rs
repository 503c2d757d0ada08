//! Dead letters: a delivery that fails on every attempt (or times out) is
//! listed once its retries are used up, filtered by subscription or
//! endpoint, paged with a cursor, and replayed once the endpoint is fixed.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "delivery-secret-0123";

fn id_string(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// `?subscription=<id>`.
fn by_sub(sub: i64) -> Vec<(&'static str, String)> {
    vec![("subscription", sub.to_string())]
}

/// Two endpoints that are up (they answer their verification probes) but
/// refuse these deliveries, `failing` with 500 and `other` with 503, each
/// subscribed to the same two events, once `failing`'s two dead letters are
/// listed. An endpoint that answers nothing is paused instead (health.rs).
struct TwoFailingEndpoints {
    app: TestApp,
    failing: Receiver,
    /// Held so that it keeps answering 503.
    _other: Receiver,
    sub: i64,
    other_sub: i64,
    ev1: Value,
    ev2: Value,
    id1: Value,
    id2: Value,
    /// `failing`'s dead letters.
    letters: Vec<Value>,
}

impl TwoFailingEndpoints {
    async fn dead_lettered() -> TwoFailingEndpoints {
        let app = TestApp::spawn_with(&[
            "--retry-schedule",
            "200ms,200ms,200ms",
            "--probe-interval",
            "100ms",
        ])
        .await;
        let failing = Receiver::start().await;
        let other = Receiver::start().await;
        failing.set_verification_reply(Reply::status(200));
        other.set_verification_reply(Reply::status(200));
        let token = app.token(2600, 1).await;
        let sub = app
            .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &failing.url(), SECRET)
            .await;
        let other_sub = app
            .subscribe_ok(
                &token,
                CONFIRM_FINAL_GRADES,
                &other.url(),
                "other-secret-0123456789",
            )
            .await;
        failing.set_status(500);
        other.set_status(503);

        let ev1 = event(CONFIRM_FINAL_GRADES, 2600, 1);
        let ev2 = event(CONFIRM_FINAL_GRADES, 2600, 2);
        let id1 = app.push_event_ok(&ev1).await["eventId"].clone();
        let id2 = app.push_event_ok(&ev2).await["eventId"].clone();
        let letters = Self::wait_for_letters(&app, sub).await;
        TwoFailingEndpoints {
            app,
            failing,
            _other: other,
            sub,
            other_sub,
            ev1,
            ev2,
            id1,
            id2,
            letters,
        }
    }

    /// The subscription's dead letters, once there are two (each listing
    /// asserted 200).
    async fn wait_for_letters(app: &TestApp, sub: i64) -> Vec<Value> {
        wait_for(
            Duration::from_secs(60),
            "two dead letters for the failing subscription",
            || async {
                let (status, body) = app.dead_letters(&by_sub(sub)).await;
                assert_eq!(status, 200, "dead-letters answered {status}: {body}");
                let list = body["deadLetters"].as_array().cloned().unwrap_or_default();
                (list.len() >= 2).then_some(list)
            },
        )
        .await
    }
}

#[actix_rt::test]
async fn a_delivery_that_always_fails_is_dead_lettered_after_four_attempts() {
    let s = TwoFailingEndpoints::dead_lettered().await;
    let letters = &s.letters;
    assert_eq!(letters.len(), 2, "{letters:?}");
    for dl in letters {
        assert_eq!(dl["subscriptionId"], s.sub, "filter by subscription: {dl}");
        assert_eq!(dl["endpoint"], s.failing.url(), "{dl}");
        assert_eq!(dl["attempts"], 4, "1 attempt + 3 retries: {dl}");
        assert!(
            dl["lastError"].as_str().is_some_and(|e| e.contains("500")),
            "lastError should say 500: {dl}"
        );
        assert!(!dl["id"].is_null() && !dl["endpointId"].is_null(), "{dl}");
        assert!(dl["eventId"] == s.id1 || dl["eventId"] == s.id2, "{dl}");
        let expected = if dl["eventId"] == s.id1 {
            &s.ev1
        } else {
            &s.ev2
        };
        assert_eq!(
            dl["event"], *expected,
            "the dead letter carries the event: {dl}"
        );
    }
    for c in [1, 2] {
        let attempts = s.failing.deliveries_of(c);
        assert_eq!(
            attempts.len(),
            4,
            "event {c}: expected 4 attempts before dead-lettering"
        );
        let ids: HashSet<String> = attempts.iter().map(|a| a.webhook_id()).collect();
        assert_eq!(
            ids.len(),
            1,
            "event {c}: webhook-id changed across retries: {ids:?}"
        );
    }
}

#[actix_rt::test]
async fn dead_letters_filtered_by_endpoint_are_only_that_endpoints() {
    let s = TwoFailingEndpoints::dead_lettered().await;
    let endpoint_id = id_string(&s.letters[0]["endpointId"]);
    let (status, body) = s
        .app
        .dead_letters(&[("endpoint", endpoint_id.clone())])
        .await;
    assert_eq!(status, 200, "{body}");
    let by_endpoint = body["deadLetters"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        by_endpoint.len(),
        2,
        "filter by endpoint {endpoint_id}: {body}"
    );
    assert!(
        by_endpoint.iter().all(|d| d["endpoint"] == s.failing.url()),
        "{body}"
    );
}

#[actix_rt::test]
async fn dead_letters_filtered_by_another_subscription_are_only_its_own_with_its_own_error() {
    let s = TwoFailingEndpoints::dead_lettered().await;
    let others: Vec<Value> = wait_for(
        Duration::from_secs(60),
        "two dead letters for the other subscription",
        || async {
            let (_, body) = s.app.dead_letters(&by_sub(s.other_sub)).await;
            let list = body["deadLetters"].as_array().cloned().unwrap_or_default();
            (list.len() >= 2).then_some(list)
        },
    )
    .await;
    assert!(
        others.iter().all(|d| d["subscriptionId"] == s.other_sub),
        "{others:?}"
    );
    assert!(
        others
            .iter()
            .all(|d| d["lastError"].as_str().unwrap_or_default().contains("503")),
        "{others:?}"
    );
}

#[actix_rt::test]
async fn dead_letters_are_paged_with_a_cursor_without_repeating_an_entry() {
    let s = TwoFailingEndpoints::dead_lettered().await;
    let mut query = by_sub(s.sub);
    query.push(("limit", "1".into()));
    let (status, page1) = s.app.dead_letters(&query).await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(
        page1["deadLetters"].as_array().map(Vec::len),
        Some(1),
        "limit=1: {page1}"
    );
    let cursor = page1["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a first page of 1 of 2 needs a nextCursor: {page1}"));
    query.push(("cursor", cursor.to_string()));
    let (status, page2) = s.app.dead_letters(&query).await;
    assert_eq!(status, 200, "{page2}");
    assert_eq!(
        page2["deadLetters"].as_array().map(Vec::len),
        Some(1),
        "second page: {page2}"
    );
    assert_ne!(
        page1["deadLetters"][0]["id"], page2["deadLetters"][0]["id"],
        "pages repeat an entry"
    );
}

#[actix_rt::test]
async fn a_dead_letter_replayed_once_the_endpoint_is_fixed_is_delivered_signed() {
    let s = TwoFailingEndpoints::dead_lettered().await;
    s.failing.set_status(200);
    let replayed = s
        .letters
        .iter()
        .find(|d| d["eventId"] == s.id1)
        .unwrap_or_else(|| panic!("no dead letter for event {}: {:?}", s.id1, s.letters));
    let (status, body) = s.app.replay_dead_letter(id_string(&replayed["id"])).await;
    assert_eq!(status, 202, "replay answered {status}: {body}");
    wait_until(SOON, "the replayed delivery arrived", || {
        s.failing.deliveries_of(1).len() >= 5
    })
    .await;
    let last = s.failing.deliveries_of(1).pop().unwrap();
    assert_eq!(last.json(), s.ev1);
    assert_signed(&last, SECRET);
}

#[actix_rt::test]
async fn a_delivery_slower_than_the_delivery_timeout_fails_as_timed_out() {
    let app =
        TestApp::spawn_with(&["--delivery-timeout", "300ms", "--retry-schedule", "100ms"]).await;
    let slow = Receiver::start().await;
    slow.set_verification_reply(Reply::status(200));
    let token = app.token(2650, 1).await;
    let sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &slow.url(), SECRET)
        .await;
    slow.set_reply(Reply::delayed(Duration::from_secs(2), 200));
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 2650, 1))
        .await;
    let letter: Value = wait_for(Duration::from_secs(30), "the dead letter", || async {
        let (_, body) = app.dead_letters(&[("subscription", sub.to_string())]).await;
        body["deadLetters"]
            .as_array()
            .and_then(|l| l.first().cloned())
    })
    .await;
    assert_eq!(letter["attempts"], 2, "1 attempt + 1 retry: {letter}");
    assert_eq!(
        letter["lastError"], "timed out after 300ms",
        "each attempt was cut off at --delivery-timeout: {letter}"
    );
}

#[actix_rt::test]
async fn replaying_an_unknown_dead_letter_answers_404() {
    let app = TestApp::spawn().await;
    let resp = app.replay_dead_letter("999999999").await;
    assert_json_error(&resp, 404, "replay of an unknown dead letter");
}
