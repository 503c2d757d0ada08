//! The polling loop that keeps a node in step with the others: it brings
//! this node's routing table up to date with subscription changes made
//! anywhere (so its endpoint actors and leases follow them even while no
//! event arrives; events themselves are routed by every change answered
//! before they were stored, see `routing`), refreshes the event-type
//! catalog, and pokes endpoints that have recent pending work in case a
//! notification was missed.

use std::time::Duration;

use actix::Recipient;

use super::WorkArrived;
use crate::catalog::Catalog;
use crate::routing::RouteTable;
use crate::store::{self, Store};

/// How often the routing version is read.
pub const ROUTES_EVERY: Duration = Duration::from_millis(500);
/// Every this many route polls, the catalog and the missed-work poll run.
const SLOW_EVERY: u32 = 4;
/// Pending work younger than this is re-announced by the fallback poll.
const RECENT_WORK_MS: i64 = 30_000;

/// Runs the loop; work found pending is reported to `work`.
pub async fn run(
    store: Store,
    routes: RouteTable,
    work: Recipient<WorkArrived>,
    catalog: Catalog,
    node: String,
) {
    let mut tick = tokio::time::interval(ROUTES_EVERY);
    let mut n: u32 = 0;
    loop {
        tick.tick().await;
        n = n.wrapping_add(1);
        if let Err(e) = routes.catch_up(&store).await {
            log::warn!("could not read subscription changes: {e}");
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
            Ok(ids) if !ids.is_empty() => work.do_send(WorkArrived(ids)),
            Ok(_) => {}
            Err(e) => log::warn!("could not poll for pending work: {e}"),
        }
    }
}
