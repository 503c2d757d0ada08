//! Consistency across the nodes of a cluster (several `hookrelay serve` on
//! one PostgreSQL database): routing reads its own writes across nodes.
//! Once one node answered a subscription create (201) or delete (204), or
//! recorded an auto-removal (410 Gone), an event pushed to another node
//! right afterwards, with no waiting for any sync, is routed accordingly;
//! an event type registered on one node is known to the others at once.
//! Hand-over under a steady stream is in `cluster_handover`.
//!
//! PostgreSQL only: each test creates one database on the server named by
//! `HOOKRELAY_TEST_POSTGRES_URL` and shares it between its nodes; without
//! that variable the tests pass as skipped.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::json;

use crate::cluster_nodes::{Nodes, arrivals_by_path, nodes, owners, wait_for_expected};
use crate::helpers::*;

const SECRET: &str = "consistency-secret";

#[actix_rt::test]
async fn a_subscription_created_on_one_node_routes_an_event_pushed_to_another_right_afterwards() {
    let c = nodes!(&["ryw-a", "ryw-b"]);
    let marketplace = 9300;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    const N: usize = 30;
    let mut problems = Vec::new();
    for i in 0..N {
        // Created on one node, pushed to the other, both ways in turn.
        let (on, to) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
        let path = format!("/new{i}");
        c.node(on)
            .subscribe_ok(
                &token,
                REVISION_STATUS_UPDATED,
                &receiver.url_at(&path),
                SECRET,
            )
            .await;
        let id = i as i64 + 1;
        let pushed = c
            .node(to)
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        if pushed["deliveries"] != (i + 1) as u64 {
            problems.push(format!(
                "event {id} pushed to {} right after {} answered 201 for subscription #{} ({path}): \
                 {pushed} (want {} deliveries)",
                c.names[to],
                c.names[on],
                i + 1,
                i + 1
            ));
        }
    }
    // Endpoint i gets the events pushed after its subscription: i+1..=N.
    let expected: HashMap<String, HashSet<i64>> = (0..N)
        .map(|i| (format!("/new{i}"), (i as i64 + 1..=N as i64).collect()))
        .collect();
    if let Err(e) = wait_for_expected(&receiver, &expected, SOON).await {
        problems.push(e);
    }
    let got = arrivals_by_path(&receiver, |_| true);
    for i in 0..N {
        let path = format!("/new{i}");
        let early: Vec<i64> = got
            .get(&path)
            .into_iter()
            .flatten()
            .map(|(id, _)| *id)
            .filter(|id| *id <= i as i64)
            .collect();
        if !early.is_empty() {
            problems.push(format!(
                "{path} got events pushed before it was subscribed: {early:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{N} pushes, each right after a subscription create on the other node:\n{}",
        problems.join("\n")
    );
}

#[actix_rt::test]
async fn a_subscription_deleted_on_one_node_is_not_routed_by_another_right_afterwards() {
    let c = nodes!(&["del-a", "del-b"]);
    let marketplace = 9400;
    const ENDPOINTS: usize = 8;
    const DELETED: usize = 6;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let paths: Vec<String> = (0..ENDPOINTS).map(|i| format!("/ep{i}")).collect();
    let mut subs = Vec::new();
    for p in &paths {
        subs.push(
            c.node(0)
                .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url_at(p), SECRET)
                .await,
        );
    }
    let mut marker = 1_000_000;
    c.wait_until_every_node_routes(marketplace, ENDPOINTS, &mut marker)
        .await;

    let mut problems = Vec::new();
    for k in 0..DELETED {
        let (on, to) = if k % 2 == 0 { (0, 1) } else { (1, 0) };
        let (status, body) = c.node(on).delete_subscription(&token, subs[k]).await;
        assert_eq!(
            status, 204,
            "DELETE {} via {}: {body}",
            paths[k], c.names[on]
        );
        let id = k as i64 + 1;
        let pushed = c
            .node(to)
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        let want = ENDPOINTS - (k + 1);
        if pushed["deliveries"] != want as u64 {
            problems.push(format!(
                "event {id} pushed to {} right after {} answered 204 for {}: {pushed} (want {want} deliveries)",
                c.names[to], c.names[on], paths[k]
            ));
        }
    }
    // Event k+1 was pushed after subscriptions 0..=k were deleted: the
    // endpoints kept get every event; endpoint j < DELETED never one pushed
    // after its delete (ids > j). Whether it still gets those pushed before
    // (ids <= j) is left open.
    let expected: HashMap<String, HashSet<i64>> = paths[DELETED..]
        .iter()
        .map(|p| (p.clone(), (1..=DELETED as i64).collect()))
        .collect();
    if let Err(e) = wait_for_expected(&receiver, &expected, SOON).await {
        problems.push(e);
    }
    let got = arrivals_by_path(&receiver, |i| (1..=DELETED as i64).contains(&i));
    for (j, p) in paths.iter().enumerate().take(DELETED) {
        let leaked: Vec<i64> = got
            .get(p)
            .map(|v| {
                v.iter()
                    .map(|(i, _)| *i)
                    .filter(|i| *i > j as i64)
                    .collect()
            })
            .unwrap_or_default();
        if !leaked.is_empty() {
            problems.push(format!(
                "{p} got events pushed after its subscription was deleted: {leaked:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "pushes right after a delete on the other node:\n{}",
        problems.join("\n")
    );
}

/// The index of the node owning the endpoint `url`, once it has one.
async fn owner_index(c: &Nodes, url: &str) -> usize {
    let url = url.to_string();
    let name = wait_for(SOON, "the gone endpoint has an owner", || async {
        owners(c.node(0), std::slice::from_ref(&url))
            .await
            .remove(0)
            .filter(|o| c.names.contains(o))
    })
    .await;
    c.names
        .iter()
        .position(|n| *n == name)
        .expect("the owner is one of the nodes")
}

/// Waits until subscription `sub` left the list `token` gets from `app`.
async fn wait_until_unlisted(app: &TestApp, token: &str, sub: i64) {
    wait_until_async(
        SOON,
        "the gone endpoint's subscription left its owner's list",
        || async {
            !app.subscriptions_of(token)
                .await
                .iter()
                .any(|s| s["subscriptionId"] == sub)
        },
    )
    .await;
}

/// Pushes events `ids` of `marketplace` to node `via`; answers a problem
/// for each not answered with `deliveries` deliveries.
async fn push_expecting(
    c: &Nodes,
    via: usize,
    marketplace: i64,
    ids: std::ops::RangeInclusive<i64>,
    deliveries: usize,
) -> Vec<String> {
    let mut problems = Vec::new();
    for id in ids {
        let pushed = c
            .node(via)
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        if pushed["deliveries"] != deliveries as u64 {
            problems.push(format!(
                "event {id} via {}: {pushed} (want {deliveries} deliveries)",
                c.names[via]
            ));
        }
    }
    problems
}

#[actix_rt::test]
async fn an_endpoint_gone_on_its_owner_gets_nothing_pushed_to_another_node_once_its_subscription_left_the_list()
 {
    let c = nodes!(&["gone-a", "gone-b"]);
    let marketplace = 9500;
    const CONTROLS: usize = 4;
    let control = Receiver::start().await;
    let gone = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let paths: Vec<String> = (0..CONTROLS).map(|i| format!("/ep{i}")).collect();
    for p in &paths {
        c.node(0)
            .subscribe_ok(&token, REVISION_STATUS_UPDATED, &control.url_at(p), SECRET)
            .await;
    }
    let gone_url = gone.url();
    let gone_sub = c
        .node(0)
        .subscribe_ok(&token, REVISION_STATUS_UPDATED, &gone_url, SECRET)
        .await;
    let mut marker = 1_000_000;
    c.wait_until_every_node_routes(marketplace, CONTROLS + 1, &mut marker)
        .await;
    let owner = owner_index(&c, &gone_url).await;
    let (owner_name, other) = (&c.names[owner], 1 - owner);
    eprintln!(
        "the endpoint to die is owned by {owner_name}; pushing to {} after",
        c.names[other]
    );

    gone.set_status(410);
    let pushed = c
        .node(owner)
        .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, 1))
        .await;
    assert_eq!(pushed["deliveries"], CONTROLS as u64 + 1, "{pushed}");
    let answered = Instant::now();
    wait_until_unlisted(c.node(owner), &token, gone_sub).await;
    eprintln!(
        "the subscription left the list {:?} after the 410 was asked for",
        answered.elapsed()
    );

    let mut problems = push_expecting(&c, other, marketplace, 2..=11, CONTROLS).await;
    let expected: HashMap<String, HashSet<i64>> = paths
        .iter()
        .map(|p| (p.clone(), (1..=11).collect()))
        .collect();
    if let Err(e) = wait_for_expected(&control, &expected, SOON).await {
        problems.push(e);
    }
    let late: Vec<i64> = gone
        .delivered_context_ids()
        .into_iter()
        .filter(|i| (2..=11).contains(i))
        .collect();
    if !late.is_empty() {
        problems.push(format!(
            "events pushed after its subscription left the list reached the gone endpoint: {late:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "pushes to {} right after the auto-removal on {owner_name}:\n{}",
        c.names[other],
        problems.join("\n")
    );
}

#[actix_rt::test]
async fn an_event_type_registered_on_one_node_can_be_pushed_and_subscribed_to_on_another_at_once() {
    let c = nodes!(&["type-a", "type-b"]);
    let marketplace = 9600;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    const TYPES: usize = 6;
    let mut problems = Vec::new();
    let mut expected: HashMap<String, HashSet<i64>> = HashMap::new();
    for k in 0..TYPES {
        let (on, to) = if k % 2 == 0 { (0, 1) } else { (1, 0) };
        let (a, b) = (&c.names[on], &c.names[to]);
        let name = format!("custom_{suffix}_{k}");
        let (status, body) = c
            .node(on)
            .put_event_type(&name, json!({"description": format!("custom type {k}")}))
            .await;
        assert!(
            (200..300).contains(&status),
            "PUT event type {name} via {a} answered {status}: {body}"
        );
        // Pushed to the other node at once…
        let id = 100 + k as i64;
        let (status, body) = c.node(to).push_event(&event(&name, marketplace, id)).await;
        if status != 202 {
            problems.push(format!(
                "{name} registered on {a}, pushed to {b} at once: {status} {body} (want 202)"
            ));
        }
        // …and subscribed to there at once; then pushed back on the first.
        let path = format!("/t{k}");
        let (status, body) = c
            .node(to)
            .subscribe(&token, &name, &receiver.url_at(&path), SECRET)
            .await;
        if status != 201 {
            problems.push(format!(
                "{name} registered on {a}, subscribed to on {b} at once: {status} {body} (want 201)"
            ));
            continue;
        }
        let id = k as i64 + 1;
        let (status, body) = c.node(on).push_event(&event(&name, marketplace, id)).await;
        if status != 202 || body["deliveries"] != 1 {
            problems.push(format!(
                "{name} subscribed to on {b}, pushed to {a} at once: {status} {body} (want 202, 1 delivery)"
            ));
            continue;
        }
        expected.insert(path, HashSet::from([id]));
    }
    if let Err(e) = wait_for_expected(&receiver, &expected, SOON).await {
        problems.push(e);
    }
    assert!(
        problems.is_empty(),
        "event types registered on one node, used on the other at once:\n{}",
        problems.join("\n")
    );
}
