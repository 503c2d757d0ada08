//! CPU use during a measurement, from /proc: the whole machine, the
//! hookrelay children, the bench itself, a local PostgreSQL serving the
//! bench's database (when one is watched), and the rest (other work on a
//! shared machine, which skews the figures). Linux only; elsewhere it
//! reports nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

/// Clock ticks per second of /proc times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

pub struct Snapshot {
    at: Instant,
    /// (busy, total) ticks summed over all CPUs.
    machine: Option<(u64, u64)>,
    /// hookrelay processes: pid → ticks.
    hookrelay: HashMap<u32, u64>,
    /// hookrelay's threads: "pid/tid" → (name, ticks).
    threads: HashMap<String, (String, u64)>,
    bench: Option<u64>,
    /// Of the bench's ticks, those of its load threads (the clients).
    bench_load: u64,
    /// Bytes written to the machine's disks, and by each hookrelay.
    disk_written: Option<u64>,
    hookrelay_written: HashMap<u32, u64>,
    /// The local database server's processes that serve the bench: pid →
    /// (ticks, bytes written). `None` when no database is watched.
    database: Option<HashMap<u32, (u64, u64)>>,
}

/// Bytes written to the machine's disks (not loop, ram or zram devices).
fn disk_written() -> Option<u64> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let mut sectors = 0;
    for line in stats.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = f.get(2) else { continue };
        if ["loop", "ram", "zram"].iter().any(|p| name.starts_with(p))
            || !std::path::Path::new(&format!("/sys/block/{name}")).exists()
        {
            continue;
        }
        sectors += f.get(9).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Some(sectors * 512)
}

/// Bytes a process caused to be written to storage.
fn process_written(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

/// Name prefix of the bench's load threads (`load::thread`).
pub const LOAD_THREAD: &str = "bench-load-";

/// Ticks of the load threads that have ended (see `load_thread_ends`).
static ENDED_LOAD_TICKS: AtomicU64 = AtomicU64::new(0);

/// Called by a load thread as its last act: its ticks stay counted once
/// it is gone from /proc. (A snapshot taken between this call and the
/// thread's exit would count it twice; the figures take theirs before
/// their load threads start and after they are joined.)
pub fn load_thread_ends() {
    if let Some(ticks) = process_ticks("thread-self") {
        ENDED_LOAD_TICKS.fetch_add(ticks, Ordering::Relaxed);
    }
}

/// CPU ticks of this process's load threads, running or ended: they play
/// the clients; the rest of the bench (receiver, bare handler) plays the
/// servers.
fn load_ticks() -> u64 {
    let running: u64 = thread_ticks(std::process::id())
        .into_values()
        .filter(|(name, _)| name.starts_with(LOAD_THREAD))
        .map(|(_, ticks)| ticks)
        .sum();
    running + ENDED_LOAD_TICKS.load(Ordering::Relaxed)
}

/// Every thread of a process with its name and CPU ticks.
fn thread_ticks(pid: u32) -> HashMap<String, (String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    dir.filter_map(|e| {
        let tid = e.ok()?.file_name().to_string_lossy().into_owned();
        let ticks = process_ticks(&format!("{pid}/task/{tid}"))?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
        Some((tid, (name.trim().to_string(), ticks)))
    })
    .collect()
}

fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    if v.len() < 8 {
        return None;
    }
    let idle = v[3] + v[4];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Some((busy, busy + idle))
}

/// utime + stime of a process (all its threads), in ticks.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file; `after` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// PostgreSQL server processes on this machine that work for the
/// database `name`: its backends (their title names the database) and the
/// shared background processes (checkpointer, WAL writer, …). Backends of
/// other databases are left out: they are someone else's load.
fn database_processes(name: &str) -> HashMap<u32, (u64, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_string_lossy().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "postgres" {
            return None;
        }
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let title = String::from_utf8_lossy(&title);
        let is_client_backend = title.contains('(') || title.contains("[local]");
        if is_client_backend && !title.split_whitespace().any(|w| w == name) {
            return None;
        }
        let ticks = process_ticks(&pid.to_string())?;
        Some((pid, (ticks, process_written(pid).unwrap_or(0))))
    })
    .collect()
}

pub fn snapshot(hookrelay_pid: Option<u32>) -> Snapshot {
    snapshot_of(hookrelay_pid.as_slice(), None)
}

/// A snapshot of several hookrelay processes and, with `database`, of the
/// local PostgreSQL processes serving that database.
pub fn snapshot_of(hookrelay_pids: &[u32], database: Option<&str>) -> Snapshot {
    let mut threads = HashMap::new();
    for pid in hookrelay_pids {
        for (tid, v) in thread_ticks(*pid) {
            threads.insert(format!("{pid}/{tid}"), v);
        }
    }
    Snapshot {
        at: Instant::now(),
        machine: machine_ticks(),
        hookrelay: hookrelay_pids
            .iter()
            .filter_map(|p| Some((*p, process_ticks(&p.to_string())?)))
            .collect(),
        threads,
        bench: process_ticks("self"),
        bench_load: load_ticks(),
        disk_written: disk_written(),
        hookrelay_written: hookrelay_pids
            .iter()
            .filter_map(|p| Some((*p, process_written(*p)?)))
            .collect(),
        database: database.map(database_processes),
    }
}

/// The growth of per-process counters from `from` to `to` (a process that
/// is new in `to` counts from zero); `None` when `to` has no process.
fn growth(from: &HashMap<u32, u64>, to: &HashMap<u32, u64>) -> Option<u64> {
    (!to.is_empty()).then(|| {
        to.iter()
            .map(|(pid, v)| v.saturating_sub(from.get(pid).copied().unwrap_or(0)))
            .sum()
    })
}

/// CPU use between two snapshots, in cores (1.0 = one core busy the whole
/// time).
pub fn usage(from: &Snapshot, to: &Snapshot) -> Value {
    let secs = to.at.duration_since(from.at).as_secs_f64();
    if secs <= 0.0 {
        return Value::Null;
    }
    let per_sec = |ticks: Option<u64>| ticks.map(|t| t as f64 / TICKS_PER_SEC / secs);
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let machine = from
        .machine
        .zip(to.machine)
        .and_then(|((b0, t0), (b1, t1))| {
            let total = t1.saturating_sub(t0);
            (total > 0).then(|| b1.saturating_sub(b0) as f64 / total as f64 * nproc)
        });
    let hookrelay = per_sec(growth(&from.hookrelay, &to.hookrelay));
    let bench = per_sec(from.bench.zip(to.bench).map(|(a, b)| b.saturating_sub(a)));
    let bench_load = per_sec(Some(to.bench_load.saturating_sub(from.bench_load)));
    let split = |s: &Snapshot, pick: fn(&(u64, u64)) -> u64| -> HashMap<u32, u64> {
        s.database
            .iter()
            .flatten()
            .map(|(pid, v)| (*pid, pick(v)))
            .collect()
    };
    let database = to
        .database
        .as_ref()
        .map(|_| per_sec(growth(&split(from, |v| v.0), &split(to, |v| v.0))).unwrap_or(0.0));
    let other = machine.map(|m| {
        (m - hookrelay.unwrap_or(0.0) - bench.unwrap_or(0.0) - database.unwrap_or(0.0)).max(0.0)
    });
    let round = |x: Option<f64>| x.map(|v| (v * 100.0).round() / 100.0);
    // hookrelay's busiest threads: one near 1.0 core is a serial bottleneck.
    let mut threads: Vec<(String, f64)> = to
        .threads
        .iter()
        .map(|(key, (name, ticks))| {
            let before = from.threads.get(key).map_or(0, |(_, t)| *t);
            let cores = ticks.saturating_sub(before) as f64 / TICKS_PER_SEC / secs;
            let tid = key.rsplit('/').next().unwrap_or(key);
            (format!("{name} ({tid})"), (cores * 100.0).round() / 100.0)
        })
        .filter(|(_, cores)| *cores >= 0.01)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mb = |bytes: Option<u64>| bytes.map(|b| (b as f64 / 1e6 * 10.0).round() / 10.0);
    let disk = mb(from
        .disk_written
        .zip(to.disk_written)
        .map(|(a, b)| b.saturating_sub(a)));
    let hook_disk = mb(growth(&from.hookrelay_written, &to.hookrelay_written));
    let db_disk = to
        .database
        .as_ref()
        .map(|_| mb(growth(&split(from, |v| v.1), &split(to, |v| v.1))).unwrap_or(0.0));
    let mut out = json!({
        "seconds": secs,
        "machine_cores_busy": round(machine),
        "hookrelay_cores": round(hookrelay),
        "bench_cores": round(bench),
        // The clients (load threads) and the rest (receiver, bare handler).
        "bench_load_cores": round(bench_load),
        "bench_server_cores": round(bench.zip(bench_load).map(|(b, l)| (b - l).max(0.0))),
        "other_cores": round(other),
        "hookrelay_threads": threads,
        "disk_mb_written": disk,
        "hookrelay_disk_mb_written": hook_disk,
        // Approximate: the device counts journal and write-back, the
        // process counts what it dirtied.
        "other_disk_mb_written": disk.map(|d| {
            (d - hook_disk.unwrap_or(0.0) - db_disk.unwrap_or(0.0)).max(0.0)
        }),
    });
    if database.is_some() {
        out["database_cores"] = json!(round(database));
        out["database_disk_mb_written"] = json!(db_disk);
    }
    out
}

/// Busy cores of the whole machine over `window`.
pub fn machine_busy(window: std::time::Duration) -> Option<f64> {
    let from = snapshot(None);
    std::thread::sleep(window);
    usage(&from, &snapshot(None))["machine_cores_busy"].as_f64()
}

/// Waits, at most `max`, until the machine is nearly idle (less than
/// `below` cores busy over half a second) so other work on a shared machine
/// skews the next figure less. Returns the last busy reading.
pub fn wait_quiet(max: std::time::Duration, below: f64) -> Option<f64> {
    let until = Instant::now() + max;
    loop {
        let busy = machine_busy(std::time::Duration::from_millis(500));
        if busy.is_none_or(|b| b < below) || Instant::now() >= until {
            return busy;
        }
    }
}

/// The largest reading of `key` anywhere in a figure's detail (e.g.
/// `other_cores`).
pub fn largest(detail: &Value, key: &str) -> Option<f64> {
    match detail {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, v)| {
                if k == key {
                    v.as_f64()
                } else {
                    largest(v, key)
                }
            })
            .reduce(f64::max),
        _ => None,
    }
}

/// One process's CPU, read precisely: the nanoseconds each of its threads
/// ran (`/proc/PID/task/TID/schedstat`), its wake-ups (context switches of
/// its threads), and the process's own ticks (which also hold its threads
/// that have ended). Ticks have 10 ms steps: too coarse for a trickle of
/// events.
pub struct Precise {
    at: Instant,
    /// tid → (ns on a CPU, voluntary + involuntary context switches).
    threads: HashMap<String, (u64, u64)>,
    /// tid → thread name.
    names: HashMap<String, String>,
    ticks: u64,
}

/// The nanoseconds a thread ran (first field of its `schedstat`) and its
/// context switches (`status`).
fn thread_ns_and_switches(pid: u32, tid: &str) -> Option<(u64, u64)> {
    let sched = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/schedstat")).ok()?;
    let ns = sched.split_whitespace().next()?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let switches = status
        .lines()
        .filter(|l| {
            l.starts_with("voluntary_ctxt_switches:")
                || l.starts_with("nonvoluntary_ctxt_switches:")
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Some((ns, switches))
}

impl Precise {
    pub fn read(pid: u32) -> Precise {
        let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|dir| {
                dir.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let threads = tids
            .iter()
            .filter_map(|tid| Some((tid.clone(), thread_ns_and_switches(pid, tid)?)))
            .collect();
        let names = tids
            .iter()
            .filter_map(|tid| {
                let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
                Some((tid.clone(), name.trim().to_string()))
            })
            .collect();
        Precise {
            at: Instant::now(),
            threads,
            names,
            ticks: process_ticks(&pid.to_string()).unwrap_or(0),
        }
    }

    /// CPU ms and wake-ups from `self` to `later` per thread name (threads
    /// of one name summed), largest first.
    pub fn by_thread(&self, later: &Precise) -> Vec<(String, f64, u64)> {
        let mut sums: HashMap<String, (f64, u64)> = HashMap::new();
        for (tid, (n, s)) in &later.threads {
            let (n0, s0) = self.threads.get(tid).copied().unwrap_or((0, 0));
            let name = later.names.get(tid).cloned().unwrap_or_default();
            let e = sums.entry(name).or_default();
            e.0 += n.saturating_sub(n0) as f64 / 1e6;
            e.1 += s.saturating_sub(s0);
        }
        let mut out: Vec<(String, f64, u64)> =
            sums.into_iter().map(|(k, (ms, w))| (k, ms, w)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }

    /// From `self` to `later`: CPU seconds, wake-ups and wall seconds. The
    /// threads' nanoseconds, unless the process's ticks show clearly more
    /// (threads that ended in between took theirs with them): then the
    /// ticks.
    pub fn until(&self, later: &Precise) -> Spent {
        let mut ns = 0u64;
        let mut switches = 0u64;
        for (tid, (n, s)) in &later.threads {
            let (n0, s0) = self.threads.get(tid).copied().unwrap_or((0, 0));
            ns += n.saturating_sub(n0);
            switches += s.saturating_sub(s0);
        }
        let by_threads = ns as f64 / 1e9;
        let by_ticks = later.ticks.saturating_sub(self.ticks) as f64 / TICKS_PER_SEC;
        let (cpu_secs, source) = if by_ticks > by_threads + 2.0 / TICKS_PER_SEC {
            (by_ticks, "ticks")
        } else {
            (by_threads, "threads")
        };
        Spent {
            cpu_secs,
            wakeups: switches,
            wall_secs: later.at.duration_since(self.at).as_secs_f64(),
            source,
        }
    }
}

/// What a process spent between two `Precise` readings.
#[derive(Clone, Copy, Debug)]
pub struct Spent {
    pub cpu_secs: f64,
    /// Context switches of its threads (each sleep and wake is one).
    pub wakeups: u64,
    pub wall_secs: f64,
    /// "threads" (nanoseconds) or "ticks" (some thread ended meanwhile).
    pub source: &'static str,
}
