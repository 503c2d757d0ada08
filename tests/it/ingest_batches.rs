//! Batches of events on the internal API: valid entries are accepted and
//! delivered while invalid ones are listed by index, a batch of only
//! invalid entries is refused, and `--max-batch-events` is the limit.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "ingest-secret-0123456789";

/// A server and a subscribed receiver of tenant 1100, sent a batch of three
/// valid events (contextObjectIds 1, 2, 3 at indexes 0, 2, 5) and three
/// invalid ones (902: no contextObjectType, 903: unknown event type, 904:
/// bad timestamp); answers the batch and the response.
async fn push_mixed_batch() -> (TestApp, Receiver, Vec<Value>, Resp) {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let token = app.token(1100, 1).await;
    app.subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url(), SECRET)
        .await;

    let mut missing_type = event(REVISION_STATUS_UPDATED, 1100, 902);
    missing_type
        .as_object_mut()
        .unwrap()
        .remove("contextObjectType");
    let mut bad_timestamp = event(REVISION_STATUS_UPDATED, 1100, 904);
    bad_timestamp["timestamp"] = json!("2021-06-29 18:16:06");
    let batch = vec![
        event(REVISION_STATUS_UPDATED, 1100, 1),
        missing_type,
        event(REVISION_STATUS_UPDATED, 1100, 2),
        event("no_such_event_type", 1100, 903),
        bad_timestamp,
        event(REVISION_STATUS_UPDATED, 1100, 3),
    ];
    let resp = app.push_batch(&batch).await;
    (app, receiver, batch, resp)
}

#[actix_rt::test]
async fn a_batch_with_valid_and_invalid_entries_accepts_the_valid_ones_and_lists_the_invalid_by_index()
 {
    let (_app, _receiver, batch, (status, body)) = push_mixed_batch().await;
    assert_eq!(status, 202, "mixed batch answered {status}: {body}");
    assert_eq!(body["accepted"], 3, "{body}");
    assert_eq!(body["rejected"], 3, "{body}");
    let results = body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results array: {body}"));
    assert_eq!(results.len(), batch.len(), "one result per entry: {body}");
    let mut event_ids = HashSet::new();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r["index"], i,
            "results are in order with their index: {body}"
        );
        let valid = [0, 2, 5].contains(&i);
        if valid {
            assert_eq!(r["status"], "accepted", "entry {i}: {r}");
            let id = r["eventId"]
                .as_str()
                .unwrap_or_else(|| panic!("accepted entry {i} lacks eventId: {r}"));
            assert!(event_ids.insert(id.to_string()), "duplicate eventId {id}");
            assert_eq!(r["deliveries"], 1, "entry {i}: {r}");
        } else {
            assert_eq!(r["status"], "rejected", "entry {i}: {r}");
            assert!(
                r["error"].as_str().is_some_and(|s| !s.is_empty()),
                "rejected entry {i} lacks an error code: {r}"
            );
            assert!(
                r["message"].as_str().is_some_and(|s| !s.is_empty()),
                "rejected entry {i} lacks a message: {r}"
            );
        }
    }
    assert!(
        results[1]["message"]
            .as_str()
            .unwrap()
            .contains("contextObjectType"),
        "entry 1 should name contextObjectType: {}",
        results[1]
    );
    assert!(
        results[4]["message"]
            .as_str()
            .unwrap()
            .contains("timestamp"),
        "entry 4 should name timestamp: {}",
        results[4]
    );
}

#[actix_rt::test]
async fn only_the_valid_entries_of_a_mixed_batch_are_delivered() {
    let (_app, receiver, _, (status, body)) = push_mixed_batch().await;
    assert_eq!(status, 202, "mixed batch answered {status}: {body}");
    receiver
        .wait_for_context_ids(&HashSet::from([1, 2, 3]), SOON)
        .await;
    let got = receiver.delivered_context_ids();
    for bad in [902, 903, 904] {
        assert!(
            !got.contains(&bad),
            "rejected entry with contextObjectId {bad} was delivered"
        );
    }
}

#[actix_rt::test]
async fn a_batch_in_which_every_entry_is_invalid_gets_400_with_the_results() {
    let app = TestApp::spawn().await;
    let mut bad = event(REVISION_STATUS_UPDATED, 1, 1);
    bad["marketplaceId"] = json!("one");
    let batch = vec![bad, event("no_such_event_type", 1, 2)];
    let (status, body) = app.push_batch(&batch).await;
    assert_eq!(status, 400, "all-rejected batch answered {status}: {body}");
    assert_eq!(body["accepted"], 0, "{body}");
    assert_eq!(body["rejected"], 2, "{body}");
    let results = body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"));
    assert_eq!(results.len(), 2);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
        assert_eq!(r["status"], "rejected");
    }
    assert!(
        results[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("marketplaceId"),
        "{}",
        results[0]
    );
}

#[actix_rt::test]
async fn a_batch_over_max_batch_events_gets_413_and_one_at_the_limit_is_accepted() {
    let app = TestApp::spawn_with(&["--max-batch-events", "10"]).await;
    let receiver = Receiver::start().await;
    let token = app.token(1200, 1).await;
    app.subscribe_ok(&token, CONFIRM_FINAL_GRADES, &receiver.url(), SECRET)
        .await;

    let too_many: Vec<Value> = (0..11)
        .map(|i| event(CONFIRM_FINAL_GRADES, 1200, 100 + i))
        .collect();
    let resp = app.push_batch(&too_many).await;
    assert_json_error(&resp, 413, "batch of 11 with --max-batch-events 10");

    let at_limit: Vec<Value> = (0..10)
        .map(|i| event(CONFIRM_FINAL_GRADES, 1200, 200 + i))
        .collect();
    let (status, body) = app.push_batch(&at_limit).await;
    assert_eq!(status, 202, "batch of exactly 10: {body}");
    assert_eq!(body["accepted"], 10, "{body}");

    receiver
        .wait_for_context_ids(&(200..210).collect(), SOON)
        .await;
    let refused: Vec<i64> = receiver
        .delivered_context_ids()
        .into_iter()
        .filter(|c| (100..111).contains(c))
        .collect();
    assert!(
        refused.is_empty(),
        "events of the refused batch were delivered: {refused:?}"
    );
}
