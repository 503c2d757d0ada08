//! How the router answers each message of its inbox (`messages`).

use actix::prelude::*;

use super::Router;
use std::collections::BTreeMap;

use super::messages::{
    CancelDeliveries, Committed, DeliveriesCancelled, EndpointAddr, EndpointDied, Endpoints,
    LeasesAcquired, LeasesLost, NoticesQueued, Publish, ReleaseEndpoints, Replay, Retired,
    RoutesChanged, StartMore, WorkArrived,
};
use crate::delivery::endpoint::{self, EndpointActor, Enqueue, Job};
use crate::delivery::recorder::Flush;
use crate::metrics::{self, ErrorSite};
use crate::store::events::PreparedEvent;
use crate::store::leases;

impl Handler<StartMore> for Router {
    type Result = ();

    fn handle(&mut self, _: StartMore, ctx: &mut Self::Context) {
        if !self.start_chunk() {
            ctx.notify(StartMore);
        }
    }
}

impl Handler<Publish> for Router {
    type Result = ();

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) {
        let actors = &self.actors;
        let owns_all = self.ownership.owns_all();
        self.ingest
            .submit(msg.events, msg.ticket, msg.reply, |events| {
                remote_endpoints(events, |id| owns_all || actors.contains_key(&id))
            });
    }
}

/// The endpoints of `events`' deliveries whose actors do not run here
/// (other nodes own them: they are told of the new work), once each.
fn remote_endpoints(events: &[PreparedEvent], runs_here: impl Fn(i64) -> bool) -> Vec<i64> {
    let mut remote: Vec<i64> = events
        .iter()
        .flat_map(|e| &e.deliveries)
        .map(|d| d.endpoint_id)
        .filter(|id| !runs_here(*id))
        .collect();
    remote.sort_unstable();
    remote.dedup();
    remote
}

impl Handler<Committed> for Router {
    type Result = ();

    fn handle(&mut self, msg: Committed, _ctx: &mut Self::Context) {
        self.ingest.waiting.done(msg.events);
        for (endpoint_id, jobs) in msg.deliveries {
            // Normally running; if this node lost the endpoint meanwhile, its
            // new owner reads these deliveries from the database.
            if let Some(addr) = self.actor(endpoint_id) {
                addr.do_send(Enqueue(jobs));
            }
        }
        // Only now may later groups go straight to the actors (after these).
        self.ingest.actors.routed();
    }
}

impl Handler<RoutesChanged> for Router {
    type Result = ();

    fn handle(&mut self, msg: RoutesChanged, _ctx: &mut Self::Context) {
        for row in msg.0 {
            if row.subscription.active {
                self.add_route(row);
            } else {
                self.remove_route(row.subscription.id);
            }
        }
    }
}

impl Handler<Replay> for Router {
    type Result = ();

    fn handle(&mut self, msg: Replay, ctx: &mut Self::Context) {
        self.hand_back(msg.endpoint_id, &msg.endpoint_url, msg.job, ctx);
    }
}

impl Handler<NoticesQueued> for Router {
    type Result = ();

    fn handle(&mut self, msg: NoticesQueued, ctx: &mut Self::Context) {
        for (endpoint_id, url, job) in msg.0 {
            self.hand_back(endpoint_id, &url, job, ctx);
        }
    }
}

impl Router {
    /// Gives a delivery that is pending in the database (a replayed dead
    /// letter, a notice for the operator webhook) to its endpoint's actor,
    /// or tells the node that owns the endpoint to read its queue.
    fn hand_back(&mut self, endpoint_id: i64, url: &str, job: Job, ctx: &mut Context<Self>) {
        if !self.learn_endpoint(endpoint_id, url) {
            return;
        }
        match self.actor(endpoint_id) {
            Some(addr) => addr.do_send(endpoint::Replayed(job)),
            None => {
                // Another node owns it: tell it to read its queue.
                let store = self.store.clone();
                let ids = vec![endpoint_id];
                let notify = async move { store.run(move |conn| leases::notify(conn, &ids)).await };
                ctx.spawn(notify.into_actor(self).map(|result, _, _| {
                    if let Err(e) = result {
                        log::error!("could not notify the owner of a pending delivery: {e}");
                        metrics::internal_error(ErrorSite::Router);
                    }
                }));
            }
        }
    }
}

impl Handler<Endpoints> for Router {
    type Result = MessageResult<Endpoints>;

    fn handle(&mut self, _: Endpoints, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.actors.values().cloned().collect())
    }
}

impl Handler<EndpointAddr> for Router {
    type Result = Option<Addr<EndpointActor>>;

    fn handle(&mut self, msg: EndpointAddr, _ctx: &mut Self::Context) -> Self::Result {
        self.actors.get(&msg.0).cloned()
    }
}

impl Handler<EndpointDied> for Router {
    type Result = ();

    fn handle(&mut self, msg: EndpointDied, ctx: &mut Self::Context) {
        for id in msg.subscription_ids {
            self.remove_route(id);
        }
        self.actor_stopped(msg.endpoint_id, &msg.actor);
        // The removal is a routing change in the database already (every
        // group stored from now on sees it); this updates the table now.
        self.catch_up(ctx);
    }
}

impl Handler<Retired> for Router {
    type Result = ();

    fn handle(&mut self, msg: Retired, _ctx: &mut Self::Context) {
        self.actor_stopped(msg.endpoint_id, &msg.actor);
    }
}

impl Handler<LeasesAcquired> for Router {
    type Result = ();

    fn handle(&mut self, msg: LeasesAcquired, _ctx: &mut Self::Context) {
        for acquired in msg.0 {
            if self.learn_endpoint(acquired.id, &acquired.url) {
                let health = acquired.health();
                self.apply_policy(acquired.id, super::policy::from_row(acquired.policy()));
                self.start_actor(acquired.id, true, Some(health));
            }
        }
    }
}

impl Handler<LeasesLost> for Router {
    type Result = ();

    fn handle(&mut self, msg: LeasesLost, _ctx: &mut Self::Context) {
        for id in msg.0 {
            self.ingest.actors.remove(id);
            if let Some(addr) = self.actors.remove(&id) {
                addr.do_send(endpoint::StopNow);
            }
        }
    }
}

impl Handler<ReleaseEndpoints> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: ReleaseEndpoints, _ctx: &mut Self::Context) -> Self::Result {
        let addrs: Vec<_> = msg
            .ids
            .iter()
            .filter_map(|id| {
                self.ingest.actors.remove(*id);
                self.actors.remove(id)
            })
            .collect();
        let recorder = self.recorder.clone();
        Box::pin(async move {
            endpoint::drain(&addrs, msg.deadline).await;
            for addr in &addrs {
                let _ = addr.send(endpoint::StopNow).await;
            }
            let _ = recorder.send(Flush).await;
        })
    }
}

impl Handler<WorkArrived> for Router {
    type Result = ();

    fn handle(&mut self, msg: WorkArrived, _ctx: &mut Self::Context) {
        for id in msg.0 {
            if let Some(addr) = self.actors.get(&id) {
                addr.do_send(endpoint::Poke);
            }
        }
    }
}

impl Handler<CancelDeliveries> for Router {
    type Result = ();

    fn handle(&mut self, msg: CancelDeliveries, ctx: &mut Self::Context) {
        let mut elsewhere = Vec::new();
        for (endpoint_id, ids) in by_endpoint(msg.0) {
            match self.actors.get(&endpoint_id) {
                Some(addr) if addr.connected() => addr.do_send(endpoint::Cancel(ids)),
                // Not running here: owning every endpoint, nothing holds
                // them (a later start reads only pending rows); in a
                // cluster its owner, if any, is told to re-check.
                _ if self.ownership.owns_all() => {}
                _ => elsewhere.push(endpoint_id),
            }
        }
        if elsewhere.is_empty() {
            return;
        }
        let store = self.store.clone();
        let notify = async move {
            store
                .run(move |conn| leases::notify_cancelled(conn, &elsewhere))
                .await
        };
        ctx.spawn(notify.into_actor(self).map(|result, _, _| {
            if let Err(e) = result {
                log::error!("could not tell other nodes of cancelled deliveries: {e}");
                metrics::internal_error(ErrorSite::Router);
            }
        }));
    }
}

/// Cancelled deliveries (endpoint id, delivery id) grouped by endpoint.
fn by_endpoint(cancelled: Vec<(i64, String)>) -> BTreeMap<i64, Vec<String>> {
    let mut grouped: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (endpoint_id, id) in cancelled {
        grouped.entry(endpoint_id).or_default().push(id);
    }
    grouped
}

impl Handler<DeliveriesCancelled> for Router {
    type Result = ();

    fn handle(&mut self, msg: DeliveriesCancelled, _ctx: &mut Self::Context) {
        for id in msg.0 {
            if let Some(addr) = self.actors.get(&id) {
                addr.do_send(endpoint::Recheck);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db_time::DbTime;
    use crate::store::models::{NewDelivery, NewEvent};

    fn event(endpoints: &[i64]) -> PreparedEvent {
        let now = DbTime::new(crate::store::now());
        let deliveries = endpoints
            .iter()
            .map(|endpoint| {
                NewDelivery::pending(
                    format!("d{endpoint}"),
                    "e".into(),
                    *endpoint,
                    *endpoint,
                    &now,
                )
            })
            .collect();
        PreparedEvent::fixed(NewEvent::example("e", now), deliveries)
    }

    #[test]
    fn only_endpoints_whose_actors_run_elsewhere_are_notified_once_each() {
        let events = [event(&[3, 1, 2]), event(&[3, 4])];
        assert_eq!(remote_endpoints(&events, |id| id == 2), vec![1, 3, 4]);
    }

    #[test]
    fn cancelled_deliveries_are_grouped_by_their_endpoint() {
        let grouped = by_endpoint(vec![
            (2, "b".to_string()),
            (1, "a".to_string()),
            (2, "c".to_string()),
        ]);
        assert_eq!(grouped[&1], vec!["a".to_string()]);
        assert_eq!(grouped[&2], vec!["b".to_string(), "c".to_string()]);
        assert_eq!(grouped.len(), 2);
    }

    #[test]
    fn a_node_that_runs_every_endpoint_notifies_nobody() {
        let events = [event(&[1, 2])];
        assert!(remote_endpoints(&events, |_| true).is_empty());
    }
}
