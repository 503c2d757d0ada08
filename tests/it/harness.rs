//! Self-checks of the test harness, independent of the server: if these fail,
//! the other tests' verdicts mean nothing.

use std::time::{Duration, Instant};

use crate::helpers::*;

#[test]
fn the_signature_helpers_reproduce_published_test_vectors() {
    // RFC 2202, HMAC-SHA1 test case 2.
    assert_eq!(
        inspera_signature("Jefe", b"what do ya want for nothing?"),
        "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
    );
    // The Standard Webhooks / Svix reference vector.
    assert_eq!(
        standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
    assert_eq!(standard_webhooks_key("plain"), b"plain".to_vec());
}

#[actix_rt::test]
async fn the_receiver_records_requests_and_follows_its_script() {
    let receiver = Receiver::start().await;
    receiver.set_script(
        vec![
            Reply::status(500),
            Reply::delayed(Duration::from_millis(300), 503),
        ],
        Reply::status(201),
    );
    let client = awc::Client::default();
    let mut statuses = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let res = client
            .post(receiver.url())
            .insert_header(("X-Test", format!("n{i}")))
            .send_json(&event(QTI_EXPORT_READY, 1, i))
            .await
            .expect("receiver answers");
        statuses.push((res.status().as_u16(), started.elapsed()));
    }
    assert_eq!(
        statuses.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![500, 503, 201]
    );
    assert!(
        statuses[1].1 >= Duration::from_millis(300),
        "the delay was applied: {statuses:?}"
    );
    let got = receiver.requests();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].header("X-TEST"), Some("n2"));
    assert_eq!(got[1].context_object_id(), Some(1));
    assert!(got[0].at <= got[1].at && got[1].at <= got[2].at);
    assert_eq!(receiver.delivered_context_ids().len(), 3);

    receiver.set_status(418);
    let res = client.post(receiver.url()).send_body("x").await.unwrap();
    assert_eq!(res.status().as_u16(), 418);

    receiver.set_reply(Reply::retry_after(429, 7));
    let res = client
        .post(receiver.url_at("/other"))
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(receiver.deliveries_at("/other").len(), 1);
}

#[actix_rt::test]
async fn a_refusing_url_refuses_connections() {
    let client = awc::Client::default();
    let err = client.post(refusing_url()).send_body("x").await;
    assert!(err.is_err(), "something answered on the refusing url");
}

#[actix_rt::test]
#[should_panic(expected = "timed out")]
async fn wait_until_gives_up_at_its_deadline() {
    wait_until(Duration::from_millis(100), "never", || false).await;
}

#[test]
fn the_prometheus_parser_reads_valid_text() {
    let good = "# HELP a_total Things done.\n\
                # TYPE a_total counter\n\
                a_total{endpoint=\"1\",node=\"n\",outcome=\"ok\"} 3\n\
                a_total{endpoint=\"2\",node=\"n\",outcome=\"ok\"} 4 1700000000000\n\
                # a free comment\n\
                \n\
                # HELP h Seconds.\n\
                # TYPE h histogram\n\
                h_bucket{node=\"n\",le=\"0.5\"} 1\n\
                h_bucket{node=\"n\",le=\"+Inf\"} 2\n\
                h_sum{node=\"n\"} 0.75\n\
                h_count{node=\"n\"} 2\n\
                g{x=\"a \\\"q\\\" \\\\ \\n {}\"} -1.5e-3\n\
                nan_gauge NaN\n";
    let parsed = PromText::parse(good).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.types["a_total"], "counter");
    assert_eq!(
        parsed.value("a_total", &[("endpoint", "2"), ("outcome", "ok")]),
        Some(4.0)
    );
    assert_eq!(parsed.sum("a_total", &[("outcome", "ok")]), 7.0);
    assert_eq!(parsed.value("a_total", &[("endpoint", "3")]), None);
    assert_eq!(parsed.value("h_count", &[]), Some(2.0));
    let g = parsed.find("g", &[]).next().unwrap();
    assert_eq!(g.label("x"), Some("a \"q\" \\ \n {}"));
    assert_eq!(g.value, -0.0015);
}

#[test]
fn the_prometheus_parser_refuses_malformed_text() {
    for (bad, why) in [
        ("a 1", "no final newline"),
        ("a{b=\"1\"}1\n", "no blank before the value"),
        ("a{b=1} 1\n", "unquoted label value"),
        ("a{b=\"1\",b=\"2\"} 1\n", "repeated label"),
        ("a{b=\"\\t\"} 1\n", "unknown escape"),
        ("a{b=\"1\" 1\n", "unclosed brace"),
        ("a one\n", "a value that is not a float"),
        ("a inf\n", "Rust-only spelling of infinity"),
        ("1a 1\n", "bad metric name"),
        ("a 1\na 2\n", "the same series twice"),
        ("a 1 2 3\n", "too many fields"),
        (
            "# TYPE a counter\n# TYPE a counter\na 1\n",
            "two TYPE lines",
        ),
        ("# TYPE a countr\na 1\n", "unknown type"),
        ("# TYPE a counter\na -1\n", "negative counter"),
        ("a 1\n# TYPE a counter\n", "TYPE after samples"),
        (
            "a{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n",
            "a family split in two groups",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "shrinking buckets",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
            "no +Inf bucket",
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
            "count disagrees",
        ),
    ] {
        assert!(
            PromText::parse(bad).is_err(),
            "accepted malformed text ({why}): {bad:?}"
        );
    }
}

#[actix_rt::test]
async fn the_browser_renders_pages_as_wide_as_its_viewport_says() {
    for viewport in [Viewport::Desktop, Viewport::Phone] {
        let Some(browser) = Browser::start(viewport).await else {
            return;
        };
        browser
            .goto(
                "data:text/html,<!doctype html><meta name=viewport content='width=device-width'>\
                 <title>t</title><p id=hello>hello</p><div style='height:3000px'></div>",
            )
            .await;
        assert_eq!(browser.text("p#hello").await, "hello");
        let inner = browser.execute("return window.innerWidth;", vec![]).await;
        assert_eq!(inner, viewport.width(), "{viewport:?}: window.innerWidth");
        let png = browser.png().await;
        let (width, height) = png_size(&png).expect("a PNG");
        assert_eq!(width, viewport.width(), "{viewport:?}");
        assert!(
            height >= 3000,
            "{viewport:?}: the screenshot covers the whole page, not only the viewport: {height} px"
        );
        browser.close().await;
    }
}
