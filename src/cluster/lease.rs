//! The lease manager actor: every third of `--lease-ttl` it heartbeats,
//! renews this node's leases, takes endpoints up to its fair share, and
//! hands surplus endpoints over (after their in-flight requests finish).
//! When it cannot renew in time (database unreachable) it stops every
//! endpoint actor of this node before the leases expire, so two nodes never
//! both deliver for one endpoint.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::router::{LeasesAcquired, LeasesLost, ReleaseEndpoints, Router};
use crate::store::Store;
use crate::store::leases;

pub struct LeaseManager {
    store: Store,
    node: Arc<str>,
    ttl: Duration,
    router: Addr<Router>,
    held: HashSet<i64>,
    /// This node may act on its leases until then.
    valid_until: Option<Instant>,
    busy: bool,
    releasing: bool,
}

impl LeaseManager {
    pub fn new(store: Store, node: Arc<str>, ttl: Duration, router: Addr<Router>) -> LeaseManager {
        LeaseManager {
            store,
            node,
            ttl,
            router,
            held: HashSet::new(),
            valid_until: None,
            busy: false,
            releasing: false,
        }
    }

    /// What a lease query on the blocking pool needs: the store, this
    /// node's id and the lease time in milliseconds.
    fn lease_params(&self) -> (Store, Arc<str>, i64) {
        (
            self.store.clone(),
            self.node.clone(),
            self.ttl.as_millis() as i64,
        )
    }

    fn tick(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(100))
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let started = Instant::now();
        let (store, node, ttl_ms) = self.lease_params();
        let work = async move {
            store
                .run(move |conn| leases::round(conn, &node, ttl_ms))
                .await
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            let round = match result {
                Ok(round) => round,
                Err(e) => {
                    log::warn!("node {}: lease round failed: {e}", act.node);
                    return;
                }
            };
            // The database set the expiry to (its now + ttl) after `started`.
            act.valid_until = Some(started + act.ttl.mul_f64(0.75));
            let renewed: HashSet<i64> = round.held.iter().copied().collect();
            let lost: Vec<i64> = act.held.difference(&renewed).copied().collect();
            if !lost.is_empty() {
                log::warn!("node {}: lost the leases of endpoints {lost:?}", act.node);
                act.router.do_send(LeasesLost(lost));
            }
            act.held = renewed;
            if !round.acquired.is_empty() {
                let ids: Vec<i64> = round.acquired.iter().map(|a| a.id).collect();
                log::info!(
                    "node {}: took endpoints {ids:?} (fair share {} of {} nodes)",
                    act.node,
                    round.fair_share,
                    round.live_nodes
                );
                act.held.extend(ids);
                act.router.do_send(LeasesAcquired(round.acquired));
            }
            if act.held.len() > round.fair_share && !act.releasing {
                act.hand_over(act.held.len() - round.fair_share, ctx);
            }
        }));
    }

    /// Gives `count` endpoints back so a new node can take them.
    fn hand_over(&mut self, count: usize, ctx: &mut Context<Self>) {
        let mut ids: Vec<i64> = self.held.iter().copied().collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(count);
        self.releasing = true;
        log::info!("node {}: handing over endpoints {ids:?}", self.node);
        let (router, store, node) = (self.router.clone(), self.store.clone(), self.node.clone());
        let deadline = Instant::now() + self.tick();
        let release_ids = ids.clone();
        let work = async move {
            let _ = router
                .send(ReleaseEndpoints {
                    ids: release_ids.clone(),
                    deadline,
                })
                .await;
            store
                .run(move |conn| leases::release(conn, &node, &release_ids))
                .await
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, _| {
            act.releasing = false;
            match result {
                Ok(_) => {
                    for id in &ids {
                        act.held.remove(id);
                    }
                }
                Err(e) => log::warn!("node {}: could not release leases: {e}", act.node),
            }
        }));
    }

    /// Stops every endpoint actor when the leases could not be renewed in
    /// time.
    fn fence(&mut self) {
        if let Some(until) = self.valid_until
            && until < Instant::now()
            && !self.held.is_empty()
        {
            log::error!(
                "node {}: could not renew its leases in time; stopping delivery for {} endpoints until the database answers",
                self.node,
                self.held.len()
            );
            let ids: Vec<i64> = self.held.drain().collect();
            self.router.do_send(LeasesLost(ids));
        }
    }
}

impl Actor for LeaseManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.round(ctx);
        ctx.run_interval(self.tick(), |act, ctx| act.round(ctx));
        ctx.run_interval(Duration::from_millis(100), |act, _| act.fence());
    }
}

/// Take these endpoints now if nobody holds them (new subscriptions).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Claim(pub Vec<i64>);

impl Handler<Claim> for LeaseManager {
    type Result = ();

    fn handle(&mut self, msg: Claim, ctx: &mut Self::Context) {
        let (store, node, ttl_ms) = self.lease_params();
        let work = async move {
            store
                .run(move |conn| leases::claim(conn, &node, ttl_ms, &msg.0))
                .await
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| match result {
            Ok(acquired) if !acquired.is_empty() => {
                act.held.extend(acquired.iter().map(|a| a.id));
                act.router.do_send(LeasesAcquired(acquired));
            }
            Ok(_) => {}
            Err(e) => log::warn!("node {}: could not claim new endpoints: {e}", act.node),
        }));
    }
}
