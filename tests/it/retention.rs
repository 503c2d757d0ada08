//! `--history-retention` against the real server (every backend): once
//! finished deliveries are past retention, a retention pass removes them,
//! their attempts and their events (the delivery detail and the event
//! lookup answer 404, and `hookrelay_history_removed_total` counts them),
//! while a pending delivery older than retention stays, with its event, and
//! is still delivered.

use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "retention-secret-0123456789";
const MARKETPLACE: i64 = 3700;

/// A receiver answering deliveries `status` (verification calls 200), with
/// a subscription of its own caller to `event` on `app`: the receiver, the
/// caller's token and the subscription id.
async fn subscribed(app: &TestApp, user: i64, event: &str, status: u16) -> (Receiver, String, i64) {
    let receiver = Receiver::start_with(Reply::status(status)).await;
    receiver.set_verification_reply(Reply::status(200));
    let token = app.token(MARKETPLACE, user).await;
    let sub = app
        .subscribe_ok(&token, event, &receiver.url(), SECRET)
        .await;
    (receiver, token, sub)
}

/// Pushes one `event`; its eventId.
async fn push(app: &TestApp, event_type: &str, context_object_id: i64) -> String {
    let accepted = app
        .push_event_ok(&event(event_type, MARKETPLACE, context_object_id))
        .await;
    assert_eq!(accepted["deliveries"], 1, "{accepted}");
    accepted["eventId"].as_str().unwrap().to_string()
}

/// The id of the first delivery `receiver` got (its `webhook-id`).
async fn first_delivery_id(receiver: &Receiver) -> String {
    wait_until(SOON, "a delivery arrives", || receiver.delivery_count() > 0).await;
    receiver.deliveries()[0].webhook_id()
}

async fn removed_total(app: &TestApp, what: &str) -> f64 {
    app.scrape()
        .await
        .sum("hookrelay_history_removed_total", &[("what", what)])
}

#[actix_rt::test]
async fn finished_history_past_retention_is_removed_and_pending_deliveries_stay_and_are_delivered()
{
    let app = TestApp::spawn_with(&[
        "--history-retention",
        "2s",
        "--retention-interval",
        "200ms",
        "--retry-schedule",
        "",
    ])
    .await;
    // Held by its operator: its delivery stays pending past retention.
    let (held, held_token, held_sub) = subscribed(&app, 1, QTI_EXPORT_READY, 200).await;
    let held_endpoint = app.endpoint_id(&held.url()).await;
    app.patch_endpoint_ok(&held_endpoint, json!({"paused": true}))
        .await;
    let (ok, ok_token, ok_sub) = subscribed(&app, 2, REVISION_STATUS_UPDATED, 200).await;
    let (failing, failing_token, failing_sub) =
        subscribed(&app, 3, CONFIRM_FINAL_GRADES, 500).await;

    // Pushed first: older than the finished ones below.
    let held_event = push(&app, QTI_EXPORT_READY, 1).await;
    let ok_event = push(&app, REVISION_STATUS_UPDATED, 2).await;
    let failing_event = push(&app, CONFIRM_FINAL_GRADES, 3).await;
    let ok_delivery = first_delivery_id(&ok).await;
    let failing_delivery = first_delivery_id(&failing).await;

    // Succeeded and dead (no retries): both go, with their events.
    for (token, sub, delivery, event) in [
        (&ok_token, ok_sub, &ok_delivery, &ok_event),
        (
            &failing_token,
            failing_sub,
            &failing_delivery,
            &failing_event,
        ),
    ] {
        wait_until_async(
            SOON,
            "the finished delivery and its event are removed",
            || async {
                let (detail, _) = app.delivery(token, sub, delivery).await;
                let (lookup, _) = app.event_lookup(event).await;
                detail == 404 && lookup == 404
            },
        )
        .await;
    }
    assert!(removed_total(&app, "delivery").await >= 2.0);
    assert!(removed_total(&app, "event").await >= 2.0);
    assert!(
        removed_total(&app, "attempt").await >= 1.0,
        "the failed one's logged attempts went with it (a first-try success keeps its attempt on its own row)"
    );

    // The held one was past retention during that pass, and stays.
    let (status, looked_up) = app.event_lookup(&held_event).await;
    assert_eq!(
        status, 200,
        "the pending delivery's event stays: {looked_up}"
    );
    let deliveries = looked_up["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(deliveries.len(), 1, "{looked_up}");
    assert_eq!(deliveries[0]["status"], "pending", "{looked_up}");
    let held_delivery = deliveries[0]["deliveryId"].as_str().unwrap().to_string();

    // Released, it is delivered (and then, finished, it goes too).
    app.patch_endpoint_ok(&held_endpoint, json!({"paused": false}))
        .await;
    assert_eq!(first_delivery_id(&held).await, held_delivery);
    assert_eq!(
        held.deliveries()[0].context_object_id(),
        Some(1),
        "the held event, as pushed"
    );
    wait_until_async(SOON, "the delivered one is removed in turn", || async {
        let (detail, _): (u16, Value) = app.delivery(&held_token, held_sub, &held_delivery).await;
        detail == 404
    })
    .await;
    app.assert_healthy("after the retention passes").await;
}
