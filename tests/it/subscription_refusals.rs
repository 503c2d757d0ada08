//! What subscribing refuses: endpoints that fail their verification call
//! (500, too slow, connection refused), private and loopback endpoints
//! without `--allow-private-endpoints`, malformed requests, unknown event
//! types, oversized bodies and wrong content types. Nothing refused is
//! stored.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "a-subscription-secret-7f3a";

#[actix_rt::test]
async fn an_endpoint_answering_500_is_refused_with_422_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start_with(Reply::status(500)).await;
    let token = app.token(30, 31).await;

    let resp = app
        .subscribe(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let message = assert_json_error(&resp, 422, "subscribe to an endpoint answering 500");
    assert_eq!(resp.1["error"], "endpoint_validation_failed", "{}", resp.1);
    assert!(
        message.contains("500"),
        "the message should say the endpoint answered 500: {message:?}"
    );
    assert_eq!(
        receiver.count(),
        1,
        "the verification call is made once, without retry"
    );
    assert!(
        app.subscriptions_of(&token).await.is_empty(),
        "nothing may be stored"
    );
}

#[actix_rt::test]
async fn an_endpoint_slower_than_the_delivery_timeout_is_refused_with_422() {
    let app = TestApp::spawn_with(&["--delivery-timeout", "500ms"]).await;
    let receiver = Receiver::start_with(Reply::delayed(Duration::from_secs(3), 200)).await;
    let token = app.token(40, 41).await;

    let started = Instant::now();
    let resp = app
        .subscribe(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let took = started.elapsed();
    let message = assert_json_error(
        &resp,
        422,
        "subscribe to an endpoint slower than the timeout",
    );
    assert_eq!(resp.1["error"], "endpoint_validation_failed", "{}", resp.1);
    let lower = message.to_lowercase();
    assert!(
        lower.contains("timed out") || lower.contains("timeout"),
        "the message should say it timed out: {message:?}"
    );
    assert!(
        took < Duration::from_millis(2800),
        "the 500ms timeout was not applied: subscribe took {took:?}"
    );
    assert!(
        app.subscriptions_of(&token).await.is_empty(),
        "nothing may be stored"
    );
}

#[actix_rt::test]
async fn an_endpoint_refusing_connections_is_refused_with_422() {
    let app = TestApp::spawn().await;
    let token = app.token(50, 51).await;
    let resp = app
        .subscribe(&token, REVISION_STATUS_UPDATED, &refusing_url(), SECRET)
        .await;
    let message = assert_json_error(&resp, 422, "subscribe to a port where nothing listens");
    assert_eq!(resp.1["error"], "endpoint_validation_failed", "{}", resp.1);
    assert!(
        message.to_lowercase().contains("refused"),
        "the message should say the connection was refused: {message:?}"
    );
    assert!(
        app.subscriptions_of(&token).await.is_empty(),
        "nothing may be stored"
    );
}

#[actix_rt::test]
async fn private_and_loopback_endpoints_are_refused_without_allow_private_endpoints() {
    let app = TestApp::spawn_refusing_private_endpoints(&["--delivery-timeout", "2s"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(300, 1).await;
    let port = receiver.port;
    let urls = [
        format!("http://127.0.0.1:{port}/hook"),
        "http://10.0.0.1/".to_string(),
        "http://169.254.169.254/".to_string(),
        format!("http://[::1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://2130706433:{port}/"),
    ];
    let mut failures = Vec::new();
    for url in &urls {
        let (status, body) = app
            .subscribe(&token, REVISION_STATUS_UPDATED, url, SECRET)
            .await;
        let message = body["message"].as_str().unwrap_or_default();
        if status != 422
            || !message.contains("allow-private-endpoints")
            || !body["error"].is_string()
        {
            failures.push(format!("{url}: {status} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expected 422 naming --allow-private-endpoints for:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        receiver.count(),
        0,
        "the private endpoint was called: {:?}",
        receiver.requests()
    );
    assert!(
        app.subscriptions_of(&token).await.is_empty(),
        "a private endpoint was stored"
    );
}

#[actix_rt::test]
async fn loopback_addresses_in_disguise_are_refused_too() {
    let app = TestApp::spawn_refusing_private_endpoints(&["--delivery-timeout", "2s"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(301, 1).await;
    let port = receiver.port;
    let urls = [
        format!("http://0.0.0.0:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://0x7f000001:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://LOCALHOST:{port}/hook"),
        format!("http://[::ffff:7f00:1]:{port}/hook"),
    ];
    let mut failures = Vec::new();
    for url in &urls {
        let (status, body) = app
            .subscribe(&token, REVISION_STATUS_UPDATED, url, SECRET)
            .await;
        // Refused either as private (422) or as an unusable URL (400); never stored.
        if status != 422 && status != 400 {
            failures.push(format!("{url}: {status} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "these loopback spellings were not refused:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        receiver.count(),
        0,
        "a loopback endpoint was called: {:?}",
        receiver
            .requests()
            .iter()
            .map(|r| r.body_text())
            .collect::<Vec<_>>()
    );
    assert!(
        app.subscriptions_of(&token).await.is_empty(),
        "a loopback endpoint was stored"
    );
}

/// Request bodies that are not a JSON subscription object, for `url`.
fn malformed_raw_bodies(url: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "truncated JSON",
            format!("{{\"event\":\"{REVISION_STATUS_UPDATED}\",\"endpoint\":"),
        ),
        (
            "not JSON at all",
            "event=revision_status_updated".to_string(),
        ),
        ("empty body", String::new()),
        (
            "a JSON array",
            format!(
                "[{{\"event\":\"{REVISION_STATUS_UPDATED}\",\"endpoint\":\"{url}\",\"secret\":\"x\"}}]"
            ),
        ),
        ("JSON null", "null".to_string()),
    ]
}

/// JSON subscription objects with a field of the wrong type, an unknown
/// field, a bad endpoint, or a required field missing or empty, for `url`.
fn malformed_json_bodies(url: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            "event is a number",
            json!({"event": 5, "endpoint": url, "secret": SECRET}),
        ),
        (
            "endpoint is a number",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": 123, "secret": SECRET}),
        ),
        (
            "secret is a number",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": url, "secret": 42}),
        ),
        (
            "unknown field",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": url, "secret": SECRET, "color": "blue"}),
        ),
        (
            "endpoint is not a URL",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": "not a url", "secret": SECRET}),
        ),
        (
            "endpoint is ftp",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": "ftp://x", "secret": SECRET}),
        ),
        (
            "endpoint is empty",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": "", "secret": SECRET}),
        ),
        (
            "secret missing",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": url}),
        ),
        (
            "secret empty",
            json!({"event": REVISION_STATUS_UPDATED, "endpoint": url, "secret": ""}),
        ),
        (
            "endpoint missing",
            json!({"event": REVISION_STATUS_UPDATED, "secret": SECRET}),
        ),
        ("event missing", json!({"endpoint": url, "secret": SECRET})),
    ]
}

#[actix_rt::test]
async fn malformed_subscription_requests_get_400_with_a_json_error_and_call_nobody() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(400, 1).await;
    let url = receiver.url();

    let mut failures = Vec::new();
    let raw_cases = malformed_raw_bodies(&url);
    for (what, raw) in raw_cases {
        let resp = app
            .subscribe_raw(&token, Some("application/json"), raw)
            .await;
        if resp.0 != 400 || !resp.1["error"].is_string() || !resp.1["message"].is_string() {
            failures.push(format!("{what}: {} {}", resp.0, resp.1));
        }
    }
    let json_cases = malformed_json_bodies(&url);
    for (what, body) in json_cases {
        let resp = app.subscribe_json(&token, body).await;
        if resp.0 != 400 || !resp.1["error"].is_string() || !resp.1["message"].is_string() {
            failures.push(format!("{what}: {} {}", resp.0, resp.1));
        }
    }
    assert!(
        failures.is_empty(),
        "expected 400 with a JSON error for:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        receiver.count(),
        0,
        "a refused request must not call the endpoint"
    );
    assert!(app.subscriptions_of(&token).await.is_empty());
    app.assert_healthy("after malformed subscription requests")
        .await;
}

#[actix_rt::test]
async fn subscribing_to_an_unknown_event_type_gets_422_and_calls_nobody() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(410, 1).await;
    for event in ["no_such_event", "verification"] {
        let resp = app.subscribe(&token, event, &receiver.url(), SECRET).await;
        assert_json_error(&resp, 422, &format!("subscribe to {event:?}"));
    }
    assert_eq!(
        receiver.count(),
        0,
        "an unknown event type must be refused before the verification call"
    );
    assert!(app.subscriptions_of(&token).await.is_empty());
}

#[actix_rt::test]
async fn a_subscription_body_over_max_body_bytes_gets_413_and_the_server_still_answers() {
    let app = TestApp::spawn_with(&["--max-body-bytes", "1024"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(420, 1).await;
    let huge_secret = "s".repeat(4096);
    let resp = app
        .subscribe(
            &token,
            REVISION_STATUS_UPDATED,
            &receiver.url(),
            &huge_secret,
        )
        .await;
    assert_json_error(
        &resp,
        413,
        "subscription body of ~4 KiB with --max-body-bytes 1024",
    );
    let resp = app
        .subscribe_raw(
            &token,
            Some("application/json"),
            vec![b' '; 2 * 1024 * 1024],
        )
        .await;
    assert_json_error(&resp, 413, "2 MiB of whitespace with --max-body-bytes 1024");
    assert_eq!(receiver.count(), 0);
    app.assert_healthy("after an oversized body").await;
    // A normal-sized request still works.
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
}

#[actix_rt::test]
async fn a_subscription_request_with_a_wrong_content_type_gets_415() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(430, 1).await;
    let body =
        json!({"event": REVISION_STATUS_UPDATED, "endpoint": receiver.url(), "secret": SECRET})
            .to_string();
    let resp = app
        .subscribe_raw(&token, Some("text/plain"), body.clone())
        .await;
    assert_json_error(&resp, 415, "subscribe with Content-Type text/plain");
    assert_eq!(receiver.count(), 0);
    assert!(app.subscriptions_of(&token).await.is_empty());
}
