//! Internal listener: the optional internal token, /health, token creation,
//! and the separation of the two listeners.

use awc::http::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_rt::test]
async fn health_answers_ok_without_any_token() {
    let app = TestApp::spawn().await;
    app.assert_healthy("fresh server").await;
}

#[actix_rt::test]
async fn with_an_internal_token_internal_routes_without_it_get_401_but_health_answers() {
    let app = TestApp::spawn_with(&["--internal-token", "s3cret"]).await;
    app.assert_healthy("/health needs no token").await;

    // With the right token everything works (TestApp sends it).
    let public_token = app.token(4000, 1).await;
    app.push_event_ok(&event(QTI_EXPORT_READY, 4000, 1)).await;

    let ev = event(QTI_EXPORT_READY, 4000, 2);
    let routes = || {
        vec![
            (
                Method::POST,
                app.internal("/internal/v1/tokens"),
                Body::Json(json!({"marketplaceId": 1, "userId": 2})),
            ),
            (
                Method::POST,
                app.internal("/internal/v1/events"),
                Body::Json(ev.clone()),
            ),
            (
                Method::POST,
                app.internal("/internal/v1/events/batch"),
                Body::Json(json!([ev.clone()])),
            ),
            (
                Method::GET,
                app.internal("/internal/v1/dead-letters"),
                Body::Empty,
            ),
            (
                Method::POST,
                app.internal("/internal/v1/dead-letters/1/replay"),
                Body::Empty,
            ),
        ]
    };
    let bad_auth: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("Authorization", "Bearer wrong".to_string())],
        vec![("Authorization", "Bearer s3cretX".to_string())],
        vec![("Authorization", "s3cret".to_string())],
        vec![("Authorization", format!("Bearer {public_token}"))],
    ];
    for headers in &bad_auth {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, url, body) in routes() {
            let what = format!("{method} {url} with {headers:?}");
            let resp = app.call(method, &url, None, &h, body).await;
            assert_json_error(&resp, 401, &what);
        }
    }
    // The rejected pushes stored nothing: only the authorised event exists.
    let receiver = Receiver::start().await;
    app.subscribe_ok(
        &public_token,
        QTI_EXPORT_READY,
        &receiver.url(),
        "x-secret-0123456789",
    )
    .await;
    app.push_event_ok(&event(QTI_EXPORT_READY, 4000, 3)).await;
    receiver.wait_for_context_id(3, SOON).await;
    assert!(
        receiver.deliveries_of(2).is_empty(),
        "an unauthorised push was delivered"
    );
}

#[actix_rt::test]
async fn the_internal_api_is_not_served_on_the_public_listener() {
    let app = TestApp::spawn().await;
    let calls = [
        (
            Method::POST,
            "/internal/v1/tokens",
            Body::Json(json!({"marketplaceId": 1, "userId": 2})),
        ),
        (
            Method::POST,
            "/internal/v1/events",
            Body::Json(event(QTI_EXPORT_READY, 1, 1)),
        ),
        (Method::GET, "/internal/v1/dead-letters", Body::Empty),
    ];
    for (method, path, body) in calls {
        let what = format!("{method} {path} on the public listener");
        let (status, resp) = app.call(method, &app.public(path), None, &[], body).await;
        assert!(
            status == 404 || status == 401,
            "{what} answered {status}: {resp}"
        );
    }
}

#[actix_rt::test]
async fn token_creation_validates_its_input() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"marketplaceId": "one", "userId": 2}),
        json!({"marketplaceId": 1}),
        json!({"userId": 2}),
        json!({"marketplaceId": 1, "userId": 2.5}),
    ] {
        let resp = app.create_token(body.clone()).await;
        assert_json_error(&resp, 400, &format!("token creation with {body}"));
    }
    let a = app.token(1, 2).await;
    let b = app.token(1, 2).await;
    assert_ne!(a, b, "each token creation returns a new token");
    let subs = app.subscriptions_of(&a).await;
    assert!(subs.is_empty());
    let subs = app.subscriptions_of(&b).await;
    assert!(subs.is_empty());
}

#[actix_rt::test]
async fn metrics_are_served_in_prometheus_text_with_per_endpoint_series() {
    let app = TestApp::spawn_with(&["--internal-token", "m3trics"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(4100, 1).await;
    app.subscribe_ok(
        &token,
        QTI_EXPORT_READY,
        &receiver.url(),
        "x-secret-0123456789",
    )
    .await;
    app.push_event_ok(&event(QTI_EXPORT_READY, 4100, 1)).await;
    receiver.wait_for_context_id(1, SOON).await;

    let (status, _) = app
        .call(
            Method::GET,
            &app.internal("/metrics"),
            None,
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(status, 401, "/metrics needs the internal token");

    // The success is recorded right after the receiver answered.
    let text = wait_for(SOON, "the delivery to show in /metrics", || async {
        let (status, content_type, body) = app.metrics().await;
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        assert!(
            content_type.starts_with("text/plain"),
            "Prometheus text format, got Content-Type {content_type:?}"
        );
        let delivered = body.lines().any(|l| {
            l.starts_with("hookrelay_deliveries_total{")
                && l.contains("endpoint=\"")
                && !l.trim_end().ends_with(" 0")
        });
        delivered.then_some(body)
    })
    .await;
    let mut missing = Vec::new();
    for series in [
        "hookrelay_deliveries_total{",
        "hookrelay_delivery_attempts_total{",
        "hookrelay_delivery_duration_seconds_bucket{",
        "hookrelay_endpoint_queue_depth{",
        "hookrelay_endpoint_consecutive_failures{",
        "hookrelay_endpoint_up{",
        "hookrelay_verifications_total{",
        "hookrelay_auto_unsubscribed_total",
        "hookrelay_events_ingested_total{",
    ] {
        if !text.lines().any(|l| l.starts_with(series)) {
            missing.push(series);
        }
    }
    assert!(
        missing.is_empty(),
        "series missing from /metrics: {missing:?}\n{text}"
    );
    let up = text
        .lines()
        .find(|l| l.starts_with("hookrelay_endpoint_up{"))
        .unwrap();
    assert!(
        up.contains("endpoint=\"") && up.trim_end().ends_with(" 1"),
        "a healthy endpoint is up: {up}"
    );
}

#[actix_rt::test]
async fn the_endpoints_list_shows_each_endpoint_with_its_health() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(4200, 1).await;
    app.subscribe_ok(
        &token,
        QTI_EXPORT_READY,
        &receiver.url(),
        "x-secret-0123456789",
    )
    .await;
    let (status, body) = app.endpoints().await;
    assert_eq!(status, 200, "{body}");
    let list = body["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no endpoints array: {body}"));
    let ours = list
        .iter()
        .find(|e| text_of(e).contains(&receiver.url()))
        .unwrap_or_else(|| panic!("{} not in the endpoints list: {body}", receiver.url()));
    assert!(
        text_of(ours).contains("healthy"),
        "a freshly verified endpoint is healthy: {ours}"
    );
}

#[actix_rt::test]
async fn an_event_type_registered_on_the_internal_api_can_be_subscribed_to_and_pushed() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(4300, 1).await;
    let name = "grading_committee_changed";
    let resp = app
        .subscribe(&token, name, &receiver.url(), "x-secret-0123456789")
        .await;
    assert_json_error(&resp, 422, "subscribe before registration");

    let (status, body) = app
        .put_event_type(
            name,
            json!({"description": "The grading committee changed"}),
        )
        .await;
    assert!(
        (200..300).contains(&status),
        "PUT event type answered {status}: {body}"
    );
    let (status, body) = app.internal_event_types().await;
    assert_eq!(status, 200, "{body}");
    assert!(text_of(&body).contains(name), "{body}");
    let (_, catalog) = app.event_types(&token).await;
    assert!(
        text_of(&catalog).contains(name),
        "the public catalog lists the new type: {catalog}"
    );

    app.subscribe_ok(&token, name, &receiver.url(), "x-secret-0123456789")
        .await;
    let pushed = app.push_event_ok(&event(name, 4300, 1)).await;
    assert_eq!(pushed["deliveries"], 1, "{pushed}");
    receiver.wait_for_context_id(1, SOON).await;

    let resp = app
        .put_event_type("verification", json!({"description": "nope"}))
        .await;
    assert!(
        (400..500).contains(&resp.0),
        "verification must stay reserved: {} {}",
        resp.0,
        resp.1
    );
}
