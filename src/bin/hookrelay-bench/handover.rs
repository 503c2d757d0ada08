//! Figure 10: hand-over in a cluster under a steady stream (PostgreSQL).
//! Two nodes share the endpoints; an open-loop stream of single pushes,
//! round robin over the live nodes, fans every event out to every endpoint,
//! so each endpoint normally hears from hookrelay every 1/rate seconds.
//! Meanwhile a third node joins (2 → 3), one leaves with SIGTERM (3 → 2),
//! and one is killed with SIGKILL (2 → 1). For each window: push → arrival
//! latency and every endpoint's longest silence; for the kill: the time from
//! the kill to the first delivery again at each endpoint the killed node
//! owned. Every accepted event must arrive at every endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::{now_ns, secs_between};
use crate::cpu;
use crate::figures::{Bench, Measured, block_on, event_json, percentile, subscribe, with_logs};
use crate::instance::{Instance, Setup};
use crate::load;
use crate::postgres::wait_routed;
use crate::seed::ScratchDatabase;

/// `--lease-ttl` of every node.
const LEASE_TTL: &str = "3s";
/// The failover bound the kill is compared with: lease TTL + 1 s.
pub const FAILOVER_BOUND_SECS: f64 = 3.0 + 1.0;
/// Node names: two at the start, the third joins.
const NODE_IDS: [&str; 3] = ["a", "b", "c"];
/// Longest wait for the endpoints to settle on the live nodes.
const SETTLE_AT_MOST: Duration = Duration::from_secs(30);
/// Arrivals this long after the kill cannot come from the killed node
/// (it is reaped by then; only what its sockets had already sent lands).
const KILL_GUARD_NS: u64 = 20_000_000;
/// A push answered 503 is sent again after this pause…
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// …until this long after it was first sent (then it counts as refused).
const RETRY_FOR: Duration = Duration::from_secs(10);
/// Longest wait for the pushes in flight to a leaving node to be answered.
const IN_FLIGHT_AT_MOST: Duration = Duration::from_secs(10);

/// Answer codes kept per event besides HTTP statuses.
const NOT_SENT: u64 = 0;
const NO_ANSWER: u64 = 1;

/// What the stream saw, indexed by event (= contextObjectId, from 1).
struct Record {
    sent: Vec<AtomicU64>,
    /// HTTP status of the final answer, or [`NOT_SENT`] / [`NO_ANSWER`].
    status: Vec<AtomicU64>,
    /// Accepted events routed to fewer (or more) subscriptions than exist.
    misrouted: AtomicU64,
    /// 503 answers (each sent again).
    overloaded: AtomicU64,
    /// Pushes waiting for an answer, per node.
    in_flight: Vec<AtomicU64>,
}

/// The nodes the stream pushes to, as (node index, push URL).
type Live = Arc<RwLock<Vec<(usize, Arc<str>)>>>;

/// The open-loop stream: event `id` is sent at `t0 + (id-1)/rate` on its
/// own task, to live node `id % live`, until `stop` is set or the ids run
/// out. Returns the last id sent.
fn start_stream(
    live: Live,
    bodies: Arc<Vec<Bytes>>,
    rate: f64,
    endpoints: u64,
    record: Arc<Record>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<usize>, String> {
    load::thread("handover-stream", move || {
        actix_rt::System::new().block_on(async move {
            let client = load::client(256);
            let period = Duration::from_secs_f64(1.0 / rate);
            let t0 = tokio::time::Instant::now() + Duration::from_millis(5);
            let mut running = Vec::new();
            let mut last = 0;
            for id in 1..bodies.len() {
                tokio::time::sleep_until(t0 + period * (id as u32 - 1)).await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (node, url) = {
                    let l = live.read().unwrap_or_else(|e| e.into_inner());
                    l[id % l.len()].clone()
                };
                last = id;
                let (client, body, record) = (client.clone(), bodies[id].clone(), record.clone());
                record.in_flight[node].fetch_add(1, Ordering::SeqCst);
                running.push(actix_rt::spawn(async move {
                    let sent = now_ns();
                    record.sent[id].store(sent, Ordering::SeqCst);
                    let started = Instant::now();
                    let status = loop {
                        match load::post(&client, &url, body.clone(), None).await {
                            Ok((202, answer)) => {
                                let routed = serde_json::from_slice::<Value>(&answer)
                                    .ok()
                                    .and_then(|v| v["deliveries"].as_u64());
                                if routed != Some(endpoints) {
                                    record.misrouted.fetch_add(1, Ordering::SeqCst);
                                }
                                break 202;
                            }
                            Ok((503, _)) if started.elapsed() < RETRY_FOR => {
                                record.overloaded.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(RETRY_PAUSE).await;
                            }
                            Ok((status, _)) => break u64::from(status),
                            Err(_) => break NO_ANSWER,
                        }
                    };
                    record.status[id].store(status, Ordering::SeqCst);
                    record.in_flight[node].fetch_sub(1, Ordering::SeqCst);
                }));
            }
            for r in running {
                let _ = r.await;
            }
            last
        })
    })
    .map_err(|e| format!("cannot start the stream thread: {e}"))
}

/// Receiver path number (`/r/{n}`) and owner node of every endpoint.
fn owners(node: &Instance) -> Result<Vec<(usize, Option<String>)>, String> {
    block_on(async {
        let client = load::client(1);
        let url = format!("{}/internal/v1/endpoints?limit=500", node.internal);
        let (status, body) = load::get(&client, &url).await?;
        if status != 200 {
            return Err(format!("GET {url} answered {status}"));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {url}: unexpected answer: {e}"))?;
        Ok(v["endpoints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        let n = e["url"].as_str()?.rsplit('/').next()?.parse().ok()?;
                        Some((n, e["ownerNode"].as_str().map(str::to_string)))
                    })
                    .collect()
            })
            .unwrap_or_default())
    })
}

/// Waits until every endpoint is owned by one of `live` and none owns more
/// than its fair share. Returns the endpoints per node and the seconds it
/// took.
fn wait_settled(
    via: &Instance,
    others: &[&Instance],
    endpoints: usize,
    live: &[&str],
) -> Result<Value, String> {
    let fair = endpoints.div_ceil(live.len());
    let started = Instant::now();
    loop {
        let list = owners(via)?;
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for o in list.iter().filter_map(|(_, o)| o.as_ref()) {
            *count.entry(o.clone()).or_default() += 1;
        }
        let settled = list.len() == endpoints
            && count.keys().all(|n| live.contains(&n.as_str()))
            && count.values().sum::<usize>() == endpoints
            && count.values().all(|c| *c <= fair);
        if settled {
            return Ok(json!({"owners": count, "settled_s": started.elapsed().as_secs_f64()}));
        }
        if started.elapsed() > SETTLE_AT_MOST {
            // What every node says of the endpoints not on their fair place.
            let views: Vec<String> = std::iter::once(via)
                .chain(others.iter().copied())
                .map(|n| match owners(n) {
                    Ok(l) => format!("{}: {l:?}", n.internal),
                    Err(e) => format!("{}: {e}", n.internal),
                })
                .collect();
            return Err(format!(
                "the endpoints did not settle on nodes {live:?} within {}s: {count:?}\n  \
                 (path number, owner) as each node lists them:\n  {}",
                SETTLE_AT_MOST.as_secs(),
                views.join("\n  ")
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes node `node` out of the stream and waits until none of its pushes
/// waits for an answer.
fn take_out(live: &Live, record: &Record, node: usize) -> Result<(), String> {
    live.write()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(n, _)| *n != node);
    let started = Instant::now();
    while record.in_flight[node].load(Ordering::SeqCst) > 0 {
        if started.elapsed() > IN_FLIGHT_AT_MOST {
            return Err(format!(
                "node {}'s pushes were not answered within {}s",
                NODE_IDS[node],
                IN_FLIGHT_AT_MOST.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// One measured window: from the change (or the steady start) until the
/// endpoints settled and the stream ran on for the settle time.
struct Window {
    name: &'static str,
    start_ns: u64,
    end_ns: u64,
    settled: Value,
    cpu: Value,
    /// Duplicate deliveries counted by the receiver up to the window's end.
    duplicates_by_end: u64,
}

fn ms(from: u64, to: u64) -> f64 {
    secs_between(from, to) * 1000.0
}

/// Latency and silence figures of a window.
struct WindowFigures {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
    silence_max: f64,
    silence_median: f64,
    /// Endpoint path number of the longest silence.
    silence_worst: usize,
}

/// `arrived[e][id]`: first arrival of event `id` at endpoint `e` (0: none);
/// `sorted[e]`: endpoint `e`'s first arrivals in time order.
fn window_figures(
    w: &Window,
    sent: &[u64],
    accepted: &[bool],
    arrived: &[Vec<u64>],
    sorted: &[Vec<u64>],
) -> WindowFigures {
    let mut lat = Vec::new();
    for (id, &s) in sent.iter().enumerate() {
        if !accepted[id] || s < w.start_ns || s >= w.end_ns {
            continue;
        }
        for a in arrived.iter().map(|row| row[id]).filter(|a| *a != 0) {
            lat.push(ms(s, a));
        }
    }
    lat.sort_by(f64::total_cmp);
    // Every endpoint's longest gap between two arrivals whose end falls in
    // the window (the change that caused it came before its end).
    let mut silences: Vec<(f64, usize)> = sorted
        .iter()
        .enumerate()
        .map(|(e, times)| {
            let longest = times
                .windows(2)
                .filter(|p| p[1] >= w.start_ns && p[1] < w.end_ns)
                .map(|p| ms(p[0], p[1]))
                .fold(0.0, f64::max);
            (longest, e)
        })
        .collect();
    silences.sort_by(|a, b| a.0.total_cmp(&b.0));
    let only: Vec<f64> = silences.iter().map(|s| s.0).collect();
    let worst = silences.last().copied().unwrap_or((f64::NAN, 0));
    WindowFigures {
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        max: lat.last().copied().unwrap_or(f64::NAN),
        samples: lat.len(),
        silence_max: worst.0,
        silence_median: percentile(&only, 50.0),
        silence_worst: worst.1,
    }
}

/// Everything the run needs to stop cleanly: the nodes (stopped by pid on
/// drop) and the stream.
struct Cluster {
    nodes: Vec<Option<Instance>>,
}

impl Cluster {
    fn node(&self, i: usize) -> Result<&Instance, String> {
        self.nodes[i]
            .as_ref()
            .ok_or_else(|| format!("node {} is not running", NODE_IDS[i]))
    }

    fn running(&self) -> Vec<&Instance> {
        self.nodes.iter().flatten().collect()
    }

    fn pids(&self) -> Vec<u32> {
        self.running().iter().map(|n| n.pid()).collect()
    }

    fn logs(&self, e: String) -> String {
        with_logs(&self.running(), e)
    }
}

fn start_node(bench: &Bench, database: &ScratchDatabase, i: usize) -> Result<Instance, String> {
    let setup = Setup {
        database: Some(database.url.clone()),
        args: ["--node-id", NODE_IDS[i], "--lease-ttl", LEASE_TTL]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    Instance::start_with(&bench.launch, &setup)
}

/// Figure 10: join, leave and kill under a steady stream.
pub fn handover(bench: &Bench, admin_url: &str) -> Result<Measured, String> {
    let sizes = &bench.sizes;
    let endpoints = sizes.handover_endpoints;
    let settle = Duration::from_secs_f64(sizes.handover_settle_secs);
    let database = ScratchDatabase::create(admin_url)?;
    let mut cluster = Cluster {
        nodes: vec![
            Some(start_node(bench, &database, 0)?),
            Some(start_node(bench, &database, 1)?),
            None,
        ],
    };
    subscribe(cluster.node(0)?, bench.receiver.port, endpoints).map_err(|e| cluster.logs(e))?;
    wait_settled(
        cluster.node(0)?,
        &[cluster.node(1)?],
        endpoints,
        &NODE_IDS[..2],
    )
    .map_err(|e| cluster.logs(e))?;
    wait_routed(bench, &cluster.running(), endpoints)?;

    // Room for the whole stream: steady, three changes with their settle
    // waits, generously.
    let capacity = (sizes.handover_rate * (4.0 * sizes.handover_settle_secs + 4.0 * 30.0)) as usize;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..=capacity as u64)
            .map(|id| Bytes::from(event_json(id)))
            .collect(),
    );
    let slots = || (0..=capacity).map(|_| AtomicU64::new(0)).collect();
    let record = Arc::new(Record {
        sent: slots(),
        status: slots(),
        misrouted: AtomicU64::new(0),
        overloaded: AtomicU64::new(0),
        in_flight: (0..NODE_IDS.len()).map(|_| AtomicU64::new(0)).collect(),
    });
    let url = |n: &Instance| -> Arc<str> { format!("{}/internal/v1/events", n.internal).into() };
    let live: Live = Arc::new(RwLock::new(vec![
        (0, url(cluster.node(0)?)),
        (1, url(cluster.node(1)?)),
    ]));
    let arrivals = &bench.receiver.arrivals;
    arrivals.track(endpoints, capacity + 1);
    let stop = Arc::new(AtomicBool::new(false));
    let stream = start_stream(
        live.clone(),
        bodies,
        sizes.handover_rate,
        endpoints as u64,
        record.clone(),
        stop.clone(),
    )?;

    let run = |cluster: &mut Cluster| -> Result<(Vec<Window>, u64, Vec<usize>), String> {
        let mut windows = Vec::new();
        let db = Some(database.name.as_str());
        // Steady, two nodes (the first 100 ms warm the stream up).
        std::thread::sleep(Duration::from_millis(100));
        let cpu_from = cpu::snapshot_of(&cluster.pids(), db);
        let start_ns = now_ns();
        std::thread::sleep(settle);
        windows.push(Window {
            name: "steady",
            start_ns,
            end_ns: now_ns(),
            settled: Value::Null,
            cpu: cpu::usage(&cpu_from, &cpu::snapshot_of(&cluster.pids(), db)),
            duplicates_by_end: arrivals.duplicates(),
        });

        // Node c joins.
        let cpu_from = cpu::snapshot_of(&cluster.pids(), db);
        let c = start_node(bench, &database, 2)?;
        let start_ns = c.spawned_ns;
        live.write()
            .unwrap_or_else(|e| e.into_inner())
            .push((2, url(&c)));
        cluster.nodes[2] = Some(c);
        let settled = wait_settled(
            cluster.node(0)?,
            &[cluster.node(1)?, cluster.node(2)?],
            endpoints,
            &NODE_IDS,
        )?;
        std::thread::sleep(settle);
        windows.push(Window {
            name: "join",
            start_ns,
            end_ns: now_ns(),
            settled,
            cpu: cpu::usage(&cpu_from, &cpu::snapshot_of(&cluster.pids(), db)),
            duplicates_by_end: arrivals.duplicates(),
        });

        // Node b leaves (SIGTERM).
        take_out(&live, &record, 1)?;
        let cpu_from = cpu::snapshot_of(&cluster.pids(), db);
        let start_ns = now_ns();
        let mut b = cluster.nodes[1].take().ok_or("node b is not running")?;
        let exit = b.terminate(Duration::from_secs(20));
        let exited_s = secs_between(start_ns, now_ns());
        if exit.is_none() {
            return Err(with_logs(
                &[&b],
                "node b did not exit within 20 s of SIGTERM".into(),
            ));
        }
        let mut settled = wait_settled(
            cluster.node(0)?,
            &[cluster.node(2)?],
            endpoints,
            &["a", "c"],
        )?;
        settled["exit_after_sigterm_s"] = json!(exited_s);
        settled["exit_status"] = json!(exit.map(|s| s.to_string()));
        std::thread::sleep(settle);
        windows.push(Window {
            name: "leave",
            start_ns,
            end_ns: now_ns(),
            settled,
            cpu: cpu::usage(&cpu_from, &cpu::snapshot_of(&cluster.pids(), db)),
            duplicates_by_end: arrivals.duplicates(),
        });

        // Node c is killed (SIGKILL).
        take_out(&live, &record, 2)?;
        let victim: Vec<usize> = owners(cluster.node(0)?)?
            .into_iter()
            .filter(|(_, o)| o.as_deref() == Some("c"))
            .map(|(n, _)| n)
            .collect();
        let mut c = cluster.nodes[2].take().ok_or("node c is not running")?;
        let cpu_from = cpu::snapshot_of(&cluster.pids(), db);
        let killed_ns = now_ns();
        c.kill9();
        let settled = wait_settled(cluster.node(0)?, &[], endpoints, &["a"]);
        let settled = settled.map_err(|e| with_logs(&[&c], e))?;
        std::thread::sleep(settle);
        windows.push(Window {
            name: "kill",
            start_ns: killed_ns,
            end_ns: now_ns(),
            settled,
            cpu: cpu::usage(&cpu_from, &cpu::snapshot_of(&cluster.pids(), db)),
            duplicates_by_end: arrivals.duplicates(),
        });
        Ok((windows, killed_ns, victim))
    };
    let outcome = run(&mut cluster);
    stop.store(true, Ordering::SeqCst);
    let last_id = stream
        .join()
        .map_err(|_| "the stream thread panicked".to_string())?;
    let (windows, killed_ns, victim) = outcome.map_err(|e| cluster.logs(e))?;

    // Every accepted event at every endpoint.
    let sent: Vec<u64> = record.sent[..=last_id]
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    let status: Vec<u64> = record.status[..=last_id]
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    let accepted: Vec<bool> = status.iter().map(|s| *s == 202).collect();
    let accepted_count = accepted.iter().filter(|a| **a).count();
    let missing = |arrived: &[Vec<u64>]| -> usize {
        arrived
            .iter()
            .map(|row| {
                (1..=last_id)
                    .filter(|id| accepted[*id] && row[*id] == 0)
                    .count()
            })
            .sum()
    };
    let snapshot = || -> Vec<Vec<u64>> {
        (0..endpoints)
            .map(|e| {
                let mut row = arrivals.first_arrivals(e);
                row.truncate(last_id + 1);
                row
            })
            .collect()
    };
    let wait_from = Instant::now();
    let (mut seen, mut changed) = (arrivals.unique(), Instant::now());
    let mut arrived = snapshot();
    while missing(&arrived) > 0
        && changed.elapsed().as_secs_f64() < sizes.stall_secs
        && wait_from.elapsed().as_secs_f64() < sizes.deadline_secs
    {
        std::thread::sleep(Duration::from_millis(100));
        if arrivals.unique() != seen {
            (seen, changed) = (arrivals.unique(), Instant::now());
        }
        arrived = snapshot();
    }
    std::thread::sleep(Duration::from_millis(200));
    let arrived = snapshot();
    let missing = missing(&arrived);
    let duplicates = arrivals.duplicates();
    let unexpected = arrivals.untracked();
    arrivals.untrack();

    let sorted: Vec<Vec<u64>> = arrived
        .iter()
        .map(|row| {
            let mut t: Vec<u64> = row.iter().copied().filter(|a| *a != 0).collect();
            t.sort_unstable();
            t
        })
        .collect();
    let figures: Vec<WindowFigures> = windows
        .iter()
        .map(|w| window_figures(w, &sent, &accepted, &arrived, &sorted))
        .collect();
    // Failover: from the kill to the first arrival again at each endpoint
    // the killed node owned.
    let mut failover: Vec<(f64, usize)> = victim
        .iter()
        .map(|&e| {
            let again = sorted[e]
                .iter()
                .find(|t| **t > killed_ns + KILL_GUARD_NS)
                .map_or(f64::NAN, |t| secs_between(killed_ns, *t));
            (again, e)
        })
        .collect();
    failover.sort_by(|a, b| a.0.total_cmp(&b.0));
    let failover_s: Vec<f64> = failover.iter().map(|f| f.0).collect();
    let failover_max = failover_s.last().copied().unwrap_or(f64::NAN);
    let failover_median = percentile(&failover_s, 50.0);

    let count = |want: fn(u64) -> bool| status[1..].iter().filter(|s| want(**s)).count();
    let mut values = vec![
        ("ho_steady_p99", figures[0].p99),
        ("ho_steady_silence_max", figures[0].silence_max),
    ];
    for (f, prefix) in figures[1..3].iter().zip(["ho_join", "ho_leave"]) {
        let id = |s: &str| -> &'static str {
            match (prefix, s) {
                ("ho_join", "p50") => "ho_join_p50",
                ("ho_join", "p99") => "ho_join_p99",
                ("ho_join", "max") => "ho_join_max",
                ("ho_join", "smax") => "ho_join_silence_max",
                ("ho_join", _) => "ho_join_silence_median",
                (_, "p50") => "ho_leave_p50",
                (_, "p99") => "ho_leave_p99",
                (_, "max") => "ho_leave_max",
                (_, "smax") => "ho_leave_silence_max",
                _ => "ho_leave_silence_median",
            }
        };
        values.push((id("p50"), f.p50));
        values.push((id("p99"), f.p99));
        values.push((id("max"), f.max));
        values.push((id("smax"), f.silence_max));
        values.push((id("smed"), f.silence_median));
    }
    values.push(("ho_kill_silence_median", figures[3].silence_median));
    values.push(("ho_failover_max", failover_max));
    values.push(("ho_failover_median", failover_median));
    values.push(("ho_missing", missing as f64));
    values.push(("ho_duplicates", duplicates as f64));

    let window_json: Vec<Value> = windows
        .iter()
        .zip(&figures)
        .enumerate()
        .map(|(i, (w, f))| {
            let before = i.checked_sub(1).map_or(0, |p| windows[p].duplicates_by_end);
            json!({
                "duplicates": w.duplicates_by_end - before,
                "window": w.name,
                "start_s": secs_between(windows[0].start_ns, w.start_ns),
                "seconds": secs_between(w.start_ns, w.end_ns),
                "latency_ms": {"p50": f.p50, "p99": f.p99, "max": f.max, "samples": f.samples},
                "silence_ms": {"max": f.silence_max, "median": f.silence_median,
                               "worst_endpoint": format!("/r/{}", f.silence_worst)},
                "settled": w.settled,
                "cpu": w.cpu,
            })
        })
        .collect();
    Ok(Measured {
        values,
        detail: json!({
            "endpoints": endpoints,
            "rate_events_per_s": sizes.handover_rate,
            "deliveries_per_s": sizes.handover_rate * endpoints as f64,
            "lease_ttl": LEASE_TTL,
            "events_sent": last_id,
            "events_accepted": accepted_count,
            "events_refused_503": count(|s| s == 503),
            "events_unanswered": count(|s| s == NO_ANSWER || s == NOT_SENT),
            "events_other_status": count(|s| s > NO_ANSWER && s != 202 && s != 503),
            "misrouted_accepted_events": record.misrouted.load(Ordering::SeqCst),
            "overloaded_503_answers": record.overloaded.load(Ordering::SeqCst),
            "missing_deliveries": missing,
            "duplicate_deliveries": duplicates,
            "duplicate_deliveries_after_the_windows":
                duplicates - windows.last().map_or(0, |w| w.duplicates_by_end),
            "unexpected_deliveries": unexpected,
            "windows": window_json,
            "failover": {
                "killed_node_owned": victim.len(),
                "bound_s": FAILOVER_BOUND_SECS,
                "max_s": failover_max,
                "median_s": failover_median,
                "slowest": failover.iter().rev().take(5)
                    .map(|(s, e)| json!({"endpoint": format!("/r/{e}"), "s": s}))
                    .collect::<Vec<_>>(),
            },
            "hookrelay_log_lines": cluster.running().iter().map(|n| n.log_lines()).sum::<usize>(),
        }),
    })
}
