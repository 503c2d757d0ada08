//! Several `hookrelay serve` nodes on one PostgreSQL database. PostgreSQL
//! holds all shared state; nodes coordinate only through it:
//! - `lease`: each endpoint is owned by one node at a time under a lease that
//!   the node renews; nodes take unowned or expired endpoints up to a fair
//!   share and hand surplus ones over when a node joins;
//! - `listener`: LISTEN for work stored by other nodes for endpoints this
//!   node owns (NOTIFY is sent inside the storing transaction), and for
//!   changed endpoint policies;
//! - `sync`: a polling loop that applies subscription and catalog changes
//!   made on other nodes, and catches work and policy changes whose
//!   notification was missed.
//!
//! A SQLite database has one node, which owns every endpoint; none of this
//! runs then. Which of the two a node is, is named once: `Ownership`.
//!
//! These parts report upward through the recipients they are handed
//! (`WorkArrived`, and the lease manager's messages); they never import the
//! router.

pub mod lease;
pub mod listener;
pub mod sync;

use actix::prelude::*;

use lease::Claim;

/// Which endpoints this node delivers for, chosen once at start-up.
#[derive(Clone)]
pub enum Ownership {
    /// Every endpoint: the single node of a SQLite database.
    All,
    /// The endpoints it holds leases on (a PostgreSQL cluster); new
    /// endpoints are claimed here.
    Leased(Recipient<Claim>),
}

impl Ownership {
    /// True when this node owns every endpoint.
    pub fn owns_all(&self) -> bool {
        matches!(self, Ownership::All)
    }
}

/// Other nodes stored deliveries for these endpoints (told by NOTIFY, or
/// found by the fallback poll): their actors here should look.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkArrived(pub Vec<i64>);

/// Deliveries of these endpoints were cancelled on another node (an
/// erasure; told by NOTIFY): their actors here re-check what they hold.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DeliveriesCancelled(pub Vec<i64>);

/// The policies of these endpoints changed on another node (found by the
/// fallback poll): their actors here reload them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PolicyChanged(pub Vec<i64>);

/// These endpoints were given these policies on another node (told by
/// NOTIFY): their actors here apply them at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PolicySet(pub Vec<(i64, crate::store::endpoints::PolicyRow)>);

/// A node id that is unique enough: host name, process id, random suffix.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}
