//! The router's inbox: every message it handles, each a small documented
//! struct. Those defined here are sent by the HTTP handlers and the router
//! itself; those the layers below (endpoint actors, ingest, routing,
//! cluster) send upward are defined beside their senders and re-exported
//! here, so that the whole inbox reads in one place.

use actix::prelude::*;

use crate::delivery::endpoint::{EndpointActor, Job};

pub use crate::delivery::endpoint::{EndpointDied, Retired};
pub use crate::delivery::recorder::NoticesQueued;

pub use crate::cluster::lease::{LeasesAcquired, LeasesLost, ReleaseEndpoints};
pub use crate::cluster::{DeliveriesCancelled, PolicyChanged, PolicySet, WorkArrived};
pub use crate::ingest::Publish;
pub use crate::ingest::group_commit::Committed;
pub use crate::routing::RoutesChanged;

/// A dead letter was put back in its queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay {
    pub endpoint_id: i64,
    pub endpoint_url: String,
    pub job: Job,
}

/// Deliveries were cancelled in the database (an erasure), each given as
/// (endpoint id, delivery id): the actors holding them drop them, here or,
/// in a cluster, on the node that owns their endpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelDeliveries(pub Vec<(i64, String)>);

/// An endpoint's policy was changed (and stored) on this node: its actor
/// applies it at once, and later starts of it begin with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyPolicy {
    pub endpoint_id: i64,
    pub policy: crate::delivery::endpoint::EndpointPolicy,
}

/// The actor of one endpoint, if it runs on this node.
#[derive(Message)]
#[rtype(result = "Option<Addr<EndpointActor>>")]
pub struct EndpointAddr(pub i64);

/// The addresses of every endpoint actor.
#[derive(Message)]
#[rtype(result = "Vec<Addr<EndpointActor>>")]
pub struct Endpoints;

/// Start the next chunk of endpoint actors (the router to itself, while
/// loading).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct StartMore;
