//! Endpoint safety (`--allow-private-endpoints`): every request hookrelay
//! sends passes the same address check at request time, IP literals
//! included; the ranges of the IANA special-purpose registries are refused
//! at subscribe time; IPv6 literal endpoints work.
//!
//! No test here makes hookrelay connect to anything but the loopback
//! addresses: the non-loopback URLs are refused at subscribe time, before
//! any connection.

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "endpoint-safety-secret";

/// Waits until `url`'s endpoint had two scheduled verification calls, a
/// delivery and the probe after it refused (paused, with the counts),
/// asserting on every poll that `called` (some receiver was called) is
/// false; answers the endpoint.
async fn wait_until_refused(app: &TestApp, url: &str, called: impl Fn() -> bool) -> Value {
    wait_for(
        SOON,
        "two verification calls, a delivery and a probe refused",
        || {
            let called = called();
            async move {
                assert!(!called, "a refused endpoint was called after the restart");
                let e = app.endpoint_with_url(url).await?;
                let refused = e["failedVerifications"].as_u64() >= Some(2)
                    && e["consecutiveFailures"].as_u64() >= Some(1)
                    && e["state"] == "paused";
                refused.then_some(e)
            }
        },
    )
    .await
}

/// The bodies of every request `receiver` got.
fn bodies(receiver: &Receiver) -> Vec<String> {
    receiver.requests().iter().map(|r| r.body_text()).collect()
}

#[actix_rt::test]
async fn ip_literal_endpoints_stored_with_private_endpoints_allowed_get_no_verification_call_probe_or_delivery_after_a_restart_without_the_option()
 {
    // Stored while the option is on.
    let mut app = TestApp::spawn_with(&[
        "--verify-interval",
        "1s",
        "--dead-after-failed-verifications",
        "1000",
        "--retry-schedule",
        "1h",
        "--pause-after-failures",
        "1",
        "--probe-interval",
        "300ms",
    ])
    .await;
    let v4 = Receiver::start().await;
    let v6 = Receiver::start_on_ipv6_loopback().await;
    let token = app.token(7100, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &v4.url(), SECRET)
        .await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &v6.url(), SECRET)
        .await;
    let stopped = app.sigterm(SOON).await;
    assert!(
        stopped.is_some(),
        "no exit on SIGTERM\n{}",
        app.log_tail(40)
    );
    let seen = (v4.count(), v6.count());

    // Started again without it.
    app.set_allow_private_endpoints(false);
    app.start().await;
    let pushed = app.push_event_ok(&event(QTI_EXPORT_READY, 7100, 1)).await;
    assert_eq!(pushed["deliveries"], 2, "{pushed}");

    // The positive signal: on both endpoints scheduled verification calls, a
    // delivery and the probe after it failed, refused: paused, with the
    // counts. (A call that reached the receiver would have succeeded, reset
    // the counts and resumed the endpoint.)
    for receiver in [&v4, &v6] {
        let url = receiver.url();
        let endpoint = wait_until_refused(&app, &url, || (v4.count(), v6.count()) != seen).await;
        let reason = endpoint["lastFailureReason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("refused before connecting")
                && reason.contains("--allow-private-endpoints"),
            "{url}: {endpoint}"
        );
    }
    assert_eq!(
        (v4.count(), v6.count()),
        seen,
        "a refused endpoint was called after the restart: {:?} {:?}",
        bodies(&v4),
        bodies(&v6)
    );
    let log = std::fs::read_to_string(&app.log_path).unwrap_or_default();
    assert!(
        !log.contains("could not resolve the host"),
        "an IP literal was looked up:\n{}",
        app.log_tail(40)
    );
}

#[actix_rt::test]
async fn every_newly_closed_range_is_refused_at_subscribe_time_with_a_json_422() {
    let app = TestApp::spawn_refusing_private_endpoints(&["--delivery-timeout", "2s"]).await;
    let token = app.token(7200, 1).await;
    let urls = [
        // 64:ff9b:1::/48, local-use NAT64 (RFC 8215), embedding 127.0.0.1 and
        // 10.0.0.1 as a /96 and in RFC 6052's /48 layout.
        "http://[64:ff9b:1::127.0.0.1]/hook",
        "http://[64:ff9b:1::a00:1]/hook",
        "http://[64:ff9b:1:7f00:0:100::]/hook",
        // ::ffff:0:0/96, IPv4-mapped (RFC 4291), in every form.
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:7f00:1]/hook",
        "http://[0:0:0:0:0:ffff:10.0.0.1]/hook",
        "http://[::FFFF:8.8.8.8]/hook",
        "http://[::ffff:808:808]/hook",
        // ::/96, IPv4-compatible (RFC 4291, deprecated).
        "http://[::8.8.8.8]/hook",
        // 2001::/23, IETF protocol assignments (RFC 2928), Teredo included.
        "http://[2001::1]/hook",
        "http://[2001:0:7f00:1::1]/hook",
        "http://[2001:1::1]/hook",
        "http://[2001:2::1]/hook",
        "http://[2001:1ff:ffff::1]/hook",
        // 192.88.99.0/24, deprecated 6to4 relay anycast (RFC 7526).
        "http://192.88.99.1/hook",
        "http://192.88.99.2/hook",
        // Other registry entries not refused before.
        "http://[3fff::1]/hook",
        "http://[5f00::1]/hook",
        "http://[100:0:0:1::1]/hook",
        "http://[4000::1]/hook",
    ];
    let mut failures = Vec::new();
    for url in urls {
        let (status, body) = app.subscribe(&token, QTI_EXPORT_READY, url, SECRET).await;
        let message = body["message"].as_str().unwrap_or_default();
        if status != 422
            || body["error"] != "private_endpoint"
            || !message.contains("--allow-private-endpoints")
        {
            failures.push(format!("{url}: {status} {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "expected 422 private_endpoint naming --allow-private-endpoints for:\n{}",
        failures.join("\n")
    );
    assert!(
        app.subscriptions_of(&token).await.is_empty(),
        "a refused endpoint was stored"
    );
}

#[actix_rt::test]
async fn an_ipv6_literal_endpoint_on_the_loopback_gets_its_verification_call_and_deliveries_when_private_endpoints_are_allowed()
 {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start_on_ipv6_loopback().await;
    let url = receiver.url();
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let token = app.token(7300, 1).await;
    app.subscribe_ok(&token, QTI_EXPORT_READY, &url, SECRET)
        .await;
    assert_eq!(receiver.verifications().len(), 1, "the verification call");

    let ev = event(QTI_EXPORT_READY, 7300, 1);
    assert_eq!(app.push_event_ok(&ev).await["deliveries"], 1);
    let delivered = receiver.wait_for_context_id(1, SOON).await;
    assert_signed(&delivered, SECRET);

    let endpoint = app
        .endpoint_with_url(&url)
        .await
        .unwrap_or_else(|| panic!("{url} is not listed"));
    assert_eq!(endpoint["state"], Value::from("healthy"), "{endpoint}");
}
