//! The operator console (`/ui/` on the internal listener) in a real
//! browser: signing in and out, a wrong token, pages without a session,
//! the endpoints page following a receiver that starts failing on its own,
//! replay of a dead letter, pause and resume, a form without its CSRF
//! token, and a screenshot of every page at 1280 px. Selectors are those
//! of the UI contract; each test passes as skipped without a browser.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const TOKEN: &str = "console-internal-token-0123456789";
const SECRET: &str = "console-secret-0123456789";
const COOKIE: &str = "hookrelay_console";

/// Retries and probes a few hundred milliseconds apart, so that an
/// endpoint fails, pauses and dies within a test.
const QUICK_RETRIES: [&str; 4] = [
    "--retry-schedule",
    "200ms,200ms,200ms",
    "--probe-interval",
    "100ms",
];

/// A server whose internal listener asks for [`TOKEN`], plus `args`.
async fn console(args: &[&str]) -> TestApp {
    let mut all = vec!["--internal-token", TOKEN];
    all.extend_from_slice(args);
    TestApp::spawn_with(&all).await
}

/// The console's page at `path` (after `/ui`).
fn ui(app: &TestApp, path: &str) -> String {
    app.internal(&format!("/ui{path}"))
}

/// Signs in with the internal token; asserts it lands on the overview.
async fn sign_in(browser: &Browser, app: &TestApp) {
    let landed = browser.sign_in(&ui(app, "/"), TOKEN).await;
    assert_eq!(landed, "/ui/", "signing in leads to the overview");
    browser.wait_for_text_eq("h1", "Overview").await;
}

/// A dead letter's id as the API gives it, as text.
fn id_text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

#[actix_rt::test]
async fn the_operator_signs_in_with_the_internal_token_and_signs_out() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&[]).await;
    browser.goto(&ui(&app, "/")).await;
    assert_eq!(
        browser.attr("input#token", "type").await.as_deref(),
        Some("password"),
        "the token field hides what is typed"
    );

    sign_in(&browser, &app).await;
    let cookie = browser
        .cookie(COOKIE)
        .await
        .expect("a session cookie after signing in");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(
        cookie.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict"),
        "{cookie:?}"
    );
    assert!(
        !cookie.value().contains(TOKEN),
        "the cookie is not the token"
    );
    assert!(
        !browser.current_url().await.contains(TOKEN),
        "the token is never in a URL"
    );
    browser.goto(&ui(&app, "/endpoints")).await;
    assert_eq!(browser.current_path().await, "/ui/endpoints");
    browser.find("table#endpoints").await;

    let out = browser.submit("form#sign-out button").await;
    assert_eq!(out, "/ui/", "signing out leads to the sign-in page");
    browser.find("form#sign-in").await;
    browser.goto(&ui(&app, "/endpoints")).await;
    assert_eq!(
        browser.current_path().await,
        "/ui/",
        "after signing out, a page sends back to sign-in"
    );
    browser.find("form#sign-in").await;
    let log = std::fs::read_to_string(&app.log_path).unwrap_or_default();
    assert!(
        !log.contains(TOKEN),
        "the internal token appears in the server log"
    );
    browser.close().await;
}

#[actix_rt::test]
async fn a_wrong_token_is_refused_with_a_message_after_a_short_delay_and_no_cookie() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&[]).await;
    browser.goto(&ui(&app, "/")).await;
    browser
        .fill("input#token", "not-the-token-0123456789")
        .await;
    let started = Instant::now();
    browser.submit("button#sign-in-button").await;
    let took = started.elapsed();
    let message = browser
        .wait_for_text_contains("p#sign-in-error", "not valid")
        .await;
    assert_eq!(
        browser.attr("p#sign-in-error", "role").await.as_deref(),
        Some("alert"),
        "the message is announced: {message}"
    );
    assert!(
        took >= Duration::from_millis(500),
        "a wrong token is answered after a short delay, not at once ({took:?})"
    );
    browser.find("form#sign-in").await;
    assert!(
        browser.cookie(COOKIE).await.is_none(),
        "no session cookie after a wrong token"
    );

    // The same form posted by the page itself: 401, still no cookie.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const form = document.querySelector('form#sign-in');
             const data = new URLSearchParams(new FormData(form));
             data.set('token', arguments[0]);
             fetch(form.action, {method: 'POST', body: data, redirect: 'manual'})
               .then(r => done(r.status), e => done(String(e)));",
            vec![Value::from("another-wrong-token-0123")],
        )
        .await;
    assert_eq!(status, 401, "a wrong token answers 401");
    assert!(browser.cookie(COOKIE).await.is_none());
    browser.close().await;
}

#[actix_rt::test]
async fn a_console_page_without_a_session_redirects_to_sign_in() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&[]).await;
    browser.goto(&ui(&app, "/dead-letters")).await;
    assert_eq!(browser.current_path().await, "/ui/");
    browser.find("form#sign-in").await;

    for path in [
        "/endpoints",
        "/endpoints/1",
        "/dead-letters",
        "/subscriptions",
        "/events",
        "/events/0195f0e0-0000-7000-8000-000000000000",
        "/notices",
    ] {
        let answer = app.ui_get(&ui(&app, path), None).await;
        assert_eq!(answer.status, 303, "GET /ui{path} without a session");
        assert_eq!(
            answer.location.as_deref().map(|l| l.ends_with("/ui/")),
            Some(true),
            "GET /ui{path} without a session sends to /ui/: {answer:?}"
        );
    }
    let forged = app
        .ui_get(&ui(&app, "/endpoints"), Some(&format!("{COOKIE}=forged")))
        .await;
    assert_eq!(
        forged.status, 303,
        "an unknown session cookie is no session"
    );
    browser.close().await;
}

#[actix_rt::test]
async fn the_endpoints_page_shows_a_receiver_that_starts_failing_as_failing_then_paused_without_a_reload()
 {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    // Two failed attempts 4 s apart pause the endpoint: it stays failing
    // for more than one refresh period (2 s).
    let app = console(&[
        "--max-in-flight-per-endpoint",
        "1",
        "--retry-schedule",
        "4s,4s,4s",
        "--pause-after-failures",
        "2",
        "--probe-interval",
        "10s",
        "--probe-max-interval",
        "20s",
    ])
    .await;
    let receiver = Receiver::start().await;
    let token = app.token(8100, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;
    sign_in(&browser, &app).await;
    browser.goto(&ui(&app, "/endpoints")).await;
    let row = format!("tr[data-endpoint-id=\"{endpoint}\"]");
    assert_eq!(browser.text(&format!("{row} td.state")).await, "healthy");
    browser.mark_document().await;

    receiver.set_status(503);
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 8100, 1))
        .await;
    let seen = browser
        .watch_text(
            &format!("{row} td.state"),
            "paused",
            Duration::from_secs(30),
        )
        .await;
    eprintln!("states shown, in order: {seen:?}");
    let failing = seen.iter().position(|s| s == "failing");
    assert!(
        failing.is_some_and(|f| f < seen.len() - 1),
        "the page shows the endpoint failing before paused: {seen:?}"
    );
    assert_eq!(
        browser.text(&format!("{row} td.last-status")).await,
        "503",
        "the last answer's status"
    );
    assert!(
        browser.still_same_document().await,
        "the page refreshed its rows by itself, without being reloaded"
    );
    browser.close().await;
}

#[actix_rt::test]
async fn clicking_replay_on_a_dead_letter_delivers_it_to_the_receiver() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&QUICK_RETRIES).await;
    let receiver = Receiver::start().await;
    receiver.set_verification_reply(Reply::status(200));
    let token = app.token(8200, 1).await;
    let sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;
    receiver.set_status(500);
    app.push_event_ok(&event(CONFIRM_FINAL_GRADES, 8200, 1))
        .await;
    let letter = wait_for(SOON, "the delivery is a dead letter", || async {
        let (status, body) = app.dead_letters(&[("subscription", sub.to_string())]).await;
        assert_eq!(status, 200, "{body}");
        body["deadLetters"].as_array()?.first().cloned()
    })
    .await;
    let id = id_text(&letter["id"]);
    let tried = receiver.deliveries_of(1).len();
    receiver.set_status(200);

    sign_in(&browser, &app).await;
    browser
        .goto(&ui(&app, &format!("/dead-letters?endpoint={endpoint}")))
        .await;
    let row = format!("tr[data-dead-letter-id=\"{id}\"]");
    browser.find(&row).await;
    browser.submit(&format!("{row} form.replay button")).await;
    let flash = browser.wait_for_flash_ok().await;
    eprintln!("after replay: {flash}");

    wait_until(SOON, "the replayed delivery reaches the receiver", || {
        receiver.deliveries_of(1).len() > tried
    })
    .await;
    let replayed = receiver.deliveries_of(1).pop().expect("a delivery");
    assert_signed(&replayed, SECRET);
    wait_for(SOON, "the dead letter is gone once delivered", || async {
        let (_, body) = app.dead_letters(&[("subscription", sub.to_string())]).await;
        body["deadLetters"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;
    browser.close().await;
}

#[actix_rt::test]
async fn pausing_on_the_endpoint_page_holds_deliveries_and_resuming_releases_them() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&[]).await;
    let held = Receiver::start().await;
    let control = Receiver::start().await;
    let token = app.token(8300, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &held.url(), SECRET)
        .await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &control.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&held.url()).await;
    sign_in(&browser, &app).await;
    browser
        .goto(&ui(&app, &format!("/endpoints/{endpoint}")))
        .await;
    browser.wait_for_text_eq("#endpoint-state", "healthy").await;

    browser.submit("form#pause button").await;
    browser.wait_for_flash_ok().await;
    browser.wait_for_text_eq("#endpoint-state", "paused").await;
    let ids: HashSet<i64> = (1..=3).collect();
    for c in &ids {
        let pushed = app
            .push_event_ok(&event(CONFIRM_FINAL_GRADES, 8300, *c))
            .await;
        assert_eq!(pushed["deliveries"], 2, "{pushed}");
    }
    // The other endpoint got all three: had the paused one been sent
    // them, they would have gone out by now as well.
    control.wait_for_context_ids(&ids, SOON).await;
    wait_for(
        SOON,
        "the paused endpoint holds three deliveries",
        || async {
            let e = app.endpoint_by_id(&endpoint).await;
            (e["queueDepth"] == 3).then_some(())
        },
    )
    .await;
    assert_eq!(
        held.delivery_count(),
        0,
        "a paused endpoint gets no deliveries"
    );

    browser.submit("form#resume button").await;
    browser.wait_for_flash_ok().await;
    browser.wait_for_text_eq("#endpoint-state", "healthy").await;
    held.wait_for_context_ids(&ids, SOON).await;
    for d in held.deliveries() {
        assert_signed(&d, SECRET);
    }
    browser.close().await;
}

#[actix_rt::test]
async fn a_console_form_posted_without_its_csrf_token_is_refused() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&[]).await;
    let receiver = Receiver::start().await;
    let token = app.token(8400, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;
    let endpoint = app.endpoint_id(&receiver.url()).await;
    sign_in(&browser, &app).await;
    browser
        .goto(&ui(&app, &format!("/endpoints/{endpoint}")))
        .await;
    let csrf = browser
        .attr("form#pause input[name=csrf]", "value")
        .await
        .expect("the pause form carries a CSRF token");
    let cookie = browser.cookie_header(COOKIE).await;
    let pause = ui(&app, &format!("/endpoints/{endpoint}/pause"));

    for (what, fields) in [
        ("without a CSRF token", vec![]),
        (
            "with a wrong CSRF token",
            vec![("csrf", "0123456789abcdef")],
        ),
    ] {
        let answer = app.ui_post_form(&pause, Some(&cookie), &fields).await;
        assert_eq!(answer.status, 403, "a form posted {what}: {answer:?}");
        assert!(
            answer.body.contains("stale or forged"),
            "the refusal says why: {}",
            answer.body
        );
        let e = app.endpoint_by_id(&endpoint).await;
        assert_eq!(
            e["state"], "healthy",
            "nothing changed after a form {what}: {e}"
        );
    }
    let answer = app
        .ui_post_form(&pause, Some(&cookie), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        answer.status, 303,
        "the same form with its token: {answer:?}"
    );
    let e = app.endpoint_by_id(&endpoint).await;
    assert_eq!(e["state"], "paused", "{e}");
    browser.close().await;
}

#[actix_rt::test]
async fn every_console_page_is_screenshotted_at_1280_px() {
    let Some(browser) = Browser::desktop().await else {
        return;
    };
    let app = console(&QUICK_RETRIES).await;
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.set_verification_reply(Reply::status(200));
    let token = app.token(8500, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &good.url(), SECRET)
        .await;
    let removed = app
        .subscribe_ok(&token, QTI_EXPORT_READY, &good.url(), SECRET)
        .await;
    let bad_sub = app
        .subscribe_ok(&token, CONFIRM_FINAL_GRADES, &bad.url(), SECRET)
        .await;
    let (status, _) = app.delete_subscription(&token, removed).await;
    assert_eq!(status, 204);
    bad.set_reply(Reply::with_body(
        500,
        "{\"error\":\"the receiver is down\"}",
    ));
    let mut event_id = String::new();
    for c in 1..=3 {
        let pushed = app
            .push_event_ok(&event(CONFIRM_FINAL_GRADES, 8500, c))
            .await;
        event_id = id_text(&pushed["eventId"]);
    }
    good.wait_for_context_ids(&(1..=3).collect(), SOON).await;
    wait_for(SOON, "three dead letters", || async {
        let (_, body) = app
            .dead_letters(&[("subscription", bad_sub.to_string())])
            .await;
        (body["deadLetters"].as_array().map(Vec::len) == Some(3)).then_some(())
    })
    .await;
    let bad_endpoint = app.endpoint_id(&bad.url()).await;

    browser.goto(&ui(&app, "/")).await;
    browser.find("form#sign-in").await;
    browser.screenshot("console-sign-in-1280").await;
    browser.fill("input#token", "wrong-token-0123456789").await;
    browser.submit("button#sign-in-button").await;
    browser.wait_for_element("p#sign-in-error").await;
    browser.screenshot("console-sign-in-refused-1280").await;
    sign_in(&browser, &app).await;
    browser.wait_for_element("figure.chart svg").await;
    browser.screenshot("console-overview-1280").await;

    let pages: [(&str, String, &str); 9] = [
        ("console-endpoints", "/endpoints".into(), "table#endpoints"),
        (
            "console-endpoints-failing",
            "/endpoints?state=failing".into(),
            "table#endpoints",
        ),
        (
            "console-endpoint",
            format!("/endpoints/{bad_endpoint}"),
            "table#failures",
        ),
        (
            "console-dead-letters",
            "/dead-letters".into(),
            "table#dead-letters",
        ),
        (
            "console-dead-letters-of-endpoint",
            format!("/dead-letters?endpoint={bad_endpoint}"),
            "form#replay-all",
        ),
        (
            "console-subscriptions",
            "/subscriptions".into(),
            "table#subscriptions",
        ),
        (
            "console-subscriptions-removed",
            "/subscriptions?state=removed".into(),
            "td.removed-reason",
        ),
        ("console-events", "/events".into(), "form#event-lookup"),
        ("console-notices", "/notices".into(), "table#notices"),
    ];
    for (name, path, anchor) in &pages {
        browser.goto(&ui(&app, path)).await;
        browser.wait_for_element(anchor).await;
        browser.screenshot(&format!("{name}-1280")).await;
    }

    browser.goto(&ui(&app, "/events")).await;
    browser.fill("input#event-id", &event_id).await;
    let landed = browser.submit("form#event-lookup button").await;
    assert!(
        landed.contains(&event_id),
        "the lookup leads to the event's page: {landed}"
    );
    browser.wait_for_element("table#event-deliveries").await;
    browser.screenshot("console-event-1280").await;

    // What a forged form meets.
    browser
        .goto(&ui(&app, &format!("/endpoints/{bad_endpoint}")))
        .await;
    browser
        .execute(
            "document.querySelector('form#pause input[name=csrf]').remove(); return true;",
            vec![],
        )
        .await;
    browser.submit("form#pause button").await;
    browser
        .wait_for_text_contains("p#error", "stale or forged")
        .await;
    browser.screenshot("console-csrf-refused-1280").await;
    browser.close().await;
}
