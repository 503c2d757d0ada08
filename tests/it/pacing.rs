//! Pacing: the adaptive concurrency window finds a receiver's capacity. A
//! receiver serving at most 3 deliveries at once (429 to the rest) gets
//! every delivery, none dead-lettered, never more than 3 requests open
//! once the window has settled (it probes above only after a quiet spell
//! of seconds); a fast receiver is driven at the full `maxInFlight` at once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "pacing-secret-0123456789";
/// Deliveries served before the window counts as settled.
const WARM_UP: usize = 60;

/// A short schedule with many steps: a 429 is retried soon, and a delivery
/// refused a few times is no dead letter.
fn quick_schedule() -> String {
    vec!["50ms"; 30].join(",")
}

async fn push_all(app: &TestApp, marketplace: i64, ids: std::ops::RangeInclusive<i64>) {
    let events: Vec<Value> = ids
        .map(|i| event(REVISION_STATUS_UPDATED, marketplace, i))
        .collect();
    let (status, body) = app.push_batch(&events).await;
    assert_eq!(status, 202, "batch: {body}");
}

#[actix_rt::test]
async fn the_window_converges_on_a_receiver_that_serves_three_at_once() {
    let schedule = quick_schedule();
    let app = TestApp::spawn_with(&[
        "--max-in-flight-per-endpoint",
        "32",
        "--retry-schedule",
        &schedule,
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.serve_at_most(3, Duration::from_millis(20));
    let token = app.token(8100, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;

    let started = Instant::now();
    push_all(&app, 8100, 1..=300).await;
    wait_until(SOON, "the warm-up deliveries are served", || {
        receiver.capacity_stats().served >= WARM_UP
    })
    .await;
    let warm_up = receiver.capacity_stats();
    receiver.reset_capacity_stats();
    let all: HashSet<i64> = (1..=300).collect();
    receiver.wait_for_context_ids(&all, SOON).await;
    let settled = receiver.capacity_stats();
    eprintln!(
        "warm-up: {warm_up:?}; settled: {settled:?}; 429s after convergence: {} of {} served; all 300 in {:?}",
        settled.refused,
        settled.served,
        started.elapsed()
    );

    assert!(
        settled.peak_open <= 3,
        "once settled, hookrelay keeps at most 3 requests open: {settled:?}"
    );
    assert!(
        settled.refused * 20 <= settled.served,
        "once settled, hardly any delivery is refused: {settled:?}"
    );
    let (status, body) = app.dead_letters(&[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deadLetters"], Value::Array(vec![]), "no dead letters");

    let listed = app
        .endpoint_with_url(&receiver.url())
        .await
        .expect("listed");
    let window = listed["concurrency"].as_u64().expect("concurrency") as f64;
    assert!((1.0..=8.0).contains(&window), "{listed}");
    assert_eq!(listed["pausedBy"], Value::Null, "{listed}");
    let metrics = app.scrape().await;
    let gauge = metrics.value("hookrelay_endpoint_concurrency", &[("endpoint", &endpoint)]);
    assert!(gauge.is_some_and(|g| (1.0..=8.0).contains(&g)), "{gauge:?}");
    assert_eq!(
        metrics.value(
            "hookrelay_endpoint_operator_paused",
            &[("endpoint", &endpoint)]
        ),
        Some(0.0)
    );
}

#[actix_rt::test]
async fn a_fast_receiver_is_driven_at_the_full_max_in_flight() {
    let app = TestApp::spawn_with(&["--max-in-flight-per-endpoint", "16"]).await;
    let receiver = Receiver::start().await;
    receiver.serve_at_most(1000, Duration::from_millis(30));
    let token = app.token(8200, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;

    push_all(&app, 8200, 1..=200).await;
    let all: HashSet<i64> = (1..=200).collect();
    receiver.wait_for_context_ids(&all, SOON).await;
    let stats = receiver.capacity_stats();
    eprintln!("fast receiver: {stats:?}");
    assert_eq!(stats.peak_open, 16, "the window grew to maxInFlight");
    assert_eq!(stats.refused, 0);
    let listed = app
        .endpoint_with_url(&receiver.url())
        .await
        .expect("listed");
    assert_eq!(listed["concurrency"], 16, "{listed}");
}

#[actix_rt::test]
async fn without_adaptive_concurrency_the_window_is_always_max_in_flight() {
    let app = TestApp::spawn_with(&[
        "--max-in-flight-per-endpoint",
        "8",
        "--adaptive-concurrency",
        "false",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(8300, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let listed = wait_for(SOON, "the endpoint's actor reports its window", || async {
        app.endpoint_with_url(&receiver.url())
            .await
            .filter(|e| !e["concurrency"].is_null())
    })
    .await;
    assert_eq!(listed["concurrency"], 8, "{listed}");
}
