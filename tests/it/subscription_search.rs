//! The operators' subscription search (`GET /internal/v1/subscriptions`):
//! filters by marketplace, user, endpoint and state, removed ones with when
//! and why, paged with the shared cursor; bad filters are a JSON 400.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "a-subscription-secret-7f3a";

/// The subscription ids of a search's results.
fn ids(found: &[Value]) -> BTreeSet<i64> {
    found
        .iter()
        .filter_map(|s| s["subscriptionId"].as_i64())
        .collect()
}

/// A marketplace with two users: user 1 has two subscriptions (one at each
/// receiver), user 2 one, and user 1's second one was deleted.
struct Subscribed {
    app: TestApp,
    marketplace: i64,
    a: Receiver,
    kept: i64,
    deleted: i64,
    other_user: i64,
}

impl Subscribed {
    async fn new() -> Subscribed {
        let (a, b) = (Receiver::start().await, Receiver::start().await);
        let app = TestApp::spawn().await;
        let marketplace = unique_i64();
        let (t1, t2) = (
            app.token(marketplace, 1).await,
            app.token(marketplace, 2).await,
        );
        let kept = app
            .subscribe_ok(&t1, REVISION_STATUS_UPDATED, &a.url(), SECRET)
            .await;
        let deleted = app
            .subscribe_ok(&t1, QTI_EXPORT_READY, &b.url(), SECRET)
            .await;
        let other_user = app
            .subscribe_ok(&t2, REVISION_STATUS_UPDATED, &a.url(), SECRET)
            .await;
        let (status, body) = app.delete_subscription(&t1, deleted).await;
        assert_eq!(status, 204, "{body}");
        Subscribed {
            app,
            marketplace,
            a,
            kept,
            deleted,
            other_user,
        }
    }

    fn by_marketplace(&self) -> Vec<(&'static str, String)> {
        vec![("marketplaceId", self.marketplace.to_string())]
    }
}

#[actix_rt::test]
async fn a_search_by_marketplace_finds_active_and_removed_subscriptions_of_every_user() {
    let s = Subscribed::new().await;
    let found = s.app.search_all_subscriptions(&s.by_marketplace()).await;
    assert_eq!(
        ids(&found),
        BTreeSet::from([s.kept, s.deleted, s.other_user])
    );
    for sub in &found {
        assert!(sub.get("secret").is_none(), "a secret is shown: {sub}");
        assert_eq!(sub["marketplaceId"], s.marketplace, "{sub}");
    }
}

#[actix_rt::test]
async fn a_removed_subscription_says_when_and_why_and_an_active_one_does_not() {
    let s = Subscribed::new().await;
    let mut query = s.by_marketplace();
    query.push(("state", "removed".into()));
    let removed = s.app.search_all_subscriptions(&query).await;
    assert_eq!(ids(&removed), BTreeSet::from([s.deleted]));
    assert_eq!(removed[0]["state"], "removed");
    assert!(removed[0]["removedAt"].is_string(), "{}", removed[0]);
    assert_eq!(removed[0]["removedReason"], "deleted by its owner");

    let mut query = s.by_marketplace();
    query.push(("state", "active".into()));
    let active = s.app.search_all_subscriptions(&query).await;
    assert_eq!(ids(&active), BTreeSet::from([s.kept, s.other_user]));
    for sub in &active {
        assert_eq!(sub["state"], "active", "{sub}");
        assert!(sub.get("removedAt").is_none(), "{sub}");
        assert!(sub.get("removedReason").is_none(), "{sub}");
    }
}

#[actix_rt::test]
async fn a_search_by_user_and_endpoint_finds_only_those() {
    let s = Subscribed::new().await;
    let mut query = s.by_marketplace();
    query.push(("userId", "2".into()));
    let found = s.app.search_all_subscriptions(&query).await;
    assert_eq!(ids(&found), BTreeSet::from([s.other_user]));

    let mut by_url = s.by_marketplace();
    by_url.push(("endpoint", s.a.url()));
    let found = s.app.search_all_subscriptions(&by_url).await;
    assert_eq!(ids(&found), BTreeSet::from([s.kept, s.other_user]));

    let endpoint_id = found[0]["endpointId"].to_string();
    let mut by_id = s.by_marketplace();
    by_id.push(("endpoint", endpoint_id));
    let found = s.app.search_all_subscriptions(&by_id).await;
    assert_eq!(ids(&found), BTreeSet::from([s.kept, s.other_user]));
}

#[actix_rt::test]
async fn a_search_is_paged_with_the_shared_cursor_without_repeating_one() {
    let s = Subscribed::new().await;
    let mut query = s.by_marketplace();
    query.push(("limit", "1".into()));
    let (status, first) = s.app.search_subscriptions(&query).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["subscriptions"].as_array().map(Vec::len), Some(1));
    let cursor = first["nextCursor"].as_str().unwrap_or_default().to_string();
    assert!(
        !cursor.is_empty() && cursor.parse::<i64>().is_err(),
        "the cursor is opaque, not an id: {first}"
    );
    let all = s.app.search_all_subscriptions(&query).await;
    assert_eq!(all.len(), 3, "each once: {all:?}");
    assert_eq!(ids(&all).len(), 3);
}

#[actix_rt::test]
async fn bad_search_filters_are_a_json_400() {
    let s = Subscribed::new().await;
    for bad in [
        ("state", "gone"),
        ("marketplaceId", "x"),
        ("userId", "1.5"),
        ("endpoint", ""),
        ("limit", "0"),
        ("limit", "1001"),
        ("cursor", "abc"),
        ("cursor", "42"),
        ("other", "1"),
    ] {
        let answer = s
            .app
            .search_subscriptions(&[(bad.0, bad.1.to_string())])
            .await;
        assert_json_error(&answer, 400, &format!("{bad:?}"));
    }
}
