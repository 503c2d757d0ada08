//! Delivery to subscribers: body and signatures, routing (event type, tenant,
//! triggering user), fan-out of a large batch, retries, isolation of a slow
//! endpoint. Dead letters are in `dead_letters`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "delivery-secret-0123";

#[actix_rt::test]
async fn a_pushed_event_reaches_a_matching_endpoint_with_an_equal_body_and_valid_signatures() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(2000, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;

    let minimal = event(REVISION_STATUS_UPDATED, 2000, 11);
    let full = {
        let mut e = full_event(REVISION_STATUS_UPDATED, 2000, 12);
        e["extraInfo"] = json!({"type": "JSON", "value": {"grades": [1, 2, 3], "nested": {"ok": true}}, "previousValue": {"grades": []}});
        e
    };
    let pushed = app.push_event_ok(&minimal).await;
    assert_eq!(pushed["deliveries"], 1, "{pushed}");
    app.push_event_ok(&full).await;

    for ev in [&minimal, &full] {
        let id = ev["contextObjectId"].as_i64().unwrap();
        let got = receiver.wait_for_context_id(id, SOON).await;
        assert_eq!(
            got.json(),
            *ev,
            "the delivered body must equal the pushed event (optional fields absent when not given)"
        );
        assert_signed(&got, SECRET);
        assert_eq!(got.path, "/hook", "delivered to the subscribed path");
    }
    let ids: HashSet<String> = receiver
        .deliveries()
        .iter()
        .map(|r| r.webhook_id())
        .collect();
    assert_eq!(ids.len(), 2, "each delivery has its own webhook-id");
}

#[actix_rt::test]
async fn a_whsec_secret_signs_with_its_base64_decoded_key() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let secret = whsec_secret();
    let token = app.token(2010, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), &secret)
        .await;
    let verification = &receiver.verifications()[0];
    assert_signed(verification, &secret);

    let ev = event(QTI_EXPORT_READY, 2010, 1);
    app.push_event_ok(&ev).await;
    let got = receiver.wait_for_context_id(1, SOON).await;
    assert_eq!(got.json(), ev);
    assert_signed(&got, &secret);
    // And not with the raw secret bytes.
    let raw_key_sig = {
        use base64::Engine as _;
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(
            format!(
                "{}.{}.",
                got.webhook_id(),
                got.header("webhook-timestamp").unwrap()
            )
            .as_bytes(),
        );
        mac.update(&got.body);
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        )
    };
    assert!(
        !got.header("webhook-signature")
            .unwrap()
            .contains(&raw_key_sig),
        "whsec_ secret used as raw bytes"
    );
}

#[actix_rt::test]
async fn events_reach_only_matching_subscriptions_and_never_the_triggering_user() {
    let app = TestApp::spawn().await;
    let triggering_user = Receiver::start().await; // tenant 1, user 10, revision_status_updated
    let colleague = Receiver::start().await; // tenant 1, user 11, revision_status_updated
    let other_tenant = Receiver::start().await; // tenant 2, user 10, revision_status_updated
    let other_type = Receiver::start().await; // tenant 1, user 12, qti_export_ready

    let (m1, m2) = (2101, 2102);
    let t_user10 = app.token(m1, 10).await;
    let t_user11 = app.token(m1, 11).await;
    let t_other_tenant = app.token(m2, 10).await;
    let t_user12 = app.token(m1, 12).await;
    app.subscribe_ok(
        &t_user10,
        REVISION_STATUS_UPDATED,
        &triggering_user.url(),
        "s10-secret-0123456789",
    )
    .await;
    app.subscribe_ok(
        &t_user11,
        REVISION_STATUS_UPDATED,
        &colleague.url(),
        "s11-secret-0123456789",
    )
    .await;
    app.subscribe_ok(
        &t_other_tenant,
        REVISION_STATUS_UPDATED,
        &other_tenant.url(),
        "s2-secret-0123456789",
    )
    .await;
    app.subscribe_ok(
        &t_user12,
        QTI_EXPORT_READY,
        &other_type.url(),
        "s12-secret-0123456789",
    )
    .await;

    let mut ev = event(REVISION_STATUS_UPDATED, m1, 1001);
    ev["triggeringUserId"] = json!(10);
    ev["triggeringUserName"] = json!("user ten");
    let pushed = app.push_event_ok(&ev).await;
    assert_eq!(
        pushed["deliveries"], 1,
        "only the colleague matches: {pushed}"
    );

    let got = colleague.wait_for_context_id(1001, SOON).await;
    assert_eq!(got.json(), ev);
    assert_signed(&got, "s11-secret-0123456789");

    // Later events that do match each of the others; once they arrived the
    // first event had its chance to arrive too.
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, m1, 2001))
        .await;
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, m2, 2002))
        .await;
    app.push_event_ok(&event(QTI_EXPORT_READY, m1, 2003)).await;
    triggering_user.wait_for_context_id(2001, SOON).await;
    other_tenant.wait_for_context_id(2002, SOON).await;
    other_type.wait_for_context_id(2003, SOON).await;

    assert!(
        triggering_user.deliveries_of(1001).is_empty(),
        "the triggering user's own subscription was notified"
    );
    assert!(
        other_tenant.deliveries_of(1001).is_empty(),
        "another tenant got the event"
    );
    assert!(
        other_type.deliveries_of(1001).is_empty(),
        "a subscription to another event type got the event"
    );
    assert!(
        other_tenant.deliveries_of(2001).is_empty(),
        "tenant 2 got tenant 1's event 2001"
    );
    assert!(
        colleague.deliveries_of(2002).is_empty(),
        "tenant 1 got tenant 2's event 2002"
    );
    assert!(
        colleague.deliveries_of(2003).is_empty(),
        "a revision_status_updated subscription got qti_export_ready"
    );
}

#[actix_rt::test]
async fn a_deleted_subscription_gets_no_further_events() {
    let app = TestApp::spawn().await;
    let deleted = Receiver::start().await;
    let kept = Receiver::start().await;
    let token = app.token(2200, 1).await;
    let id = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &deleted.url(), SECRET)
        .await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &kept.url(), SECRET)
        .await;
    let (status, body) = app.delete_subscription(&token, id).await;
    assert_eq!(status, 204, "{body}");

    let pushed = app
        .push_event_ok(&event(CONFIRM_FINAL_GRADES, 2200, 1))
        .await;
    assert_eq!(pushed["deliveries"], 1, "{pushed}");
    kept.wait_for_context_id(1, SOON).await;
    assert!(
        deleted.deliveries().is_empty(),
        "a deleted subscription was delivered to"
    );
}

#[actix_rt::test]
async fn an_endpoint_subscribed_again_after_its_last_subscription_was_deleted_receives_again() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(2250, 1).await;
    let first = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 2250, 1))
        .await;
    receiver.wait_for_context_id(1, SOON).await;
    let (status, body) = app.delete_subscription(&token, first).await;
    assert_eq!(status, 204, "{body}");
    // The endpoint's actor stops with its last subscription; a new
    // subscription on the same URL must start a fresh one.
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    let pushed = app
        .push_event_ok(&event(CONFIRM_FINAL_GRADES, 2250, 2))
        .await;
    assert_eq!(pushed["deliveries"], 1, "{pushed}");
    receiver.wait_for_context_id(2, SOON).await;
    assert_eq!(receiver.deliveries_of(2).len(), 1);
}

#[actix_rt::test]
async fn one_endpoint_shared_by_two_subscriptions_gets_one_delivery_each_signed_with_its_own_secret()
 {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let alice = app.token(2300, 1).await;
    let bob = app.token(2300, 2).await;
    app.subscribe_ok(
        &alice,
        QTI_EXPORT_READY,
        &receiver.url(),
        "alice-secret-0123456789",
    )
    .await;
    app.subscribe_ok(
        &bob,
        QTI_EXPORT_READY,
        &receiver.url(),
        "bob-secret-0123456789",
    )
    .await;

    let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 2300, 7)).await;
    assert_eq!(pushed["deliveries"], 2, "{pushed}");
    wait_until(SOON, "both deliveries of event 7 arrived", || {
        receiver.deliveries_of(7).len() >= 2
    })
    .await;
    let got = receiver.deliveries_of(7);
    let alice_ok = got
        .iter()
        .filter(|r| {
            r.header("x-inspera-signature")
                == Some(&inspera_signature("alice-secret-0123456789", &r.body))
        })
        .count();
    let bob_ok = got
        .iter()
        .filter(|r| {
            r.header("x-inspera-signature")
                == Some(&inspera_signature("bob-secret-0123456789", &r.body))
        })
        .count();
    assert_eq!(
        (alice_ok, bob_ok),
        (1, 1),
        "one delivery per subscription, each signed with its own secret"
    );
    for r in &got {
        let alice = r.header("x-inspera-signature")
            == Some(&inspera_signature("alice-secret-0123456789", &r.body));
        assert_signed(
            r,
            if alice {
                "alice-secret-0123456789"
            } else {
                "bob-secret-0123456789"
            },
        );
    }
}

#[actix_rt::test]
async fn a_batch_of_1000_events_reaches_each_of_three_endpoints() {
    let app = TestApp::spawn().await;
    let receivers = [
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    ];
    let token = app.token(2400, 1).await;
    for (i, r) in receivers.iter().enumerate() {
        app.subscribe_ok(
            &token,
            REVISION_STATUS_UPDATED,
            &r.url(),
            &format!("secret-0123456789-{i}"),
        )
        .await;
    }
    let events: Vec<Value> = (1..=1000)
        .map(|i| event(REVISION_STATUS_UPDATED, 2400, i))
        .collect();
    let started = Instant::now();
    let (status, body) = app.push_batch(&events).await;
    assert_eq!(
        status,
        202,
        "batch of 1000: {}",
        if status == 202 {
            String::new()
        } else {
            body.to_string()
        }
    );
    assert_eq!(body["accepted"], 1000);
    assert_eq!(body["rejected"], 0);
    let results = body["results"].as_array().unwrap();
    assert!(
        results.iter().all(|r| r["deliveries"] == 3),
        "every event matches three subscriptions"
    );

    let all: HashSet<i64> = (1..=1000).collect();
    for r in &receivers {
        r.wait_for_context_ids(&all, Duration::from_secs(180)).await;
    }
    let took = started.elapsed();
    for (i, r) in receivers.iter().enumerate() {
        let deliveries = r.deliveries();
        let ids: HashSet<String> = deliveries.iter().map(|d| d.webhook_id()).collect();
        assert!(
            ids.len() >= 1000,
            "receiver {i}: {} distinct webhook-ids for 1000 events",
            ids.len()
        );
        assert_eq!(
            ids.len(),
            r.delivered_context_ids().len(),
            "receiver {i}: one webhook-id per event"
        );
        for d in deliveries.iter().step_by(97) {
            assert_signed(d, &format!("secret-0123456789-{i}"));
        }
    }
    eprintln!("3 x 1000 deliveries took {took:?}");
}

#[actix_rt::test]
async fn a_backlog_beyond_the_memory_budget_waits_in_the_database_and_arrives_once_in_order() {
    // No memory budget: the endpoint holds 8,192 deliveries in memory and
    // leaves the rest in the database until its queue runs low.
    let app = TestApp::spawn_with(&[
        "--max-queued-bytes",
        "1",
        "--max-in-flight-per-endpoint",
        "1",
    ])
    .await;
    let receiver = Receiver::start_with(Reply::delayed(Duration::from_millis(200), 200)).await;
    let token = app.token(2500, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    const N: i64 = 9_000;
    let all: Vec<i64> = (1..=N).collect();
    for chunk in all.chunks(1000) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| event(REVISION_STATUS_UPDATED, 2500, *i))
            .collect();
        let (status, body) = app.push_batch(&events).await;
        assert_eq!(status, 202, "{body}");
    }
    let endpoint = app
        .endpoint_with_url(&receiver.url())
        .await
        .expect("the endpoint is listed");
    assert_eq!(
        endpoint["backlogInDatabase"], true,
        "9,000 held deliveries exceed the in-memory window: {endpoint}"
    );
    receiver.set_reply(Reply::status(200));
    receiver
        .wait_for_context_ids(&all.iter().copied().collect(), Duration::from_secs(120))
        .await;
    let order: Vec<i64> = receiver
        .deliveries()
        .iter()
        .filter_map(|d| d.context_object_id())
        .collect();
    assert!(
        order == all,
        "every event once and in the order pushed (one in flight); got {} deliveries, first out of order at {:?}",
        order.len(),
        order.iter().zip(&all).position(|(a, b)| a != b)
    );
    wait_for(
        Duration::from_secs(10),
        "the queued-bytes gauge to return to 0",
        || async {
            (app.scrape().await.value("hookrelay_queued_bytes", &[]) == Some(0.0)).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn a_delivery_that_fails_twice_is_retried_with_the_same_webhook_id_until_it_succeeds() {
    let app = TestApp::spawn_with(&["--retry-schedule", "200ms,200ms,200ms"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(2500, 1).await;
    let sub = app
        .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    receiver.set_script(
        vec![Reply::status(500), Reply::status(503)],
        Reply::status(200),
    );

    let ev = event(REVISION_STATUS_UPDATED, 2500, 1);
    app.push_event_ok(&ev).await;
    wait_until(SOON, "three attempts of the delivery arrived", || {
        receiver.deliveries_of(1).len() >= 3
    })
    .await;

    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 2500, 2))
        .await;
    receiver.wait_for_context_id(2, SOON).await;

    let attempts = receiver.deliveries_of(1);
    assert_eq!(
        attempts.len(),
        3,
        "fail, fail, succeed: exactly three attempts"
    );
    let ids: HashSet<String> = attempts.iter().map(|a| a.webhook_id()).collect();
    assert_eq!(
        ids.len(),
        1,
        "webhook-id must be stable across retries: {ids:?}"
    );
    for a in &attempts {
        assert_eq!(a.json(), ev);
        assert_signed(a, SECRET);
    }
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(100)),
        "retries should wait for the schedule (200ms): gaps {gaps:?}"
    );

    let (status, body) = app.dead_letters(&[("subscription", sub.to_string())]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deadLetters"].as_array().map(Vec::len),
        Some(0),
        "a delivered event is no dead letter: {body}"
    );
}

#[actix_rt::test]
async fn a_slow_endpoint_does_not_slow_a_fast_one() {
    let app = TestApp::spawn_with(&[
        "--delivery-timeout",
        "10s",
        "--max-in-flight-per-endpoint",
        "2",
    ])
    .await;
    let slow = Receiver::start().await;
    let fast = Receiver::start().await;
    let token = app.token(2700, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &slow.url(), SECRET)
        .await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &fast.url(), SECRET)
        .await;
    slow.set_reply(Reply::delayed(Duration::from_secs(3), 200));

    let events: Vec<Value> = (1..=20).map(|i| event(QTI_EXPORT_READY, 2700, i)).collect();
    let started = Instant::now();
    let (status, body) = app.push_batch(&events).await;
    assert_eq!(status, 202, "{body}");
    fast.wait_for_context_ids(&(1..=20).collect(), Duration::from_secs(30))
        .await;
    let fast_took = started.elapsed();
    let slow_seen = slow.delivery_count();
    assert!(
        slow_seen <= 8,
        "when the fast endpoint had all 20 (after {fast_took:?}) the slow one had already seen {slow_seen}: the fast one waited"
    );
}

#[actix_rt::test]
async fn the_first_event_for_a_newly_subscribed_endpoint_is_delivered_promptly() {
    // On every backend: a new endpoint must not wait for some periodic
    // bookkeeping (e.g. a lease round) before its first delivery.
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(2900, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    let pushed_at = Instant::now();
    let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 2900, 1)).await;
    assert_eq!(pushed["deliveries"], 1, "{pushed}");
    let got = receiver.wait_for_context_id(1, SOON).await;
    let took = got.at - pushed_at;
    assert!(
        took <= Duration::from_secs(3),
        "the first event for a new subscription took {took:?} to arrive on {:?} (a later one takes milliseconds)",
        app.backend()
    );
}
