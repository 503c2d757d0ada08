//! The retention loop: one pass of `store::retention` every
//! `--retention-interval` (the first right after start), its batches run
//! one at a time on the background pool (without an `fsync` inside
//! SQLite's write lock: `Store::run_background_unsynced`) with a short
//! pause after each one that wrote, so that ingest and the recorder get
//! SQLite's writer between them. Logs a summary per pass that removed something, counts what it
//! removed (`hookrelay_history_removed_total`) and its failures
//! (`hookrelay_internal_errors_total{where="cleanup"}`). A failed pass is
//! logged and tried again at the next interval; what it removed stays
//! removed.

use std::time::{Duration, Instant};

use crate::metrics;
use crate::store::retention::{Cutoffs, Removed, Step, run_step};
use crate::store::{Store, StoreError};

/// The shortest pause after a batch that wrote: long enough for the
/// writes waiting behind it (a group commit takes about a millisecond) to
/// go first. The pause is at least as long as the batch took, so that
/// retention takes at most half of the database's time (and its disk).
const PAUSE_AFTER_WRITE: Duration = Duration::from_millis(3);

/// How long history and idempotency keys are kept, and how often a pass
/// runs.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub history: Duration,
    pub keys: Duration,
    pub every: Duration,
}

/// Runs a pass every `retention.every`, forever.
pub async fn run(store: Store, retention: Retention) {
    let mut tick = tokio::time::interval(retention.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keys_from = String::new();
    loop {
        tick.tick().await;
        let cut = Cutoffs::at(
            chrono::Utc::now(),
            retention.history,
            retention.keys,
            keys_from.clone(),
        );
        let started = Instant::now();
        match pass(&store, cut).await {
            Ok((removed, keys_after)) => {
                keys_from = keys_after;
                if removed.total() > 0 {
                    log::info!(
                        "retention removed {} attempts, {} deliveries, {} events, {} notices and forgot {} idempotency keys in {:.1}s",
                        removed.attempts,
                        removed.deliveries,
                        removed.events,
                        removed.notices,
                        removed.keys,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err((removed, e)) => {
                log::error!(
                    "retention pass failed after {:.1}s, having removed {} rows: {e}; it runs again in {}",
                    started.elapsed().as_secs_f64(),
                    removed.total(),
                    humantime::format_duration(retention.every)
                );
                metrics::internal_error(metrics::ErrorSite::Cleanup);
            }
        }
    }
}

/// One pass, a batch at a time: what it removed, and where the next
/// pass's key walk starts; on failure, what it removed before.
async fn pass(store: &Store, cut: Cutoffs) -> Result<(Removed, String), (Removed, StoreError)> {
    let cut = std::sync::Arc::new(cut);
    let mut total = Removed::default();
    let mut step = Step::first();
    loop {
        let (c, s) = (cut.clone(), step.clone());
        let began = Instant::now();
        let (removed, next) = match store
            .run_background_unsynced(move |conn| run_step(conn, &c, &s))
            .await
        {
            Ok(done) => done,
            Err(e) => return Err((total, e)),
        };
        total += removed;
        metrics::history_removed(&removed);
        if let Step::Done { keys_after } = next {
            return Ok((total, keys_after));
        }
        step = next;
        if removed.total() > 0 {
            tokio::time::sleep(began.elapsed().max(PAUSE_AFTER_WRITE)).await;
        }
    }
}
