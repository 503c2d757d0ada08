//! Figure 12: ingest while retention cleans. A SQLite file is seeded with
//! finished deliveries (one event and one attempt each, all 3 days old,
//! to the receiver's `/r/0`); hookrelay starts on a copy of it, its first
//! retention pass starting at once, while open-loop single pushes (fan-out
//! 1, to the same endpoint) measure push → 202. Two runs on identical
//! copies: `cleaning`, with `--history-retention 1d` (everything seeded is
//! past it: the pass removes it all), and `idle`, with history and keys
//! kept 30 days (nothing to remove). Reported: push → 202 p50/p99 of the
//! events sent while the cleaning lasted (all of them when it outlasts the
//! window) and of the idle run, and how long the cleaning took from the
//! process's start until no seeded event was left (read from the file by a
//! separate connection every 100 ms). Only options the previous release
//! has are passed, so the same figure measures an older binary (`--hookrelay`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::{Value, json};

use crate::clock::{now_ns, secs_between};
use crate::cpu;
use crate::figures::{
    Bench, Measured, event_json, open_loop, percentile, slots, wait_for_arrivals, with_log,
};
use crate::instance::{Instance, Setup};
use crate::seed::{self, ScratchDir};

/// How old the seeded history is…
const SEED_AGE_HOURS: i64 = 72;
/// …the retention that removes all of it…
const CLEANING_RETENTION: &str = "1d";
/// …and the one that keeps it all (history and idempotency keys).
const IDLE_RETENTION: &str = "30d";
/// How often the bench looks whether seeded events are left.
const POLL: Duration = Duration::from_millis(100);
/// A push slower than this is listed in the timeline of slow pushes…
const SLOW_MS: f64 = 50.0;
/// …which keeps at most this many (the slowest).
const SLOW_LISTED: usize = 200;

/// One of the two runs.
struct Run {
    /// push → 202 of every measured event, ms, in send order, with the
    /// send time.
    acks: Vec<(f64, u64)>,
    /// Seconds from spawning hookrelay until no seeded event was left
    /// (`None`: idle, not looked for).
    cleaned_secs: Option<f64>,
    /// When the cleaning was seen done (clock ns).
    cleaned_at: Option<u64>,
    detail: Value,
}

/// Figure 12.
pub fn retention(bench: &Bench) -> Result<Measured, String> {
    let sizes = &bench.sizes;
    let dir = ScratchDir::new("retention")?;
    let template = dir.path.join("seed.db");
    let seeding = Instant::now();
    let cut = seed_finished_history(&template, sizes.retention_rows, bench.receiver.port)?;
    // The seed is written with `synchronous = OFF`: without this sync the
    // kernel writes its gigabyte back about 30 s later, in the middle of
    // the cleaning run, and every push then waits behind that write-back
    // (one stall of about 0.4 s, the whole of the p99 before this sync).
    std::fs::File::open(&template)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", template.display()))?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let db_mib = std::fs::metadata(&template).map_or(0, |m| m.len()) as f64 / 1048576.0;

    let cleaning = run(bench, &dir, &template, &cut, true)?;
    let idle = run(bench, &dir, &template, &cut, false)?;

    let during: Vec<f64> = match cleaning.cleaned_at {
        Some(done) => cleaning
            .acks
            .iter()
            .filter(|(_, sent)| *sent <= done)
            .map(|(ms, _)| *ms)
            .collect(),
        None => Vec::new(),
    };
    let mut during = if during.is_empty() {
        // Cleaned before the first push: the whole window.
        cleaning.acks.iter().map(|(ms, _)| *ms).collect()
    } else {
        during
    };
    let mut whole: Vec<f64> = cleaning.acks.iter().map(|(ms, _)| *ms).collect();
    let mut quiet: Vec<f64> = idle.acks.iter().map(|(ms, _)| *ms).collect();
    for v in [&mut during, &mut whole, &mut quiet] {
        v.sort_by(f64::total_cmp);
    }
    let cleaned_secs = cleaning.cleaned_secs.unwrap_or(f64::NAN);
    let summary = |v: &[f64]| {
        json!({
            "events": v.len(),
            "p50": percentile(v, 50.0), "p90": percentile(v, 90.0),
            "p99": percentile(v, 99.0), "p99_9": percentile(v, 99.9),
            "max": v.last().copied().unwrap_or(f64::NAN),
        })
    };
    Ok(Measured {
        values: vec![
            ("retention_clean_ack_p50", percentile(&during, 50.0)),
            ("retention_clean_ack_p99", percentile(&during, 99.0)),
            (
                "retention_clean_ack_max",
                during.last().copied().unwrap_or(f64::NAN),
            ),
            ("retention_idle_ack_p50", percentile(&quiet, 50.0)),
            ("retention_idle_ack_p99", percentile(&quiet, 99.0)),
            (
                "retention_idle_ack_max",
                quiet.last().copied().unwrap_or(f64::NAN),
            ),
            ("retention_clean_secs", cleaned_secs),
        ],
        detail: json!({
            "seeded_deliveries": sizes.retention_rows,
            "seed_secs": seed_secs,
            "seed_db_mib": db_mib,
            "rate_target": sizes.retention_rate,
            "window_secs": sizes.retention_secs,
            "cleaning_secs": cleaned_secs,
            "push_ack_ms_while_cleaning": summary(&during),
            "push_ack_ms_cleaning_run_whole_window": summary(&whole),
            "push_ack_ms_idle": summary(&quiet),
            "cleaning": cleaning.detail,
            "idle": idle.detail,
        }),
    })
}

/// One run on a fresh copy of the seeded file: cleaning (everything past
/// retention) or idle (nothing past it).
fn run(
    bench: &Bench,
    dir: &ScratchDir,
    template: &Path,
    cut: &str,
    cleaning: bool,
) -> Result<Run, String> {
    let sizes = &bench.sizes;
    let db = dir
        .path
        .join(if cleaning { "cleaning.db" } else { "idle.db" });
    std::fs::copy(template, &db).map_err(|e| format!("cannot copy the seeded database: {e}"))?;
    std::fs::File::open(&db)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", db.display()))?;
    let args: Vec<String> = if cleaning {
        vec!["--history-retention".into(), CLEANING_RETENTION.into()]
    } else {
        vec![
            "--history-retention".into(),
            IDLE_RETENTION.into(),
            "--idempotency-retention".into(),
            IDLE_RETENTION.into(),
        ]
    };
    let setup = Setup {
        database: Some(db.to_string_lossy().into_owned()),
        args,
    };
    let rate = sizes.retention_rate;
    let total = (f64::from(rate) * sizes.retention_secs).round() as usize;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..=total as u64)
            .map(|id| Bytes::from(event_json(id)))
            .collect(),
    );
    let (sent, acked) = (slots(total + 1), slots(total + 1));
    let arrivals = &bench.receiver.arrivals;
    arrivals.track(1, total + 1);
    // Watching from before the start: the pass begins as hookrelay starts.
    let watcher = cleaning.then(|| watch_cleaning(&db, cut, sizes.retention_clean_deadline_secs));
    let spawned_unix_ms = unix_ms();
    let instance = Instance::start_with(&bench.launch, &setup)?;
    let url = format!("{}/internal/v1/events", instance.internal);
    let cpu_from = cpu::snapshot(Some(instance.pid()));
    let pushed = open_loop(url, bodies, rate, sent.clone(), acked.clone());
    let cpu = cpu::usage(&cpu_from, &cpu::snapshot(Some(instance.pid())));
    let overloaded = pushed.map_err(|e| with_log(&instance, e))?;
    wait_for_arrivals(arrivals, total as u64, sizes).map_err(|e| with_log(&instance, e))?;
    let receiver = crate::figures::extra_arrivals(arrivals);
    let cleaned_at = match watcher {
        Some(w) => Some(
            w.join()
                .map_err(|_| "the cleaning watcher panicked".to_string())?
                .map_err(|e| with_log(&instance, e))?,
        ),
        None => None,
    };
    let cleaned_secs = cleaned_at.map(|at| secs_between(instance.spawned_ns, at));
    let mut acks = Vec::with_capacity(total);
    for id in 1..=total {
        let (s, a) = (
            sent[id].load(Ordering::SeqCst),
            acked[id].load(Ordering::SeqCst),
        );
        if s == 0 || a == 0 {
            return Err(with_log(
                &instance,
                format!("event {id} was never accepted"),
            ));
        }
        acks.push((secs_between(s, a) * 1000.0, s));
    }
    let first_sent = sent[1].load(Ordering::SeqCst);
    let slow = slow_pushes(&acks, instance.spawned_ns);
    Ok(Run {
        acks,
        cleaned_secs,
        cleaned_at,
        detail: json!({
            "ready_secs_after_spawn": secs_between(instance.spawned_ns, instance.ready_ns),
            "first_push_secs_after_spawn": secs_between(instance.spawned_ns, first_sent),
            "cleaned_secs_after_spawn": cleaned_secs,
            "overloaded_503": overloaded,
            "spawned_unix_ms": spawned_unix_ms,
            "slow_pushes": slow,
            "receiver": receiver,
            "cpu": cpu,
            "hookrelay_log_lines": instance.log_lines(),
        }),
    })
}

/// The wall clock, ms since the Unix epoch (to line the bench's timeline
/// up with hookrelay's log).
fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// When the slow pushes were sent (seconds after hookrelay was spawned)
/// and how long each waited (ms), in send order: the slowest
/// `SLOW_LISTED` of those over `SLOW_MS`.
fn slow_pushes(acks: &[(f64, u64)], spawned_ns: u64) -> Value {
    let mut slow: Vec<&(f64, u64)> = acks.iter().filter(|(ms, _)| *ms > SLOW_MS).collect();
    slow.sort_by(|a, b| b.0.total_cmp(&a.0));
    slow.truncate(SLOW_LISTED);
    slow.sort_by_key(|(_, sent)| *sent);
    let listed: Vec<Value> = slow
        .iter()
        .map(|(ms, sent)| {
            json!([
                (secs_between(spawned_ns, *sent) * 1000.0).round() / 1000.0,
                (ms * 10.0).round() / 10.0
            ])
        })
        .collect();
    json!({ "over_ms": SLOW_MS, "count": acks.iter().filter(|(ms, _)| *ms > SLOW_MS).count(), "sent_secs_after_spawn_and_ms": listed })
}

/// Reads the file every `POLL` from a connection of its own until no event
/// below `cut` (the seeded ones) is left; when that was seen (clock ns).
fn watch_cleaning(
    db: &Path,
    cut: &str,
    deadline_secs: f64,
) -> std::thread::JoinHandle<Result<u64, String>> {
    let (db, cut) = (db.to_string_lossy().into_owned(), cut.to_string());
    std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(&db)
            .map_err(|e| format!("cannot open {db} to watch the cleaning: {e}"))?;
        conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA query_only = 1;")
            .map_err(|e| format!("cannot configure the watching connection: {e}"))?;
        let started = Instant::now();
        let query = format!("(SELECT EXISTS (SELECT 1 FROM events WHERE id < '{cut}'))");
        loop {
            let left: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&query))
                .get_result(&mut conn)
                .map_err(|e| format!("cannot read {db} while it is cleaned: {e}"))?;
            if !left {
                return Ok(now_ns());
            }
            if started.elapsed().as_secs_f64() > deadline_secs {
                return Err(format!(
                    "seeded events were still there {deadline_secs:.0}s after the start"
                ));
            }
            std::thread::sleep(POLL);
        }
    })
}

/// `rows` finished deliveries to the receiver's `/r/0`, each with its own
/// event and one attempt, all `SEED_AGE_HOURS` old, written by SQLite
/// itself (three INSERT … SELECT over a counter, one transaction) with
/// ids as hookrelay makes them (time-ordered, 64 to the millisecond).
/// Returns an id above every seeded one and below anything newer.
fn seed_finished_history(path: &Path, rows: usize, receiver_port: u16) -> Result<String, String> {
    seed::idle_endpoints(path, 1, receiver_port)?;
    let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let at = chrono::Utc::now() - chrono::Duration::hours(SEED_AGE_HOURS);
    let ms = at.timestamp_millis();
    let ts = at.naive_utc().format("%F %T%.f").to_string();
    let body = event_json(0);
    let id = |n: &str| {
        format!(
            "printf('%08x-%04x-7000-8000-%012x', ({ms} + i / 64) >> 16, ({ms} + i / 64) & 65535, {n})"
        )
    };
    let (event_id, delivery_id) = (id("2 * i"), id("2 * i + 1"));
    let counter = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {})",
        rows.saturating_sub(1)
    );
    let sql = format!(
        "PRAGMA synchronous = OFF;
         BEGIN;
         {counter} INSERT INTO events (id, marketplace_id, event, body, idempotency_key, delivery_count, created_at)
             SELECT {event_id}, 1, 'qti_export_ready', '{body}', NULL, 1, '{ts}' FROM n;
         {counter} INSERT INTO deliveries (id, event_id, subscription_id, endpoint_id, status, attempts, next_attempt_at, last_error, created_at, updated_at)
             SELECT {delivery_id}, {event_id}, (SELECT min(id) FROM subscriptions), (SELECT min(id) FROM endpoints),
                    'succeeded', 1, '{ts}', NULL, '{ts}', '{ts}' FROM n;
         {counter} INSERT INTO attempts (delivery_id, endpoint_id, attempted_at, status_code, error, duration_ms, response_excerpt)
             SELECT {delivery_id}, (SELECT min(id) FROM endpoints), '{ts}', 200, NULL, 5, NULL FROM n;
         COMMIT;
         PRAGMA wal_checkpoint(TRUNCATE);"
    );
    conn.batch_execute(&sql)
        .map_err(|e| format!("seeding {rows} finished deliveries failed: {e}"))?;
    drop(conn);
    let last_ms = ms + (rows as i64) / 64 + 1;
    let cut = hookrelay::store::id_floor(
        chrono::DateTime::from_timestamp_millis(last_ms + 1).unwrap_or(at),
    );
    Ok(cut)
}
