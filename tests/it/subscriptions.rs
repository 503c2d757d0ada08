//! Public subscription API: create (with the verification call), list, get,
//! delete, authentication, tenant isolation, private-endpoint refusal,
//! input validation, persistence across restarts.

use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "a-subscription-secret-7f3a";

fn find_subscription(list: &[Value], id: i64) -> Option<&Value> {
    list.iter()
        .find(|s| s["subscriptionId"].as_i64() == Some(id))
}

#[actix_rt::test]
async fn the_event_catalog_lists_the_platform_events_and_never_verification() {
    let app = TestApp::spawn().await;
    let token = app.token(1357554, 1).await;
    let (status, body) = app.event_types(&token).await;
    assert_eq!(
        status, 200,
        "GET /v1/subscription/events answered {status}: {body}"
    );
    let events = body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array in {body}"));
    for e in events {
        assert!(
            e["name"].is_string() && e["description"].is_string(),
            "each event type has a name and description: {e}"
        );
    }
    let names: Vec<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
    for expected in [
        REVISION_STATUS_UPDATED,
        QTI_EXPORT_READY,
        CONFIRM_FINAL_GRADES,
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from the catalog {names:?}"
        );
    }
    assert!(
        !names.contains(&"verification"),
        "verification must not be subscribable: {names:?}"
    );
}

/// A server, a receiver, a token of tenant 1357554, and that token's
/// subscription of the receiver to `revision_status_updated` with [`SECRET`]:
/// the create answer, and its subscriptionId once asserted 201.
struct Subscribed {
    app: TestApp,
    receiver: Receiver,
    token: String,
    created: Value,
    id: i64,
}

async fn subscribed() -> Subscribed {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(1357554, 1001).await;

    let (status, created) = app
        .subscribe(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    assert_eq!(status, 201, "subscribe answered {status}: {created}");
    let id = created["subscriptionId"]
        .as_i64()
        .unwrap_or_else(|| panic!("subscriptionId is not an integer: {created}"));
    Subscribed {
        app,
        receiver,
        token,
        created,
        id,
    }
}

#[actix_rt::test]
async fn subscribing_answers_the_stored_subscription_without_its_secret() {
    let Subscribed {
        receiver,
        created: body,
        ..
    } = subscribed().await;
    assert_eq!(body["event"], REVISION_STATUS_UPDATED, "{body}");
    assert_eq!(body["endpoint"], receiver.url(), "{body}");
    assert!(
        body["lastModified"].as_str().is_some_and(|s| !s.is_empty()),
        "lastModified missing: {body}"
    );
    assert!(
        !text_of(&body).contains(SECRET),
        "the secret leaked in the create answer: {body}"
    );
}

#[actix_rt::test]
async fn subscribing_makes_exactly_one_verification_call_signed_with_the_subscriptions_secret() {
    let Subscribed { receiver, .. } = subscribed().await;
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        1,
        "expected exactly one verification call, got {:?}",
        requests.iter().map(|r| r.body_text()).collect::<Vec<_>>()
    );
    let call = &requests[0];
    assert_signed(call, SECRET);
    let v = call.json();
    assert_eq!(v["event"], "verification", "verification body: {v}");
    assert_eq!(v["contextObjectId"], 0, "verification body: {v}");
    let title = v["contextObjectTitle"]
        .as_str()
        .unwrap_or_else(|| panic!("no contextObjectTitle in {v}"));
    assert!(
        uuid::Uuid::parse_str(title).is_ok(),
        "contextObjectTitle {title:?} is not a UUID"
    );
    let ts = v["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no timestamp in {v}"));
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "verification timestamp {ts:?} is not an ISO-8601 UTC time"
    );
}

#[actix_rt::test]
async fn a_new_subscription_is_listed_and_gettable_without_its_secret_and_without_another_call() {
    let Subscribed {
        app,
        receiver,
        token,
        id,
        ..
    } = subscribed().await;
    let (status, list) = app.list_subscriptions(&token).await;
    assert_eq!(status, 200, "list: {list}");
    let subs = list["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no subscriptions array: {list}"));
    let listed = find_subscription(subs, id)
        .unwrap_or_else(|| panic!("subscription {id} not listed: {list}"));
    assert_eq!(listed["event"], REVISION_STATUS_UPDATED);
    assert_eq!(listed["endpoint"], receiver.url());
    assert!(
        listed["lastModified"].is_string(),
        "lastModified in list: {listed}"
    );
    assert!(
        !text_of(&list).contains(SECRET),
        "the secret leaked in the list: {list}"
    );

    let (status, one) = app.get_subscription(&token, id).await;
    assert_eq!(status, 200, "get: {one}");
    assert_eq!(one["subscriptionId"], id);
    assert_eq!(one["endpoint"], receiver.url());
    assert!(
        one.get("endpointHealth").is_some_and(|h| !h.is_null()),
        "endpointHealth missing: {one}"
    );
    assert!(
        !text_of(&one).contains(SECRET),
        "the secret leaked in get: {one}"
    );

    assert_eq!(
        receiver.count(),
        1,
        "listing and getting must not call the endpoint again"
    );
}

#[actix_rt::test]
async fn a_subscription_can_be_fetched_and_deleted_and_then_answers_404() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(20, 21).await;
    let keep = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;
    let id = app
        .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    assert_ne!(keep, id, "two subscriptions got the same id");

    let (status, body) = app.get_subscription(&token, id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"], REVISION_STATUS_UPDATED);

    let (status, body) = app.delete_subscription(&token, id).await;
    assert_eq!(status, 204, "delete answered {status}: {body}");

    let resp = app.get_subscription(&token, id).await;
    assert_json_error(&resp, 404, "get after delete");
    let resp = app.delete_subscription(&token, id).await;
    assert_json_error(&resp, 404, "second delete");
    let resp = app.get_subscription(&token, 987_654_321).await;
    assert_json_error(&resp, 404, "get of an id that never existed");
    let resp = app.get_subscription(&token, "not-a-number").await;
    assert!(
        resp.0 == 404 || resp.0 == 400,
        "get of a non-numeric id answered {}: {}",
        resp.0,
        resp.1
    );
    assert_json_error(&resp, resp.0, "get of a non-numeric id");

    let subs = app.subscriptions_of(&token).await;
    assert!(
        find_subscription(&subs, id).is_none(),
        "deleted subscription still listed: {subs:?}"
    );
    assert!(
        find_subscription(&subs, keep).is_some(),
        "the other subscription vanished: {subs:?}"
    );
}

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
async fn requests_without_a_valid_token_get_401_with_a_json_error() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let good = app.token(60, 61).await;
    let id = app
        .subscribe_ok(&good, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let calls_before = receiver.count();

    let bad_headers: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("Authorization", "Bearer not-a-real-token".to_string())],
        vec![("Authorization", "Bearer ".to_string())],
        vec![("Authorization", format!("Basic {good}"))],
        vec![("Authorization", good.clone())],
        vec![("Authorization", format!("Bearer {good}x"))],
    ];
    let sub_body =
        json!({"event": REVISION_STATUS_UPDATED, "endpoint": receiver.url(), "secret": SECRET});
    for headers in &bad_headers {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let calls = [
            (
                Method::GET,
                app.public("/v1/subscription/events"),
                Body::Empty,
            ),
            (Method::GET, app.public("/v1/subscription"), Body::Empty),
            (
                Method::POST,
                app.public("/v1/subscription"),
                Body::Json(sub_body.clone()),
            ),
            (
                Method::GET,
                app.public(&format!("/v1/subscription/{id}")),
                Body::Empty,
            ),
            (
                Method::DELETE,
                app.public(&format!("/v1/subscription/{id}")),
                Body::Empty,
            ),
        ];
        for (method, url, body) in calls {
            let what = format!("{method} {url} with headers {headers:?}");
            let resp = app.call(method, &url, None, &h, body).await;
            assert_json_error(&resp, 401, &what);
        }
    }
    assert_eq!(
        receiver.count(),
        calls_before,
        "an unauthenticated subscribe must not call the endpoint"
    );
    let subs = app.subscriptions_of(&good).await;
    assert_eq!(
        subs.len(),
        1,
        "unauthenticated calls changed the subscriptions: {subs:?}"
    );
}

#[actix_rt::test]
async fn another_tenants_and_another_users_subscriptions_are_invisible_and_undeletable() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let owner = app.token(100, 7).await;
    let other_tenant_same_user_id = app.token(200, 7).await;
    let same_tenant_other_user = app.token(100, 8).await;
    let id = app
        .subscribe_ok(&owner, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;

    for (who, token) in [
        ("another tenant", &other_tenant_same_user_id),
        ("another user", &same_tenant_other_user),
    ] {
        let resp = app.get_subscription(token, id).await;
        assert_json_error(&resp, 404, &format!("{who} gets the owner's subscription"));
        let resp = app.delete_subscription(token, id).await;
        assert_json_error(
            &resp,
            404,
            &format!("{who} deletes the owner's subscription"),
        );
        let subs = app.subscriptions_of(token).await;
        assert!(
            subs.is_empty(),
            "{who} sees someone else's subscriptions: {subs:?}"
        );
    }

    let (status, body) = app.get_subscription(&owner, id).await;
    assert_eq!(
        status, 200,
        "the owner's subscription must survive others' delete attempts: {body}"
    );
    assert_eq!(app.subscriptions_of(&owner).await.len(), 1);
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

#[actix_rt::test]
async fn malformed_subscription_requests_get_400_with_a_json_error_and_call_nobody() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(400, 1).await;
    let url = receiver.url();

    let mut failures = Vec::new();
    let raw_cases: Vec<(&str, String)> = vec![
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
    ];
    for (what, raw) in raw_cases {
        let resp = app
            .subscribe_raw(&token, Some("application/json"), raw)
            .await;
        if resp.0 != 400 || !resp.1["error"].is_string() || !resp.1["message"].is_string() {
            failures.push(format!("{what}: {} {}", resp.0, resp.1));
        }
    }
    let json_cases = vec![
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
    ];
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

#[actix_rt::test]
async fn tokens_and_subscriptions_survive_a_restart_on_the_same_database_file() {
    let mut app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(500, 5).await;
    let id = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), SECRET)
        .await;

    app.restart().await;
    let subs = app.subscriptions_of(&token).await;
    let s = find_subscription(&subs, id)
        .unwrap_or_else(|| panic!("subscription {id} lost across a restart: {subs:?}"));
    assert_eq!(s["endpoint"], receiver.url());

    app.kill9();
    app.start().await;
    let subs = app.subscriptions_of(&token).await;
    assert!(
        find_subscription(&subs, id).is_some(),
        "subscription {id} lost across kill -9: {subs:?}"
    );

    // The routing table was rebuilt: an event still reaches the endpoint.
    let ev = event(QTI_EXPORT_READY, 500, 5001);
    app.push_event_ok(&ev).await;
    let got = receiver.wait_for_context_id(5001, SOON).await;
    assert_eq!(got.json(), ev);
    assert_signed(&got, SECRET);
}
