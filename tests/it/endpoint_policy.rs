//! An operator's endpoint policy (`PATCH /internal/v1/endpoints/{id}`)
//! against the real server and receiver: the hold keeps deliveries waiting
//! in order (across a restart, and on PostgreSQL across a takeover by
//! another node), `maxInFlight: 1` sends one at a time, `maxPerSecond`
//! spaces them, and bad input is a JSON 400 naming the field.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster_nodes::{nodes, owners};
use crate::helpers::*;

const SECRET: &str = "policy-secret-0123456789";

/// A receiver of tenant `marketplace` subscribed on `app`; answers it and
/// its endpoint id.
async fn subscribed(app: &TestApp, marketplace: i64) -> (Receiver, String) {
    let receiver = Receiver::start().await;
    receiver.set_verification_reply(Reply::status(200));
    let token = app.token(marketplace, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;
    let id = app.endpoint_id(&receiver.url()).await;
    (receiver, id)
}

/// Pushes events with contextObjectId `ids`, one at a time (so their
/// order is the order they were accepted in).
async fn push(app: &TestApp, marketplace: i64, ids: impl IntoIterator<Item = i64>) {
    for id in ids {
        let accepted = app
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        assert_eq!(accepted["deliveries"], 1, "event {id}: {accepted}");
    }
}

/// Watches the receiver for `window` (polling, never longer than the
/// window): nothing may arrive meanwhile.
async fn assert_nothing_arrives(receiver: &Receiver, window: Duration, context: &str) {
    let before = receiver.delivery_count();
    let start = Instant::now();
    while start.elapsed() < window {
        let now = receiver.delivery_count();
        assert_eq!(now, before, "{context}: a delivery arrived while held");
        sleep(Duration::from_millis(25)).await;
    }
}

/// The contextObjectIds delivered, in arrival order.
fn arrival_order(receiver: &Receiver) -> Vec<i64> {
    receiver
        .deliveries()
        .iter()
        .filter_map(Recorded::context_object_id)
        .collect()
}

/// What the endpoint list shows of an endpoint the operator holds. The
/// lead extends it with `pausedBy: "operator"` and `state: "paused"` when
/// the live view of the hold is merged.
fn assert_listed_as_held(listed: &Value, held: bool) {
    assert_eq!(listed["policy"]["paused"], held, "{listed}");
    if held {
        assert_eq!(listed["pausedBy"], "operator", "{listed}");
        assert_eq!(listed["state"], "paused", "{listed}");
    } else {
        assert_ne!(listed["pausedBy"], "operator", "{listed}");
    }
}

#[actix_rt::test]
async fn a_held_endpoint_gets_nothing_until_resumed_then_everything_in_order() {
    let app = TestApp::spawn().await;
    let (receiver, id) = subscribed(&app, 8100).await;
    let held = app
        .patch_endpoint_ok(&id, json!({"paused": true, "maxInFlight": 1}))
        .await;
    assert_listed_as_held(&held, true);
    assert_eq!(held["policy"]["maxInFlight"], 1, "{held}");

    push(&app, 8100, 1..=50).await;
    assert_nothing_arrives(&receiver, Duration::from_secs(1), "held").await;
    assert_listed_as_held(&app.endpoint_by_id(&id).await, true);

    let resumed = app.patch_endpoint_ok(&id, json!({"paused": false})).await;
    assert_listed_as_held(&resumed, false);
    receiver.wait_for_deliveries(50, SOON).await;
    assert_eq!(arrival_order(&receiver), (1..=50).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn a_hold_is_kept_across_a_kill_and_restart() {
    let mut app = TestApp::spawn().await;
    let (receiver, id) = subscribed(&app, 8200).await;
    app.patch_endpoint_ok(&id, json!({"paused": true, "maxInFlight": 1}))
        .await;
    push(&app, 8200, 1..=10).await;

    app.kill9();
    app.start().await;
    assert_nothing_arrives(&receiver, Duration::from_secs(1), "after the restart").await;
    assert_listed_as_held(&app.endpoint_by_id(&id).await, true);

    app.patch_endpoint_ok(&id, json!({"paused": false})).await;
    receiver.wait_for_deliveries(10, SOON).await;
    assert_eq!(arrival_order(&receiver), (1..=10).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn on_postgres_a_hold_set_on_any_node_survives_a_takeover_and_any_node_releases_it() {
    let mut c = nodes!(&["pol-a", "pol-b"]);
    let (receiver, id) = subscribed(c.node(0), 8300).await;
    let urls = vec![receiver.url().trim_end_matches('/').to_string()];
    let owner = owner_of(c.node(0), &urls).await;
    let (owner_i, other_i) = if owner == "pol-a" { (0, 1) } else { (1, 0) };

    // Set on the node that does not deliver for it: the owner hears of it.
    c.node(other_i)
        .patch_endpoint_ok(&id, json!({"paused": true, "maxInFlight": 1}))
        .await;
    push(c.node(other_i), 8300, 1..=10).await;
    assert_nothing_arrives(&receiver, Duration::from_secs(1), "held on the owner").await;

    let mut victim = c.apps[owner_i].take().expect("the owner runs");
    victim.kill9();
    let survivor = c.names[other_i].clone();
    wait_for(SOON, "the survivor took the endpoint over", || async {
        (owner_of(c.node(other_i), &urls).await == survivor).then_some(())
    })
    .await;
    assert_nothing_arrives(&receiver, Duration::from_secs(1), "held after the takeover").await;
    assert_listed_as_held(&c.node(other_i).endpoint_by_id(&id).await, true);

    c.node(other_i)
        .patch_endpoint_ok(&id, json!({"paused": false}))
        .await;
    receiver.wait_for_deliveries(10, SOON).await;
    assert_eq!(arrival_order(&receiver), (1..=10).collect::<Vec<_>>());
}

/// The node that owns the endpoint of `urls`, once one does.
async fn owner_of(via: &TestApp, urls: &[String]) -> String {
    wait_for(SOON, "the endpoint has an owner", || async {
        owners(via, urls).await[0].clone()
    })
    .await
}

#[actix_rt::test]
async fn max_in_flight_one_sends_one_at_a_time_in_order() {
    let app = TestApp::spawn().await;
    let (receiver, id) = subscribed(&app, 8400).await;
    let answer = Duration::from_millis(100);
    receiver.set_reply(Reply::delayed(answer, 200));
    app.patch_endpoint_ok(&id, json!({"maxInFlight": 1})).await;

    push(&app, 8400, 1..=20).await;
    let got = receiver.wait_for_deliveries(20, SOON).await;
    assert_eq!(arrival_order(&receiver), (1..=20).collect::<Vec<_>>());
    // The next request starts only once the previous one was answered.
    let tolerance = Duration::from_millis(10);
    for pair in got.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap + tolerance >= answer,
            "two requests in flight at once: arrivals {gap:?} apart, each answered after {answer:?}"
        );
    }
}

#[actix_rt::test]
async fn max_per_second_spaces_the_deliveries() {
    let app = TestApp::spawn().await;
    let (receiver, id) = subscribed(&app, 8500).await;
    app.patch_endpoint_ok(&id, json!({"maxPerSecond": 20, "paused": true}))
        .await;
    for first in (1..=200).step_by(50) {
        let events: Vec<Value> = (first..first + 50)
            .map(|n| event(REVISION_STATUS_UPDATED, 8500, n))
            .collect();
        let (status, body) = app.push_batch(&events).await;
        assert_eq!(status, 202, "{body}");
    }
    app.patch_endpoint_ok(&id, json!({"paused": false})).await;

    let got = receiver
        .wait_for_deliveries(200, Duration::from_secs(60))
        .await;
    let arrivals: Vec<Instant> = got.iter().map(|r| r.at).collect();
    let (max_any, max_steady) = busiest_second(&arrivals);
    eprintln!(
        "maxPerSecond 20: at most {max_any} arrivals in any second, {max_steady} after the first"
    );
    // The bucket starts full (a burst of at most 20), then refills 20 a second.
    assert!(max_any <= 40, "{max_any} arrivals in one second");
    assert!(
        max_steady <= 23,
        "{max_steady} arrivals in one second after the burst"
    );
    let took = *arrivals.last().unwrap() - arrivals[0];
    assert!(
        took >= Duration::from_secs(8),
        "200 deliveries at 20/s took {took:?}"
    );
}

/// The most arrivals within one second: of any second, and of any second
/// that starts a second after the first arrival (the initial burst spent).
fn busiest_second(arrivals: &[Instant]) -> (usize, usize) {
    let mut sorted = arrivals.to_vec();
    sorted.sort();
    let (mut any, mut steady) = (0, 0);
    for (i, start) in sorted.iter().enumerate() {
        let n = sorted[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(1))
            .count();
        any = any.max(n);
        if start.duration_since(sorted[0]) >= Duration::from_secs(1) {
            steady = steady.max(n);
        }
    }
    (any, steady)
}

#[actix_rt::test]
async fn bad_input_is_a_json_400_naming_the_field_and_an_unknown_endpoint_is_404() {
    let app = TestApp::spawn().await;
    let (_receiver, id) = subscribed(&app, 8600).await;
    for (body, field) in [
        (json!({"maxInFlight": 0}), "maxInFlight"),
        (json!({"maxInFlight": -3}), "maxInFlight"),
        (json!({"maxInFlight": 1_000_000_000_000i64}), "maxInFlight"),
        (json!({"maxPerSecond": 0}), "maxPerSecond"),
        (json!({"maxPerSecond": "fast"}), "maxPerSecond"),
        (json!({"paused": "yes"}), "paused"),
        (json!({"timeout": "soon"}), "timeout"),
        (json!({"timeout": "1ms"}), "timeout"),
        (json!({"timeout": 10}), "timeout"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let resp = app.patch_endpoint(&id, body.clone()).await;
        let message = assert_json_error(&resp, 400, &body.to_string());
        assert!(message.contains(field), "{body}: {message}");
    }
    let unchanged = app.endpoint_by_id(&id).await;
    assert_eq!(
        unchanged["policy"],
        json!({"paused": false, "maxInFlight": null, "maxPerSecond": null, "timeout": null})
    );
    for unknown in ["999999", "not-an-id"] {
        let resp = app.patch_endpoint(unknown, json!({"paused": true})).await;
        assert_json_error(&resp, 404, unknown);
    }
}

#[actix_rt::test]
async fn a_patch_answers_the_endpoint_as_listed_and_null_clears_an_override() {
    let app = TestApp::spawn().await;
    let (_receiver, id) = subscribed(&app, 8700).await;
    let answer = app
        .patch_endpoint_ok(
            &id,
            json!({"maxInFlight": 8, "maxPerSecond": 50, "timeout": "250ms"}),
        )
        .await;
    assert_eq!(
        answer["policy"],
        json!({"paused": false, "maxInFlight": 8, "maxPerSecond": 50, "timeout": "250ms"})
    );
    assert_eq!(answer, app.endpoint_by_id(&id).await);

    let cleared = app
        .patch_endpoint_ok(&id, json!({"maxInFlight": null, "timeout": null}))
        .await;
    assert_eq!(
        cleared["policy"],
        json!({"paused": false, "maxInFlight": null, "maxPerSecond": 50, "timeout": null})
    );
}
