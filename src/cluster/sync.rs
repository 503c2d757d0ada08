//! The polling loop that keeps a node in step with the others: it applies
//! subscription changes (created, deleted, auto-removed) made anywhere to
//! this node's routing table, refreshes the event-type catalog, and pokes
//! endpoints that have recent pending work in case a notification was
//! missed.

use std::time::Duration;

use actix::Addr;
use chrono::NaiveDateTime;

use crate::catalog::Catalog;
use crate::router::{AddRoute, RemoveRoutes, Router, WorkArrived};
use crate::store::{self, Store};

/// How often subscription changes are read.
pub const ROUTES_EVERY: Duration = Duration::from_millis(500);
/// Changes are re-read over this window, to cover clock skew between nodes
/// (applying one twice is harmless).
const LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Every this many route polls, the catalog and the missed-work poll run.
const SLOW_EVERY: u32 = 4;
/// Pending work younger than this is re-announced by the fallback poll.
const RECENT_WORK_MS: i64 = 30_000;

pub async fn run(store: Store, router: Addr<Router>, catalog: Catalog, node: String) {
    let mut since: NaiveDateTime = store::now() - LOOKBACK;
    let mut tick = tokio::time::interval(ROUTES_EVERY);
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        n = n.wrapping_add(1);
        let from = since - LOOKBACK;
        match store
            .run(move |conn| store::subscriptions::changed_since(conn, from))
            .await
        {
            Ok(rows) => {
                let mut removed = Vec::new();
                for row in rows {
                    since = since.max(row.subscription.last_modified);
                    if row.subscription.active {
                        router.do_send(AddRoute(row));
                    } else {
                        removed.push(row.subscription.id);
                    }
                }
                if !removed.is_empty() {
                    router.do_send(RemoveRoutes(removed));
                }
            }
            Err(e) => log::warn!("could not read subscription changes: {e}"),
        }
        if !n.is_multiple_of(SLOW_EVERY) {
            continue;
        }
        match store.run(store::catalog::list).await {
            Ok(entries) => catalog.replace(entries),
            Err(e) => log::warn!("could not refresh the event-type catalog: {e}"),
        }
        let me = node.clone();
        match store
            .run(move |conn| store::leases::recent_work(conn, &me, RECENT_WORK_MS))
            .await
        {
            Ok(ids) if !ids.is_empty() => router.do_send(WorkArrived(ids)),
            Ok(_) => {}
            Err(e) => log::warn!("could not poll for pending work: {e}"),
        }
    }
}
