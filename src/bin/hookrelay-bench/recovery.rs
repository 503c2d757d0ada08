//! Figure 8: recovery. A SQLite file holding a large backlog of pending
//! deliveries (as after an outage of the receivers, or a crash) is seeded
//! before hookrelay starts; then the time from spawning the process to the
//! first delivery arriving, and the rate at which the backlog drains.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::clock::{now_ns, secs_between};
use crate::cpu;
use crate::figures::{Bench, Measured, with_log};
use crate::instance::{Instance, Setup};
use crate::memory::Memory;
use crate::seed::{self, ScratchDir};

/// Longest wait for the first delivery.
const FIRST_AT_MOST: Duration = Duration::from_secs(120);

fn file_mib(path: &std::path::Path) -> f64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    (size(path) + size(&path.with_extension("db-wal"))) as f64 / 1048576.0
}

/// Figure 8.
pub fn recovery(bench: &Bench) -> Result<Measured, String> {
    let sizes = &bench.sizes;
    let endpoints = sizes.recovery_endpoints.max(1);
    let per_endpoint = sizes.recovery_deliveries.div_ceil(endpoints);
    let total = (endpoints * per_endpoint) as u64;
    let dir = ScratchDir::new("recovery")?;
    let db = dir.path.join("bench.db");
    let seeding = Instant::now();
    seed::backlog(&db, endpoints, per_endpoint, bench.receiver.port)?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let db_mib = file_mib(&db);

    let arrivals = &bench.receiver.arrivals;
    arrivals.track(endpoints, per_endpoint + 1);
    let cpu_from = cpu::snapshot_of(&[], None);
    let setup = Setup {
        database: Some(db.to_string_lossy().into_owned()),
        args: Vec::new(),
    };
    let instance = Instance::start_with(&bench.launch, &setup)?;
    let pid = instance.pid();

    // Spawn → first delivery.
    let waiting = Instant::now();
    while arrivals.unique() == 0 {
        if waiting.elapsed() > FIRST_AT_MOST {
            return Err(with_log(
                &instance,
                format!(
                    "no delivery arrived within {}s of start ({total} pending)",
                    FIRST_AT_MOST.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = arrivals.first_unique_ns();
    let memory_at_first = Memory::of(pid).unwrap_or_default();

    // The drain: until every delivery arrived, or the deadline (a partial
    // result), or a stall (a failure).
    let deadline = Duration::from_secs_f64(sizes.recovery_deadline_secs);
    let stall = Duration::from_secs_f64(sizes.stall_secs);
    let drain_started = Instant::now();
    let mut seen = arrivals.unique();
    let mut changed = Instant::now();
    let complete = loop {
        let count = arrivals.unique();
        if count >= total {
            break true;
        }
        if count != seen {
            seen = count;
            changed = Instant::now();
        }
        if changed.elapsed() > stall {
            return Err(with_log(
                &instance,
                format!(
                    "the drain stalled: {count} of {total} deliveries arrived ({} duplicates), none for {:.0}s",
                    arrivals.duplicates(),
                    stall.as_secs_f64()
                ),
            ));
        }
        if drain_started.elapsed() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let arrived = arrivals.unique();
    let last = arrivals.last_unique_ns();
    let ended = now_ns();
    let cpu = cpu::usage(&cpu_from, &cpu::snapshot_of(&[pid], None));
    let memory_end = Memory::of(pid).unwrap_or_default();
    let extra = if complete {
        crate::figures::extra_arrivals(arrivals)
    } else {
        crate::figures::arrival_counts(arrivals)
    };
    let recovery_s = secs_between(instance.spawned_ns, first);
    let drain_secs = secs_between(first, if complete { last } else { ended });
    let drain_rate = arrived.saturating_sub(1) as f64 / drain_secs.max(1e-9);
    if !complete {
        eprintln!(
            "note: figure 8 stopped at its {:.0}s deadline with {arrived} of {total} deliveries drained",
            deadline.as_secs_f64()
        );
    }
    Ok(Measured {
        values: vec![
            ("recovery_first", recovery_s),
            ("recovery_drain", drain_rate),
            ("recovery_drained", arrived as f64 / total as f64 * 100.0),
        ],
        detail: json!({
            "pending": total, "endpoints": endpoints,
            "seeding_seconds": seed_secs, "database_mib": db_mib,
            "listening_after_s": secs_between(instance.spawned_ns, instance.ready_ns),
            "first_delivery_after_s": recovery_s,
            "drained": arrived, "complete": complete,
            "drain_seconds": drain_secs,
            "spawn_to_last_s": secs_between(instance.spawned_ns, if complete { last } else { ended }),
            "memory_at_first_delivery": memory_at_first.json(),
            "memory_at_end": memory_end.json(),
            "receiver": extra, "cpu": cpu,
            "hookrelay_log_lines": instance.log_lines(),
        }),
    })
}
