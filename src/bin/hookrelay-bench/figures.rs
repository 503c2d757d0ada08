//! The six throughput and latency measurements, and the push loads that
//! figure 9 repeats on PostgreSQL (figures 7 and 8 are in `memory.rs` and
//! `recovery.rs`). Each starts what it needs (a fresh hookrelay child
//! on a fresh database when hookrelay is involved), measures, and returns
//! its numbers, or an error saying what went wrong.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::{now_ns, secs_between};
use crate::cpu;
use crate::instance::{Instance, Launch};
use crate::load::{self, Answer, Item, Tally};
use crate::receiver::{Arrivals, ReceiverServer};

/// Size of every pushed event body, in bytes.
pub const EVENT_BYTES: usize = 300;
/// Events per batch call.
pub const BATCH: usize = 1000;
/// The user owning the bench's subscriptions (events carry no
/// triggeringUserId, so nothing is skipped).
pub const SUBSCRIBER_USER: i64 = 1000;
/// The marketplace (tenant) of the bench's subscriptions and events.
pub const SUBSCRIBER_MARKETPLACE: i64 = 1;

/// How much work each figure does.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sizes {
    pub loopback_secs: f64,
    pub batch_events: usize,
    pub batch_pushers: usize,
    pub batch_fanout10_events: usize,
    pub single_events: usize,
    pub single_clients: usize,
    pub ingest_secs: f64,
    pub ingest_clients: usize,
    pub latency_rate: u32,
    pub latency_secs: f64,
    pub latency_warmup_secs: f64,
    /// Waiting for deliveries fails after this long without a new arrival…
    pub stall_secs: f64,
    /// …or this long after the pushes are done.
    pub deadline_secs: f64,
    /// Figure 7: idle endpoints (one subscription each) in the database.
    pub memory_endpoints: usize,
    /// Figure 7: the resident set counts as settled after this long
    /// without growing.
    pub memory_settle_secs: f64,
    /// Figure 7: `GET /metrics` scrapes timed.
    pub metrics_scrapes: usize,
    /// Figure 8: pending deliveries in the database at start…
    pub recovery_deliveries: usize,
    /// …spread over this many endpoints.
    pub recovery_endpoints: usize,
    /// Figure 8: the drain is cut off this long after the first delivery.
    pub recovery_deadline_secs: f64,
    /// Figure 10: endpoints (one subscription each; every event goes to all).
    pub handover_endpoints: usize,
    /// Figure 10: events per second of the steady stream.
    pub handover_rate: f64,
    /// Figure 10: how long the stream runs on once a change has settled
    /// (and how long the steady window lasts).
    pub handover_settle_secs: f64,
    /// Figure 11: events per second of the open-loop stream (each to all
    /// 20 paced endpoints)…
    pub pacing_rate: u32,
    /// …for this long.
    pub pacing_secs: f64,
    /// Figure 12: finished deliveries (each with its event and one
    /// attempt) past retention in the seeded database…
    pub retention_rows: usize,
    /// …open-loop pushes per second (fan-out 1) while they are cleaned…
    pub retention_rate: u32,
    /// …for this long…
    pub retention_secs: f64,
    /// …and the cleaning fails after this long.
    pub retention_clean_deadline_secs: f64,
    /// Figure 13: warm-up at 200/s before the first window…
    pub quiet_warmup_secs: f64,
    /// …the 50/s window…
    pub quiet_secs_50: f64,
    /// …the 200/s and 500/s windows…
    pub quiet_secs: f64,
    /// …single pushes of the saturated baseline (a quarter at fan-out 10)…
    pub quiet_saturated_events: usize,
    /// …idle endpoints of the idle part, left to settle this long once
    /// hookrelay answers, then measured this long.
    pub quiet_idle_endpoints: usize,
    pub quiet_idle_settle_secs: f64,
    pub quiet_idle_secs: f64,
    /// Figure 13: waited after a window's last delivery before its CPU is
    /// read, so that recording the outcomes is counted.
    pub quiet_tail_secs: f64,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            loopback_secs: 5.0,
            batch_events: 50_000,
            batch_pushers: 4,
            batch_fanout10_events: 50_000,
            single_events: 20_000,
            single_clients: 32,
            ingest_secs: 5.0,
            ingest_clients: 64,
            latency_rate: 1000,
            latency_secs: 10.0,
            latency_warmup_secs: 1.0,
            stall_secs: 30.0,
            deadline_secs: 120.0,
            memory_endpoints: 100_000,
            memory_settle_secs: 2.0,
            metrics_scrapes: 5,
            recovery_deliveries: 1_000_000,
            recovery_endpoints: 10,
            recovery_deadline_secs: 300.0,
            handover_endpoints: 100,
            handover_rate: 10.0,
            handover_settle_secs: 3.0,
            pacing_rate: 100,
            pacing_secs: 5.0,
            retention_rows: 1_000_000,
            retention_rate: 500,
            retention_secs: 30.0,
            retention_clean_deadline_secs: 900.0,
            quiet_warmup_secs: 1.0,
            quiet_secs_50: 16.0,
            quiet_secs: 8.0,
            quiet_saturated_events: 20_000,
            quiet_idle_endpoints: 10_000,
            quiet_idle_settle_secs: 5.0,
            quiet_idle_secs: 60.0,
            quiet_tail_secs: 0.5,
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            loopback_secs: 0.5,
            batch_events: 500,
            batch_fanout10_events: 500,
            single_events: 200,
            ingest_secs: 0.5,
            latency_secs: 1.0,
            latency_warmup_secs: 0.2,
            stall_secs: 10.0,
            deadline_secs: 15.0,
            memory_endpoints: 2_000,
            memory_settle_secs: 0.5,
            metrics_scrapes: 2,
            recovery_deliveries: 10_000,
            recovery_deadline_secs: 20.0,
            handover_endpoints: 10,
            handover_settle_secs: 0.5,
            pacing_rate: 20,
            pacing_secs: 0.5,
            retention_rows: 5_000,
            retention_rate: 100,
            retention_secs: 1.0,
            retention_clean_deadline_secs: 30.0,
            quiet_warmup_secs: 0.1,
            quiet_secs_50: 0.2,
            quiet_secs: 0.1,
            quiet_saturated_events: 200,
            quiet_idle_endpoints: 200,
            quiet_idle_settle_secs: 0.2,
            quiet_idle_secs: 0.5,
            quiet_tail_secs: 0.05,
            ..Sizes::full()
        }
    }
}

/// Everything the figures share.
pub struct Bench {
    pub receiver: ReceiverServer,
    pub launch: Launch,
    pub sizes: Sizes,
    /// Load-generator threads.
    pub threads: usize,
}

/// What one figure measured in one run.
pub struct Measured {
    pub values: Vec<(&'static str, f64)>,
    pub detail: Value,
}

/// An event of exactly [`EVENT_BYTES`] bytes (for ids below 10^12).
pub fn event_json(id: u64) -> String {
    let head = format!(
        r#"{{"event":"qti_export_ready","marketplaceId":1,"contextObjectId":{id},"contextObjectType":"QUESTION_SET","timestamp":"2021-06-29T18:16:06Z","triggeringUserName":""#
    );
    let tail = r#""}"#;
    let pad = EVENT_BYTES.saturating_sub(head.len() + tail.len());
    let mut s = String::with_capacity(EVENT_BYTES);
    s.push_str(&head);
    s.extend(std::iter::repeat_n('u', pad));
    s.push_str(tail);
    s
}

fn single_items(ids: std::ops::RangeInclusive<u64>) -> Vec<Item> {
    ids.map(|id| Item {
        body: Bytes::from(event_json(id)),
        events: 1,
    })
    .collect()
}

fn batch_items(events: usize) -> Vec<Item> {
    let ids: Vec<u64> = (1..=events as u64).collect();
    ids.chunks(BATCH)
        .map(|chunk| {
            let mut body = String::with_capacity(chunk.len() * (EVENT_BYTES + 1) + 2);
            body.push('[');
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&event_json(*id));
            }
            body.push(']');
            Item {
                body: Bytes::from(body),
                events: chunk.len(),
            }
        })
        .collect()
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    actix_rt::System::new().block_on(f)
}

/// A token for the subscriber, then `fanout` subscriptions on `/r/0`…
pub fn subscribe(instance: &Instance, receiver_port: u16, fanout: usize) -> Result<(), String> {
    block_on(async {
        let client = load::client(2);
        let url = format!("{}/internal/v1/tokens", instance.internal);
        let body =
            json!({"marketplaceId": SUBSCRIBER_MARKETPLACE, "userId": SUBSCRIBER_USER}).to_string();
        let (status, answer) = load::post(&client, &url, Bytes::from(body), None).await?;
        if status != 201 {
            return Err(format!(
                "POST {url} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
        let token = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string))
            .ok_or_else(|| {
                format!(
                    "POST {url}: no token in {}",
                    String::from_utf8_lossy(&answer)
                )
            })?;
        let url = format!("{}/v1/subscription", instance.public);
        for n in 0..fanout {
            let body = json!({
                "event": "qti_export_ready",
                "endpoint": format!("http://127.0.0.1:{receiver_port}/r/{n}"),
                "secret": "bench-secret-0123456789",
            })
            .to_string();
            let (status, answer) =
                load::post(&client, &url, Bytes::from(body), Some(&token)).await?;
            if status != 201 {
                return Err(format!(
                    "POST {url} answered {status}: {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
        }
        Ok(())
    })
}

/// Waits until `expected` distinct deliveries arrived; returns the clock
/// reading of the last one.
pub fn wait_for_arrivals(arrivals: &Arrivals, expected: u64, sizes: &Sizes) -> Result<u64, String> {
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(sizes.deadline_secs);
    let stall = Duration::from_secs_f64(sizes.stall_secs);
    let mut seen = arrivals.unique();
    let mut changed = Instant::now();
    loop {
        let count = arrivals.unique();
        if count >= expected {
            return Ok(arrivals.last_unique_ns());
        }
        if count != seen {
            seen = count;
            changed = Instant::now();
        }
        if changed.elapsed() > stall {
            return Err(format!(
                "only {count} of {expected} deliveries arrived ({} duplicates), and none for {:.0}s",
                arrivals.duplicates(),
                stall.as_secs_f64()
            ));
        }
        if started.elapsed() > deadline {
            return Err(format!(
                "only {count} of {expected} deliveries arrived ({} duplicates) within {:.0}s",
                arrivals.duplicates(),
                deadline.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Duplicate and unexpected deliveries, counted a little after the last
/// expected one arrived; stops tracking.
pub fn extra_arrivals(arrivals: &Arrivals) -> Value {
    std::thread::sleep(Duration::from_millis(200));
    arrival_counts(arrivals)
}

/// Arrivals, duplicate and unexpected deliveries so far; stops tracking.
pub fn arrival_counts(arrivals: &Arrivals) -> Value {
    let counts = json!({
        "arrivals": arrivals.count(),
        "duplicate_deliveries": arrivals.duplicates(),
        "unexpected_deliveries": arrivals.untracked(),
    });
    arrivals.untrack();
    counts
}

pub fn with_log(instance: &Instance, error: String) -> String {
    format!(
        "{error}\n  hookrelay (pid {}) log ends with:\n{}",
        instance.pid(),
        instance.log_tail(1500)
    )
}

fn check(tally: &Tally) -> Result<(), String> {
    match &tally.error {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

fn push_deadline(sizes: &Sizes) -> Instant {
    Instant::now() + Duration::from_secs_f64(sizes.deadline_secs * 5.0)
}

/// Figure 1: A bare awc client POSTing to the receiver, 32 requests in flight.
pub fn loopback(bench: &Bench) -> Result<Measured, String> {
    let items = Arc::new(single_items(1..=1));
    let url: Arc<str> = bench.receiver.url("/r/0").into();
    let next = Arc::new(AtomicUsize::new(0));
    // Tracked like deliveries, so the receiver does the same work.
    bench.receiver.arrivals.track(1, 2);
    let cpu_from = cpu::snapshot(None);
    let start = now_ns();
    let until = Instant::now() + Duration::from_secs_f64(bench.sizes.loopback_secs);
    let tally = load::spread(bench.threads, 32, move |c| {
        load::for_duration(
            c,
            url.clone(),
            items.clone(),
            next.clone(),
            until,
            Answer::Receiver,
        )
    });
    let cpu = cpu::usage(&cpu_from, &cpu::snapshot(None));
    bench.receiver.arrivals.untrack();
    check(&tally)?;
    let secs = secs_between(start, tally.end_ns);
    Ok(Measured {
        values: vec![("loopback", tally.ok as f64 / secs)],
        detail: json!({"requests": tally.ok, "seconds": secs, "cpu": cpu}),
    })
}

/// What a push figure measured: deliveries/s (first push → last distinct
/// arrival), ingest events/s (first push → last 202), and the details.
pub struct Pushed {
    pub delivery: f64,
    pub ingest: f64,
    pub detail: Value,
}

/// The error with the end of every node's log.
pub fn with_logs(nodes: &[&Instance], error: String) -> String {
    match nodes {
        [one] => with_log(one, error),
        _ => nodes.iter().fold(error, |e, n| {
            format!(
                "{e}\n  hookrelay (pid {}) log ends with:\n{}",
                n.pid(),
                n.log_tail(1000)
            )
        }),
    }
}

/// Splits `items` between the nodes (item i to node i % nodes), and gives
/// each load task a node in turn: (URL, its items, its next index) for
/// every task.
type Share = (Arc<str>, Arc<Vec<Item>>, Arc<AtomicUsize>);

fn shares(nodes: &[&Instance], path: &str, items: Vec<Item>) -> Vec<Share> {
    let n = nodes.len().max(1);
    let mut parts: Vec<Vec<Item>> = vec![Vec::new(); n];
    for (i, item) in items.into_iter().enumerate() {
        parts[i % n].push(item);
    }
    nodes
        .iter()
        .zip(parts)
        .map(|(node, part)| {
            (
                Arc::from(format!("{}{path}", node.internal)),
                Arc::new(part),
                Arc::new(AtomicUsize::new(0)),
            )
        })
        .collect()
}

/// A closure for `load::spread` that hands each task the next node's share.
fn per_task(shares: Vec<Share>) -> impl Fn() -> Share + Send + Sync + 'static {
    let task = AtomicUsize::new(0);
    move || shares[task.fetch_add(1, Ordering::Relaxed) % shares.len()].clone()
}

/// One push load: what is pushed where, by how many tasks on how many
/// threads, and what arrives at the receiver.
struct PushLoad {
    path: &'static str,
    items: Vec<Item>,
    /// Events in `items`.
    events: usize,
    /// Subscriptions per event: deliveries = events × fanout.
    fanout: usize,
    threads: usize,
    tasks: usize,
    answer: Answer,
}

/// Pushes `load` split over `nodes` and waits for every delivery; from the
/// first push to the last 202 (ingest) and to the last arrival (delivery).
/// `database`: a local PostgreSQL database whose server processes are
/// accounted for separately.
fn push_and_wait(
    bench: &Bench,
    nodes: &[&Instance],
    database: Option<&str>,
    load: PushLoad,
) -> Result<Pushed, String> {
    let PushLoad {
        path,
        items,
        events,
        fanout,
        threads,
        tasks,
        answer,
    } = load;
    let next_share = per_task(shares(nodes, path, items));
    let pids: Vec<u32> = nodes.iter().map(|n| n.pid()).collect();
    let arrivals = &bench.receiver.arrivals;
    arrivals.track(fanout, events + 1);
    let stop = push_deadline(&bench.sizes);
    let cpu_from = cpu::snapshot_of(&pids, database);
    let start = now_ns();
    let tally = load::spread(threads, tasks, move |c| {
        let (url, items, next) = next_share();
        load::each_once(c, url, items, next, answer, stop)
    });
    check(&tally).map_err(|e| with_logs(nodes, e))?;
    let expected = (events * fanout) as u64;
    let last =
        wait_for_arrivals(arrivals, expected, &bench.sizes).map_err(|e| with_logs(nodes, e))?;
    let cpu = cpu::usage(&cpu_from, &cpu::snapshot_of(&pids, database));
    let extra = extra_arrivals(arrivals);
    let (ingest_secs, total_secs) = (
        secs_between(start, tally.last_ok_ns),
        secs_between(start, last),
    );
    let log_lines: usize = nodes.iter().map(|n| n.log_lines()).sum();
    Ok(Pushed {
        delivery: expected as f64 / total_secs,
        ingest: events as f64 / ingest_secs,
        detail: json!({
            "events": events, "fanout": fanout, "deliveries": expected, "nodes": nodes.len(),
            "clients": tasks, "ingest_seconds": ingest_secs, "delivery_seconds": total_secs,
            "overloaded_503": tally.overloaded, "receiver": extra, "cpu": cpu,
            "hookrelay_log_lines": log_lines,
        }),
    })
}

/// `events` events in batches of 1,000, by 4 concurrent pushers split over
/// `nodes` (already subscribed with `fanout` subscriptions); waits for
/// every delivery.
pub fn push_batches(
    bench: &Bench,
    nodes: &[&Instance],
    fanout: usize,
    events: usize,
    database: Option<&str>,
) -> Result<Pushed, String> {
    let load = PushLoad {
        path: "/internal/v1/events/batch",
        items: batch_items(events),
        events,
        fanout,
        threads: 1,
        tasks: bench.sizes.batch_pushers,
        answer: Answer::Batch,
    };
    push_and_wait(bench, nodes, database, load)
}

/// Figures 2 and 3: N events pushed in batches of 1000 by 4 concurrent pushers to
/// `fanout` subscriptions; from the first push to the last arrival.
pub fn batch(bench: &Bench, fanout: usize, events: usize) -> Result<Measured, String> {
    let instance = Instance::start(&bench.launch)?;
    subscribe(&instance, bench.receiver.port, fanout).map_err(|e| with_log(&instance, e))?;
    let pushed = push_batches(bench, &[&instance], fanout, events, None)?;
    let (delivery, ingest) = if fanout == 1 {
        ("batch1_delivery", "batch1_ingest")
    } else {
        ("batch10_delivery", "batch10_ingest")
    };
    Ok(Measured {
        values: vec![(delivery, pushed.delivery), (ingest, pushed.ingest)],
        detail: pushed.detail,
    })
}

/// Single-event pushes by 32 concurrent clients split over `nodes`
/// (subscribed with one subscription); waits for every delivery.
pub fn push_singles(
    bench: &Bench,
    nodes: &[&Instance],
    database: Option<&str>,
) -> Result<Pushed, String> {
    let events = bench.sizes.single_events;
    let load = PushLoad {
        path: "/internal/v1/events",
        items: single_items(1..=events as u64),
        events,
        fanout: 1,
        threads: bench.threads,
        tasks: bench.sizes.single_clients,
        answer: Answer::Single { deliveries: 1 },
    };
    push_and_wait(bench, nodes, database, load)
}

/// Figure 4: Single-event pushes by 32 concurrent clients, fan-out 1.
pub fn single(bench: &Bench) -> Result<Measured, String> {
    let instance = Instance::start(&bench.launch)?;
    subscribe(&instance, bench.receiver.port, 1).map_err(|e| with_log(&instance, e))?;
    let pushed = push_singles(bench, &[&instance], None)?;
    Ok(Measured {
        values: vec![
            ("single_delivery", pushed.delivery),
            ("single_push_ingest", pushed.ingest),
        ],
        detail: pushed.detail,
    })
}

/// 64 clients pushing single events to `url` for the fixed time: what they
/// got, the seconds it took, and the CPU use meanwhile (`pid`: the server's
/// process, when it is not the bench).
fn ingest_for(bench: &Bench, url: String, pid: Option<u32>) -> (Tally, f64, Value) {
    let items = Arc::new(single_items(1..=1000));
    let url: Arc<str> = url.into();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_from = cpu::snapshot(pid);
    let start = now_ns();
    let until = Instant::now() + Duration::from_secs_f64(bench.sizes.ingest_secs);
    let tally = load::spread(bench.threads, bench.sizes.ingest_clients, move |c| {
        let answer = Answer::Single { deliveries: 0 };
        load::for_duration(c, url.clone(), items.clone(), next.clone(), until, answer)
    });
    let secs = secs_between(start, tally.end_ns);
    (tally, secs, cpu::usage(&cpu_from, &cpu::snapshot(pid)))
}

/// Figure 5: Single-event ingest by 64 clients for a fixed time, against
/// hookrelay (no subscriptions) and against a bare handler in the bench.
pub fn ingest(bench: &Bench) -> Result<Measured, String> {
    let instance = Instance::start(&bench.launch)?;
    let url = format!("{}/internal/v1/events", instance.internal);
    let (hook, hook_secs, hook_cpu) = ingest_for(bench, url, Some(instance.pid()));
    check(&hook).map_err(|e| with_log(&instance, e))?;
    let log_lines = instance.log_lines();
    drop(instance);
    let (bare, bare_secs, bare_cpu) = ingest_for(bench, bench.receiver.url("/baseline"), None);
    check(&bare)?;
    Ok(Measured {
        values: vec![
            ("bare_handler", bare.ok as f64 / bare_secs),
            ("single_ingest", hook.ok as f64 / hook_secs),
        ],
        detail: json!({
            "clients": bench.sizes.ingest_clients,
            "hookrelay_accepted": hook.ok, "hookrelay_seconds": hook_secs,
            "hookrelay_overloaded_503": hook.overloaded, "hookrelay_cpu": hook_cpu,
            "bare_requests": bare.ok, "bare_seconds": bare_secs, "bare_cpu": bare_cpu,
            "hookrelay_log_lines": log_lines,
        }),
    })
}

pub fn slots(n: usize) -> Arc<Vec<AtomicU64>> {
    Arc::new((0..n).map(|_| AtomicU64::new(0)).collect())
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // The small epsilon keeps 99.9% of 1000 at rank 999 despite rounding.
    let rank = (p / 100.0 * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The open-loop sender of figure 6: event `id` is sent at
/// `t0 + (id-1)/rate`, each on its own task, whatever the earlier ones are
/// doing. Returns the number of 503 answers (those are sent again; their
/// latency still counts from the first send).
pub fn open_loop(
    url: String,
    bodies: Arc<Vec<Bytes>>,
    rate: u32,
    sent: Arc<Vec<AtomicU64>>,
    acked: Arc<Vec<AtomicU64>>,
) -> Result<u64, String> {
    let thread = load::thread("open-loop", move || {
        actix_rt::System::new().block_on(async move {
            let client = load::client(256);
            let url: Arc<str> = url.into();
            let period = Duration::from_secs(1) / rate;
            let t0 = tokio::time::Instant::now() + Duration::from_millis(5);
            let mut running = Vec::with_capacity(bodies.len());
            for id in 1..bodies.len() {
                tokio::time::sleep_until(t0 + period * (id as u32 - 1)).await;
                let (client, url, body) = (client.clone(), url.clone(), bodies[id].clone());
                let (sent, acked) = (sent.clone(), acked.clone());
                running.push(actix_rt::spawn(async move {
                    sent[id].store(now_ns(), Ordering::SeqCst);
                    let mut overloaded = 0;
                    loop {
                        match load::post(&client, &url, body.clone(), None).await? {
                            (202, _) => {
                                acked[id].store(now_ns(), Ordering::SeqCst);
                                return Ok(overloaded);
                            }
                            (503, _) => {
                                overloaded += 1;
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            (status, answer) => {
                                return Err(format!(
                                    "POST {url} answered {status}: {}",
                                    String::from_utf8_lossy(&answer)
                                ));
                            }
                        }
                    }
                }));
            }
            let mut overloaded = 0;
            let mut error = None;
            for r in running {
                match r.await {
                    Ok(Ok(n)) => overloaded += n,
                    Ok(Err(e)) => {
                        error.get_or_insert(e);
                    }
                    Err(_) => {
                        error.get_or_insert("a sender task panicked".to_string());
                    }
                }
            }
            error.map_or(Ok(overloaded), Err)
        })
    })
    .map_err(|e| format!("cannot start the sender thread: {e}"))?;
    thread
        .join()
        .unwrap_or_else(|_| Err("the sender thread panicked".into()))
}

/// Runs of events slower than 5 ms (sent less than 50 ms apart): when
/// each began (seconds into the measurement), how many, the worst.
fn stalls(timeline: &[(f64, f64)]) -> Vec<Value> {
    let mut runs: Vec<(f64, f64, usize, f64)> = Vec::new();
    for &(latency, at) in timeline.iter().filter(|(l, _)| *l > 5.0) {
        match runs.last_mut() {
            Some(run) if at - run.1 < 0.05 => {
                run.1 = at;
                run.2 += 1;
                run.3 = run.3.max(latency);
            }
            _ => runs.push((at, at, 1, latency)),
        }
    }
    runs.iter()
        .take(30)
        .map(|(start, _, n, worst)| {
            json!({"at_s": (start * 1000.0).round() / 1000.0, "events": n, "worst_ms": (worst * 100.0).round() / 100.0})
        })
        .collect()
}

/// Figure 6: Open-loop single pushes at a fixed rate to one subscription; latency
/// from each push's send to its delivery's arrival.
pub fn latency(bench: &Bench) -> Result<Measured, String> {
    let sizes = &bench.sizes;
    let instance = Instance::start(&bench.launch)?;
    subscribe(&instance, bench.receiver.port, 1).map_err(|e| with_log(&instance, e))?;
    let rate = sizes.latency_rate;
    let warm = (f64::from(rate) * sizes.latency_warmup_secs).round() as usize;
    let total = warm + (f64::from(rate) * sizes.latency_secs).round() as usize;
    // Index = contextObjectId; index 0 unused.
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..=total as u64)
            .map(|id| Bytes::from(event_json(id)))
            .collect(),
    );
    let (sent, acked) = (slots(total + 1), slots(total + 1));
    let arrivals = &bench.receiver.arrivals;
    arrivals.track(1, total + 1);
    let url = format!("{}/internal/v1/events", instance.internal);
    let cpu_from = cpu::snapshot(Some(instance.pid()));
    let pushed = open_loop(url, bodies, rate, sent.clone(), acked.clone());
    let waited = pushed
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|_| wait_for_arrivals(arrivals, total as u64, sizes));
    let cpu = cpu::usage(&cpu_from, &cpu::snapshot(Some(instance.pid())));
    let overloaded = pushed.map_err(|e| with_log(&instance, e))?;
    let arrived = arrivals.first_arrivals(0);
    let extra = extra_arrivals(arrivals);
    waited.map_err(|e| with_log(&instance, e))?;
    let ms = |from: u64, to: u64| secs_between(from, to) * 1000.0;
    let mut lat = Vec::with_capacity(total - warm);
    // (latency ms, seconds into the measurement) of every event, in send
    // order, to show when slow ones happened (periodic stalls show up).
    let mut timeline = Vec::with_capacity(total - warm);
    let measure_start = sent[warm + 1].load(Ordering::SeqCst);
    let mut ack = Vec::with_capacity(total - warm);
    let mut missing = 0;
    for id in warm + 1..=total {
        let (s, a, r) = (
            sent[id].load(Ordering::SeqCst),
            acked[id].load(Ordering::SeqCst),
            arrived[id],
        );
        if r == 0 {
            missing += 1;
            continue;
        }
        lat.push(ms(s, r));
        ack.push(ms(s, a));
        timeline.push((ms(s, r), secs_between(measure_start, s)));
    }
    if missing > 0 {
        return Err(with_log(
            &instance,
            format!("{missing} measured events never arrived"),
        ));
    }
    let stalls = stalls(&timeline);
    lat.sort_by(f64::total_cmp);
    ack.sort_by(f64::total_cmp);
    let first = sent[warm + 1].load(Ordering::SeqCst);
    let last = sent[total].load(Ordering::SeqCst);
    let offered = (total - warm - 1) as f64 / secs_between(first, last).max(1e-9);
    let mean = lat.iter().sum::<f64>() / lat.len() as f64;
    Ok(Measured {
        values: vec![
            ("latency_p50", percentile(&lat, 50.0)),
            ("latency_p99", percentile(&lat, 99.0)),
            ("latency_p999", percentile(&lat, 99.9)),
            ("push_ack_p99", percentile(&ack, 99.0)),
        ],
        detail: json!({
            "rate_target": rate, "rate_achieved": offered,
            "measured_events": lat.len(), "warmup_events": warm,
            "latency_ms": {
                "p50": percentile(&lat, 50.0), "p90": percentile(&lat, 90.0),
                "p99": percentile(&lat, 99.0), "p99_9": percentile(&lat, 99.9),
                "max": lat.last().copied().unwrap_or(f64::NAN), "mean": mean,
            },
            "push_ack_ms": {
                "p50": percentile(&ack, 50.0), "p99": percentile(&ack, 99.0),
                "max": ack.last().copied().unwrap_or(f64::NAN),
            },
            "overloaded_503": overloaded, "receiver": extra, "cpu": cpu,
            "stalls_over_5ms": stalls,
            "hookrelay_log_lines": instance.log_lines(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_announced_size_and_parse() {
        for id in [1, 42, 123_456_789] {
            let e = event_json(id);
            assert_eq!(e.len(), EVENT_BYTES);
            let v: Value = serde_json::from_str(&e).unwrap();
            assert_eq!(v["contextObjectId"], id);
        }
        let batches = batch_items(2500);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[2].events, 500);
        let v: Value = serde_json::from_slice(&batches[0].body).unwrap();
        assert_eq!(v.as_array().unwrap().len(), BATCH);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 500.0);
        assert_eq!(percentile(&v, 99.0), 990.0);
        assert_eq!(percentile(&v, 99.9), 999.0);
        assert_eq!(percentile(&v, 100.0), 1000.0);
    }
}
