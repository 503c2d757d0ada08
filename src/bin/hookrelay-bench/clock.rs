//! One monotonic clock shared by every thread of the bench: times are
//! nanoseconds since the bench started, so they fit in an `AtomicU64` and
//! compare across the receiver, the pushers and the main thread.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Fixes the epoch; call once at start (later calls change nothing).
pub fn init() {
    EPOCH.get_or_init(Instant::now);
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Seconds between two clock readings (0 when `to` is not after `from`).
pub fn secs_between(from_ns: u64, to_ns: u64) -> f64 {
    Duration::from_nanos(to_ns.saturating_sub(from_ns)).as_secs_f64()
}
