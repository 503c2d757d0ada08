//! Figure 7: memory. The resident set of hookrelay on an empty database and
//! on one seeded with many idle endpoints (one active subscription each,
//! nothing pending, no verification due), the bytes each idle endpoint
//! costs, and what a `/metrics` scrape of that many endpoints costs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::clock::{now_ns, secs_between};
use crate::figures::{Bench, Measured, block_on, percentile, with_log};
use crate::instance::{Instance, Setup};
use crate::load;
use crate::seed::{self, ScratchDir};

/// How often the resident set is sampled while it settles.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Growth below this (bytes) does not count as still growing.
const GROWTH_SLACK: u64 = 256 * 1024;
/// Longest wait for the resident set to settle.
const SETTLE_AT_MOST: Duration = Duration::from_secs(60);
/// Longest wait for the internal API to answer after start.
const ANSWER_AT_MOST: Duration = Duration::from_secs(300);
/// Options of both instances: no verification call comes due during the
/// figure (first checks are spread over the last tenth of the interval).
const IDLE_ARGS: [&str; 2] = ["--verify-interval", "8h"];

/// Memory of a process, from /proc/PID/status, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss: u64,
    /// VmHWM: the largest resident set so far.
    pub peak: u64,
    /// RssAnon: heap and stacks.
    pub anon: u64,
    /// RssFile: mapped files (the binary's code, SQLite's files).
    pub file: u64,
    /// RssShmem: shared memory (SQLite's WAL index).
    pub shmem: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        };
        Some(Memory {
            rss: kib("VmRSS:")?,
            peak: kib("VmHWM:").unwrap_or(0),
            anon: kib("RssAnon:").unwrap_or(0),
            file: kib("RssFile:").unwrap_or(0),
            shmem: kib("RssShmem:").unwrap_or(0),
        })
    }

    pub fn json(&self) -> Value {
        let mib = |b: u64| (b as f64 / 1048576.0 * 100.0).round() / 100.0;
        json!({
            "rss_mib": mib(self.rss), "peak_rss_mib": mib(self.peak),
            "anon_mib": mib(self.anon), "file_mib": mib(self.file), "shmem_mib": mib(self.shmem),
        })
    }
}

/// Waits until `GET /internal/v1/endpoints?limit=1` answers 200 (the
/// router and its endpoint actors are up); the clock reading then.
fn wait_answering(instance: &Instance) -> Result<u64, String> {
    let url = format!("{}/internal/v1/endpoints?limit=1", instance.internal);
    block_on(async {
        let client = load::client(1);
        let until = Instant::now() + ANSWER_AT_MOST;
        loop {
            let last = match load::get(&client, &url).await {
                Ok((200, _)) => return Ok(now_ns()),
                Ok((status, body)) => format!(
                    "answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                ),
                Err(e) => e,
            };
            if Instant::now() > until {
                return Err(format!(
                    "GET {url} did not answer 200 within {}s ({last})",
                    ANSWER_AT_MOST.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Samples the resident set until it has not grown for `settle`: the last
/// reading, whether it settled (or `SETTLE_AT_MOST` passed), and the
/// seconds waited.
fn settled(pid: u32, settle: Duration) -> Result<(Memory, bool, f64), String> {
    let started = Instant::now();
    let read = || Memory::of(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"));
    let mut top = read()?.rss;
    let mut grew = Instant::now();
    loop {
        std::thread::sleep(SAMPLE_EVERY);
        let now = read()?;
        if now.rss > top + GROWTH_SLACK {
            grew = Instant::now();
        }
        top = top.max(now.rss);
        let waited = started.elapsed();
        if grew.elapsed() >= settle || waited >= SETTLE_AT_MOST {
            return Ok((now, grew.elapsed() >= settle, waited.as_secs_f64()));
        }
    }
}

/// `n` scrapes of `GET /metrics`, one after the other: each one's
/// milliseconds, and the last body.
fn scrape(instance: &Instance, n: usize) -> Result<(Vec<f64>, bytes::Bytes), String> {
    let url = format!("{}/metrics", instance.internal);
    block_on(async {
        let client = load::client(1);
        let mut times = Vec::with_capacity(n);
        let mut last = bytes::Bytes::new();
        for _ in 0..n {
            let from = now_ns();
            let (status, body) = load::get(&client, &url).await?;
            times.push(secs_between(from, now_ns()) * 1000.0);
            if status != 200 {
                return Err(format!("GET {url} answered {status}"));
            }
            last = body;
        }
        Ok((times, last))
    })
}

/// One instance's startup and settled memory.
struct Started {
    instance: Instance,
    memory: Memory,
    detail: Value,
}

fn start_idle(bench: &Bench, database: Option<String>) -> Result<Started, String> {
    let setup = Setup {
        database,
        args: IDLE_ARGS.iter().map(|s| s.to_string()).collect(),
    };
    let instance = Instance::start_with(&bench.launch, &setup)?;
    let answered = wait_answering(&instance).map_err(|e| with_log(&instance, e))?;
    let settle = Duration::from_secs_f64(bench.sizes.memory_settle_secs);
    let (memory, is_settled, waited) =
        settled(instance.pid(), settle).map_err(|e| with_log(&instance, e))?;
    if !is_settled {
        eprintln!(
            "warning: hookrelay's memory was still growing after {}s; measuring anyway",
            SETTLE_AT_MOST.as_secs()
        );
    }
    let detail = json!({
        "listening_after_s": secs_between(instance.spawned_ns, instance.ready_ns),
        "answering_after_s": secs_between(instance.spawned_ns, answered),
        "settled": is_settled,
        "settle_wait_s": waited,
        "memory": memory.json(),
    });
    Ok(Started {
        instance,
        memory,
        detail,
    })
}

/// Figure 7.
pub fn memory(bench: &Bench) -> Result<Measured, String> {
    let endpoints = bench.sizes.memory_endpoints;
    let empty = start_idle(bench, None)?;
    drop(empty.instance);

    let dir = ScratchDir::new("memory")?;
    let db = dir.path.join("bench.db");
    let seeding = Instant::now();
    seed::idle_endpoints(&db, endpoints, bench.receiver.port)?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let seeded = start_idle(bench, Some(db.to_string_lossy().into_owned()))?;
    let instance = &seeded.instance;
    let (mut times, body) =
        scrape(instance, bench.sizes.metrics_scrapes).map_err(|e| with_log(instance, e))?;
    // Every endpoint must have its actor: each one exports its `up` gauge.
    let up_series = body
        .split(|b| *b == b'\n')
        .filter(|l| l.starts_with(b"hookrelay_endpoint_up{"))
        .count();
    if up_series != endpoints {
        return Err(with_log(
            instance,
            format!(
                "/metrics shows {up_series} hookrelay_endpoint_up series, expected one per endpoint ({endpoints})"
            ),
        ));
    }
    let after_scrapes = Memory::of(instance.pid()).unwrap_or_default();
    let first_scrape = times.first().copied().unwrap_or(f64::NAN);
    times.sort_by(f64::total_cmp);
    let scrape_ms = percentile(&times, 50.0);
    let per_endpoint = (seeded.memory.rss as f64 - empty.memory.rss as f64) / endpoints as f64;
    let anon_per_endpoint =
        (seeded.memory.anon as f64 - empty.memory.anon as f64) / endpoints as f64;
    let mib = |b: u64| b as f64 / 1048576.0;
    Ok(Measured {
        values: vec![
            ("mem_empty_rss", mib(empty.memory.rss)),
            ("mem_seeded_rss", mib(seeded.memory.rss)),
            ("mem_per_endpoint", per_endpoint),
            (
                "mem_startup",
                seeded.detail["answering_after_s"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
            ),
            ("mem_metrics_ms", scrape_ms),
            ("mem_metrics_bytes", body.len() as f64),
        ],
        detail: json!({
            "endpoints": endpoints,
            "seeding_seconds": seed_secs,
            "empty": empty.detail,
            "seeded": seeded.detail,
            "bytes_per_endpoint_rss": per_endpoint,
            "bytes_per_endpoint_anon": anon_per_endpoint,
            "metrics_scrape_ms": {"first": first_scrape, "all_sorted": times},
            "metrics_bytes": body.len(),
            "metrics_lines": body.split(|b| *b == b'\n').filter(|l| !l.is_empty() && l[0] != b'#').count(),
            "memory_after_scrapes": after_scrapes.json(),
            "hookrelay_log_lines": instance.log_lines(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::Memory;

    #[test]
    fn reads_this_process_memory() {
        let m = Memory::of(std::process::id()).expect("/proc/self/status");
        assert!(m.rss > 0 && m.peak >= m.rss && m.anon > 0);
    }
}
