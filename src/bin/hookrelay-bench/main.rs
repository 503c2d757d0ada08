//! `hookrelay-bench`: measures the real `hookrelay` binary (started as a
//! child process on a fresh SQLite file, a seeded one, or a new PostgreSQL
//! database) against loopback baselines, all on 127.0.0.1. See
//! BENCHMARKS.md for what each figure means.
//!
//! ```text
//! cargo run --release --bin hookrelay-bench -- [--smoke] [--out FILE.json] [--runs N] [--figures 7,8,9,10]
//! ```

mod budget;
mod clock;
mod cpu;
mod figures;
mod handover;
mod instance;
mod load;
mod memory;
mod paced;
mod pacing;
mod postgres;
mod quiet;
mod receiver;
mod recovery;
mod report;
mod retention;
mod seed;

/// The same allocator as hookrelay, so that the baselines (the loopback
/// client and receiver, the bare handler) are not handicapped by glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};

use figures::{Bench, Measured, Sizes};
use instance::Launch;
use receiver::ReceiverServer;

/// Busy cores (of the machine, or of other processes during a figure)
/// above which the machine counts as noisy.
const QUIET_BELOW: f64 = 0.3;
/// MB written to disk by other processes during a figure above which it
/// counts as noisy (hookrelay's commits wait for fsync).
const NOISY_DISK_MB: f64 = 50.0;

#[derive(Parser, Debug)]
#[command(
    name = "hookrelay-bench",
    about = "Throughput and latency of hookrelay against loopback baselines (127.0.0.1 only)"
)]
struct Args {
    /// One run with tiny sizes (about 30 s in all): proves the bench works,
    /// measures nothing worth quoting.
    #[arg(long)]
    smoke: bool,

    /// Where to write the JSON results.
    #[arg(long, default_value = "target/bench.json")]
    out: PathBuf,

    /// Runs of every figure; the report gives the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,

    /// Only these figures (1-13), comma separated. Figures 9 and 10 need
    /// a PostgreSQL URL; figure 9 brings figure 1 (its baseline) along.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=13))]
    figures: Vec<u8>,

    /// A PostgreSQL server for figures 9 and 10, as a URL of a database
    /// the bench can connect to and create databases from (a new
    /// `hr_bench_…` database is made, and dropped, for every measurement).
    /// Without it figures 9 and 10 are skipped.
    #[arg(long, env = "HOOKRELAY_BENCH_POSTGRES_URL")]
    postgres: Option<String>,

    /// The hookrelay binary (default: `hookrelay` next to this program).
    #[arg(long)]
    hookrelay: Option<PathBuf>,

    /// Before each figure, wait up to this many seconds for the machine to
    /// be nearly idle (under 0.3 busy cores); 0 disables. Not in --smoke.
    #[arg(long, default_value_t = 60)]
    quiet_wait: u64,

    /// A command put in front of hookrelay, split on spaces, for profiling,
    /// e.g. "valgrind --tool=callgrind". hookrelay then gets SIGTERM (not
    /// SIGKILL) at the end so the profiler can write its output.
    #[arg(long)]
    wrapper: Option<String>,
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The 1-minute load average (other work on the machine skews the figures).
fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());
    json!({
        "nproc": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "os": os,
        "kernel": kernel,
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "git_rev": git(&["rev-parse", "HEAD"]),
        "git_dirty": git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn run_figure(bench: &Bench, figure: u8, postgres: Option<&str>) -> Result<Measured, String> {
    match (figure, postgres) {
        (1, _) => figures::loopback(bench),
        (2, _) => figures::batch(bench, 1, bench.sizes.batch_events),
        (3, _) => figures::batch(bench, 10, bench.sizes.batch_fanout10_events),
        (4, _) => figures::single(bench),
        (5, _) => figures::ingest(bench),
        (6, _) => figures::latency(bench),
        (7, _) => memory::memory(bench),
        (8, _) => recovery::recovery(bench),
        (11, _) => pacing::pacing(bench),
        (12, _) => retention::retention(bench),
        (13, pg) => quiet::quiet(bench, pg),
        (9, Some(url)) => postgres::postgres(bench, url),
        (_, Some(url)) => handover::handover(bench, url),
        (_, None) => Err(format!("figure {figure} needs --postgres URL")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    clock::init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match bench(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("hookrelay-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when some figure failed.
fn bench(args: Args) -> Result<bool, String> {
    let binary = match args.hookrelay {
        Some(b) => b,
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program's path: {e}"))?
            .with_file_name("hookrelay"),
    };
    if !binary.is_file() {
        return Err(format!(
            "{} does not exist; build it first with `cargo build --release --bin hookrelay` \
             (or run the bench with `cargo run --release --bin hookrelay-bench`, which builds it)",
            binary.display()
        ));
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build of the bench; use --release for real numbers");
    }
    let sizes = if args.smoke {
        Sizes::smoke()
    } else {
        Sizes::full()
    };
    let runs = if args.smoke { 1 } else { args.runs };
    let mut selected: Vec<u8> = if args.figures.is_empty() {
        (1..=13).collect()
    } else {
        args.figures.clone()
    };
    let postgres = args.postgres.as_deref().filter(|u| !u.trim().is_empty());
    let mut skipped = serde_json::Map::new();
    for (figure, name) in [(9, "PostgreSQL"), (10, "cluster hand-over, PostgreSQL")] {
        if postgres.is_none() && selected.contains(&figure) {
            selected.retain(|f| *f != figure);
            let why = "no PostgreSQL URL: set HOOKRELAY_BENCH_POSTGRES_URL or pass --postgres URL";
            eprintln!("figure {figure} ({name}) skipped: {why}");
            skipped.insert(figure.to_string(), json!(why));
        }
    }
    if selected.contains(&11)
        && let Some(why) = pacing::unsupported(&binary)
    {
        selected.retain(|f| *f != 11);
        eprintln!("figure 11 (endpoints at their own pace) {why}");
        skipped.insert("11".into(), json!(why));
    }
    if postgres.is_some() && selected.contains(&9) && !selected.contains(&1) {
        eprintln!("figure 1 added: figure 9's ratios are to its loopback limit");
        selected.push(1);
    }
    selected.sort_unstable();
    selected.dedup();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let receiver = ReceiverServer::start(threads)?;
    let bench = Bench {
        receiver,
        launch: Launch {
            binary: binary.clone(),
            wrapper: args
                .wrapper
                .as_deref()
                .map(|w| w.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            max_in_flight: 32,
        },
        sizes,
        threads,
    };
    eprintln!(
        "hookrelay-bench: {} ({} cores), {} run(s) of figures {:?}{}",
        binary.display(),
        threads,
        runs,
        selected,
        if args.smoke { ", smoke sizes" } else { "" }
    );

    let mut values: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut details = Vec::new();
    let mut failures = Vec::new();
    let mut noise: BTreeMap<u8, Vec<Value>> = BTreeMap::new();
    for run in 1..=runs {
        let mut detail = serde_json::Map::new();
        detail.insert("loadavg_before".into(), json!(loadavg()));
        for &figure in &selected {
            if !args.smoke && args.quiet_wait > 0 {
                let busy = cpu::wait_quiet(Duration::from_secs(args.quiet_wait), QUIET_BELOW);
                if let Some(b) = busy.filter(|b| *b >= QUIET_BELOW) {
                    eprintln!(
                        "warning: the machine stayed busy ({b:.2} cores) for {}s; measuring anyway",
                        args.quiet_wait
                    );
                }
            }
            let started = std::time::Instant::now();
            match run_figure(&bench, figure, postgres) {
                Ok(m) if m.values.is_empty() => {
                    eprintln!(
                        "run {run}/{runs} figure {figure}: {}",
                        m.detail["skipped"].as_str().unwrap_or("skipped")
                    );
                    skipped.insert(figure.to_string(), m.detail["skipped"].clone());
                }
                Ok(m) => {
                    let shown: Vec<String> = m
                        .values
                        .iter()
                        .map(|(id, v)| {
                            let unit = report::METRICS
                                .iter()
                                .find(|x| x.id == *id)
                                .map_or("", |x| x.unit);
                            format!("{id} {} {unit}", report::number(*v, unit))
                        })
                        .collect();
                    let other = cpu::largest(&m.detail, "other_cores");
                    let other_disk = cpu::largest(&m.detail, "other_disk_mb_written");
                    let noisy = other.is_some_and(|o| o >= QUIET_BELOW)
                        || other_disk.is_some_and(|d| d >= NOISY_DISK_MB);
                    eprintln!(
                        "run {run}/{runs} figure {figure}: {} ({:.1}s{}{}{})",
                        shown.join(", "),
                        started.elapsed().as_secs_f64(),
                        other.map_or(String::new(), |o| format!(
                            ", other processes used {o:.2} cores"
                        )),
                        other_disk.map_or(String::new(), |d| format!(" and wrote {d:.0} MB")),
                        if noisy { ": NOISY" } else { "" }
                    );
                    if let Some(o) = other {
                        noise.entry(figure).or_default().push(json!({
                            "run": run,
                            "other_cores": o,
                            "other_disk_mb_written": other_disk,
                            "noisy": noisy,
                        }));
                    }
                    for (id, v) in m.values {
                        values.entry(id).or_default().push(v);
                    }
                    detail.insert(figure.to_string(), m.detail);
                }
                Err(e) => {
                    eprintln!("run {run}/{runs} figure {figure}: FAILED: {e}");
                    detail.insert(figure.to_string(), json!({ "error": e }));
                    failures.push(format!("run {run} figure {figure}: {e}"));
                }
            }
        }
        detail.insert("loadavg_after".into(), json!(loadavg()));
        details.push(Value::Object(detail));
    }
    bench.receiver.stop();

    // A figure that found out while running that it cannot run here.
    selected.retain(|f| !skipped.contains_key(&f.to_string()));
    let rows = report::summarise(&values, &selected);
    println!();
    if args.smoke {
        println!(
            "(smoke sizes: these numbers only show that the bench runs; do not quote them. \
             Figure 7 uses {} endpoints and figure 8 {} deliveries, whatever the labels say)",
            report::number(bench.sizes.memory_endpoints as f64, ""),
            report::number(bench.sizes.recovery_deliveries as f64, "")
        );
    }
    print!("{}", report::table(&rows));
    let cpu_lines = budget::lines(&details, &rows, threads as f64);
    print!("{}", budget::table(&cpu_lines));
    let noisy: Vec<String> = noise
        .iter()
        .filter_map(|(f, v)| {
            let runs: Vec<String> = v
                .iter()
                .filter(|x| x["noisy"] == json!(true))
                .map(|x| x["run"].to_string())
                .collect();
            (!runs.is_empty()).then(|| format!("figure {f} (run {})", runs.join(", ")))
        })
        .collect();
    if !noisy.is_empty() {
        println!(
            "\nnote: other processes were busy (CPU or disk) during {}; those numbers, and ratios built on them, are unreliable",
            noisy.join(", ")
        );
    }
    if !failures.is_empty() {
        println!("\n{} failure(s):", failures.len());
        for f in &failures {
            println!("  {}", f.lines().next().unwrap_or(""));
        }
    }
    let document = json!({
        "tool": "hookrelay-bench",
        "smoke": args.smoke,
        "runs": runs,
        "figures_run": selected,
        "machine": machine(),
        "sizes": bench.sizes,
        "hookrelay_args": format!(
            "serve --database-url <temp>/bench.db --public-addr 127.0.0.1:0 --internal-addr 127.0.0.1:0 \
             --allow-private-endpoints --max-in-flight-per-endpoint {} (figure 7 adds --verify-interval 8h; \
             figure 12 --history-retention 1d (cleaning) or --history-retention 30d --idempotency-retention 30d (idle) \
             on a seeded file; figures 9 and 10 use --database-url postgres://…/hr_bench_… --node-id a|b|c --lease-ttl 3s)",
            bench.launch.max_in_flight),
        "postgres": postgres.map(hookrelay::store::redact),
        "skipped": skipped,
        "figures": report::rows_json(&rows),
        "cpu_per_item": budget::json(&cpu_lines),
        "other_processes_by_figure": noise,
        "run_details": details,
        "failures": failures,
    });
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!("\nresults written to {}", args.out.display());
    Ok(failures.is_empty())
}
