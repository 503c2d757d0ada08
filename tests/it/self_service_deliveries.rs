//! Subscriber self-service (DESIGN.md section 6) and the operators' event
//! lookup (section 7): a subscription's deliveries with their attempts and
//! answer excerpts, a resend, the catch-up feed, refusals of bad input, and
//! one event's fan-out. Another caller's subscription is never shown.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "self-service-secret-0123";
const MARKETPLACE: i64 = 3100;

/// A server retrying after `schedule`, with a receiver that answers its
/// verification calls (and the health probes) 200 whatever it answers
/// deliveries, and one subscription to it.
struct Subscribed {
    app: TestApp,
    receiver: Receiver,
    token: String,
    sub: i64,
}

impl Subscribed {
    async fn with_retries(schedule: &str) -> Subscribed {
        let app =
            TestApp::spawn_with(&["--retry-schedule", schedule, "--probe-interval", "100ms"]).await;
        let receiver = Receiver::start().await;
        receiver.set_verification_reply(Reply::status(200));
        let token = app.token(MARKETPLACE, 1).await;
        let sub = app
            .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
            .await;
        Subscribed {
            app,
            receiver,
            token,
            sub,
        }
    }

    /// Pushes the event with this contextObjectId; answers its eventId.
    async fn push(&self, context_object_id: i64) -> String {
        let event = event(CONFIRM_FINAL_GRADES, MARKETPLACE, context_object_id);
        let answer = self.app.push_event_ok(&event).await;
        answer["eventId"].as_str().unwrap().to_string()
    }

    /// The detail of the newest delivery once `cond` holds for it.
    async fn newest_when(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        self.app
            .wait_for_delivery(&self.token, self.sub, what, cond)
            .await
    }
}

fn status_of(delivery: &Value) -> &str {
    delivery["status"].as_str().unwrap_or_default()
}

fn attempts_of(delivery: &Value) -> Vec<Value> {
    delivery["attempts"].as_array().cloned().unwrap_or_default()
}

#[actix_rt::test]
async fn a_delivery_that_failed_twice_then_succeeded_shows_three_attempts_with_their_answers() {
    let s = Subscribed::with_retries("1s,1s,1s").await;
    s.receiver.set_script(
        vec![
            Reply::with_body(500, "first: database is down"),
            Reply::with_body(500, "second: still down"),
        ],
        Reply::with_body(200, "thanks"),
    );
    s.push(1).await;

    let failed = s
        .newest_when("the delivery waits for a retry", |d| {
            status_of(d) == "failed"
        })
        .await;
    assert!(failed["nextAttemptAt"].is_string(), "{failed}");
    assert_eq!(failed["lastStatusCode"], 500, "{failed}");
    let done = s
        .newest_when("the delivery succeeded", |d| status_of(d) == "succeeded")
        .await;

    let attempts = attempts_of(&done);
    let codes: Vec<_> = attempts.iter().map(|a| a["statusCode"].clone()).collect();
    assert_eq!(codes, [500, 500, 200], "{done}");
    let excerpts: Vec<_> = attempts
        .iter()
        .map(|a| a["responseExcerpt"].clone())
        .collect();
    assert_eq!(
        excerpts,
        ["first: database is down", "second: still down", "thanks"],
        "{done}"
    );
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("500"),
        "{done}"
    );
    assert!(attempts[2]["error"].is_null(), "{done}");
    assert_eq!(done["attemptCount"], 3, "{done}");
    assert_eq!(done["lastStatusCode"], 200, "{done}");
    assert!(done["nextAttemptAt"].is_null(), "{done}");
    assert_eq!(done["payload"]["contextObjectId"], 1, "{done}");
    assert_eq!(done["event"], CONFIRM_FINAL_GRADES, "{done}");
}

#[actix_rt::test]
async fn a_delivery_that_succeeded_at_once_shows_its_one_attempt_with_status_and_answer() {
    let s = Subscribed::with_retries("1h").await;
    s.receiver
        .set_reply(Reply::with_body(201, "stored, thanks"));
    s.push(1).await;

    let done = s
        .newest_when("the delivery succeeded with its attempt logged", |d| {
            status_of(d) == "succeeded" && !attempts_of(d).is_empty()
        })
        .await;
    let attempts = attempts_of(&done);
    assert_eq!(attempts.len(), 1, "{done}");
    let only = &attempts[0];
    assert_eq!(only["statusCode"], 201, "{done}");
    assert_eq!(only["responseExcerpt"], "stored, thanks", "{done}");
    assert!(only["error"].is_null(), "{done}");
    assert!(only["durationMs"].is_i64(), "{done}");
    assert_eq!(done["attemptCount"], 1, "{done}");
    assert_eq!(done["lastStatusCode"], 201, "{done}");
    assert_eq!(done["lastAttemptAt"], only["at"], "{done}");
}

#[actix_rt::test]
async fn an_answer_body_over_one_kibibyte_is_cut_to_one_kibibyte() {
    let s = Subscribed::with_retries("1h").await;
    let long: &'static str = "x".repeat(3000).leak();
    s.receiver.set_reply(Reply::with_body(500, long));
    s.push(1).await;

    let failed = s
        .newest_when("the first attempt is logged", |d| {
            !attempts_of(d).is_empty()
        })
        .await;
    let excerpt = attempts_of(&failed)[0]["responseExcerpt"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(excerpt, "x".repeat(1024));
}

#[actix_rt::test]
async fn a_resend_reaches_the_receiver_with_the_same_webhook_id_and_a_valid_signature() {
    let s = Subscribed::with_retries("1s").await;
    s.push(1).await;
    let first = s.receiver.wait_for_deliveries(1, SOON).await.remove(0);
    let done = s
        .newest_when("the delivery succeeded", |d| status_of(d) == "succeeded")
        .await;
    let id = done["deliveryId"].as_str().unwrap();

    let (status, body) = s.app.resend(&s.token, s.sub, id).await;
    assert_eq!(
        (status, body["deliveryId"].as_str()),
        (202, Some(id)),
        "{body}"
    );

    let again = s.receiver.wait_for_deliveries(2, SOON).await.remove(1);
    assert_eq!(again.webhook_id(), first.webhook_id());
    assert_eq!(again.webhook_id(), id);
    assert_eq!(again.body, first.body);
    assert_signed(&again, SECRET);
    s.newest_when("the resent delivery succeeded again", |d| {
        status_of(d) == "succeeded" && d["attemptCount"] == 1
    })
    .await;
}

/// Longer than the feed's settle time on any backend (15 s with leases).
const SETTLED: Duration = Duration::from_secs(40);

#[actix_rt::test]
async fn the_catch_up_feed_lists_every_event_routed_while_the_endpoint_was_down_in_order() {
    let s = Subscribed::with_retries("1h").await;
    s.receiver.set_status(503);
    let mut pushed = Vec::new();
    for n in 1..=7 {
        pushed.push(s.push(n).await);
    }
    // The feed serves deliveries once they are settled (a few seconds
    // after routing; longer with several nodes).
    wait_for(
        SETTLED,
        "the seven events to settle in the feed",
        || async {
            let (_, all) = s.app.feed(&s.token, s.sub, &[]).await;
            (all["events"].as_array().map_or(0, Vec::len) == 7).then_some(())
        },
    )
    .await;

    let mut listed = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = s
            .app
            .feed(&s.token, s.sub, &[("after", &after), ("limit", "3")])
            .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let events = page["events"].as_array().unwrap();
        for e in events {
            listed.push(e["eventId"].as_str().unwrap().to_string());
            assert!(
                e["acceptedAt"].is_string() && e["payload"].is_object(),
                "{e}"
            );
        }
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), events.last().unwrap()["cursor"].as_str());
                after = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(listed, pushed, "every event once, oldest first");
    assert_eq!(pages, 3);
    let contexts: Vec<i64> = {
        let (_, all) = s.app.feed(&s.token, s.sub, &[]).await;
        let events = all["events"].as_array().unwrap().clone();
        events
            .iter()
            .map(|e| e["payload"]["contextObjectId"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(contexts, (1..=7).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn bad_input_is_answered_with_a_json_4xx_that_says_what_is_wrong() {
    let s = Subscribed::with_retries("1h").await;
    s.receiver.set_status(500);
    s.push(1).await;
    let failed = s
        .newest_when("the delivery waits for a retry", |d| {
            status_of(d) == "failed"
        })
        .await;
    let (app, token, sub) = (&s.app, s.token.as_str(), s.sub);

    for query in [
        [("cursor", "abc")],
        [("status", "delivered")],
        [("limit", "0")],
        [("limit", "1001")],
        [("color", "red")],
    ] {
        let answer = app.deliveries(token, sub, &query).await;
        assert_json_error(&answer, 400, &format!("deliveries {query:?}"));
    }
    let message = assert_json_error(
        &app.deliveries(token, sub, &[("cursor", "12")]).await,
        400,
        "",
    );
    assert!(message.contains("nextCursor"), "{message}");
    for query in [[("after", "12")], [("limit", "-1")]] {
        let answer = app.feed(token, sub, &query).await;
        assert_json_error(&answer, 400, &format!("feed {query:?}"));
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_json_error(
        &app.delivery(token, sub, &unknown).await,
        404,
        "unknown delivery",
    );
    assert_json_error(
        &app.resend(token, sub, &unknown).await,
        404,
        "resend unknown",
    );

    let id = failed["deliveryId"].as_str().unwrap();
    let pending = app.resend(token, sub, id).await;
    assert_json_error(&pending, 409, "resend of a delivery still pending");
    assert_eq!(pending.1["error"], "delivery_pending", "{}", pending.1);

    let (status, list) = app.deliveries(token, sub, &[("status", "failed")]).await;
    assert_eq!(
        (status, list["deliveries"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{list}"
    );
    let (_, none) = app.deliveries(token, sub, &[("status", "succeeded")]).await;
    assert_eq!(none["deliveries"], serde_json::json!([]), "{none}");
}

#[actix_rt::test]
async fn another_callers_subscription_answers_404_on_every_route() {
    let s = Subscribed::with_retries("1s").await;
    s.push(1).await;
    let done = s
        .newest_when("the delivery succeeded", |d| status_of(d) == "succeeded")
        .await;
    let id = done["deliveryId"].as_str().unwrap();
    let stranger = s.app.token(MARKETPLACE, 2).await;
    let app = &s.app;

    for (what, answer) in [
        ("list", app.deliveries(&stranger, s.sub, &[]).await),
        ("detail", app.delivery(&stranger, s.sub, id).await),
        ("resend", app.resend(&stranger, s.sub, id).await),
        ("feed", app.feed(&stranger, s.sub, &[]).await),
        ("not an id", app.deliveries(&stranger, "x", &[]).await),
    ] {
        assert_json_error(&answer, 404, what);
    }
    assert_eq!(s.receiver.delivery_count(), 1, "nothing was resent");
}

#[actix_rt::test]
async fn an_event_looked_up_by_id_shows_its_fan_out_and_an_unknown_one_is_404() {
    let s = Subscribed::with_retries("1s").await;
    let other = s
        .app
        .subscribe_ok(
            &s.token,
            CONFIRM_FINAL_GRADES,
            &s.receiver.url_at("/other"),
            SECRET,
        )
        .await;
    let id = s.push(7).await;
    s.receiver.wait_for_deliveries(2, SOON).await;

    let (status, found) = s.app.event_lookup(&id).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["eventId"], id.as_str());
    assert_eq!(found["event"], CONFIRM_FINAL_GRADES);
    assert_eq!(found["marketplaceId"], MARKETPLACE);
    assert_eq!(found["payload"]["contextObjectId"], 7);
    assert!(found["acceptedAt"].is_string(), "{found}");
    let deliveries = found["deliveries"].as_array().unwrap();
    let subs: HashSet<i64> = deliveries
        .iter()
        .map(|d| d["subscriptionId"].as_i64().unwrap())
        .collect();
    assert_eq!(subs, HashSet::from([s.sub, other]), "{found}");
    assert!(
        deliveries.iter().all(|d| d["eventId"] == id.as_str()),
        "{found}"
    );

    let unknown = uuid::Uuid::now_v7().to_string();
    assert_json_error(&s.app.event_lookup(&unknown).await, 404, "unknown event");
}
