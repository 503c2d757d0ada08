//! Figure 13: cheap when quiet (issue 19). What hookrelay's own CPU costs
//! per event at the rates most deployments see, against what it costs at
//! saturation in the same run, and what it spends idle.
//!
//! For each fan-out (1 and 10) on a fresh hookrelay with that many
//! subscriptions: a short warm-up, then open-loop single pushes at 50, 200
//! and 500 events/s (`figures::open_loop`: event *i* sent at t0 + *i*/rate
//! on its own task), each window waited out until every delivery arrived
//! plus a tail of 0.5 s (so the outcomes' recording is counted too), then the
//! saturated baseline: closed-loop single pushes by 32 clients. CPU is
//! hookrelay's, to the nanosecond (`cpu::Precise`), divided by the events
//! of the window. Also push → receipt p99 over every (event, endpoint),
//! and wake-ups (context switches) per event. On SQLite, and on a new
//! PostgreSQL database too when `--postgres` is given.
//!
//! Idle: hookrelay on a seeded SQLite file with 10,000 endpoints (one
//! subscription each, nothing pending, `--verify-interval 8h`), measured
//! for 60 s once it answers and has settled: CPU ms per second and
//! wake-ups per second.
//!
//! With a callgrind wrapper (`--wrapper "valgrind --tool=callgrind …"`),
//! the bench asks callgrind to dump its counts at the start and the end
//! of each window (`callgrind_control --dump=<window>`), so each window's
//! instructions are in a file of their own. Under any wrapper only fan-out
//! 1 runs, and the saturated part pushes a tenth of its events.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::secs_between;
use crate::cpu::{self, Precise};
use crate::figures::{
    Bench, Measured, block_on, event_json, extra_arrivals, open_loop, percentile, slots, subscribe,
    wait_for_arrivals, with_log,
};
use crate::instance::{Instance, Launch, Setup};
use crate::load::{self, Answer, Item};
use crate::seed::{self, ScratchDatabase, ScratchDir};

/// The open-loop rates, events per second.
pub const RATES: [u32; 3] = [50, 200, 500];
/// The fan-outs measured.
pub const FANOUTS: [usize; 2] = [1, 10];
/// Warm-up pushes before the first window (connections, caches).
const WARMUP_RATE: u32 = 200;
/// Clients of the saturated baseline (as figure 4).
const SATURATED_CLIENTS: usize = 32;
/// Options of the idle part: no verification comes due.
const IDLE_ARGS: [&str; 2] = ["--verify-interval", "8h"];

/// A part's metric values and its JSON detail.
type Part = (Vec<(&'static str, f64)>, Value);

/// One measured window.
struct Window {
    events: usize,
    spent: cpu::Spent,
    /// push → receipt, ms, over every (event, endpoint).
    p99_ms: f64,
    detail: Value,
}

impl Window {
    fn us_per_event(&self) -> f64 {
        self.spent.cpu_secs * 1e6 / self.events.max(1) as f64
    }
}

/// Figure 13.
pub fn quiet(bench: &Bench, postgres: Option<&str>) -> Result<Measured, String> {
    let mut values = Vec::new();
    let mut detail = serde_json::Map::new();
    // Under a profiler hookrelay runs tens of times slower: fan-out 1 only.
    let fanouts = if bench.launch.wrapper.is_empty() {
        &FANOUTS[..]
    } else {
        &FANOUTS[..1]
    };
    for &fanout in fanouts {
        let (v, d) = backend(bench, None, fanout, "")?;
        values.extend(v);
        detail.insert(format!("sqlite_fanout_{fanout}"), d);
    }
    if let Some(url) = postgres {
        for &fanout in fanouts {
            let database = ScratchDatabase::create(url)?;
            let (v, d) = backend(bench, Some(&database.url), fanout, "pg_")?;
            values.extend(v);
            detail.insert(format!("postgres_fanout_{fanout}"), d);
        }
    }
    let (idle_values, idle_detail) = idle(bench)?;
    values.extend(idle_values);
    detail.insert("idle".into(), idle_detail);
    Ok(Measured {
        values,
        detail: Value::Object(detail),
    })
}

/// The metric ids of one measurement, e.g. `quiet_f1_50_cpu`,
/// `quiet_pg_f10_sat_cpu`, `quiet_f1_200_p99`.
fn id(prefix: &str, fanout: usize, what: &str, unit: &str) -> &'static str {
    let name = format!("quiet_{prefix}f{fanout}_{what}_{unit}");
    crate::report::METRICS
        .iter()
        .find(|m| m.id == name)
        .map_or("quiet_unknown", |m| m.id)
}

/// One fan-out on one backend (`database`: a PostgreSQL URL, or a fresh
/// SQLite file): the three rates and the saturated baseline.
fn backend(
    bench: &Bench,
    database: Option<&str>,
    fanout: usize,
    prefix: &str,
) -> Result<Part, String> {
    let setup = Setup {
        database: database.map(str::to_string),
        args: Vec::new(),
    };
    let instance = Instance::start_with(&bench.launch, &setup)?;
    subscribe(&instance, bench.receiver.port, fanout).map_err(|e| with_log(&instance, e))?;
    let warmup = (f64::from(WARMUP_RATE) * bench.sizes.quiet_warmup_secs).round() as usize;
    paced(bench, &instance, fanout, WARMUP_RATE, warmup, "warmup")?;
    let mut values = Vec::new();
    let mut detail = serde_json::Map::new();
    for rate in RATES {
        let secs = match rate {
            50 => bench.sizes.quiet_secs_50,
            _ => bench.sizes.quiet_secs,
        };
        let events = (f64::from(rate) * secs).round().max(2.0) as usize;
        let w = paced(
            bench,
            &instance,
            fanout,
            rate,
            events,
            &format!("rate-{rate}"),
        )?;
        values.push((
            id(prefix, fanout, &rate.to_string(), "cpu"),
            w.us_per_event(),
        ));
        values.push((id(prefix, fanout, &rate.to_string(), "p99"), w.p99_ms));
        detail.insert(rate.to_string(), w.detail);
    }
    let events = match (fanout, bench.launch.wrapper.is_empty()) {
        (1, true) => bench.sizes.quiet_saturated_events,
        (_, true) => bench.sizes.quiet_saturated_events / 4,
        // Under a profiler.
        (_, false) => bench.sizes.quiet_saturated_events / 10,
    };
    let w = saturated(bench, &instance, fanout, events)?;
    values.push((id(prefix, fanout, "sat", "cpu"), w.us_per_event()));
    detail.insert("saturated".into(), w.detail);
    detail.insert("hookrelay_log_lines".into(), json!(instance.log_lines()));
    Ok((values, Value::Object(detail)))
}

/// Asks a callgrind wrapper to dump its counts so far under `label`.
fn callgrind_dump(launch: &Launch, instance: &Instance, label: &str) {
    if !launch.wrapper.iter().any(|w| w == "--tool=callgrind") {
        return;
    }
    let status = std::process::Command::new("callgrind_control")
        .arg(format!("--dump={label}"))
        .arg(instance.pid().to_string())
        .stdout(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("warning: callgrind_control --dump={label} failed");
    }
}

/// What a window spent, with its JSON detail.
fn summary(events: usize, fanout: usize, spent: cpu::Spent, mut latency: Vec<f64>) -> Value {
    latency.sort_by(f64::total_cmp);
    let per = |x: f64| x / events.max(1) as f64;
    json!({
        "events": events, "deliveries": events * fanout,
        "cpu_us_per_event": per(spent.cpu_secs * 1e6),
        "cpu_ms": spent.cpu_secs * 1e3, "cpu_source": spent.source,
        "wall_seconds": spent.wall_secs,
        "cores": spent.cpu_secs / spent.wall_secs.max(1e-9),
        "wakeups_per_event": per(spent.wakeups as f64),
        "push_to_receipt_ms": {
            "p50": percentile(&latency, 50.0), "p99": percentile(&latency, 99.0),
            "max": latency.last().copied().unwrap_or(f64::NAN),
        },
    })
}

/// Per thread name: µs of CPU and wake-ups per event.
fn per_thread(from: &Precise, to: &Precise, events: usize) -> Value {
    let n = events.max(1) as f64;
    Value::Array(
        from.by_thread(to)
            .into_iter()
            .filter(|(_, ms, _)| *ms > 0.0)
            .map(|(name, ms, wakeups)| {
                json!({"thread": name, "cpu_us_per_event": ms * 1e3 / n, "wakeups_per_event": wakeups as f64 / n})
            })
            .collect(),
    )
}

/// `events` open-loop single pushes at `rate`/s; waits for every delivery
/// and the tail.
fn paced(
    bench: &Bench,
    instance: &Instance,
    fanout: usize,
    rate: u32,
    events: usize,
    label: &str,
) -> Result<Window, String> {
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..=events as u64)
            .map(|id| Bytes::from(event_json(id)))
            .collect(),
    );
    let (sent, acked) = (slots(events + 1), slots(events + 1));
    let arrivals = &bench.receiver.arrivals;
    arrivals.track(fanout, events + 1);
    let url = format!("{}/internal/v1/events", instance.internal);
    callgrind_dump(&bench.launch, instance, &format!("before-{label}"));
    let noise_from = cpu::snapshot(Some(instance.pid()));
    let from = Precise::read(instance.pid());
    let pushed = open_loop(url, bodies, rate, sent.clone(), acked.clone());
    let overloaded = pushed.map_err(|e| with_log(instance, e))?;
    wait_for_arrivals(arrivals, (events * fanout) as u64, &bench.sizes)
        .map_err(|e| with_log(instance, e))?;
    std::thread::sleep(Duration::from_secs_f64(bench.sizes.quiet_tail_secs));
    let to = Precise::read(instance.pid());
    let noise = cpu::usage(&noise_from, &cpu::snapshot(Some(instance.pid())));
    let spent = from.until(&to);
    let threads = per_thread(&from, &to, events);
    callgrind_dump(&bench.launch, instance, label);
    let mut latency = Vec::with_capacity(events * fanout);
    let mut acks = Vec::with_capacity(events);
    for endpoint in 0..fanout {
        let arrived = arrivals.first_arrivals(endpoint);
        for id in 1..=events {
            let s = sent[id].load(Ordering::SeqCst);
            latency.push(secs_between(s, arrived[id]) * 1000.0);
            if endpoint == 0 {
                acks.push(secs_between(s, acked[id].load(Ordering::SeqCst)) * 1000.0);
            }
        }
    }
    let receiver = extra_arrivals(arrivals);
    let first = sent[1].load(Ordering::SeqCst);
    let last = sent[events].load(Ordering::SeqCst);
    acks.sort_by(f64::total_cmp);
    let mut detail = summary(events, fanout, spent, latency.clone());
    latency.sort_by(f64::total_cmp);
    detail["rate_target"] = json!(rate);
    detail["rate_achieved"] = json!((events - 1) as f64 / secs_between(first, last).max(1e-9));
    detail["push_ack_ms"] = json!({"p50": percentile(&acks, 50.0), "p99": percentile(&acks, 99.0)});
    detail["overloaded_503"] = json!(overloaded);
    detail["receiver"] = receiver;
    detail["threads"] = threads;
    // The machine's accounting (other processes, disk) for the noise flag.
    detail["cpu"] = noise;
    Ok(Window {
        events,
        spent,
        p99_ms: percentile(&latency, 99.0),
        detail,
    })
}

/// The baseline: `events` single pushes by 32 closed-loop clients; waits
/// for every delivery and the tail.
fn saturated(
    bench: &Bench,
    instance: &Instance,
    fanout: usize,
    events: usize,
) -> Result<Window, String> {
    let items: Arc<Vec<Item>> = Arc::new(
        (1..=events as u64)
            .map(|id| Item {
                body: Bytes::from(event_json(id)),
                events: 1,
            })
            .collect(),
    );
    let url: Arc<str> = format!("{}/internal/v1/events", instance.internal).into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let arrivals = &bench.receiver.arrivals;
    arrivals.track(fanout, events + 1);
    let stop = Instant::now() + Duration::from_secs_f64(bench.sizes.deadline_secs * 5.0);
    callgrind_dump(&bench.launch, instance, "before-saturated");
    let noise_from = cpu::snapshot(Some(instance.pid()));
    let from = Precise::read(instance.pid());
    let started = crate::clock::now_ns();
    let answer = Answer::Single {
        deliveries: fanout as u64,
    };
    let tally = load::spread(bench.threads, SATURATED_CLIENTS, move |c| {
        load::each_once(c, url.clone(), items.clone(), next.clone(), answer, stop)
    });
    if let Some(e) = tally.error {
        return Err(with_log(instance, e));
    }
    let last = wait_for_arrivals(arrivals, (events * fanout) as u64, &bench.sizes)
        .map_err(|e| with_log(instance, e))?;
    std::thread::sleep(Duration::from_secs_f64(bench.sizes.quiet_tail_secs));
    let to = Precise::read(instance.pid());
    let noise = cpu::usage(&noise_from, &cpu::snapshot(Some(instance.pid())));
    let spent = from.until(&to);
    let threads = per_thread(&from, &to, events);
    callgrind_dump(&bench.launch, instance, "saturated");
    let receiver = extra_arrivals(arrivals);
    let mut detail = summary(events, fanout, spent, Vec::new());
    detail["clients"] = json!(SATURATED_CLIENTS);
    detail["events_per_second"] = json!(events as f64 / secs_between(started, last).max(1e-9));
    detail["overloaded_503"] = json!(tally.overloaded);
    detail["receiver"] = receiver;
    detail["threads"] = threads;
    detail["cpu"] = noise;
    Ok(Window {
        events,
        spent,
        p99_ms: f64::NAN,
        detail,
    })
}

/// Waits until `GET /internal/v1/endpoints?limit=1` answers 200.
fn wait_answering(instance: &Instance) -> Result<(), String> {
    let url = format!("{}/internal/v1/endpoints?limit=1", instance.internal);
    block_on(async {
        let client = load::client(1);
        let until = Instant::now() + Duration::from_secs(300);
        loop {
            match load::get(&client, &url).await {
                Ok((200, _)) => return Ok(()),
                _ if Instant::now() > until => {
                    return Err(format!("GET {url} did not answer 200 within 300s"));
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
}

/// The idle part: CPU and wake-ups of hookrelay with many idle endpoints.
fn idle(bench: &Bench) -> Result<Part, String> {
    let sizes = &bench.sizes;
    let dir = ScratchDir::new("quiet")?;
    let db = dir.path.join("bench.db");
    seed::idle_endpoints(&db, sizes.quiet_idle_endpoints, bench.receiver.port)?;
    let setup = Setup {
        database: Some(db.to_string_lossy().into_owned()),
        args: IDLE_ARGS.iter().map(|s| s.to_string()).collect(),
    };
    let instance = Instance::start_with(&bench.launch, &setup)?;
    wait_answering(&instance).map_err(|e| with_log(&instance, e))?;
    std::thread::sleep(Duration::from_secs_f64(sizes.quiet_idle_settle_secs));
    callgrind_dump(&bench.launch, &instance, "before-idle");
    let from = Precise::read(instance.pid());
    std::thread::sleep(Duration::from_secs_f64(sizes.quiet_idle_secs));
    let spent = from.until(&Precise::read(instance.pid()));
    callgrind_dump(&bench.launch, &instance, "idle");
    let ms_per_sec = spent.cpu_secs * 1e3 / spent.wall_secs.max(1e-9);
    let wakeups = spent.wakeups as f64 / spent.wall_secs.max(1e-9);
    Ok((
        vec![
            ("quiet_idle_cpu", ms_per_sec),
            ("quiet_idle_wakeups", wakeups),
        ],
        json!({
            "endpoints": sizes.quiet_idle_endpoints,
            "seconds": spent.wall_secs,
            "cpu_ms": spent.cpu_secs * 1e3, "cpu_source": spent.source,
            "cpu_ms_per_second": ms_per_sec,
            "wakeups": spent.wakeups, "wakeups_per_second": wakeups,
            "hookrelay_log_lines": instance.log_lines(),
        }),
    ))
}
