//! What an endpoint actor is told (by the Router, the API and shutdown),
//! what it reports upward to its owner (`Retired`, `EndpointDied`, through
//! the recipients in `Owner`), and `drain`, which stops a set of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{EndpointActor, EndpointPolicy, Job};
use crate::signing::Secrets;

/// New durable deliveries for this endpoint, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub Vec<Job>);

/// A dead letter put back in the queue by an operator.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replayed(pub Job);

/// A subscription now uses this endpoint (its secret signs verification calls).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddSubscription {
    pub id: i64,
    pub secret: Arc<Secrets>,
}

/// A subscription was removed: drop its queued deliveries.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetSubscription(pub i64);

/// These deliveries were cancelled in the database (an erasure): drop
/// them from memory and never start them, not even a retry already waiting.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Cancel(pub Vec<String>);

/// Deliveries held here may have been cancelled on another node: ask the
/// database which of them are no longer pending, and drop those (`Cancel`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recheck;

/// Stop starting requests (shutdown). Answers the number still in flight.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct BeginDrain;

/// Saves health and stops the actor now (its lease is gone or handed over).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopNow;

/// An operator changed the endpoint's policy: apply it at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetPolicy(pub EndpointPolicy);

/// Another node stored deliveries for this endpoint: read the queue again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Poke;

/// The number of requests in flight.
#[derive(Message)]
#[rtype(result = "u32")]
pub struct InFlight;

/// Start what may be sent (after a wait that held deliveries ended).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Resume;

/// Reported upward: the actor stopped because nothing uses its endpoint
/// any more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retired {
    pub endpoint_id: i64,
    pub actor: Addr<EndpointActor>,
}

/// Reported upward: the actor counted its endpoint dead and removed these
/// subscriptions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointDied {
    pub endpoint_id: i64,
    pub actor: Addr<EndpointActor>,
    pub subscription_ids: Vec<i64>,
}

/// Whom an endpoint actor reports to (the Router, which started it).
#[derive(Clone)]
pub struct Owner {
    pub retired: Recipient<Retired>,
    pub died: Recipient<EndpointDied>,
}

/// Stops `endpoints` from starting requests and waits until the ones in
/// flight are done, or the deadline passes (those are sent again later).
pub async fn drain(endpoints: &[Addr<EndpointActor>], deadline: Instant) {
    for addr in endpoints {
        let _ = addr.send(BeginDrain).await;
    }
    loop {
        let mut in_flight = 0;
        for addr in endpoints {
            in_flight += addr.send(InFlight).await.unwrap_or(0);
        }
        if in_flight == 0 {
            return;
        }
        if Instant::now() >= deadline {
            log::warn!(
                "{in_flight} deliveries still in flight at the deadline; they will be sent again"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
