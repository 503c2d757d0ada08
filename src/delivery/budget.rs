//! The memory budget of deliveries held in memory: every `Job` carries a
//! `Charge` for its bytes against one process-wide total (`QUEUED`),
//! given back when the job is dropped wherever it is (queued, in flight,
//! waiting for a retry, on its way from the group commit). An endpoint
//! holds up to `WINDOW` deliveries in memory in any case, and up to
//! `MAX_WINDOW` while the total is within `--max-queued-bytes`; beyond that
//! the rest wait in the database and are read back page by page.

use std::sync::atomic::{AtomicUsize, Ordering};

/// What every job costs besides its id and body (the struct, the queue
/// slot, the id set entry, allocator rounding).
const OVERHEAD: usize = 160;

/// The deliveries held in memory by this process.
pub static QUEUED: Budget = Budget::new(256 * 1024 * 1024);

/// A total of charged bytes and its limit.
pub struct Budget {
    charged: AtomicUsize,
    limit: AtomicUsize,
}

impl Budget {
    pub const fn new(limit: usize) -> Budget {
        Budget {
            charged: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Sets the limit (from `--max-queued-bytes`).
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Bytes charged by the jobs alive now.
    pub fn charged(&self) -> usize {
        self.charged.load(Ordering::Relaxed)
    }

    /// Whether the jobs alive now use up the budget.
    pub fn exhausted(&self) -> bool {
        self.charged() >= self.limit.load(Ordering::Relaxed)
    }

    /// Charges a job with this id and body.
    pub fn charge(&'static self, id: &str, body: &[u8]) -> Charge {
        let bytes = OVERHEAD + id.len() + body.len();
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        Charge {
            budget: self,
            bytes,
        }
    }
}

/// One job's share of a budget; given back when dropped.
pub struct Charge {
    budget: &'static Budget,
    bytes: usize,
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Charge({})", self.bytes)
    }
}

impl Clone for Charge {
    fn clone(&self) -> Charge {
        self.budget.charged.fetch_add(self.bytes, Ordering::Relaxed);
        Charge {
            budget: self.budget,
            bytes: self.bytes,
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.charged.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_is_charged_and_given_back() {
        static TEST: Budget = Budget::new(2 * (OVERHEAD + 102));
        let a = TEST.charge("d1", &[0; 100]);
        assert_eq!(TEST.charged(), OVERHEAD + 102);
        assert!(!TEST.exhausted());
        let b = a.clone();
        assert_eq!(TEST.charged(), 2 * (OVERHEAD + 102));
        assert!(TEST.exhausted(), "the limit is reached");
        drop(a);
        assert!(!TEST.exhausted());
        drop(b);
        assert_eq!(TEST.charged(), 0);
    }
}
