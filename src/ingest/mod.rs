//! The ingest path: an event pushed on the internal listener is routed
//! against the node's routing table (`publisher`), queued, stored with
//! others in one transaction and answered once durable (`group_commit`);
//! the stored deliveries then go up to the router (`Committed`). This
//! module holds the types the steps share: what is published, its
//! answer, and the ticket that decides whether a queued publish is stored.

pub mod directory;
pub mod group_commit;
pub mod publisher;
mod settle;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::event::Event;

/// An event to publish, validated.
pub struct Incoming {
    pub event: Event,
    /// `Idempotency-Key` header, or else the event's `eventId`.
    pub idempotency_key: Option<String>,
}

/// The result of publishing one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_id: String,
    pub deliveries: usize,
    /// True when the idempotency key was seen before: nothing new was stored.
    pub repeated: bool,
    /// True when the idempotency key was seen before with another event:
    /// nothing was stored (`event_id` is the earlier event's).
    pub conflicting: bool,
}

/// Why a publish failed; the publisher should retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("hookrelay is overloaded: {0} events are waiting to be stored; retry shortly")]
    Overloaded(usize),
    /// The database's trouble (unreachable, disk full): retry later.
    #[error("the events could not be stored: {0}")]
    Storage(String),
    /// Refused for another reason (ours, and logged).
    #[error("the events could not be stored: {0}")]
    Failed(String),
}

/// The outcome of one publish, once its events are stored (or refused).
pub type Outcome = Result<Vec<Published>, PublishError>;

/// Where the outcome of one publish is sent.
pub type PublishReply = oneshot::Sender<Outcome>;

/// Store and route events; the answer comes on `reply` after the commit.
/// Sent to whoever routes publishes when the handlers cannot (the router,
/// in a cluster).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub events: Vec<Incoming>,
    pub ticket: Ticket,
    pub reply: PublishReply,
}

/// Decides, once, whether a queued publish is stored: the writer takes it
/// into a group, or its publisher gives up waiting first (and then tells
/// its client that nothing was stored). Whoever comes second loses.
#[derive(Clone, Default)]
pub struct Ticket(Arc<AtomicU8>);

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl Ticket {
    fn decide(&self, to: u8) -> bool {
        self.0
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The writer takes the publish; `false` when it was given up on.
    pub fn take(&self) -> bool {
        self.decide(TAKEN)
    }

    /// The publisher gives up waiting; `false` when the writer has taken it
    /// already (its outcome will come).
    pub fn abandon(&self) -> bool {
        self.decide(ABANDONED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_taken_by_the_writer_can_no_longer_be_abandoned() {
        let ticket = Ticket::default();
        assert!(ticket.take());
        assert!(!ticket.abandon());
    }

    #[test]
    fn a_ticket_abandoned_by_its_publisher_is_not_taken() {
        let ticket = Ticket::default();
        assert!(ticket.clone().abandon());
        assert!(!ticket.take());
    }
}
