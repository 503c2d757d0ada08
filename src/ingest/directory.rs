//! The endpoint actors running on this node, as the group commit sees
//! them. The router keeps the directory (it starts, replaces and stops the
//! actors); the group commit hands each stored group's deliveries straight
//! to their actors through it (`hand_over`), instead of through the
//! router's mailbox: one thread wake-up less per group, which is most of
//! what a group costs at a trickle of events.
//!
//! A group goes through the router instead (`Committed`) when one of its
//! endpoints has no running actor here (the router starts it, or knows
//! that another node owns it), and so does every group after it until the
//! router has handled those: an endpoint's deliveries reach its actor in
//! the order they were stored either way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use foldhash::HashMap;

use super::group_commit::Committed;
use super::publisher::Waiting;
use crate::delivery::endpoint::{EndpointActor, Enqueue, Job};

#[derive(Default)]
struct Shared {
    actors: RwLock<HashMap<i64, Addr<EndpointActor>>>,
    /// Groups sent to the router and not yet handed out by it.
    via_router: AtomicUsize,
}

/// See the module documentation.
#[derive(Clone, Default)]
pub struct Directory(Arc<Shared>);

/// Which way a group's deliveries go.
#[derive(Debug, PartialEq, Eq)]
pub enum Way {
    /// Straight to the actors.
    Direct,
    /// Through the router.
    Router,
}

/// Direct only when the router has no group left to hand out (order) and
/// every endpoint of the group has a running actor here.
pub fn way(router_holds: usize, every_actor_runs: bool) -> Way {
    if router_holds == 0 && every_actor_runs {
        Way::Direct
    } else {
        Way::Router
    }
}

impl Directory {
    /// The router started (or replaced) the actor of `endpoint`.
    pub fn insert(&self, endpoint: i64, actor: Addr<EndpointActor>) {
        self.write().insert(endpoint, actor);
    }

    /// The actor of `endpoint` no longer runs here.
    pub fn remove(&self, endpoint: i64) {
        self.write().remove(&endpoint);
    }

    /// The router handed out a group sent to it (`Committed`).
    pub fn routed(&self) {
        let _ = self
            .0
            .via_router
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<i64, Addr<EndpointActor>>> {
        self.0.actors.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a stored group's deliveries (`events` events in all) to their
    /// actors, or to `router` (see the module documentation).
    pub fn hand_over(
        &self,
        events: usize,
        deliveries: Vec<(i64, Vec<Job>)>,
        router: &Recipient<Committed>,
        waiting: &Waiting,
    ) {
        let holds = self.0.via_router.load(Ordering::Acquire);
        if holds == 0 {
            let actors = self.0.actors.read().unwrap_or_else(|e| e.into_inner());
            let runs = deliveries
                .iter()
                .all(|(id, _)| actors.get(id).is_some_and(Addr::connected));
            if way(holds, runs) == Way::Direct {
                for (id, jobs) in deliveries {
                    if let Some(actor) = actors.get(&id) {
                        actor.do_send(Enqueue(jobs));
                    }
                }
                waiting.done(events);
                return;
            }
        }
        self.0.via_router.fetch_add(1, Ordering::AcqRel);
        router.do_send(Committed { events, deliveries });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_goes_straight_to_its_actors_only_when_all_run_and_the_router_holds_none() {
        assert_eq!(way(0, true), Way::Direct);
        assert_eq!(way(0, false), Way::Router);
        assert_eq!(way(1, true), Way::Router);
        assert_eq!(way(3, false), Way::Router);
    }

    #[test]
    fn a_routed_group_handed_out_is_counted_off_once() {
        let directory = Directory::default();
        directory.0.via_router.store(1, Ordering::Release);
        directory.routed();
        directory.routed();
        assert_eq!(directory.0.via_router.load(Ordering::Acquire), 0);
    }
}
