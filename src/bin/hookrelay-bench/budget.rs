//! CPU per item, and the CPU a target leaves: from each run's CPU
//! accounting (`cpu::usage`), how many microseconds of CPU hookrelay and
//! the bench (its clients and its servers) spent per delivery or event,
//! and, for each throughput target, how much hookrelay could spend per
//! item at most if it reached the target with every core busy.
//!
//! ```text
//! at target:  items/s T = target ratio × baseline (same set of runs)
//!             machine   = cores × 1e6 / T           µs of CPU per item
//!             bench     = the bench's own cost per item, at its lowest:
//!                         figure 1's receiver µs per request for each
//!                         delivery, plus the clients' µs per push (at
//!                         most figure 1's, or the bare handler run's)
//!             budget    = machine − bench           µs left for hookrelay
//! ```
//!
//! The budget is generous on purpose: every core 100% busy, and the
//! bench's cost per item at its lowest, measured at saturation.

use serde_json::{Value, json};

use crate::report::{self, METRICS, Row, Target};

/// µs of CPU per item, by whom, in one run of one figure.
#[derive(Clone, Copy)]
struct Spent {
    /// `None` for the baselines, which run without hookrelay.
    hookrelay: Option<f64>,
    load: f64,
    server: f64,
    idle_cores: f64,
}

fn us_per_item(cpu: &Value, key: &str, items: f64) -> Option<f64> {
    let cores = cpu[key].as_f64()?;
    let secs = cpu["seconds"].as_f64()?;
    (items > 0.0).then(|| cores * secs * 1e6 / items)
}

/// What one run of a figure spent per item: `cpu` its accounting over
/// `items` deliveries, events or requests.
fn spent(cpu: &Value, items: f64, cores: f64) -> Option<Spent> {
    Some(Spent {
        hookrelay: us_per_item(cpu, "hookrelay_cores", items),
        load: us_per_item(cpu, "bench_load_cores", items)?,
        server: us_per_item(cpu, "bench_server_cores", items)?,
        idle_cores: (cores - cpu["machine_cores_busy"].as_f64()?).max(0.0),
    })
}

/// Per run: (items counted, their CPU accounting) of one measurement.
fn runs_of<'a>(
    details: &'a [Value],
    figure: u8,
    items: &'a str,
    cpu: &'a str,
) -> impl Iterator<Item = (f64, &'a Value)> + 'a {
    details.iter().filter_map(move |run| {
        let d = &run[figure.to_string()];
        Some((d[items].as_f64()?, &d[cpu]))
    })
}

/// Medians over the runs.
fn median_spent(all: &[Spent]) -> Option<Spent> {
    let m = |f: fn(&Spent) -> f64| report::median(&all.iter().map(f).collect::<Vec<_>>());
    Some(Spent {
        hookrelay: report::median(&all.iter().filter_map(|s| s.hookrelay).collect::<Vec<_>>()),
        load: m(|s| s.load)?,
        server: m(|s| s.server)?,
        idle_cores: m(|s| s.idle_cores)?,
    })
}

/// What a throughput target leaves hookrelay (µs of CPU per item).
#[derive(Clone, Copy)]
struct AtTarget {
    /// The target's items/s.
    rate: f64,
    /// CPU per item with every core busy.
    machine: f64,
    /// The bench's own cost per item, at its lowest.
    bench: f64,
    /// What remains for hookrelay.
    budget: f64,
}

pub struct Line {
    label: &'static str,
    spent: Spent,
    at_target: Option<AtTarget>,
}

/// The CPU lines of the figures that ran, with the budgets of their targets.
pub fn lines(details: &[Value], rows: &[Row], cores: f64) -> Vec<Line> {
    let collect = |figure: u8, items: &str, cpu: &str| -> Option<Spent> {
        let all: Vec<Spent> = runs_of(details, figure, items, cpu)
            .filter_map(|(n, c)| spent(c, n, cores))
            .collect();
        median_spent(&all)
    };
    let loopback = collect(1, "requests", "cpu");
    let bare = collect(5, "bare_requests", "bare_cpu");
    let target_rate = |id: &str| -> Option<f64> {
        let metric = METRICS.iter().find(|m| m.id == id)?;
        let Some(Target::RatioAtLeast(ratio)) = metric.target else {
            return None;
        };
        let baseline = rows
            .iter()
            .find(|r| Some(r.metric.id) == metric.baseline)?
            .median?;
        Some(ratio * baseline)
    };
    let budget = |id: &str, bench_floor: Option<f64>| {
        let rate = target_rate(id)?;
        let machine = cores * 1e6 / rate;
        let bench = bench_floor?;
        Some(AtTarget {
            rate,
            machine,
            bench,
            budget: machine - bench,
        })
    };
    let receiver = loopback.map(|l| l.server);
    let mut out = Vec::new();
    let mut push = |label, spent: Option<Spent>, at_target| {
        if let Some(spent) = spent {
            out.push(Line {
                label,
                spent,
                at_target,
            });
        }
    };
    push("1  bare awc client -> receiver", loopback, None);
    let batch = collect(2, "deliveries", "cpu");
    push(
        "2  batch push, fan-out 1",
        batch,
        budget(
            "batch1_delivery",
            batch.zip(receiver).map(|(b, r)| b.load + r),
        ),
    );
    push(
        "3  batch push, fan-out 10",
        collect(3, "deliveries", "cpu"),
        None,
    );
    let single = collect(4, "deliveries", "cpu");
    let client = loopback.map(|l| l.load);
    push(
        "4  single pushes, fan-out 1",
        single,
        budget(
            "single_delivery",
            single
                .zip(client)
                .zip(receiver)
                .map(|((s, c), r)| s.load.min(c) + r),
        ),
    );
    push("5  bare handler (baseline)", bare, None);
    let ingest = collect(5, "hookrelay_accepted", "hookrelay_cpu");
    push(
        "5  single-event ingest",
        ingest,
        budget(
            "single_ingest",
            ingest.zip(bare).map(|(i, b)| i.load.min(b.load)),
        ),
    );
    out
}

fn us(v: f64) -> String {
    format!("{v:.1}")
}

/// The table printed after the figures: CPU per item now, and what a
/// target would leave.
pub fn table(lines: &[Line]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nCPU per item (µs of CPU per delivery, event or request; medians of runs)\n",
    );
    out.push_str(&format!(
        "{:<34} {:>9} {:>9} {:>9} {:>6} | {:>12} {:>8} {:>8} {:>8} {:>7}\n",
        "figure",
        "hookrelay",
        "clients",
        "servers",
        "idle",
        "target /s",
        "machine",
        "bench",
        "budget",
        "over"
    ));
    out.push_str(&format!("{}\n", "-".repeat(124)));
    for l in lines {
        let s = l.spent;
        let right = match l.at_target {
            Some(t) => format!(
                "{:>12} {:>8} {:>8} {:>8} {:>7}",
                report::number(t.rate, ""),
                us(t.machine),
                us(t.bench),
                us(t.budget),
                match s.hookrelay {
                    Some(h) if t.budget > 0.0 => format!("{:.2}x", h / t.budget),
                    _ => "-".into(),
                }
            ),
            None => String::new(),
        };
        out.push_str(&format!(
            "{:<34} {:>9} {:>9} {:>9} {:>6.2} | {right}\n",
            l.label,
            s.hookrelay.map_or("-".into(), us),
            us(s.load),
            us(s.server),
            s.idle_cores
        ));
    }
    out.push_str(
        "(servers: the bench's receiver or bare handler; idle: cores unused on average. \
         At the target: machine = µs of CPU per item with every core busy, bench = the bench's \
         lowest cost per item, budget = what is left for hookrelay, over = hookrelay now / budget)\n",
    );
    out
}

/// The same, for the JSON document.
pub fn json(lines: &[Line]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|l| {
                let s = l.spent;
                let mut v = json!({
                    "figure": l.label,
                    "hookrelay_us": s.hookrelay,
                    "bench_clients_us": s.load,
                    "bench_servers_us": s.server,
                    "idle_cores": s.idle_cores,
                });
                if let Some(t) = l.at_target {
                    v["at_target"] = json!({
                        "items_per_sec": t.rate,
                        "machine_us": t.machine,
                        "bench_us": t.bench,
                        "hookrelay_budget_us": t.budget,
                    });
                }
                v
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_per_item_is_cores_times_seconds_over_items() {
        let cpu = json!({
            "seconds": 2.0, "hookrelay_cores": 1.0, "bench_load_cores": 0.25,
            "bench_server_cores": 0.5, "machine_cores_busy": 1.75,
        });
        let s = spent(&cpu, 100_000.0, 2.0).unwrap();
        assert_eq!(s.hookrelay, Some(20.0));
        assert_eq!(s.load, 5.0);
        assert_eq!(s.server, 10.0);
        assert_eq!(s.idle_cores, 0.25);
    }

    #[test]
    fn a_target_leaves_the_machine_minus_the_bench_for_hookrelay() {
        // Figure 1: 100,000 req/s, clients and receiver 10 µs each.
        // Figure 2: 50,000 deliveries in 1 s; hookrelay 1.5 cores (30 µs),
        // pushers 0.05 cores (1 µs).
        let details = vec![json!({
            "1": {"requests": 100_000.0, "cpu": {"seconds": 1.0, "bench_load_cores": 1.0,
                  "bench_server_cores": 1.0, "machine_cores_busy": 2.0}},
            "2": {"deliveries": 50_000.0, "cpu": {"seconds": 1.0, "hookrelay_cores": 1.5,
                  "bench_load_cores": 0.05, "bench_server_cores": 0.4, "machine_cores_busy": 1.95}},
        })];
        let values = [
            ("loopback", vec![100_000.0]),
            ("batch1_delivery", vec![50_000.0]),
        ]
        .into_iter()
        .collect();
        let rows = report::summarise(&values, &[1, 2]);
        let lines = lines(&details, &rows, 2.0);
        let batch = lines.iter().find(|l| l.label.starts_with('2')).unwrap();
        let t = batch.at_target.unwrap();
        // 60% of 100,000/s on 2 cores: 33.3 µs of CPU per delivery, of which
        // the bench needs its pushers' 1 µs and figure 1's receiver 10 µs.
        assert_eq!(t.rate, 60_000.0);
        assert!((t.machine - 33.333).abs() < 0.01, "{}", t.machine);
        assert!((t.bench - 11.0).abs() < 1e-9, "{}", t.bench);
        assert!((t.budget - 22.333).abs() < 0.01, "{}", t.budget);
        assert_eq!(batch.spent.hookrelay, Some(30.0));
    }
}
