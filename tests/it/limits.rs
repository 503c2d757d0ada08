//! Honest answers to odd and greedy requests: the per-token subscription
//! limit, duplicate subscriptions, pagination, idempotency conflicts,
//! `/metrics` bounded by the live endpoints, JSON for every error (405 with
//! `Allow`, empty batches, duplicate keys, out-of-range numbers, long
//! values, requests the HTTP layer cannot parse), and request deadlines.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use awc::http::Method;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "limits-secret-0123";

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Sends raw bytes to `url`'s host and reads the answer until the server
/// closes or `within` passes.
fn raw_exchange(url: &str, request: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(host_port(url)).expect("connect");
    stream.set_read_timeout(Some(within)).unwrap();
    stream.write_all(request).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_rt::test]
async fn a_subscription_past_the_per_token_limit_is_refused_with_a_json_422() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn_with(&["--max-subscriptions-per-token", "3"]).await;
    let token = app.token(9400, 1).await;
    for i in 0..3 {
        app.subscribe_ok(
            &token,
            REVISION_STATUS_UPDATED,
            &receiver.url_at(&format!("/l{i}")),
            SECRET,
        )
        .await;
    }
    let verifications = receiver.verifications().len();
    let refused = app
        .subscribe(
            &token,
            REVISION_STATUS_UPDATED,
            &receiver.url_at("/l3"),
            SECRET,
        )
        .await;
    assert_json_error(
        &refused,
        422,
        "the fourth subscription of a token limited to 3",
    );
    assert_eq!(refused.1["error"], "too_many_subscriptions", "{refused:?}");
    assert_eq!(
        receiver.verifications().len(),
        verifications,
        "a refused create sends no verification call"
    );
    // Another token is not affected.
    let other = app.token(9400, 2).await;
    app.subscribe_ok(
        &other,
        REVISION_STATUS_UPDATED,
        &receiver.url_at("/l3"),
        SECRET,
    )
    .await;
}

#[actix_rt::test]
async fn a_duplicate_subscription_answers_409_with_the_existing_one_and_sends_nothing() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let token = app.token(9401, 1).await;
    let created = app
        .subscribe_ok(
            &token,
            REVISION_STATUS_UPDATED,
            &receiver.url_at("/d"),
            SECRET,
        )
        .await;
    let verifications = receiver.verifications().len();
    let again = app
        .subscribe(
            &token,
            REVISION_STATUS_UPDATED,
            &receiver.url_at("/d"),
            SECRET,
        )
        .await;
    assert_json_error(&again, 409, "the same subscription twice");
    assert_eq!(again.1["error"], "duplicate_subscription", "{again:?}");
    assert_eq!(again.1["subscriptionId"], created, "{again:?}");
    assert_eq!(
        receiver.verifications().len(),
        verifications,
        "nothing sent twice"
    );
    // Another event type at the same endpoint is not a duplicate.
    app.subscribe_ok(&token, QTI_EXPORT_READY, &receiver.url_at("/d"), SECRET)
        .await;
}

#[actix_rt::test]
async fn paging_through_the_subscriptions_lists_each_exactly_once() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let token = app.token(9402, 1).await;
    let mut made = HashSet::new();
    for i in 0..7 {
        let s = app
            .subscribe_ok(
                &token,
                REVISION_STATUS_UPDATED,
                &receiver.url_at(&format!("/p{i}")),
                SECRET,
            )
            .await;
        made.insert(s);
    }
    // The default page holds them all.
    let (status, all) = app.list_subscriptions(&token).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 7, "{all}");
    assert_eq!(all["nextCursor"], Value::Null, "{all}");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut url = app.public("/v1/subscription?limit=3");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app
            .call(Method::GET, &url, Some(&token), &[], Body::Empty)
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["subscriptions"].as_array().unwrap();
        assert!(items.len() <= 3, "{page}");
        seen.extend(items.iter().map(|s| s["subscriptionId"].as_i64().unwrap()));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "each once: {seen:?}");
    assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), made);

    for bad in [
        "limit=0",
        "limit=100000",
        "cursor=abc",
        "limit=x",
        "other=1",
    ] {
        let url = app.public(&format!("/v1/subscription?{bad}"));
        let answer = app
            .call(Method::GET, &url, Some(&token), &[], Body::Empty)
            .await;
        assert_json_error(&answer, 400, bad);
    }
}

#[actix_rt::test]
async fn a_reused_idempotency_key_answers_the_original_for_the_same_event_and_409_for_another() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn().await;
    let token = app.token(9403, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let first = event(REVISION_STATUS_UPDATED, 9403, 1);
    let (status, original) = app.push_event_with_idempotency_key(&first, "key-1").await;
    assert_eq!(status, 202, "{original}");
    let (status, replayed) = app.push_event_with_idempotency_key(&first, "key-1").await;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["eventId"], original["eventId"]);

    let different = event(REVISION_STATUS_UPDATED, 9403, 2);
    let conflict = app
        .push_event_with_idempotency_key(&different, "key-1")
        .await;
    assert_json_error(&conflict, 409, "the same key with another event");
    assert_eq!(conflict.1["error"], "idempotency_conflict", "{conflict:?}");

    // The same through eventId in a batch.
    let mut keyed = event(REVISION_STATUS_UPDATED, 9403, 3);
    keyed["eventId"] = json!("ev-3");
    let mut other = event(REVISION_STATUS_UPDATED, 9403, 4);
    other["eventId"] = json!("ev-3");
    let (status, batch) = app.push_batch(&[keyed.clone(), other]).await;
    assert_eq!(status, 202, "{batch}");
    assert_eq!(batch["accepted"], 1, "{batch}");
    assert_eq!(
        batch["results"][1]["error"], "idempotency_conflict",
        "{batch}"
    );

    receiver
        .wait_for_context_ids(&HashSet::from([1, 3]), SOON)
        .await;
    // A sentinel after the others: once it arrived, nothing else is coming.
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 9403, 5))
        .await;
    receiver.wait_for_context_id(5, SOON).await;
    assert_eq!(
        receiver.delivered_context_ids(),
        HashSet::from([1, 3, 5]),
        "the conflicting events were not stored"
    );
    assert_eq!(
        receiver.deliveries_of(1).len(),
        1,
        "the replay stored nothing"
    );
}

#[actix_rt::test]
async fn creating_and_deleting_500_endpoints_leaves_metrics_as_large_as_before() {
    let receiver = Receiver::start().await;
    let app = TestApp::spawn_with(&["--max-subscriptions-per-token", "1000"]).await;
    let token = app.token(9404, 1).await;
    // One live endpoint with traffic, so the families exist before.
    app.subscribe_ok(
        &token,
        REVISION_STATUS_UPDATED,
        &receiver.url_at("/live"),
        SECRET,
    )
    .await;
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 9404, 1))
        .await;
    receiver.wait_for_context_id(1, SOON).await;
    let before_text = app.metrics().await.2;
    let before = before_text.len();

    let ids: Vec<i64> = futures_util::stream::iter(0..500)
        .map(|i| {
            let (app, token, url) = (&app, &token, receiver.url_at(&format!("/churn{i}")));
            async move {
                app.subscribe_ok(token, QTI_EXPORT_READY, &url, SECRET)
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let during = app.metrics().await.2.len();
    for id in ids {
        let (status, body) = app.delete_subscription(&token, id).await;
        assert_eq!(status, 204, "{body}");
    }
    // Every series of a deleted endpoint goes; what is left may differ
    // from before only by series that belong to no endpoint (a counter
    // that appeared meanwhile), and is within 10% of the size before.
    let live = app.endpoint_id(&receiver.url_at("/live")).await;
    let per_endpoint = |line: &str| {
        line.contains("endpoint=\"") && !line.contains(&format!("endpoint=\"{live}\""))
    };
    let limit = before + before / 10;
    let after = wait_for(
        SOON,
        "the deleted endpoints' series gone from /metrics",
        || async {
            let text = app.metrics().await.2;
            (!text.lines().any(per_endpoint)).then_some(text)
        },
    )
    .await;
    let new_lines: Vec<&str> = after
        .lines()
        .filter(|l| !l.starts_with('#') && !before_text.contains(l.split(' ').next().unwrap_or(l)))
        .collect();
    eprintln!(
        "/metrics: {before} bytes with 1 endpoint, {during} with 501 ({} bytes per endpoint), {} after deleting 500; series not there before: {new_lines:?}",
        (during - before) / 500,
        after.len()
    );
    // What grows with endpoints is back within 10%: the series that carry
    // an endpoint label (series of no endpoint, such as a counter of some
    // rare event appearing meanwhile, are not what this bounds).
    let endpoint_bytes = |text: &str| -> usize {
        text.lines()
            .filter(|l| l.contains("endpoint=\""))
            .map(|l| l.len() + 1)
            .sum()
    };
    let (was, is) = (endpoint_bytes(&before_text), endpoint_bytes(&after));
    assert!(
        is <= was + was / 10
            && (after.len() <= limit || new_lines.iter().all(|l| !l.contains("endpoint=\""))),
        "/metrics per-endpoint series: {is} bytes after the 500 endpoints went, {was} before; whole text {} bytes, {before} before (series not there before: {new_lines:?})",
        after.len()
    );
}

#[actix_rt::test]
async fn a_wrong_method_gets_a_json_405_naming_the_allowed_methods() {
    let app = TestApp::spawn().await;
    let token = app.token(9405, 1).await;

    let (status, content_type, body) = app
        .call_raw(
            Method::PUT,
            &app.internal("/internal/v1/events"),
            None,
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(status, 405, "{body:?}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let raw = raw_exchange(
        &app.public_url,
        format!("DELETE /v1/subscription HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("allow: get, post"),
        "405 names the allowed methods: {raw}"
    );
    assert!(raw.contains("\"error\":\"method_not_allowed\""), "{raw}");
}

#[actix_rt::test]
async fn an_empty_batch_gets_a_json_400_empty_batch() {
    let app = TestApp::spawn().await;
    let (status, body) = app.push_batch(&[]).await;
    assert_eq!(status, 400, "an empty batch: {body}");
    assert_eq!(body["error"], "empty_batch", "{body}");
}

#[actix_rt::test]
async fn an_event_naming_a_key_twice_gets_a_json_400_saying_so() {
    let app = TestApp::spawn().await;
    let duplicate_keys = br#"{"event":"qti_export_ready","event":"revision_status_updated","marketplaceId":1,"contextObjectId":1,"contextObjectType":"QUESTION_SET","timestamp":"2021-06-29T18:16:06Z"}"#;
    let answer = app
        .push_event_raw(Some("application/json"), duplicate_keys.to_vec())
        .await;
    let message = assert_json_error(&answer, 400, "a key twice");
    assert!(message.contains("twice"), "{message}");
}

#[actix_rt::test]
async fn a_number_beyond_64_bits_gets_a_json_400_saying_out_of_range() {
    let app = TestApp::spawn().await;
    let mut huge = event(REVISION_STATUS_UPDATED, 9405, 1);
    huge["marketplaceId"] = json!(9_223_372_036_854_775_808u64);
    let answer = app.push_event(&huge).await;
    let message = assert_json_error(&answer, 400, "marketplaceId 2^63");
    assert!(message.contains("out of range"), "{message}");
}

#[actix_rt::test]
async fn a_900_kb_bad_value_is_quoted_briefly_in_its_json_400() {
    let app = TestApp::spawn().await;
    let mut long = event(REVISION_STATUS_UPDATED, 9405, 1);
    long["contextObjectType"] = json!("X".repeat(900_000));
    let answer = app.push_event(&long).await;
    let message = assert_json_error(&answer, 400, "a 900 KB value");
    assert!(
        message.len() < 1000,
        "the message quotes {} bytes",
        message.len()
    );
}

#[actix_rt::test]
async fn a_push_next_to_500_stalled_connections_is_accepted() {
    let app = TestApp::spawn_with(&["--request-timeout", "2s"]).await;
    let url = app.internal_url.clone();

    // 500 connections that send half a request and stall.
    let stalled: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(host_port(&url)).expect("connect");
            s.write_all(b"POST /internal/v1/events HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    app.push_event_ok(&event(REVISION_STATUS_UPDATED, 9406, 1))
        .await;
    eprintln!(
        "a push next to 500 stalled connections took {:?}",
        started.elapsed()
    );
    drop(stalled);
}

/// Sends a push's headers to `url`, then one byte of its body every 500 ms
/// until the server answers or closes; answers the answer and how long it
/// took. Fails after 10 s.
fn trickle_a_body(url: &str) -> (String, Duration) {
    let mut stream = TcpStream::connect(host_port(url)).expect("connect");
    stream
        .write_all(
            b"POST /internal/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        )
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a trickled body was not cut off within 10 s"
        );
        let _ = stream.write_all(b" ");
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n")
            && String::from_utf8_lossy(&answer).contains('}')
        {
            break;
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[actix_rt::test]
async fn a_trickled_body_is_cut_off_at_the_request_timeout_with_a_json_408() {
    let app = TestApp::spawn_with(&["--request-timeout", "2s"]).await;
    let (answer, took) = trickle_a_body(&app.internal_url);
    eprintln!("a trickled body was answered after {took:?}: {answer}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert!(
        took >= Duration::from_millis(1500),
        "cut off too early: {took:?}"
    );
}

#[actix_rt::test]
async fn requests_the_http_layer_cannot_parse_get_json_errors_too() {
    let app = TestApp::spawn().await;
    let many_headers: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "two different Content-Lengths",
            b"POST /internal/v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "Transfer-Encoding with Content-Length",
            b"POST /internal/v1/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            "HTTP/1.1 400",
        ),
        (
            "a 100 KB path",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            "HTTP/1.1 4",
        ),
        (
            "200 headers",
            format!("GET /health HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            "HTTP/1.1 431",
        ),
    ];
    for (what, request, status) in cases {
        let answer = raw_exchange(&app.internal_url, &request, Duration::from_secs(5));
        assert!(answer.starts_with(status), "{what}: {answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{what}: the answer's body is not JSON: {answer}"));
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty())
                && json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {json}"
        );
    }
    // Kept-alive, pipelined requests still get their answers, unchanged.
    let answer = raw_exchange(
        &app.internal_url,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert_eq!(answer.matches("\"ready\":true").count(), 2, "{answer}");
}
