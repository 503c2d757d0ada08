//! The retention loop: one pass of `store::retention` every
//! `--retention-interval` (the first right after start), its batches run
//! one at a time on the background pool (without an `fsync` inside
//! SQLite's write lock: `Store::run_background_unsynced`), each followed
//! by a passive checkpoint of SQLite's WAL and a pause that paces the pass
//! to `ROWS_PER_SEC` (`pause_after`), so that ingest and the recorder get
//! SQLite's writer, and the disk, between batches. Logs a summary per pass
//! that removed something (and each batch at debug level), counts what it
//! removed (`hookrelay_history_removed_total`) and its failures
//! (`hookrelay_internal_errors_total{where="cleanup"}`). A failed pass is
//! logged and tried again at the next interval; what it removed stays
//! removed.

use std::time::{Duration, Instant};

use crate::metrics;
use crate::store::retention::{Cutoffs, Removed, Step, WalFrames, checkpoint, run_step};
use crate::store::{Store, StoreError};

/// The shortest pause after a batch that wrote: long enough for the
/// writes waiting behind it (a group commit takes about a millisecond) to
/// go first.
const PAUSE_AFTER_WRITE: Duration = Duration::from_millis(3);

/// Rows a pass removes per second at most. What hurts ingest is not
/// SQLite's writer (a batch holds it for milliseconds) but the disk: every
/// removed row is written twice (WAL frames of the freed pages, then the
/// checkpoint into the database file), and an ingest commit's `fdatasync`
/// waits for whatever the disk was given before it (BENCHMARKS.md, issue
/// 17 second pass). 12,000 rows/s removes a million finished deliveries
/// (3M rows: attempts, deliveries, events) in about 5 minutes, and keeps
/// up with 8× a sustained 500 events/s (1,500 rows/s to remove).
pub const ROWS_PER_SEC: f64 = 12_000.0;

/// The pause after a batch that removed `rows` in `took`: what brings the
/// pass down to `ROWS_PER_SEC`, but at least as long as the batch took (a
/// slow disk slows retention down with it: it takes at most half of the
/// database's time) and at least `PAUSE_AFTER_WRITE`; none after a batch
/// that removed nothing (it only read).
pub fn pause_after(rows: usize, took: Duration) -> Duration {
    if rows == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(rows as f64 / ROWS_PER_SEC)
        .saturating_sub(took)
        .max(took)
        .max(PAUSE_AFTER_WRITE)
}

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
        let (removed, next, frames, wrote) = match store
            .run_background_unsynced(move |conn| {
                let (removed, next) = run_step(conn, &c, &s)?;
                let wrote = began.elapsed();
                // After a batch that wrote, by the batch's own connection
                // and outside the writer lock: the automatic checkpoint
                // would run inside whichever commit found the WAL long.
                let frames = if removed.total() > 0 {
                    checkpoint(conn)?
                } else {
                    None
                };
                Ok((removed, next, frames, wrote))
            })
            .await
        {
            Ok(done) => done,
            Err(e) => return Err((total, e)),
        };
        let took = began.elapsed();
        if removed.total() > 0 {
            log_batch(&step, &removed, wrote, took, frames);
        }
        total += removed;
        metrics::history_removed(&removed);
        if let Step::Done { keys_after } = next {
            return Ok((total, keys_after));
        }
        step = next;
        let pause = pause_after(removed.total(), took);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// A batch that wrote, at debug level: how long its write and its
/// checkpoint took, and the WAL's frames then.
fn log_batch(
    step: &Step,
    removed: &Removed,
    wrote: Duration,
    took: Duration,
    frames: Option<WalFrames>,
) {
    log::debug!(
        "retention batch {} removed {} rows: write {:.1} ms, checkpoint {:.1} ms{}",
        step.name(),
        removed.total(),
        wrote.as_secs_f64() * 1000.0,
        took.saturating_sub(wrote).as_secs_f64() * 1000.0,
        frames.map_or(String::new(), |f| format!(
            " ({} of {} WAL frames checkpointed{})",
            f.checkpointed,
            f.log,
            if f.busy { ", busy" } else { "" }
        ))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_batch_that_removed_nothing_is_followed_at_once() {
        assert_eq!(pause_after(0, 40 * MS), Duration::ZERO);
    }

    #[test]
    fn a_fast_batch_waits_out_its_share_of_the_rate() {
        // 600 rows at 12,000/s: 50 ms in all, 5 of them the batch's own.
        assert_eq!(pause_after(600, 5 * MS), 45 * MS);
    }

    #[test]
    fn a_slow_batch_waits_as_long_as_it_took() {
        assert_eq!(pause_after(600, 80 * MS), 80 * MS);
    }

    #[test]
    fn a_tiny_batch_still_lets_waiting_writes_go_first() {
        assert_eq!(pause_after(1, Duration::ZERO), PAUSE_AFTER_WRITE);
    }
}
