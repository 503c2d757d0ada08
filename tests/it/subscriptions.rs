//! Public subscription API: the event catalog, create (with the
//! verification call), list, get, delete, authentication, tenant isolation,
//! persistence across restarts. What subscribing refuses is in
//! `subscription_refusals`.

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
