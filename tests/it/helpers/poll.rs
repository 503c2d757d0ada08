//! Polling with a deadline: tests wait for an outcome, never a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Default deadline for "this should happen soon" (noisy 2-core machine).
pub const SOON: Duration = Duration::from_secs(30);

pub async fn sleep(d: Duration) {
    actix_rt::time::sleep(d).await;
}

/// Polls `cond` every 25 ms until it holds; panics naming `what` after `deadline`.
pub async fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        sleep(Duration::from_millis(25)).await;
    }
}

/// Like [`wait_until`] with an async condition (e.g. an API call).
pub async fn wait_until_async<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it yields `Some`, and returns that value.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}
