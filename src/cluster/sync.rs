//! The polling loop that keeps a node in step with the others: it brings
//! this node's routing table up to date with subscription changes made
//! anywhere (so its endpoint actors and leases follow them even while no
//! event arrives; events themselves are routed by every change answered
//! before they were stored, see `routing`), refreshes the event-type
//! catalog, and pokes endpoints that have recent pending work, and reloads
//! recently changed policies of endpoints it holds, in case a notification
//! was missed.

use std::time::Duration;

use actix::Recipient;

use super::{PolicyChanged, WorkArrived};
use crate::catalog::Catalog;
use crate::routing::RouteTable;
use crate::store::{self, Store};

/// How often the routing version is read.
pub const ROUTES_EVERY: Duration = Duration::from_millis(500);
/// Every this many route polls, the catalog and the missed-work poll run.
const SLOW_EVERY: u32 = 4;
/// Pending work younger than this is re-announced by the fallback poll.
const RECENT_WORK_MS: i64 = 30_000;

/// Who the loop reports to.
pub struct Reports {
    /// Work found pending.
    pub work: Recipient<WorkArrived>,
    /// Policies changed recently.
    pub policy: Recipient<PolicyChanged>,
}

/// Runs the loop, reporting what it finds to `to`.
pub async fn run(store: Store, routes: RouteTable, to: Reports, catalog: Catalog, node: String) {
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
            Ok(ids) if !ids.is_empty() => to.work.do_send(WorkArrived(ids)),
            Ok(_) => {}
            Err(e) => log::warn!("could not poll for pending work: {e}"),
        }
        recent_policies(&store, &node, &to.policy).await;
    }
}

/// Has the router reload the policies of endpoints held here that changed
/// recently (it hands an actor its policy only when it differs).
async fn recent_policies(store: &Store, node: &str, to: &Recipient<PolicyChanged>) {
    let me = node.to_string();
    let since = store::now() - chrono::Duration::milliseconds(RECENT_WORK_MS);
    match store
        .run(move |conn| store::endpoints::policies_changed_since(conn, &me, since))
        .await
    {
        Ok(ids) if !ids.is_empty() => to.do_send(PolicyChanged(ids)),
        Ok(_) => {}
        Err(e) => log::warn!("could not poll for policy changes: {e}"),
    }
}
