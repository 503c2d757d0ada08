//! The subscriber portal (`/portal/` on the public listener) in a real
//! browser: each subscriber sees only their own subscriptions, reads a
//! failed delivery's attempts and resends it, rotates a secret (the next
//! delivery carries both signatures), a form without its CSRF token is
//! refused, and every page is screenshotted at 1280 px and at 390 px.
//! Selectors are those of the UI contract; each test passes as skipped
//! without a browser.

use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "portal-secret-0123456789";
const COOKIE: &str = "hookrelay_portal";

/// The portal's page at `path` (after `/portal`).
fn portal(app: &TestApp, path: &str) -> String {
    app.public(&format!("/portal{path}"))
}

/// Signs in with a subscriber's token; asserts it lands on the list.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    let landed = browser.sign_in(&portal(app, "/"), token).await;
    assert_eq!(landed, "/portal/", "signing in leads to the subscriptions");
    browser.wait_for_element("table#subscriptions").await;
}

/// The subscription ids listed on the page now shown.
async fn listed_subscriptions(browser: &Browser) -> HashSet<i64> {
    let mut ids = HashSet::new();
    for row in browser.find_all("tr[data-subscription-id]").await {
        let id = row
            .attr("data-subscription-id")
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse().ok())
            .expect("a numeric data-subscription-id");
        ids.insert(id);
    }
    ids
}

/// The id of a delivery as the API gives it, as text.
fn id_text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[actix_rt::test]
async fn a_subscriber_sees_only_their_own_subscriptions() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let alice = app.token(9100, 1).await;
    let bob = app.token(9100, 2).await;
    let alices: HashSet<i64> = HashSet::from([
        app.subscribe_ok(&alice, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
            .await,
        app.subscribe_ok(&alice, QTI_EXPORT_READY, &receiver.url_at("/a"), SECRET)
            .await,
    ]);
    let bobs: HashSet<i64> = HashSet::from([app
        .subscribe_ok(&bob, CONFIRM_FINAL_GRADES, &receiver.url_at("/b"), SECRET)
        .await]);

    sign_in(&browser, &app, &alice).await;
    assert_eq!(listed_subscriptions(&browser).await, alices, "alice's page");
    let first = alices.iter().min().expect("one");
    let row = format!("tr[data-subscription-id=\"{first}\"]");
    assert_eq!(
        browser.text(&format!("{row} td.event")).await,
        CONFIRM_FINAL_GRADES
    );
    assert!(
        browser
            .text(&format!("{row} td.endpoint"))
            .await
            .contains(&receiver.url()),
        "the row shows the endpoint"
    );
    assert!(!browser.text(&format!("{row} td.health")).await.is_empty());

    let bobs_id = *bobs.iter().next().expect("one");
    let cookie = browser.cookie_header(COOKIE).await;
    let answer = app
        .ui_get(
            &portal(&app, &format!("/subscriptions/{bobs_id}")),
            Some(&cookie),
        )
        .await;
    assert_eq!(answer.status, 404, "bob's subscription, asked by alice");
    browser
        .goto(&portal(&app, &format!("/subscriptions/{bobs_id}")))
        .await;
    assert!(
        browser.try_find("#subscription-endpoint").await.is_none(),
        "alice does not see bob's subscription"
    );

    browser.goto(&portal(&app, "/")).await;
    browser.submit("form#sign-out button").await;
    browser.find("form#sign-in").await;
    sign_in(&browser, &app, &bob).await;
    assert_eq!(listed_subscriptions(&browser).await, bobs, "bob's page");
    browser.close().await;
}

#[actix_rt::test]
async fn a_subscriber_opens_a_failed_delivery_reads_its_attempts_and_resend_reaches_the_receiver() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    // One quick retry: the delivery fails twice and is dead (a delivery
    // still waiting for a retry cannot be resent).
    let app = TestApp::spawn_with(&["--retry-schedule", "200ms"]).await;
    let receiver = Receiver::start().await;
    receiver.set_verification_reply(Reply::status(200));
    let token = app.token(9200, 1).await;
    let sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    receiver.set_reply(Reply::with_body(500, "the receiver says no"));
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 9200, 7))
        .await;
    let failed = app
        .wait_for_delivery(&token, sub, "the delivery failed for good", |d| {
            d["status"] == "dead"
        })
        .await;
    let delivery = id_text(&failed["deliveryId"]);

    sign_in(&browser, &app, &token).await;
    browser
        .goto(&portal(&app, &format!("/subscriptions/{sub}?status=dead")))
        .await;
    let row = format!("tr[data-delivery-id=\"{delivery}\"]");
    assert_eq!(browser.text(&format!("{row} td.status")).await, "dead");
    let opened = browser.submit(&format!("{row} a")).await;
    assert_eq!(
        opened,
        format!("/portal/subscriptions/{sub}/deliveries/{delivery}")
    );
    assert_eq!(browser.text("#delivery-status").await, "dead");
    assert!(
        browser
            .text("pre#payload")
            .await
            .contains("contextObjectId"),
        "the payload as sent"
    );
    let attempts = browser.find_all("table#attempts tr.attempt").await;
    assert_eq!(attempts.len(), 2, "the first attempt and its retry");
    for attempt in &attempts {
        let code = attempt
            .find(fantoccini::Locator::Css("td.status-code"))
            .await
            .expect("td.status-code");
        assert_eq!(code.text().await.expect("text"), "500");
        let excerpt = attempt
            .find(fantoccini::Locator::Css("td.excerpt"))
            .await
            .expect("td.excerpt");
        assert!(
            excerpt
                .text()
                .await
                .expect("text")
                .contains("the receiver says no"),
            "each attempt shows what the receiver answered"
        );
    }

    receiver.set_reply(Reply::status(200));
    browser.submit("form#resend button").await;
    let flash = browser.wait_for_flash_ok().await;
    eprintln!("after resend: {flash}");
    wait_until(SOON, "the resent delivery reaches the receiver", || {
        receiver.deliveries_of(7).len() == 3
    })
    .await;
    let sent = receiver.deliveries_of(7);
    assert_eq!(
        sent[0].webhook_id(),
        sent[2].webhook_id(),
        "a resend keeps the webhook-id"
    );
    assert_signed(&sent[2], SECRET);
    app.wait_for_delivery(&token, sub, "the delivery succeeded", |d| {
        d["status"] == "succeeded"
    })
    .await;
    browser
        .goto(&portal(
            &app,
            &format!("/subscriptions/{sub}/deliveries/{delivery}"),
        ))
        .await;
    assert_eq!(browser.text("#delivery-status").await, "succeeded");
    assert_eq!(
        browser.find_all("table#attempts tr.attempt").await.len(),
        3,
        "every attempt listed"
    );
    browser.close().await;
}

#[actix_rt::test]
async fn rotating_the_secret_in_the_portal_signs_the_next_delivery_with_both_secrets() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(9300, 1).await;
    let old = whsec_secret();
    let new = whsec_secret();
    let sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), &old)
        .await;

    sign_in(&browser, &app, &token).await;
    browser
        .goto(&portal(&app, &format!("/subscriptions/{sub}")))
        .await;
    browser.fill("input#new-secret", &new).await;
    browser.fill("input#previous-valid-for", "1h").await;
    browser.submit("form#rotate button").await;
    browser.wait_for_flash_ok().await;
    assert!(
        !browser.page_text().await.contains(&new),
        "the page never shows the secret"
    );

    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 9300, 9))
        .await;
    let req = receiver.wait_for_context_id(9, SOON).await;
    assert_signed(&req, &new);
    let id = req.webhook_id();
    let ts = req.header("webhook-timestamp").expect("webhook-timestamp");
    let signatures: Vec<&str> = req
        .header("webhook-signature")
        .expect("webhook-signature")
        .split(' ')
        .collect();
    assert_eq!(
        signatures,
        vec![
            standard_webhooks_signature(&new, &id, ts, &req.body).as_str(),
            standard_webhooks_signature(&old, &id, ts, &req.body).as_str(),
        ],
        "one signature per valid secret, newest first"
    );
    assert_eq!(
        req.header("x-inspera-signature"),
        Some(inspera_signature(&new, &req.body).as_str()),
        "X-Inspera-Signature uses the newest secret"
    );
    if standard_webhooks_available() {
        assert!(standard_webhooks_accepts(&new, &req), "the new secret");
        assert!(standard_webhooks_accepts(&old, &req), "the previous secret");
    }
    browser.close().await;
}

#[actix_rt::test]
async fn a_portal_form_posted_without_its_csrf_token_is_refused() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(9400, 1).await;
    let sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    sign_in(&browser, &app, &token).await;
    let page = portal(&app, &format!("/subscriptions/{sub}"));
    browser.goto(&page).await;
    browser
        .execute(
            "document.querySelector('form#delete input[name=csrf]').remove(); return true;",
            vec![],
        )
        .await;
    browser.submit("form#delete button").await;
    browser
        .wait_for_text_contains("p#error", "stale or forged")
        .await;
    let (status, body) = app.get_subscription(&token, sub).await;
    assert_eq!(status, 200, "the subscription is still there: {body}");

    let cookie = browser.cookie_header(COOKIE).await;
    let delete = portal(&app, &format!("/subscriptions/{sub}/delete"));
    let answer = app
        .ui_post_form(&delete, Some(&cookie), &[("csrf", "forged-0123456789")])
        .await;
    assert_eq!(answer.status, 403, "a wrong CSRF token: {answer:?}");

    // With its token the same form deletes.
    browser.goto(&page).await;
    browser.submit("form#delete button").await;
    browser.wait_for_flash_ok().await;
    let (status, _) = app.get_subscription(&token, sub).await;
    assert_eq!(status, 404, "deleted by the form with its token");
    browser.close().await;
}

/// Signs in as a subscriber with a healthy and a failing subscription and
/// screenshots every portal page at the browser's width.
async fn screenshot_the_portal(browser: &Browser) {
    let app = TestApp::spawn_with(&["--retry-schedule", "1h"]).await;
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.set_verification_reply(Reply::status(200));
    let token = app.token(9500, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &good.url(), SECRET)
        .await;
    let bad_sub = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &bad.url(), SECRET)
        .await;
    bad.set_reply(Reply::with_body(
        503,
        "{\"error\":\"maintenance until 14:00\"}",
    ));
    for c in 1..=3 {
        app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 9500, c))
            .await;
        app.push_event_ok(&event(QTI_EXPORT_READY, 9500, c)).await;
    }
    good.wait_for_context_ids(&(1..=3).collect(), SOON).await;
    let failed = app
        .wait_for_delivery(&token, bad_sub, "a failed delivery", |d| {
            d["status"] == "failed"
        })
        .await;
    let delivery = id_text(&failed["deliveryId"]);
    let mut shots = Shots::default();

    browser.goto(&portal(&app, "/")).await;
    browser.find("form#sign-in").await;
    shots.take(browser, "portal-sign-in").await;
    sign_in(browser, &app, &token).await;
    shots.take(browser, "portal-subscriptions").await;
    browser
        .goto(&portal(&app, &format!("/subscriptions/{bad_sub}")))
        .await;
    browser.wait_for_element("table#deliveries").await;
    shots.take(browser, "portal-subscription").await;
    browser.submit("form#test button").await;
    browser.wait_for_element("#test-result").await;
    shots.take(browser, "portal-subscription-tested").await;
    browser
        .goto(&portal(
            &app,
            &format!("/subscriptions/{bad_sub}/deliveries/{delivery}"),
        ))
        .await;
    browser.wait_for_element("table#attempts").await;
    shots.take(browser, "portal-delivery").await;
    let cut_off: Vec<_> = shots
        .overflows
        .iter()
        .filter(|(_, elements)| !elements.is_empty())
        .collect();
    assert!(
        cut_off.is_empty(),
        "portal at {} px: elements reach past the screen's right edge: {cut_off:?}",
        browser.viewport.width()
    );
}

/// The screenshots taken, with what reaches past the screen's edge on each page (the test fails on any).
#[derive(Default)]
struct Shots {
    overflows: Vec<(String, Vec<String>)>,
}

impl Shots {
    /// Saves `<name>-<width>.png` and notes what reaches past the screen's edge.
    async fn take(&mut self, browser: &Browser, name: &str) {
        let name = format!("{name}-{}", browser.viewport.width());
        browser.screenshot(&name).await;
        self.overflows
            .push((name, browser.cut_off_elements().await));
    }
}

#[actix_rt::test]
async fn every_portal_page_is_screenshotted_at_1280_and_390_px() {
    for viewport in [Viewport::Desktop, Viewport::Phone] {
        let Some(browser) = Browser::start(viewport).await else {
            return;
        };
        screenshot_the_portal(&browser).await;
        browser.close().await;
    }
}
