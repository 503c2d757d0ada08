//! The lease manager actor: every third of `--lease-ttl` it heartbeats,
//! renews this node's leases, takes endpoints up to its fair share, and
//! hands surplus endpoints over (after their in-flight requests finish).
//! When it cannot renew in time (database unreachable) it stops every
//! endpoint actor of this node before the leases expire, so two nodes never
//! both deliver for one endpoint; once the database answers again, the
//! leases it still holds get their actors back.
//!
//! Hand-over without waiting for a timer: a node that joins, releases
//! endpoints or leaves says so on `hookrelay_leases`, and every node runs a
//! round at once (`LeasesMoved`). A node that died says nothing: each round
//! learns when the earliest lease of another node expires, and a round runs
//! right then, so the dead node's endpoints move within the lease TTL.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::store::Store;
use crate::store::leases::{self, Acquired};

/// This node now holds leases on these endpoints: start their actors.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesAcquired(pub Vec<Acquired>);

/// This node lost these leases (expired or could not be renewed): stop
/// their actors at once. Another node may own them already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesLost(pub Vec<i64>);

/// Hand these endpoints over: stop their actors once in-flight requests are
/// done (or `deadline`), write their outcomes, then answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseEndpoints {
    pub ids: Vec<i64>,
    pub deadline: Instant,
}

/// Where the lease manager reports what happened to this node's leases:
/// whoever runs the endpoint actors (the router).
pub struct LeaseHolder {
    pub acquired: Recipient<LeasesAcquired>,
    pub lost: Recipient<LeasesLost>,
    pub release: Recipient<ReleaseEndpoints>,
}

pub struct LeaseManager {
    store: Store,
    node: Arc<str>,
    ttl: Duration,
    holder: LeaseHolder,
    held: HashSet<i64>,
    /// This node may act on its leases until then.
    valid_until: Option<Instant>,
    busy: bool,
    /// A round was asked for while one ran: run another after it.
    again: bool,
    releasing: bool,
    /// This node has told the others that it joined.
    announced: bool,
    /// The extra round at the next expiry of another node's lease.
    at_expiry: Option<SpawnHandle>,
    /// Counts the times this node gave leases up (handed over, found lost,
    /// fenced). A claim or resume read before one of those may be stale by
    /// the time it is answered: it is then not acted on, and a round looks
    /// again.
    gave_up: u64,
}

/// Leases were freed or the fair shares changed: run a round now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesMoved;

/// Slack after another node's lease expires before the round that takes it.
const EXPIRY_SLACK: Duration = Duration::from_millis(25);

impl LeaseManager {
    pub fn new(store: Store, node: Arc<str>, ttl: Duration, holder: LeaseHolder) -> LeaseManager {
        LeaseManager {
            store,
            node,
            ttl,
            holder,
            held: HashSet::new(),
            valid_until: None,
            busy: false,
            again: false,
            releasing: false,
            announced: false,
            at_expiry: None,
            gave_up: 0,
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
            self.again = true;
            return;
        }
        self.busy = true;
        let started = Instant::now();
        // Only these can be found lost by this round: a lease claimed while
        // it runs may commit after its renewal read.
        let held_before = self.held.clone();
        let (store, node, ttl_ms) = self.lease_params();
        let work = async move {
            store
                .run(move |conn| leases::round(conn, &node, ttl_ms))
                .await
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            if std::mem::take(&mut act.again) {
                ctx.notify(LeasesMoved);
            }
            let round = match result {
                Ok(round) => round,
                Err(e) => {
                    log::warn!("node {}: lease round failed: {e}", act.node);
                    return;
                }
            };
            // The database set the expiry to (its now + ttl) after `started`.
            act.valid_until = Some(started + act.ttl.mul_f64(0.75));
            act.announce(ctx);
            act.round_at_next_expiry(round.next_foreign_expiry_ms, ctx);
            let renewed: HashSet<i64> = round.held.iter().copied().collect();
            let lost: Vec<i64> = held_before
                .iter()
                .filter(|id| act.held.contains(id) && !renewed.contains(id))
                .copied()
                .collect();
            if !lost.is_empty() {
                act.gave_up += 1;
                log::warn!("node {}: lost the leases of endpoints {lost:?}", act.node);
                for id in &lost {
                    act.held.remove(id);
                }
                act.holder.lost.do_send(LeasesLost(lost));
            }
            let regained: Vec<i64> = renewed.difference(&act.held).copied().collect();
            if !regained.is_empty() {
                act.restart(regained.clone(), ctx);
            }
            act.held.extend(regained);
            // What counts toward this node's share: what needs an owner.
            let mut mine = round.needed.clone();
            mine.extend(round.acquired.iter().map(|a| a.id));
            if !round.acquired.is_empty() {
                let ids: Vec<i64> = round.acquired.iter().map(|a| a.id).collect();
                log::info!(
                    "node {}: took endpoints {ids:?} (fair share {} of {} nodes)",
                    act.node,
                    round.fair_share,
                    round.live_nodes
                );
                act.held.extend(ids);
                act.holder.acquired.do_send(LeasesAcquired(round.acquired));
            }
            if mine.len() > round.fair_share && !act.releasing {
                let surplus = mine.len() - round.fair_share;
                act.hand_over(mine, surplus, ctx);
            }
        }));
    }

    /// Tells the other nodes once that this node is there, so that they
    /// hand over its share now rather than at their next round.
    fn announce(&mut self, ctx: &mut Context<Self>) {
        if self.announced {
            return;
        }
        self.announced = true;
        let (store, node) = (self.store.clone(), self.node.clone());
        let work = async move { store.run(move |conn| leases::announce(conn, &node)).await };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            if let Err(e) = result {
                log::warn!("node {}: could not announce itself: {e}", act.node);
                act.announced = false;
            }
        }));
    }

    /// Schedules a round just after the earliest lease of another node
    /// expires, when that comes before the next regular round: a node that
    /// died stops renewing, and its endpoints move then.
    fn round_at_next_expiry(&mut self, ms: Option<i64>, ctx: &mut Context<Self>) {
        let Some(ms) = ms.filter(|ms| *ms >= 0) else {
            return;
        };
        let wait = Duration::from_millis(ms as u64) + EXPIRY_SLACK;
        if wait >= self.tick() {
            return;
        }
        if let Some(handle) = self.at_expiry.take() {
            ctx.cancel_future(handle);
        }
        self.at_expiry = Some(ctx.run_later(wait, |act, ctx| {
            act.at_expiry = None;
            act.round(ctx);
        }));
    }

    /// Starts the actors of leases this node still holds but had stopped
    /// (its leases could not be renewed for a while, and nobody took them).
    fn restart(&mut self, ids: Vec<i64>, ctx: &mut Context<Self>) {
        log::info!(
            "node {}: resuming {} endpoints it holds without running actors (after a time without the database, or a claim answered late)",
            self.node,
            ids.len()
        );
        let (store, node, asked) = (self.store.clone(), self.node.clone(), ids.clone());
        let work = async move {
            store
                .run(move |conn| leases::describe(conn, &node, &asked))
                .await
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(acquired) => act.holder.acquired.do_send(LeasesAcquired(acquired)),
                    Err(e) => {
                        // Forget them: the next round finds them again.
                        log::warn!("node {}: could not resume its endpoints: {e}", act.node);
                        for id in &ids {
                            act.held.remove(id);
                        }
                    }
                }),
        );
    }

    /// Gives `count` of `candidates` back so another node can take them.
    fn hand_over(&mut self, mut ids: Vec<i64>, count: usize, ctx: &mut Context<Self>) {
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.dedup();
        ids.truncate(count);
        self.releasing = true;
        self.gave_up += 1;
        log::info!("node {}: handing over endpoints {ids:?}", self.node);
        let (release, store, node) = (
            self.holder.release.clone(),
            self.store.clone(),
            self.node.clone(),
        );
        let deadline = Instant::now() + self.tick();
        let release_ids = ids.clone();
        let work = async move {
            let _ = release
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
            self.gave_up += 1;
            let ids: Vec<i64> = self.held.drain().collect();
            self.holder.lost.do_send(LeasesLost(ids));
        }
    }
}

impl Handler<LeasesMoved> for LeaseManager {
    type Result = ();

    fn handle(&mut self, _: LeasesMoved, ctx: &mut Self::Context) {
        self.round(ctx);
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
        let since = self.gave_up;
        let work = async move {
            store
                .run(move |conn| leases::claim(conn, &node, ttl_ms, &msg.0))
                .await
        };
        ctx.spawn(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    // Taken before this node gave leases up: perhaps these; a round
                    // finds out what it holds (and resumes those).
                    Ok(acquired) if !acquired.is_empty() && act.gave_up != since => {
                        ctx.notify(LeasesMoved);
                    }
                    Ok(acquired) if !acquired.is_empty() => {
                        act.held.extend(acquired.iter().map(|a| a.id));
                        act.holder.acquired.do_send(LeasesAcquired(acquired));
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("node {}: could not claim new endpoints: {e}", act.node),
                }),
        );
    }
}
