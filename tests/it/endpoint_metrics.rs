//! `/metrics` following deliveries: every series carries the node's label,
//! and the per-endpoint counters (attempts by outcome, deliveries, duration
//! observations, consecutive failures) move with each success and failure.

use crate::health::series;
use crate::helpers::*;

const SECRET: &str = "health-secret-0123456789";

/// A server (retries every 200 ms) with one receiver of tenant 7500
/// subscribed to `revision_status_updated`; answers the receiver and its
/// endpoint id as `/metrics` labels it.
async fn one_subscribed_endpoint() -> (TestApp, Receiver, String) {
    let app = TestApp::spawn_with(&["--retry-schedule", "200ms,200ms,200ms"]).await;
    let receiver = Receiver::start().await;
    receiver.set_verification_reply(Reply::status(200));
    let token = app.token(7500, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;
    (app, receiver, endpoint)
}

#[actix_rt::test]
async fn every_metrics_series_carries_the_node_label_health_names() {
    let (app, _receiver, _) = one_subscribed_endpoint().await;
    let (_, health) = app.health().await;
    let node = health["node"].as_str().unwrap_or_default().to_string();

    let m = app.scrape().await;
    assert!(
        m.samples.iter().all(|s| s.label("node").is_some()),
        "every series carries a node label: {:?}",
        m.samples.iter().find(|s| s.label("node").is_none())
    );
    if !node.is_empty() {
        assert!(
            m.samples.iter().all(|s| s.label("node") == Some(&node)),
            "the node label is /health's node {node:?}"
        );
    }
}

/// `hookrelay_delivery_attempts_total{endpoint, outcome}`, 0 when absent.
fn attempts_of(m: &PromText, endpoint: &str, outcome: &str) -> f64 {
    series(
        m,
        "hookrelay_delivery_attempts_total",
        endpoint,
        Some(outcome),
    )
}

/// `hookrelay_deliveries_total{endpoint, outcome="succeeded"}`, 0 when absent.
fn succeeded_of(m: &PromText, endpoint: &str) -> f64 {
    series(m, "hookrelay_deliveries_total", endpoint, Some("succeeded"))
}

/// Scrapes `/metrics` until `cond` holds for the scrape; answers it.
async fn scrape_until(app: &TestApp, what: &str, cond: impl Fn(&PromText) -> bool) -> PromText {
    wait_for(SOON, what, || async {
        let m = app.scrape().await;
        cond(&m).then_some(m)
    })
    .await
}

#[actix_rt::test]
async fn metrics_parse_as_prometheus_text_and_the_endpoint_counters_follow_deliveries() {
    let (app, receiver, endpoint) = one_subscribed_endpoint().await;
    let m = app.scrape().await;
    let ingested_before = m.sum(
        "hookrelay_events_ingested_total",
        &[("event", REVISION_STATUS_UPDATED)],
    );
    let attempts = |m: &PromText, outcome| attempts_of(m, &endpoint, outcome);
    let succeeded = |m: &PromText| succeeded_of(m, &endpoint);
    assert_eq!(succeeded(&m), 0.0);
    assert_eq!(attempts(&m, "http_error"), 0.0);

    // A success moves deliveries{succeeded} and attempts{success}.
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 7500, 1))
        .await;
    receiver.wait_for_context_id(1, SOON).await;
    let m = scrape_until(&app, "the success in /metrics", |m| succeeded(m) == 1.0).await;
    assert_eq!(attempts(&m, "success"), 1.0);
    assert_eq!(attempts(&m, "http_error"), 0.0);
    assert_eq!(
        series(&m, "hookrelay_endpoint_up", &endpoint, None),
        1.0,
        "a healthy endpoint is up"
    );

    // Two failed attempts move attempts{http_error}; the retry that
    // succeeds moves deliveries{succeeded}.
    receiver.set_script(
        vec![Reply::status(500), Reply::status(500)],
        Reply::status(200),
    );
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 7500, 2))
        .await;
    let m = scrape_until(&app, "two http errors in /metrics", |m| {
        attempts(m, "http_error") >= 2.0
    })
    .await;
    assert_eq!(attempts(&m, "http_error"), 2.0, "exactly the two failures");
    wait_until(SOON, "the third attempt arrived", || {
        receiver.deliveries_of(2).len() >= 3
    })
    .await;
    let m = scrape_until(&app, "the retried success in /metrics", |m| {
        succeeded(m) == 2.0
    })
    .await;
    assert_eq!(attempts(&m, "success"), 2.0);
    assert_eq!(attempts(&m, "http_error"), 2.0);
    assert_eq!(
        series(&m, "hookrelay_deliveries_total", &endpoint, Some("dead")),
        0.0
    );
    assert_eq!(
        m.value(
            "hookrelay_delivery_duration_seconds_count",
            &[("endpoint", endpoint.as_str())]
        ),
        Some(4.0),
        "one duration observation per attempt"
    );
    assert_eq!(
        series(
            &m,
            "hookrelay_endpoint_consecutive_failures",
            &endpoint,
            None
        ),
        0.0,
        "a success ends the run of failures"
    );
    assert_eq!(
        m.sum(
            "hookrelay_events_ingested_total",
            &[("event", REVISION_STATUS_UPDATED)]
        ),
        ingested_before + 2.0
    );
    assert_declared_types(&m);
}

/// Every family the contract names is declared with its type (vectors show
/// only once they have a series, so call this after some traffic).
fn assert_declared_types(m: &PromText) {
    for family in [
        "hookrelay_deliveries_total",
        "hookrelay_delivery_attempts_total",
        "hookrelay_verifications_total",
        "hookrelay_auto_unsubscribed_total",
        "hookrelay_events_ingested_total",
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some("counter"),
            "{family} is declared a counter"
        );
    }
    assert_eq!(
        m.types
            .get("hookrelay_delivery_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    for gauge in [
        "hookrelay_endpoint_queue_depth",
        "hookrelay_endpoint_consecutive_failures",
        "hookrelay_endpoint_up",
    ] {
        assert_eq!(
            m.types.get(gauge).map(String::as_str),
            Some("gauge"),
            "{gauge} is declared a gauge"
        );
    }
}
