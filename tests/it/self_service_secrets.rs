//! A subscriber's own changes (DESIGN.md section 6): rotating the secret
//! (both secrets sign during the overlap, checked by our own HMACs and by
//! the Standard Webhooks reference verifier), moving to another endpoint,
//! the test event, and the refusals of bad input.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// Subscribes a fresh receiver of tenant `marketplace` to
/// `qti_export_ready` with `secret`: the token, the receiver and the id.
async fn subscribed(app: &TestApp, marketplace: i64, secret: &str) -> (String, Receiver, i64) {
    let receiver = Receiver::start().await;
    let token = app.token(marketplace, 1).await;
    let id = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url(), secret)
        .await;
    (token, receiver, id)
}

/// Pushes event `context` of tenant `marketplace` and waits for its delivery.
async fn delivered(app: &TestApp, receiver: &Receiver, marketplace: i64, context: i64) -> Recorded {
    app.push_event_ok(&event(QTI_EXPORT_READY, marketplace, context))
        .await;
    receiver.wait_for_context_id(context, SOON).await;
    receiver.deliveries_of(context).remove(0)
}

/// The `v1,…` signatures of a delivery's `webhook-signature`.
fn signatures(req: &Recorded) -> Vec<String> {
    let header = req.header("webhook-signature").unwrap_or_default();
    header.split(' ').map(str::to_string).collect()
}

fn signature_with(secret: &str, req: &Recorded) -> String {
    standard_webhooks_signature(
        secret,
        req.header("webhook-id").unwrap_or_default(),
        req.header("webhook-timestamp").unwrap_or_default(),
        &req.body,
    )
}

#[actix_rt::test]
async fn another_callers_subscription_answers_404_on_patch_secret_and_test() {
    let app = TestApp::spawn().await;
    let (_, receiver, id) = subscribed(&app, 6100, &whsec_secret()).await;
    let stranger = app.token(6100, 2).await;
    let patched = app
        .patch_subscription(&stranger, id, json!({"endpoint": receiver.url_at("/x")}))
        .await;
    assert_json_error(&patched, 404, "PATCH of another caller's subscription");
    let rotated = app
        .rotate_secret(&stranger, id, json!({"secret": whsec_secret()}))
        .await;
    assert_json_error(&rotated, 404, "secret of another caller's subscription");
    let tested = app.test_subscription(&stranger, id).await;
    assert_json_error(&tested, 404, "test of another caller's subscription");
    assert_eq!(receiver.delivery_count(), 0, "nothing was sent for them");
}

#[actix_rt::test]
async fn during_the_overlap_a_delivery_verifies_with_the_old_and_the_new_secret() {
    let app = TestApp::spawn().await;
    let (old, new) = (whsec_secret(), whsec_secret());
    let (token, receiver, id) = subscribed(&app, 6200, &old).await;
    let (status, body) = app
        .rotate_secret(
            &token,
            id,
            json!({"secret": new, "previousSecretValidFor": "1h"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["secretRotatedAt"].is_string(), "{body}");
    assert_eq!(body["subscriptionId"], id, "{body}");
    assert!(
        body.get("secret").is_none(),
        "the secret is never shown: {body}"
    );

    let got = delivered(&app, &receiver, 6200, 1).await;
    assert_eq!(
        signatures(&got),
        [signature_with(&new, &got), signature_with(&old, &got)],
        "one signature per valid secret, newest first"
    );
    assert_eq!(
        got.header("x-inspera-signature"),
        Some(inspera_signature(&new, &got.body).as_str()),
        "X-Inspera-Signature uses the newest secret"
    );
    if !standard_webhooks_available() {
        eprintln!("python3 standardwebhooks missing: reference verifier check skipped");
        return;
    }
    assert!(standard_webhooks_accepts(&new, &got), "new secret refused");
    assert!(standard_webhooks_accepts(&old, &got), "old secret refused");
    assert!(
        !standard_webhooks_accepts(&whsec_secret(), &got),
        "any secret accepted"
    );
}

#[actix_rt::test]
async fn after_the_window_deliveries_verify_with_the_new_secret_only() {
    let app = TestApp::spawn().await;
    let (old, new) = (whsec_secret(), whsec_secret());
    let (token, receiver, id) = subscribed(&app, 6300, &old).await;
    let (status, body) = app
        .rotate_secret(
            &token,
            id,
            json!({"secret": new, "previousSecretValidFor": "2s"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let until = chrono::DateTime::parse_from_rfc3339(
        body["previousSecretValidUntil"]
            .as_str()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("previousSecretValidUntil: {e} in {body}"));
    // Whole seconds: the window ends at most a second after the answer says.
    let over = until + chrono::Duration::seconds(1);
    wait_until(SOON, "the previous secret's window ended", || {
        chrono::Utc::now() > over
    })
    .await;

    let got = delivered(&app, &receiver, 6300, 1).await;
    assert_eq!(signatures(&got), [signature_with(&new, &got)]);
    assert_signed(&got, &new);
    if !standard_webhooks_available() {
        eprintln!("python3 standardwebhooks missing: reference verifier check skipped");
        return;
    }
    assert!(standard_webhooks_accepts(&new, &got), "new secret refused");
    assert!(
        !standard_webhooks_accepts(&old, &got),
        "old secret still accepted"
    );
}

#[actix_rt::test]
async fn a_new_endpoint_that_fails_verification_is_refused_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let secret = whsec_secret();
    let (token, receiver, id) = subscribed(&app, 6400, &secret).await;
    let failing = Receiver::start_with(Reply::status(500)).await;
    let resp = app
        .patch_subscription(&token, id, json!({"endpoint": failing.url()}))
        .await;
    assert_json_error(&resp, 422, "PATCH to an endpoint answering 500");
    let refused = app
        .patch_subscription(&token, id, json!({"endpoint": refusing_url()}))
        .await;
    assert_json_error(&refused, 422, "PATCH to a refusing endpoint");

    let (status, body) = app.get_subscription(&token, id).await;
    assert_eq!((status, &body["endpoint"]), (200, &json!(receiver.url())));
    let got = delivered(&app, &receiver, 6400, 1).await;
    assert_signed(&got, &secret);
    assert_eq!(failing.delivery_count(), 0);
}

#[actix_rt::test]
async fn a_moved_subscription_delivers_to_its_new_endpoint() {
    let app = TestApp::spawn().await;
    let secret = whsec_secret();
    let (token, old, id) = subscribed(&app, 6500, &secret).await;
    let new = Receiver::start().await;
    let (status, body) = app
        .patch_subscription(&token, id, json!({"endpoint": new.url()}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["endpoint"], new.url(), "{body}");
    assert_eq!(
        new.verifications().len(),
        1,
        "the new endpoint was verified"
    );

    let got = delivered(&app, &new, 6500, 1).await;
    assert_signed(&got, &secret);
    assert_eq!(old.deliveries_of(1).len(), 0, "the old endpoint got it too");
}

#[actix_rt::test]
async fn moving_onto_the_endpoint_of_the_same_subscription_is_a_409_duplicate() {
    let app = TestApp::spawn().await;
    let (token, first, _) = subscribed(&app, 6600, &whsec_secret()).await;
    let second = Receiver::start().await;
    let id = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &second.url(), &whsec_secret())
        .await;
    let resp = app
        .patch_subscription(&token, id, json!({"endpoint": first.url()}))
        .await;
    assert_json_error(&resp, 409, "PATCH onto a duplicate");
    assert_eq!(resp.1["error"], "duplicate_subscription", "{}", resp.1);
}

#[actix_rt::test]
async fn the_test_event_reports_the_status_and_time_and_is_not_stored() {
    let app = TestApp::spawn().await;
    let secret = whsec_secret();
    let (token, receiver, id) = subscribed(&app, 6700, &secret).await;
    receiver.set_reply(Reply::delayed(Duration::from_millis(200), 202));
    let (status, body) = app.test_subscription(&token, id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["statusCode"], 202, "{body}");
    assert!(
        body["durationMs"].as_u64().is_some_and(|ms| ms >= 200),
        "{body}"
    );
    assert!(body["error"].is_null(), "{body}");

    let got = receiver.deliveries();
    assert_eq!(got.len(), 1, "one test event");
    assert_eq!(got[0].header("webhook-test"), Some("true"));
    assert_eq!(got[0].json()["contextObjectId"], 0);
    assert_eq!(got[0].json()["event"], QTI_EXPORT_READY);
    assert_eq!(got[0].json()["marketplaceId"], 6700);
    assert_signed(&got[0], &secret);

    let metrics = app.scrape().await;
    assert_eq!(metrics.sum("hookrelay_delivery_attempts_total", &[]), 0.0);
    let (_, dead) = app.dead_letters(&[]).await;
    assert_eq!(
        dead["deadLetters"].as_array().map(Vec::len),
        Some(0),
        "{dead}"
    );
}

#[actix_rt::test]
async fn the_test_event_reports_a_failing_or_refused_endpoint() {
    let app = TestApp::spawn().await;
    let (token, receiver, id) = subscribed(&app, 6800, &whsec_secret()).await;
    receiver.set_status(503);
    let (status, body) = app.test_subscription(&token, id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["ok"], &body["statusCode"]),
        (&json!(false), &json!(503))
    );
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("503")),
        "{body}"
    );

    drop(receiver);
    let body = wait_for(SOON, "the stopped receiver refuses", || async {
        let (_, body) = app.test_subscription(&token, id).await;
        body["statusCode"].is_null().then_some(body)
    })
    .await;
    assert_eq!(body["ok"], false, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "a readable error: {body}");
}

#[actix_rt::test]
async fn bad_secrets_windows_and_fields_are_refused_with_json_400() {
    let app = TestApp::spawn().await;
    let (token, receiver, id) = subscribed(&app, 6900, &whsec_secret()).await;
    let cases = [
        ("short secret", json!({"secret": "fifteen-chars-x"})),
        (
            "short whsec key",
            json!({"secret": "whsec_AAAAAAAAAAAAAAAA"}),
        ),
        (
            "bad duration",
            json!({"secret": whsec_secret(), "previousSecretValidFor": "soon"}),
        ),
        (
            "over 7d",
            json!({"secret": whsec_secret(), "previousSecretValidFor": "8d"}),
        ),
        (
            "unknown field",
            json!({"secret": whsec_secret(), "color": "blue"}),
        ),
        ("secret missing", json!({"previousSecretValidFor": "1h"})),
    ];
    for (what, body) in cases {
        let resp = app.rotate_secret(&token, id, body).await;
        assert_json_error(&resp, 400, what);
    }
    let resp = app
        .patch_subscription(
            &token,
            id,
            json!({"endpoint": receiver.url(), "secret": "x"}),
        )
        .await;
    assert_json_error(&resp, 400, "PATCH with an unknown field");
    let resp = app
        .subscribe(
            &token,
            CONFIRM_FINAL_GRADES,
            &receiver.url(),
            "fifteen-chars-x",
        )
        .await;
    assert_json_error(&resp, 400, "create with a short secret");
}
