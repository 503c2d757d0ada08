//! The core scenarios on PostgreSQL. These run only when
//! `HOOKRELAY_TEST_POSTGRES_URL` names a server (each test creates and drops
//! its own database there with `psql`); otherwise they pass as skipped.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "pg-secret-0123456789";

macro_rules! postgres_app {
    ($args:expr) => {
        match TestApp::spawn_on_postgres($args).await {
            Some(app) => app,
            None => {
                eprintln!("skipped: {POSTGRES_ENV} is not set");
                return;
            }
        }
    };
}

#[actix_rt::test]
async fn on_postgres_a_pushed_event_reaches_its_subscriber_signed_and_unchanged() {
    let app = postgres_app!(&[]);
    let receiver = Receiver::start().await;
    let token = app.token(6000, 1).await;
    let other = app.token(6001, 1).await;
    let id = app
        .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    assert_eq!(app.subscriptions_of(&token).await.len(), 1);
    assert!(app.subscriptions_of(&other).await.is_empty());
    assert_json_error(&app.get_subscription(&other, id).await, 404, "other tenant");

    let ev = full_event(REVISION_STATUS_UPDATED, 6000, 1);
    assert_eq!(app.push_event_ok(&ev).await["deliveries"], 1);
    let got = receiver.wait_for_context_id(1, SOON).await;
    assert_eq!(got.json(), ev);
    assert_signed(&got, SECRET);
}

#[actix_rt::test]
async fn on_postgres_tokens_and_subscriptions_survive_a_restart() {
    let mut app = postgres_app!(&[]);
    let receiver = Receiver::start().await;
    let token = app.token(6100, 1).await;
    let id = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    app.restart().await;
    let subs = app.subscriptions_of(&token).await;
    assert!(
        subs.iter().any(|s| s["subscriptionId"] == id),
        "lost across a restart: {subs:?}"
    );
    app.push_event_ok(&event(QTI_EXPORT_READY, 6100, 1)).await;
    receiver.wait_for_context_id(1, SOON).await;
}

#[actix_rt::test]
async fn on_postgres_every_accepted_event_is_delivered_after_a_kill_9() {
    let mut app = postgres_app!(&["--max-in-flight-per-endpoint", "2"]);
    let receiver = Receiver::start().await;
    let token = app.token(6200, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    receiver.set_reply(Reply::delayed(Duration::from_millis(50), 200));
    let events: Vec<Value> = (1..=1000)
        .map(|i| event(REVISION_STATUS_UPDATED, 6200, i))
        .collect();
    let (status, body) = app.push_batch(&events).await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 1000);
    wait_until(Duration::from_secs(60), "50 deliveries arrived", || {
        receiver.delivered_context_ids().len() >= 50
    })
    .await;
    app.kill9();
    assert!(receiver.delivered_context_ids().len() < 1000);
    app.start().await;
    receiver.set_status(200);
    receiver
        .wait_for_context_ids(&(1..=1000).collect(), Duration::from_secs(180))
        .await;
}

#[actix_rt::test]
async fn on_postgres_an_always_failing_delivery_is_dead_lettered_and_replayed() {
    let app = postgres_app!(&[
        "--retry-schedule",
        "200ms,200ms,200ms",
        "--probe-interval",
        "100ms"
    ]);
    let receiver = Receiver::start().await;
    receiver.set_verification_reply(Reply::status(200));
    let token = app.token(6300, 1).await;
    let sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    receiver.set_status(500);
    let ev = event(CONFIRM_FINAL_GRADES, 6300, 1);
    app.push_event_ok(&ev).await;
    let letter = wait_for(Duration::from_secs(60), "a dead letter", || async {
        let (_, body) = app.dead_letters(&[("subscription", sub.to_string())]).await;
        body["deadLetters"].get(0).cloned()
    })
    .await;
    assert_eq!(letter["attempts"], 4, "{letter}");
    assert_eq!(letter["event"], ev, "{letter}");
    assert_eq!(receiver.deliveries_of(1).len(), 4);
    receiver.set_status(200);
    let id = letter["id"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| letter["id"].to_string());
    let (status, body) = app.replay_dead_letter(id).await;
    assert_eq!(status, 202, "{body}");
    wait_until(SOON, "the replay arrived", || {
        receiver.deliveries_of(1).len() >= 5
    })
    .await;
}

#[actix_rt::test]
async fn on_postgres_a_repeated_idempotency_key_delivers_once() {
    let app = postgres_app!(&[]);
    let receiver = Receiver::start().await;
    let token = app.token(6400, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    let ev = event(QTI_EXPORT_READY, 6400, 1);
    let (_, a) = app.push_event_with_idempotency_key(&ev, "pg-key").await;
    let (_, b) = app.push_event_with_idempotency_key(&ev, "pg-key").await;
    assert_eq!(a["eventId"], b["eventId"], "{a} vs {b}");
    app.push_event_ok(&event(QTI_EXPORT_READY, 6400, 2)).await;
    receiver
        .wait_for_context_ids(&HashSet::from([1, 2]), SOON)
        .await;
    assert_eq!(receiver.deliveries_of(1).len(), 1);
}
