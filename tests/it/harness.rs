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
