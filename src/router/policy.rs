//! Endpoint policies on the router's side: the stored form (`PolicyRow`)
//! and the actor's (`EndpointPolicy`) converted both ways, and the
//! router's handling of a change (made on this node, or announced by
//! another) and of an actor's start, which takes the stored policy.

use std::time::Duration;

use actix::prelude::*;

use super::Router;
use super::messages::{ApplyPolicy, PolicyChanged, PolicySet};
use crate::delivery::endpoint::{EndpointPolicy, SetPolicy};
use crate::metrics::{self, ErrorSite};
use crate::store::endpoints::{self, PolicyRow};

/// The actor's policy from its stored form.
pub fn from_row(row: PolicyRow) -> EndpointPolicy {
    EndpointPolicy {
        paused: row.operator_paused,
        max_in_flight: row.max_in_flight.and_then(|n| u32::try_from(n).ok()),
        max_per_second: row.max_per_second.and_then(|n| u32::try_from(n).ok()),
        timeout: row
            .timeout_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis),
    }
}

/// The stored form of a policy.
pub fn to_row(policy: EndpointPolicy) -> PolicyRow {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    PolicyRow {
        operator_paused: policy.paused,
        max_in_flight: policy.max_in_flight.map(int),
        max_per_second: policy.max_per_second.map(int),
        timeout_ms: policy
            .timeout
            .map(|t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)),
    }
}

impl Router {
    /// The policy an endpoint's actor starts with.
    pub(super) fn policy_of(&self, id: i64) -> EndpointPolicy {
        self.policies.get(&id).copied().unwrap_or_default()
    }

    /// Keeps an endpoint's policy for its next actor start and hands it
    /// to its running actor when it changed (a running actor always has
    /// the kept one: it started with it and was told of every change).
    pub(super) fn apply_policy(&mut self, id: i64, policy: EndpointPolicy) {
        let changed = self.policy_of(id) != policy;
        if policy == EndpointPolicy::default() {
            self.policies.remove(&id);
        } else {
            self.policies.insert(id, policy);
        }
        if changed && let Some(addr) = self.actors.get(&id) {
            addr.do_send(SetPolicy(policy));
        }
    }
}

impl Handler<ApplyPolicy> for Router {
    type Result = ();

    fn handle(&mut self, msg: ApplyPolicy, _ctx: &mut Self::Context) {
        self.policy_news += 1;
        self.apply_policy(msg.endpoint_id, msg.policy);
    }
}

impl Handler<PolicySet> for Router {
    type Result = ();

    /// A policy set on another node, announced with the policy itself.
    fn handle(&mut self, msg: PolicySet, _ctx: &mut Self::Context) {
        self.policy_news += 1;
        for (id, row) in msg.0 {
            self.apply_policy(id, from_row(row));
        }
    }
}

impl Handler<PolicyChanged> for Router {
    type Result = ();

    /// The fallback poll found recent changes of policies: the endpoints
    /// whose actors run here reload them.
    fn handle(&mut self, msg: PolicyChanged, ctx: &mut Self::Context) {
        let ids: Vec<i64> = msg
            .0
            .into_iter()
            .filter(|id| self.actors.contains_key(id))
            .collect();
        if ids.is_empty() {
            return;
        }
        let store = self.store.clone();
        let load = async move {
            store
                .run(move |conn| endpoints::policies_of(conn, &ids))
                .await
        };
        ctx.spawn(load.into_actor(self).map(|result, router, _| match result {
            Ok(rows) => {
                for (id, row) in rows {
                    router.apply_policy(id, from_row(row));
                }
            }
            Err(e) => {
                // The fallback poll tries again.
                log::warn!("could not reload endpoint policies: {e}");
                metrics::internal_error(ErrorSite::Router);
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_survives_its_stored_form() {
        let policy = EndpointPolicy {
            paused: true,
            max_in_flight: Some(1),
            max_per_second: Some(20),
            timeout: Some(Duration::from_millis(250)),
        };
        assert_eq!(from_row(to_row(policy)), policy);
        assert_eq!(to_row(EndpointPolicy::default()), PolicyRow::default());
    }

    #[test]
    fn an_unusable_stored_value_means_the_global_default() {
        let row = PolicyRow {
            max_in_flight: Some(-1),
            timeout_ms: Some(-5),
            ..PolicyRow::default()
        };
        assert_eq!(from_row(row), EndpointPolicy::default());
    }
}
