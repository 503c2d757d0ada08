//! Pacing: how fast the endpoint actor may send to one endpoint. Three pure
//! parts the actor applies in its send loop:
//! - `window`: the adaptive concurrency window (slow start, a remembered
//!   ceiling probed only after a quiet spell, cuts on congestion);
//! - `bucket`: the token bucket of `maxPerSecond`;
//! - `latency`: a smoothed latency of the endpoint's good answers, which
//!   says whether an answer was fast, and `signal`, which turns an answer
//!   into what the window hears.

pub mod bucket;
pub mod latency;
pub mod window;

pub use bucket::Bucket;
pub use latency::{Latency, Signal, signal};
pub use window::{Congestion, Window};
