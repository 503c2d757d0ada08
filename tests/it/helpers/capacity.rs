//! A receiver's capacity-limited mode ([`Receiver::serve_at_most`]): it
//! serves at most `limit` deliveries at once, each taking a short service
//! time, and answers 429 (without `Retry-After`) at once to the rest, like
//! a small server behind a rate-limiting proxy. It counts how many requests
//! were open at once and the 429s it gave.

use std::sync::Mutex;
use std::time::Duration;

/// The capacity limit and what was seen under it.
#[derive(Debug)]
pub struct Capacity {
    pub limit: usize,
    pub service: Duration,
    seen: Mutex<CapacityStats>,
}

/// What a capacity-limited receiver saw since it was set or last reset.
#[derive(Debug, Default, Clone, Copy)]
pub struct CapacityStats {
    /// Requests open now (arrived and not answered yet).
    pub open: usize,
    /// The most requests open at once.
    pub peak_open: usize,
    /// Deliveries served (answered 200).
    pub served: usize,
    /// Deliveries refused with 429.
    pub refused: usize,
}

impl Capacity {
    pub fn new(limit: usize, service: Duration) -> Capacity {
        Capacity {
            limit,
            service,
            seen: Mutex::new(CapacityStats::default()),
        }
    }

    /// A request arrives: whether it is served (else it gets 429).
    pub fn arrive(&self) -> bool {
        let mut s = self.seen.lock().unwrap();
        s.open += 1;
        s.peak_open = s.peak_open.max(s.open);
        if s.open > self.limit {
            s.open -= 1;
            s.refused += 1;
            return false;
        }
        true
    }

    /// A served request is answered.
    pub fn leave(&self) {
        let mut s = self.seen.lock().unwrap();
        s.open -= 1;
        s.served += 1;
    }

    pub fn stats(&self) -> CapacityStats {
        *self.seen.lock().unwrap()
    }

    /// Starts counting afresh (requests open now stay open).
    pub fn reset(&self) {
        let mut s = self.seen.lock().unwrap();
        *s = CapacityStats {
            open: s.open,
            peak_open: s.open,
            ..CapacityStats::default()
        };
    }
}
