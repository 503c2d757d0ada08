//! Lifecycle notices (DESIGN.md section 9): an endpoint that fails its
//! scheduled checks gives failing, paused, expiring, dead and one
//! auto_removed per subscription, in that order, signed to the operator
//! webhook and listed at `GET /internal/v1/notices`; one that comes back
//! gives recovered; notices wait out an operator webhook that is down,
//! across a kill -9, and its own endpoint is never removed. Short
//! intervals; every wait is a condition with a deadline.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "notices-subscriber-secret-0123";
const OPERATOR_SECRET: &str = "notices-operator-secret-0123456";

/// The notices of the endpoint with id `endpoint`, in order.
fn about(notices: &[Value], endpoint: &str) -> Vec<Value> {
    notices
        .iter()
        .filter(|n| {
            n["endpoint"]["id"]
                .as_i64()
                .map(|id| id.to_string())
                .as_deref()
                == Some(endpoint)
        })
        .cloned()
        .collect()
}

/// The (marketplaceId, userId) of a notice's subscriptions.
fn owners(notice: &Value) -> Vec<(i64, i64)> {
    notice["subscriptions"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .map(|s| {
                    (
                        s["marketplaceId"].as_i64().unwrap_or(-1),
                        s["userId"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the listed notices of `endpoint` are `count` or more.
async fn wait_for_notices(app: &TestApp, endpoint: &str, count: usize, what: &str) -> Vec<Value> {
    wait_for(SOON, what, || async {
        let listed = about(&app.all_notices(2).await, endpoint);
        (listed.len() >= count).then_some(listed)
    })
    .await
}

#[actix_rt::test]
async fn an_endpoint_failing_its_checks_gives_every_notice_in_order_signed_to_the_operator() {
    // A `whsec_` key, as the reference verifier takes.
    let operator_secret = whsec_secret();
    let operator = Receiver::start().await;
    let app = TestApp::spawn_with(&[
        "--operator-webhook",
        &operator.url(),
        "--operator-webhook-secret",
        &operator_secret,
        "--verify-interval",
        "2s",
        "--dead-after-failed-verifications",
        "3",
        "--pause-after-failures",
        "1",
        "--retry-schedule",
        "30s",
    ])
    .await;
    let dying = Receiver::start().await;
    let (first, second) = (app.token(8101, 11).await, app.token(8102, 12).await);
    app.subscribe_ok(&first, REVISION_STATUS_UPDATED, &dying.url(), SECRET)
        .await;
    app.subscribe_ok(&second, REVISION_STATUS_UPDATED, &dying.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&dying.url()).await;
    // Down from now on: deliveries, probes and scheduled checks all fail.
    dying.set_status(503);
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 8101, 1))
        .await;

    let listed = wait_for_notices(&app, &endpoint, 6, "six notices about the dying endpoint").await;
    let kinds = notice_kinds(&listed);
    assert_eq!(
        kinds,
        [
            "endpoint.failing",
            "endpoint.paused",
            "subscription.expiring",
            "endpoint.dead",
            "subscription.auto_removed",
            "subscription.auto_removed",
        ],
        "notices in order: {listed:#?}"
    );
    let both = vec![(8101, 11), (8102, 12)];
    for notice in &listed[..4] {
        assert_eq!(
            owners(notice),
            both,
            "each names both subscriptions: {notice}"
        );
        assert!(!notice["reason"].as_str().unwrap_or_default().is_empty());
        assert_eq!(notice["endpoint"]["url"], dying.url());
    }
    let mut removed: Vec<_> = listed[4..].iter().flat_map(owners).collect();
    removed.sort();
    assert_eq!(
        removed, both,
        "one auto_removed per subscription, across two tenants"
    );
    assert!(
        listed[2]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("2 of 3"),
        "expiring says how many checks are left: {}",
        listed[2]
    );

    // The operator receiver gets the same notices, in the same order, signed.
    let received = wait_for(SOON, "the operator receiver gets all six", || async {
        let got = received_notices(&operator);
        (got.len() >= 6).then_some(got)
    })
    .await;
    let ids = |notices: &[Value]| -> Vec<String> {
        notices.iter().map(|n| n["noticeId"].to_string()).collect()
    };
    let bodies: Vec<Value> = received.iter().map(|(_, body)| body.clone()).collect();
    assert_eq!(ids(&bodies), ids(&listed), "the same notices as listed");
    for (request, _) in &received {
        assert_signed(request, &operator_secret);
    }
    if standard_webhooks_available() {
        for (request, _) in &received {
            assert!(
                standard_webhooks_accepts(&operator_secret, request),
                "the reference verifier refused a notice: {}",
                request.body_text()
            );
        }
    } else {
        eprintln!("python3 standardwebhooks missing: reference verifier check skipped");
    }
    // The listed notices page with the shared cursor rules.
    let (status, body) = app.notices_page(&[("after", "not-a-cursor")]).await;
    assert_eq!(status, 400, "a made-up cursor: {body}");
    let (status, body) = app.notices_page(&[("limit", "0")]).await;
    assert_eq!(status, 400, "a limit out of range: {body}");
}

#[actix_rt::test]
async fn an_endpoint_that_comes_back_gives_recovered_without_an_operator_webhook() {
    let app = TestApp::spawn_with(&[
        "--pause-after-failures",
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
    let token = app.token(8201, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;
    receiver.set_status(503);
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 8201, 1))
        .await;
    wait_for_notices(&app, &endpoint, 2, "failing and paused").await;
    receiver.set_status(200);
    receiver
        .wait_for_context_id(1, Duration::from_secs(20))
        .await;
    let listed = wait_for_notices(&app, &endpoint, 3, "recovered").await;
    assert_eq!(
        notice_kinds(&listed),
        ["endpoint.failing", "endpoint.paused", "endpoint.recovered"],
        "{listed:#?}"
    );
    assert_eq!(owners(&listed[2]), vec![(8201, 1)]);
}

#[actix_rt::test]
async fn notices_wait_out_a_down_operator_webhook_across_a_kill_9_and_it_is_never_removed() {
    let operator = Receiver::start_with(Reply::status(503)).await;
    let mut app = TestApp::spawn_with(&[
        "--operator-webhook",
        &operator.url(),
        "--operator-webhook-secret",
        OPERATOR_SECRET,
        "--verify-interval",
        "1s",
        "--dead-after-failed-verifications",
        "2",
        "--pause-after-failures",
        "1",
        "--retry-schedule",
        "300ms,300ms,300ms,300ms,300ms,300ms",
        "--probe-interval",
        "300ms",
        "--probe-max-interval",
        "600ms",
    ])
    .await;
    let dying = Receiver::start_with(Reply::status(503)).await;
    let token = app.token(8301, 1).await;
    dying.set_status(200);
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &dying.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&dying.url()).await;
    dying.set_status(503);
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 8301, 1))
        .await;
    // Failing, paused, expiring, dead, auto_removed: all stored while the
    // operator webhook refuses them.
    let listed = wait_for_notices(&app, &endpoint, 5, "five notices stored").await;
    assert_eq!(
        notice_kinds(&listed),
        [
            "endpoint.failing",
            "endpoint.paused",
            "subscription.expiring",
            "endpoint.dead",
            "subscription.auto_removed",
        ]
    );
    // The operator webhook stays down for more scheduled checks (one a
    // second) than kill any other endpoint (two).
    let down_since = operator.requests()[0].at;
    wait_until(
        SOON,
        "the operator webhook is down for 3.5 s of checks",
        || {
            operator
                .verifications()
                .last()
                .is_some_and(|v| v.at.duration_since(down_since) >= Duration::from_millis(3500))
        },
    )
    .await;
    app.kill9();
    app.restart().await;
    operator.set_status(200);
    let received = wait_for(
        SOON,
        "every notice reaches the operator webhook",
        || async {
            let got = received_notices(&operator);
            (got.len() >= 5).then_some(got)
        },
    )
    .await;
    let got: Vec<String> = received
        .iter()
        .map(|(_, b)| b["noticeId"].to_string())
        .collect();
    let want: Vec<String> = listed.iter().map(|n| n["noticeId"].to_string()).collect();
    assert_eq!(got, want, "all notices, in order, nothing lost");
    // Its own endpoint is still subscribed and never announced itself.
    let operator_endpoint = app.endpoint_id(&operator.url()).await;
    let everything = app.all_notices(100).await;
    assert!(
        about(&everything, &operator_endpoint).is_empty(),
        "no notice about the operator webhook itself: {everything:#?}"
    );
    let active = app
        .search_all_subscriptions(&[
            ("endpoint", operator_endpoint.clone()),
            ("state", "active".to_string()),
        ])
        .await;
    assert_eq!(active.len(), 1, "the operator webhook stays subscribed");
}

#[actix_rt::test]
async fn an_operator_webhook_without_a_usable_secret_or_url_stops_the_start_with_a_reason() {
    for (url, secret, says) in [
        ("https://ops.example.com/h", "short", "16"),
        ("not a url", OPERATOR_SECRET, "URL"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args([
                "serve",
                "--database-url",
                ":memory:",
                "--operator-webhook",
                url,
                "--operator-webhook-secret",
                secret,
            ])
            .output()
            .expect("hookrelay runs");
        assert!(!out.status.success(), "{url}/{secret} must not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--operator-webhook") && stderr.contains(says),
            "the error names the option and the problem: {stderr}"
        );
    }
}
