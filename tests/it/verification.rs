//! Periodic verification of endpoints (`--verify-interval`,
//! `--dead-after-failed-verifications`): once per endpoint, and a dead
//! endpoint's subscriptions stop receiving events.

use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::*;

const SECRET: &str = "verify-secret-0123456789";

/// Pushes a fresh probe event until one answers `deliveries: 0`.
async fn wait_until_nothing_routes_to(
    app: &TestApp,
    event_type: &str,
    marketplace: i64,
    what: &str,
) {
    let mut probe = 1_000_000;
    wait_until_async(Duration::from_secs(60), what, || {
        probe += 1;
        let ev = event(event_type, marketplace, probe);
        async move { app.push_event_ok(&ev).await["deliveries"] == 0 }
    })
    .await;
}

#[actix_rt::test]
async fn an_endpoint_failing_its_periodic_verifications_is_unsubscribed_and_its_pending_deliveries_dead_lettered()
 {
    let app = TestApp::spawn_with(&[
        "--verify-interval",
        "300ms",
        "--dead-after-failed-verifications",
        "3",
        "--retry-schedule",
        "1h",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(5000, 1).await;
    let sub = app
        .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    receiver.set_status(500);

    // One delivery fails and waits an hour for its retry.
    let held = event(REVISION_STATUS_UPDATED, 5000, 1);
    assert_eq!(app.push_event_ok(&held).await["deliveries"], 1);
    receiver.wait_for_context_id(1, SOON).await;

    wait_until(SOON, "three periodic verification calls failed", || {
        receiver.verifications().len() > 3
    })
    .await;
    for v in receiver.verifications() {
        assert_signed(&v, SECRET);
    }
    wait_until_nothing_routes_to(
        &app,
        REVISION_STATUS_UPDATED,
        5000,
        "the dead endpoint's subscription no longer receives events",
    )
    .await;

    let letters = wait_for(SOON, "the held delivery became a dead letter", || async {
        let (status, body) = app.dead_letters(&[("subscription", sub.to_string())]).await;
        assert_eq!(status, 200, "{body}");
        let list = body["deadLetters"].as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    })
    .await;
    assert!(
        letters.iter().any(|d| d["event"] == held),
        "the held event is among the dead letters: {letters:?}"
    );
}

#[actix_rt::test]
async fn periodic_verification_calls_go_once_per_endpoint_however_many_subscriptions_share_it() {
    let interval = Duration::from_secs(1);
    let app = TestApp::spawn_with(&["--verify-interval", "1s"]).await;
    let receiver = Receiver::start().await;
    let alice = app.token(5100, 1).await;
    let bob = app.token(5200, 2).await;
    app.subscribe_ok(
        &alice,
        QTI_EXPORT_READY,
        &receiver.url(),
        "alice-secret-0123456789",
    )
    .await;
    app.subscribe_ok(
        &bob,
        CONFIRM_FINAL_GRADES,
        &receiver.url(),
        "bob-secret-0123456789",
    )
    .await;
    let initial = receiver.verifications().len();
    assert_eq!(
        initial, 2,
        "one verification call per subscription at creation"
    );
    // Count over three intervals from the first periodic call (about 3.5
    // intervals after subscribing, as the first call comes after 90-100% of
    // an interval): one call per interval gives 3 or 4, one per
    // subscription twice that.
    let window = interval * 3;
    wait_until(
        Duration::from_secs(60),
        "three intervals observed after the first periodic verification call",
        || {
            let v = receiver.verifications();
            v.len() > initial && v[initial].at.elapsed() >= window
        },
    )
    .await;
    let periodic: Vec<Recorded> = receiver.verifications().split_off(initial);
    let first = periodic[0].at;
    let offsets: Vec<Duration> = periodic.iter().map(|v| v.at - first).collect();
    eprintln!(
        "first periodic verification call {:?} after the first subscription's; the next ones {offsets:?} after it",
        first - receiver.verifications()[0].at
    );
    // Slack for late calls on a loaded machine (lower bound only).
    let slack = Duration::from_millis(400);
    let in_window = offsets.iter().filter(|d| **d <= window).count();
    let in_window_with_slack = offsets.iter().filter(|d| **d <= window + slack).count();
    assert!(
        in_window <= 4,
        "{in_window} periodic verification calls within 3 intervals of the first: more than one per endpoint per interval (at {offsets:?})"
    );
    assert!(
        in_window_with_slack >= 3,
        "only {in_window_with_slack} periodic verification calls within 3 intervals of the first (at {offsets:?})"
    );
    let gaps: Vec<Duration> = periodic.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|g| *g >= interval / 2),
        "periodic verification calls come in bursts (once per subscription?): gaps {gaps:?}"
    );
    for v in &periodic {
        let sig = v.header("x-inspera-signature").unwrap_or_default();
        assert!(
            sig == inspera_signature("alice-secret-0123456789", &v.body)
                || sig == inspera_signature("bob-secret-0123456789", &v.body),
            "a periodic verification call is signed with a subscription's secret"
        );
    }
}

#[actix_rt::test]
async fn a_healthy_endpoint_keeps_its_subscription_through_periodic_verification() {
    let app = TestApp::spawn_with(&[
        "--verify-interval",
        "300ms",
        "--dead-after-failed-verifications",
        "3",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(5300, 1).await;
    let sub = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    wait_until(SOON, "five periodic verification calls", || {
        receiver.verifications().len() >= 6
    })
    .await;
    let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 5300, 1)).await;
    assert_eq!(pushed["deliveries"], 1, "{pushed}");
    receiver.wait_for_context_id(1, SOON).await;
    let (status, body) = app.get_subscription(&token, sub).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_rt::test]
async fn an_endpoint_failing_fewer_consecutive_verifications_than_the_limit_stays_subscribed() {
    let app = TestApp::spawn_with(&[
        "--verify-interval",
        "300ms",
        "--dead-after-failed-verifications",
        "3",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(5400, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    // Fail, fail, succeed, fail, fail, succeed…: never three in a row.
    let pattern: Vec<Reply> = (0..6)
        .map(|i| Reply::status(if i % 3 == 2 { 200 } else { 500 }))
        .collect();
    receiver.set_script(pattern, Reply::status(200));
    wait_until(SOON, "seven periodic verification calls", || {
        receiver.verifications().len() >= 8
    })
    .await;
    let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 5400, 1)).await;
    assert_eq!(
        pushed["deliveries"], 1,
        "two failures in a row must not kill the endpoint: {pushed}"
    );
    receiver
        .wait_for_context_ids(&HashSet::from([1]), SOON)
        .await;
}
