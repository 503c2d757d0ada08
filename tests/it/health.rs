//! Endpoint health: pause and self-healing, 410 Gone, `Retry-After`. The
//! per-endpoint series of `/metrics` following deliveries are in
//! `endpoint_metrics`. Short intervals; every wait is a condition with a
//! deadline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "health-secret-0123456789";

/// The endpoint listed with this URL, once `cond` holds for it.
async fn wait_for_endpoint(
    app: &TestApp,
    url: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(SOON, what, || async {
        app.endpoint_with_url(url).await.filter(|e| cond(e))
    })
    .await
}

/// The value of a per-endpoint series, 0 when the series is absent.
pub(crate) fn series(m: &PromText, name: &str, endpoint: &str, outcome: Option<&str>) -> f64 {
    let mut labels = vec![("endpoint", endpoint)];
    if let Some(o) = outcome {
        labels.push(("outcome", o));
    }
    m.value(name, &labels).unwrap_or(0.0)
}

fn is_subscribed(list: &[Value], id: i64) -> bool {
    list.iter().any(|s| s["subscriptionId"] == id)
}

/// Pushes events 1..=20 while `receiver` answers 503 to everything, and
/// waits until its endpoint is paused, in `/internal/v1/endpoints` and in
/// `/metrics`.
async fn pause_with_twenty_held(app: &TestApp, receiver: &Receiver, endpoint: &str) {
    receiver.set_status(503);
    for i in 1..=20 {
        let pushed = app
            .push_event_ok(&event(REVISION_STATUS_UPDATED, 7000, i))
            .await;
        assert_eq!(pushed["deliveries"], 1, "event {i}: {pushed}");
    }
    let paused = wait_for_endpoint(
        app,
        &receiver.url(),
        "the endpoint is paused after failed attempts and a failed probe",
        |e| e["state"] == "paused",
    )
    .await;
    eprintln!("paused: {paused}");
    wait_for(SOON, "hookrelay_endpoint_paused is 1", || async {
        let m = app.scrape().await;
        (series(&m, "hookrelay_endpoint_paused", endpoint, None) == 1.0
            && series(&m, "hookrelay_endpoint_up", endpoint, None) == 0.0)
            .then_some(())
    })
    .await;
}

/// The contextObjectIds `receiver` got, in arrival order.
fn arrival_order(receiver: &Receiver) -> Vec<i64> {
    receiver
        .deliveries()
        .iter()
        .filter_map(Recorded::context_object_id)
        .collect()
}

#[actix_rt::test]
async fn a_paused_endpoint_heals_and_sends_its_held_deliveries_in_order_without_dead_letters() {
    let app = TestApp::spawn_with(&[
        "--max-in-flight-per-endpoint",
        "1",
        "--retry-schedule",
        "200ms,200ms,200ms",
        "--probe-interval",
        "200ms",
        "--probe-max-interval",
        "400ms",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(7000, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;

    // Down: 503 to deliveries and verification calls alike.
    pause_with_twenty_held(&app, &receiver, &endpoint).await;
    // Strict order: only the oldest delivery was ever tried while down.
    let tried: HashSet<i64> = receiver.delivered_context_ids();
    assert_eq!(
        tried,
        HashSet::from([1]),
        "with one slot only the first delivery may be tried before the pause"
    );
    wait_until(SOON, "the paused endpoint is probed", || {
        receiver.verifications().len() >= 3
    })
    .await;
    assert!(
        receiver.delivered_context_ids().len() == 1,
        "a paused endpoint gets probes, not deliveries: {:?}",
        receiver.delivered_context_ids()
    );

    receiver.set_status(200);
    let healed = Instant::now();
    receiver
        .wait_for_context_ids(&(1..=20).collect(), Duration::from_secs(20))
        .await;
    eprintln!(
        "all 20 held deliveries arrived {:?} after the endpoint came back",
        healed.elapsed()
    );
    let order = arrival_order(&receiver);
    let mut firsts = order.clone();
    firsts.dedup();
    assert_eq!(
        firsts,
        (1..=20).collect::<Vec<i64>>(),
        "held deliveries must drain oldest first (arrival order of contextObjectIds: {order:?})"
    );
    for d in receiver.deliveries() {
        assert_signed(&d, SECRET);
    }

    wait_for_endpoint(&app, &receiver.url(), "the endpoint is healthy", |e| {
        e["state"] == "healthy"
    })
    .await;
    let (status, body) = app.dead_letters(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["deadLetters"].as_array().map(Vec::len),
        Some(0),
        "attempts that failed while paused must not use up retries: {body}"
    );
}

/// A server with alice's `gone` and bob's `control` receivers subscribed to
/// `qti_export_ready` of tenant 7100, and event 1 pushed to both once `gone`
/// answers 410; answers once `gone` got it, with alice's token, her
/// subscription, and `hookrelay_auto_unsubscribed_total` before the push.
struct AnsweredGone {
    app: TestApp,
    gone: Receiver,
    control: Receiver,
    alice: String,
    sub: i64,
    unsubscribed_before: f64,
}

async fn a_delivery_answered_410() -> AnsweredGone {
    let app = TestApp::spawn_with(&["--retry-schedule", "200ms,200ms,200ms"]).await;
    let gone = Receiver::start().await;
    let control = Receiver::start().await;
    let alice = app.token(7100, 1).await;
    let bob = app.token(7100, 2).await;
    let sub = app
        .subscribe_ok(&alice, QTI_EXPORT_READY, &gone.url(), SECRET)
        .await;
    app.subscribe_ok(&bob, QTI_EXPORT_READY, &control.url(), SECRET)
        .await;
    let unsubscribed_before = app
        .scrape()
        .await
        .sum("hookrelay_auto_unsubscribed_total", &[]);

    gone.set_status(410);
    let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 7100, 1)).await;
    assert_eq!(pushed["deliveries"], 2, "{pushed}");
    gone.wait_for_context_id(1, SOON).await;
    AnsweredGone {
        app,
        gone,
        control,
        alice,
        sub,
        unsubscribed_before,
    }
}

#[actix_rt::test]
async fn a_delivery_answered_410_unsubscribes_the_endpoint_at_once() {
    let AnsweredGone {
        app,
        gone,
        alice,
        sub,
        unsubscribed_before: before,
        ..
    } = a_delivery_answered_410().await;
    let answered_410 = Instant::now();

    wait_until_async(SOON, "the subscription left the list", || async {
        !is_subscribed(&app.subscriptions_of(&alice).await, sub)
    })
    .await;
    eprintln!(
        "the subscription left the list {:?} after the 410",
        answered_410.elapsed()
    );
    assert_json_error(
        &app.get_subscription(&alice, sub).await,
        404,
        "a subscription removed by a 410",
    );
    wait_for(
        SOON,
        "hookrelay_auto_unsubscribed_total counted it",
        || async {
            let now = app
                .scrape()
                .await
                .sum("hookrelay_auto_unsubscribed_total", &[]);
            (now >= before + 1.0).then_some(())
        },
    )
    .await;
    if let Some(e) = app.endpoint_with_url(&gone.url()).await {
        assert_eq!(e["state"], "dead", "an endpoint that answered 410: {e}");
    }
}

#[actix_rt::test]
async fn after_a_410_events_route_only_elsewhere_and_the_410_is_not_retried() {
    let AnsweredGone {
        app, gone, control, ..
    } = a_delivery_answered_410().await;
    // Routing stops: pushes reach only the control subscription…
    let mut marker = 1000;
    wait_until_async(SOON, "events no longer route to the gone endpoint", || {
        marker += 1;
        let ev = event(QTI_EXPORT_READY, 7100, marker);
        let app = &app;
        async move { app.push_event_ok(&ev).await["deliveries"] == 1 }
    })
    .await;
    // …and nothing more reaches the gone endpoint.
    for i in 2..=11 {
        let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 7100, i)).await;
        assert_eq!(pushed["deliveries"], 1, "event {i} after the 410: {pushed}");
    }
    control
        .wait_for_context_ids(&(1..=11).collect(), SOON)
        .await;
    let late: Vec<i64> = gone
        .delivered_context_ids()
        .into_iter()
        .filter(|id| (2..=11).contains(id))
        .collect();
    assert!(
        late.is_empty(),
        "events pushed after the 410 reached it: {late:?}"
    );
    assert_eq!(
        gone.deliveries_of(1).len(),
        1,
        "a delivery answered 410 is not retried"
    );
}

/// Subscribes one receiver, scripts `first` as its answer to the first
/// delivery and 200 after, pushes one event and answers the time between the
/// first two attempts.
async fn gap_after(app: &TestApp, marketplace: i64, first: Reply) -> (Duration, Receiver) {
    let receiver = Receiver::start().await;
    let token = app.token(marketplace, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    receiver.set_script(vec![first], Reply::status(200));
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, marketplace, 1))
        .await;
    wait_until(SOON, "the delivery was tried twice", || {
        receiver.deliveries_of(1).len() >= 2
    })
    .await;
    let tries = receiver.deliveries_of(1);
    (tries[1].at - tries[0].at, receiver)
}

#[actix_rt::test]
async fn retry_after_on_a_429_holds_every_request_to_that_endpoint_for_that_long() {
    // The longest step (the Retry-After cap) is 5 s; the first retry step is
    // 100 ms, so any wait near 2 s comes from the header.
    let app = TestApp::spawn_with(&["--retry-schedule", "100ms,100ms,5s"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(7200, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    receiver.set_script(vec![Reply::retry_after(429, 2)], Reply::status(200));
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 7200, 1))
        .await;
    let first = receiver.wait_for_context_id(1, SOON).await;
    wait_for_endpoint(&app, &receiver.url(), "the 429 was counted", |e| {
        e["consecutiveFailures"].as_u64() >= Some(1)
    })
    .await;
    // A second event pushed during the hold waits for it too.
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 7200, 2))
        .await;
    receiver
        .wait_for_context_ids(&HashSet::from([1, 2]), SOON)
        .await;
    wait_until(SOON, "the 429'd delivery was retried", || {
        receiver.deliveries_of(1).len() >= 2
    })
    .await;
    let retry = receiver.deliveries_of(1)[1].at - first.at;
    let other = receiver.deliveries_of(2)[0].at - first.at;
    eprintln!("Retry-After: 2 → retry after {retry:?}, next event after {other:?}");
    assert!(
        retry >= Duration::from_millis(1700) && retry <= Duration::from_secs(4),
        "the retry after `429 Retry-After: 2` came {retry:?} after the first attempt (want 1.7 s to 4 s)"
    );
    assert!(
        other >= Duration::from_millis(1700) && other <= Duration::from_secs(4),
        "another delivery to the endpoint came {other:?} after the 429 (want 1.7 s to 4 s)"
    );
}

#[actix_rt::test]
async fn retry_after_is_capped_at_the_longest_retry_step() {
    let app = TestApp::spawn_with(&["--retry-schedule", "100ms,100ms,1s"]).await;
    let (gap, _receiver) = gap_after(&app, 7300, Reply::retry_after(503, 60)).await;
    eprintln!("503 Retry-After: 60 with a longest step of 1 s → retry after {gap:?}");
    assert!(
        gap >= Duration::from_millis(700) && gap <= Duration::from_secs(8),
        "Retry-After: 60 must be capped at the longest step (1 s): the retry came after {gap:?}"
    );
}

#[actix_rt::test]
async fn a_429_without_retry_after_waits_twice_the_first_retry_step() {
    let app = TestApp::spawn_with(&["--retry-schedule", "1s,1s,1s"]).await;
    let (gap, _receiver) = gap_after(&app, 7400, Reply::status(429)).await;
    eprintln!("429 without Retry-After, first step 1 s → retry after {gap:?}");
    // Twice the first step (±20% jitter): 1.6 s to 2.4 s.
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_secs(5),
        "a 429 without Retry-After must wait twice the first step (2 s): it waited {gap:?}"
    );
}
