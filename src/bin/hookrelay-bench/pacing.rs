//! Figure 11, endpoints at their own pace: 20 endpoints with their own
//! capacities (the paced receiver, `paced.rs`) fed one open-loop stream,
//! with adaptive windows on and off; then one fast endpoint given
//! `maxInFlight: 64`, adaptive on and off. Skipped (not failed) on a
//! hookrelay without per-endpoint pacing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::clock::{now_ns, secs_between};
use crate::cpu;
use crate::figures::{
    Bench, Measured, block_on, event_json, open_loop, percentile, push_batches, slots, subscribe,
    with_log,
};
use crate::instance::{Instance, Setup};
use crate::load;
use crate::paced::PacedReceiver;

/// What the figure reports when the binary cannot be paced per endpoint.
pub const SKIPPED: &str = "skipped: this hookrelay has no per-endpoint pacing";
/// The same, found out from the PATCH answer.
const SKIPPED_PATCH: &str = "skipped: this hookrelay has no per-endpoint pacing \
     (PATCH /internal/v1/endpoints/{id} answered 404 or 405)";
/// Endpoints of the paced part.
const PACED_ENDPOINTS: usize = 20;
/// Service time of every paced request: at 100 events/s the paths that
/// serve 1 (50/s) or 2 (100/s) at once are over their capacity, the
/// others are not.
const SERVICE: Duration = Duration::from_millis(20);
/// The fast endpoint's `maxInFlight`.
const FAST_MAX_IN_FLIGHT: u32 = 64;

/// Whether `serve --help` text offers `--adaptive-concurrency`.
pub fn help_has_pacing(help: &str) -> bool {
    help.contains("--adaptive-concurrency")
}

/// Whether an answer to `PATCH /internal/v1/endpoints/{id}` (of an id the
/// endpoint list gave) says the route does not exist.
pub fn patch_is_missing(status: u16) -> bool {
    matches!(status, 404 | 405)
}

/// `Some(reason)` when `binary serve --help` shows no per-endpoint pacing.
pub fn unsupported(binary: &Path) -> Option<&'static str> {
    let out = std::process::Command::new(binary)
        .args(["serve", "--help"])
        .output()
        .ok()?;
    let help = String::from_utf8_lossy(&out.stdout);
    (!help_has_pacing(&help)).then_some(SKIPPED)
}

/// The options of a run: short retries and no self-healing pause, so that
/// what is measured is the pacing, not the retry schedule or probes.
fn options(adaptive: bool) -> Vec<String> {
    let schedule = vec!["100ms"; 200].join(",");
    [
        "--adaptive-concurrency",
        if adaptive { "true" } else { "false" },
        "--retry-schedule",
        &schedule,
        "--pause-after-failures",
        "1000000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn mode(adaptive: bool) -> &'static str {
    if adaptive { "adaptive" } else { "fixed" }
}

/// Waits until `expected` deliveries arrived, none arrived for the stall
/// time, or the deadline passed; whether all arrived.
fn drain(arrivals: &crate::receiver::Arrivals, expected: u64, bench: &Bench) -> bool {
    let sizes = &bench.sizes;
    let (started, mut changed, mut seen) = (Instant::now(), Instant::now(), 0);
    loop {
        let count = arrivals.unique();
        if count >= expected {
            return true;
        }
        if count != seen {
            (seen, changed) = (count, Instant::now());
        }
        if changed.elapsed().as_secs_f64() > sizes.stall_secs
            || started.elapsed().as_secs_f64() > sizes.deadline_secs
        {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One paced run's numbers.
struct Paced {
    throughput: f64,
    too_many_per_delivery: f64,
    p99_ms: f64,
    missing: u64,
    detail: Value,
}

/// Latency (ms) of every (event, endpoint) pair; a missing one counts as
/// arriving at `cutoff` (a lower bound). Also how many were missing.
fn latencies(sent: &[u64], arrived: &[Vec<u64>], cutoff: u64) -> (Vec<f64>, u64) {
    let mut lat = Vec::new();
    let mut missing = 0;
    for row in arrived {
        for (id, &s) in sent.iter().enumerate().skip(1) {
            let r = row.get(id).copied().unwrap_or(0);
            if r == 0 {
                missing += 1;
            }
            let at = if r == 0 { cutoff } else { r };
            lat.push(secs_between(s, at) * 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, missing)
}

/// The stream to the 20 paced endpoints on one hookrelay.
fn paced_run(bench: &Bench, paced: &PacedReceiver, adaptive: bool) -> Result<Paced, String> {
    let sizes = &bench.sizes;
    let setup = Setup {
        database: None,
        args: options(adaptive),
    };
    let instance = Instance::start_with(&bench.launch, &setup)?;
    subscribe(&instance, paced.port, PACED_ENDPOINTS).map_err(|e| with_log(&instance, e))?;
    let total = (f64::from(sizes.pacing_rate) * sizes.pacing_secs)
        .round()
        .max(1.0) as usize;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..=total as u64)
            .map(|id| Bytes::from(event_json(id)))
            .collect(),
    );
    let (sent, acked) = (slots(total + 1), slots(total + 1));
    paced.arrivals.track(PACED_ENDPOINTS, total + 1);
    let too_many_before = paced.too_many();
    let cpu_from = cpu::snapshot(Some(instance.pid()));
    let url = format!("{}/internal/v1/events", instance.internal);
    let overloaded = open_loop(url, bodies, sizes.pacing_rate, sent.clone(), acked)
        .map_err(|e| with_log(&instance, e))?;
    let expected = (total * PACED_ENDPOINTS) as u64;
    let complete = drain(&paced.arrivals, expected, bench);
    let cutoff = now_ns();
    let cpu = cpu::usage(&cpu_from, &cpu::snapshot(Some(instance.pid())));
    let too_many = paced.too_many() - too_many_before;
    let sent: Vec<u64> = sent.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    let arrived: Vec<Vec<u64>> = (0..PACED_ENDPOINTS)
        .map(|n| paced.arrivals.first_arrivals(n))
        .collect();
    let delivered = paced.arrivals.unique();
    let last = paced.arrivals.last_unique_ns();
    let duplicates = paced.arrivals.duplicates();
    paced.arrivals.untrack();
    let (lat, missing) = latencies(&sent, &arrived, cutoff);
    let secs = secs_between(sent[1], last).max(1e-9);
    let per_endpoint: Vec<Value> = arrived
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let (l, m) = latencies(&sent, std::slice::from_ref(row), cutoff);
            json!({"path": n, "capacity": crate::paced::capacity(n),
                   "over_capacity": if crate::paced::rejects(n) { "429" } else { "queue" },
                   "p99_ms": percentile(&l, 99.0), "missing": m})
        })
        .collect();
    Ok(Paced {
        throughput: delivered as f64 / secs,
        too_many_per_delivery: too_many as f64 / delivered.max(1) as f64,
        p99_ms: percentile(&lat, 99.0),
        missing,
        detail: json!({
            "mode": mode(adaptive), "events": total, "deliveries_expected": expected,
            "delivered": delivered, "complete": complete, "missing": missing,
            "duplicates": duplicates, "answered_429": too_many, "seconds": secs,
            "latency_ms": {"p50": percentile(&lat, 50.0), "p99": percentile(&lat, 99.0),
                           "max": lat.last().copied().unwrap_or(f64::NAN)},
            "push_overloaded_503": overloaded, "cpu": cpu, "endpoints": per_endpoint,
            "hookrelay_log_lines": instance.log_lines(),
        }),
    })
}

/// The endpoint list's items.
fn endpoints(instance: &Instance) -> Result<Vec<Value>, String> {
    block_on(async {
        let client = load::client(1);
        let url = format!("{}/internal/v1/endpoints", instance.internal);
        let (status, body) = load::get(&client, &url).await?;
        if status != 200 {
            return Err(format!("GET {url} answered {status}"));
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("GET {url}: unexpected answer: {e}"))?;
        Ok(v["endpoints"].as_array().cloned().unwrap_or_default())
    })
}

/// The value of `hookrelay_endpoint_concurrency{endpoint="<id>"}` in a
/// `/metrics` text.
pub fn concurrency_metric(metrics: &str, id: &str) -> Option<f64> {
    let series = format!("hookrelay_endpoint_concurrency{{endpoint=\"{id}\"}}");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// The endpoint's window: `concurrency` of the endpoint list, else its
/// `/metrics` series.
fn window(instance: &Instance, id: &Value) -> Result<Option<f64>, String> {
    let listed = endpoints(instance)?;
    if let Some(w) = listed.first().and_then(|e| e["concurrency"].as_f64()) {
        return Ok(Some(w));
    }
    block_on(async {
        let client = load::client(1);
        let url = format!("{}/metrics", instance.internal);
        let (status, body) = load::get(&client, &url).await?;
        let id = id.to_string();
        Ok((status == 200)
            .then(|| concurrency_metric(&String::from_utf8_lossy(&body), id.trim_matches('"')))
            .flatten())
    })
}

/// `PATCH /internal/v1/endpoints/{id}` with `body`: the status and answer.
fn patch(instance: &Instance, id: &Value, body: Value) -> Result<(u16, String), String> {
    block_on(async {
        let client = load::client(1);
        let url = format!("{}/internal/v1/endpoints/{id}", instance.internal);
        let mut response = client
            .patch(&url)
            .insert_header(("Content-Type", "application/json"))
            .send_body(body.to_string())
            .await
            .map_err(|e| format!("PATCH {url}: {e}"))?;
        let answer = response
            .body()
            .await
            .map_err(|e| format!("PATCH {url}: reading the answer: {e}"))?;
        Ok((
            response.status().as_u16(),
            String::from_utf8_lossy(&answer).into_owned(),
        ))
    })
}

/// The fast endpoint's run: `None` when the PATCH route is missing.
fn fast_run(bench: &Bench, adaptive: bool) -> Result<Option<(f64, f64, Value)>, String> {
    let setup = Setup {
        database: None,
        args: options(adaptive),
    };
    let instance = Instance::start_with(&bench.launch, &setup)?;
    subscribe(&instance, bench.receiver.port, 1).map_err(|e| with_log(&instance, e))?;
    let listed = endpoints(&instance).map_err(|e| with_log(&instance, e))?;
    let id = listed
        .first()
        .map(|e| e["id"].clone())
        .ok_or_else(|| with_log(&instance, "the endpoint list is empty".into()))?;
    let (status, answer) = patch(&instance, &id, json!({"maxInFlight": FAST_MAX_IN_FLIGHT}))
        .map_err(|e| with_log(&instance, e))?;
    if patch_is_missing(status) {
        return Ok(None);
    }
    if status != 200 {
        return Err(with_log(
            &instance,
            format!("PATCH maxInFlight answered {status}: {answer}"),
        ));
    }
    let pushed = push_batches(bench, &[&instance], 1, bench.sizes.batch_events, None)?;
    let window = window(&instance, &id)
        .map_err(|e| with_log(&instance, e))?
        .unwrap_or(f64::NAN);
    Ok(Some((
        pushed.delivery,
        window,
        json!({"mode": mode(adaptive), "window": window, "push": pushed.detail}),
    )))
}

/// Figure 11.
pub fn pacing(bench: &Bench) -> Result<Measured, String> {
    let mut values = Vec::new();
    let mut details = Vec::new();
    for adaptive in [true, false] {
        match fast_run(bench, adaptive)? {
            None => {
                return Ok(Measured {
                    values: Vec::new(),
                    detail: json!({ "skipped": SKIPPED_PATCH }),
                });
            }
            Some((throughput, window, detail)) => {
                let (t, w) = if adaptive {
                    ("pace_fast_adaptive", "pace_fast_adaptive_window")
                } else {
                    ("pace_fast_fixed", "pace_fast_fixed_window")
                };
                values.push((t, throughput));
                values.push((w, window));
                details.push(detail);
            }
        }
    }
    let threads = bench.threads;
    let paced = PacedReceiver::start(PACED_ENDPOINTS, SERVICE, threads)?;
    let runs = [true, false].map(|adaptive| paced_run(bench, &paced, adaptive));
    paced.stop();
    for (adaptive, run) in [true, false].into_iter().zip(runs) {
        let run = run?;
        let ids = if adaptive {
            [
                "pace_adaptive",
                "pace_adaptive_429",
                "pace_adaptive_p99",
                "pace_adaptive_missing",
            ]
        } else {
            [
                "pace_fixed",
                "pace_fixed_429",
                "pace_fixed_p99",
                "pace_fixed_missing",
            ]
        };
        values.push((ids[0], run.throughput));
        values.push((ids[1], run.too_many_per_delivery));
        values.push((ids[2], run.p99_ms));
        values.push((ids[3], run.missing as f64));
        details.push(run.detail);
    }
    Ok(Measured {
        values,
        detail: json!({ "runs": details, "service_ms": SERVICE.as_secs_f64() * 1000.0 }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_help_text_without_the_option_means_no_pacing() {
        assert!(help_has_pacing(
            "      --adaptive-concurrency <ADAPTIVE_CONCURRENCY>\n"
        ));
        assert!(!help_has_pacing("      --max-in-flight-per-endpoint <N>\n"));
    }

    #[test]
    fn a_patch_answered_404_or_405_means_the_route_is_missing() {
        assert!(patch_is_missing(404));
        assert!(patch_is_missing(405));
        assert!(!patch_is_missing(200));
        assert!(!patch_is_missing(400));
    }

    #[test]
    fn the_window_is_read_from_the_endpoints_concurrency_series() {
        let text = "# TYPE hookrelay_endpoint_concurrency gauge\n\
                    hookrelay_endpoint_concurrency{endpoint=\"12\"} 7\n\
                    hookrelay_endpoint_concurrency{endpoint=\"1\"} 64\n";
        assert_eq!(concurrency_metric(text, "1"), Some(64.0));
        assert_eq!(concurrency_metric(text, "12"), Some(7.0));
        assert_eq!(concurrency_metric(text, "2"), None);
    }

    #[test]
    fn a_missing_delivery_counts_as_arriving_at_the_cutoff() {
        let ms = 1_000_000;
        let sent = [0, 10 * ms, 20 * ms];
        let arrived = vec![vec![0, 15 * ms, 0]];
        let (lat, missing) = latencies(&sent, &arrived, 120 * ms);
        assert_eq!(missing, 1);
        assert_eq!(lat.len(), 2);
        assert!((lat[0] - 5.0).abs() < 1e-6);
        assert!((lat[1] - 100.0).abs() < 1e-6);
    }
}
