//! The figures' names, units, baselines and targets; medians over runs; the
//! stdout table and the JSON document.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::handover::FAILOVER_BOUND_SECS;

/// An issue target for a figure.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// value / baseline ≥ this.
    RatioAtLeast(f64),
    /// value / baseline ≤ this (a cost against its baseline).
    RatioAtMost(f64),
    /// value ≤ this.
    AtMost(f64),
}

pub struct Metric {
    pub id: &'static str,
    /// Which figure measures it.
    pub figure: u8,
    pub label: &'static str,
    pub unit: &'static str,
    pub baseline: Option<&'static str>,
    pub target: Option<Target>,
}

const fn metric(
    id: &'static str,
    figure: u8,
    label: &'static str,
    unit: &'static str,
    baseline: Option<&'static str>,
    target: Option<Target>,
) -> Metric {
    Metric {
        id,
        figure,
        label,
        unit,
        baseline,
        target,
    }
}

pub const METRICS: &[Metric] = &[
    metric(
        "loopback",
        1,
        "1  loopback limit: bare awc -> receiver, 32 in flight",
        "req/s",
        None,
        None,
    ),
    metric(
        "batch1_delivery",
        2,
        "2  batch push, fan-out 1: delivery",
        "deliveries/s",
        Some("loopback"),
        Some(Target::RatioAtLeast(0.60)),
    ),
    metric(
        "batch1_ingest",
        2,
        "2  batch push, fan-out 1: ingest (until last 202)",
        "events/s",
        None,
        None,
    ),
    metric(
        "batch10_delivery",
        3,
        "3  batch push, fan-out 10: delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "batch10_ingest",
        3,
        "3  batch push, fan-out 10: ingest (until last 202)",
        "events/s",
        None,
        None,
    ),
    metric(
        "single_delivery",
        4,
        "4  single pushes, 32 clients, fan-out 1: delivery",
        "deliveries/s",
        Some("loopback"),
        Some(Target::RatioAtLeast(0.30)),
    ),
    metric(
        "single_push_ingest",
        4,
        "4  single pushes, 32 clients: ingest (until last 202)",
        "events/s",
        None,
        None,
    ),
    metric(
        "bare_handler",
        5,
        "5  bare actix-web handler, 64 clients (baseline)",
        "req/s",
        None,
        None,
    ),
    metric(
        "single_ingest",
        5,
        "5  hookrelay single-event ingest, 64 clients",
        "accepted/s",
        Some("bare_handler"),
        Some(Target::RatioAtLeast(0.50)),
    ),
    metric(
        "latency_p50",
        6,
        "6  push->arrival latency at 1,000/s: p50",
        "ms",
        None,
        None,
    ),
    metric(
        "latency_p99",
        6,
        "6  push->arrival latency at 1,000/s: p99",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "latency_p999",
        6,
        "6  push->arrival latency at 1,000/s: p99.9",
        "ms",
        None,
        None,
    ),
    metric(
        "push_ack_p99",
        6,
        "6  push->202 at 1,000/s: p99",
        "ms",
        None,
        None,
    ),
    metric(
        "mem_empty_rss",
        7,
        "7  RSS, empty database",
        "MiB",
        None,
        None,
    ),
    metric(
        "mem_seeded_rss",
        7,
        "7  RSS, 100k idle endpoints",
        "MiB",
        None,
        None,
    ),
    metric(
        "mem_per_endpoint",
        7,
        "7  RSS per idle endpoint (above the empty process)",
        "bytes",
        None,
        Some(Target::AtMost(4096.0)),
    ),
    metric(
        "mem_startup",
        7,
        "7  start with 100k endpoints: spawn -> API answers",
        "s",
        None,
        None,
    ),
    metric(
        "mem_metrics_ms",
        7,
        "7  GET /metrics with 100k endpoints: time",
        "ms",
        None,
        None,
    ),
    metric(
        "mem_metrics_bytes",
        7,
        "7  GET /metrics with 100k endpoints: size",
        "bytes",
        None,
        None,
    ),
    metric(
        "recovery_first",
        8,
        "8  1M pending: spawn -> first delivery",
        "s",
        None,
        Some(Target::AtMost(5.0)),
    ),
    metric(
        "recovery_drain",
        8,
        "8  1M pending: drain rate after the first delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "recovery_drained",
        8,
        "8  1M pending: drained before the deadline",
        "%",
        None,
        None,
    ),
    metric(
        "pg1_batch1_delivery",
        9,
        "9  PostgreSQL, 1 node: batch fan-out 1, delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "pg1_batch1_ingest",
        9,
        "9  PostgreSQL, 1 node: batch fan-out 1, ingest",
        "events/s",
        None,
        None,
    ),
    metric(
        "pg1_batch10_delivery",
        9,
        "9  PostgreSQL, 1 node: batch fan-out 10, delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "pg1_batch10_ingest",
        9,
        "9  PostgreSQL, 1 node: batch fan-out 10, ingest",
        "events/s",
        None,
        None,
    ),
    metric(
        "pg1_single_delivery",
        9,
        "9  PostgreSQL, 1 node: single pushes, delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "pg1_single_ingest",
        9,
        "9  PostgreSQL, 1 node: single pushes, ingest",
        "events/s",
        None,
        None,
    ),
    metric(
        "pg2_batch1_delivery",
        9,
        "9  PostgreSQL, 2 nodes: batch fan-out 1, delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "pg2_batch1_ingest",
        9,
        "9  PostgreSQL, 2 nodes: batch fan-out 1, ingest",
        "events/s",
        None,
        None,
    ),
    metric(
        "pg2_batch10_delivery",
        9,
        "9  PostgreSQL, 2 nodes: batch fan-out 10, delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "pg2_batch10_ingest",
        9,
        "9  PostgreSQL, 2 nodes: batch fan-out 10, ingest",
        "events/s",
        None,
        None,
    ),
    metric(
        "pg2_single_delivery",
        9,
        "9  PostgreSQL, 2 nodes: single pushes, delivery",
        "deliveries/s",
        Some("loopback"),
        None,
    ),
    metric(
        "pg2_single_ingest",
        9,
        "9  PostgreSQL, 2 nodes: single pushes, ingest",
        "events/s",
        None,
        None,
    ),
    metric(
        "ho_steady_p99",
        10,
        "10 hand-over, steady 2 nodes: push->arrival p99",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_steady_silence_max",
        10,
        "10 steady 2 nodes: longest silence at an endpoint",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_join_p50",
        10,
        "10 third node joins (2->3): latency p50",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_join_p99",
        10,
        "10 third node joins (2->3): latency p99",
        "ms",
        Some("ho_steady_p99"),
        None,
    ),
    metric(
        "ho_join_max",
        10,
        "10 third node joins (2->3): latency max",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_join_silence_max",
        10,
        "10 join: longest silence per endpoint, max",
        "ms",
        Some("ho_steady_silence_max"),
        None,
    ),
    metric(
        "ho_join_silence_median",
        10,
        "10 join: longest silence per endpoint, median",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_leave_p50",
        10,
        "10 node leaves, SIGTERM (3->2): latency p50",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_leave_p99",
        10,
        "10 node leaves, SIGTERM (3->2): latency p99",
        "ms",
        Some("ho_steady_p99"),
        None,
    ),
    metric(
        "ho_leave_max",
        10,
        "10 node leaves, SIGTERM (3->2): latency max",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_leave_silence_max",
        10,
        "10 leave: longest silence per endpoint, max",
        "ms",
        Some("ho_steady_silence_max"),
        None,
    ),
    metric(
        "ho_leave_silence_median",
        10,
        "10 leave: longest silence per endpoint, median",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_kill_silence_median",
        10,
        "10 kill -9 (2->1): longest silence, median",
        "ms",
        None,
        None,
    ),
    metric(
        "ho_failover_max",
        10,
        "10 kill -9: kill -> first delivery again, max",
        "s",
        None,
        Some(Target::AtMost(FAILOVER_BOUND_SECS)),
    ),
    metric(
        "ho_failover_median",
        10,
        "10 kill -9: kill -> first delivery again, median",
        "s",
        None,
        None,
    ),
    metric(
        "ho_missing",
        10,
        "10 accepted events missing at an endpoint",
        "deliveries",
        None,
        Some(Target::AtMost(0.0)),
    ),
    metric(
        "ho_duplicates",
        10,
        "10 duplicate deliveries (all windows)",
        "deliveries",
        None,
        None,
    ),
    metric(
        "pace_adaptive",
        11,
        "11 20 paced endpoints, adaptive: delivered",
        "deliveries/s",
        Some("pace_fixed"),
        None,
    ),
    metric(
        "pace_fixed",
        11,
        "11 20 paced endpoints, fixed 32: delivered",
        "deliveries/s",
        None,
        None,
    ),
    metric(
        "pace_adaptive_429",
        11,
        "11 paced, adaptive: 429s per delivery",
        "429/delivery",
        Some("pace_fixed_429"),
        None,
    ),
    metric(
        "pace_fixed_429",
        11,
        "11 paced, fixed 32: 429s per delivery",
        "429/delivery",
        None,
        None,
    ),
    metric(
        "pace_adaptive_p99",
        11,
        "11 paced, adaptive: push->arrival p99",
        "ms",
        Some("pace_fixed_p99"),
        None,
    ),
    metric(
        "pace_fixed_p99",
        11,
        "11 paced, fixed 32: push->arrival p99",
        "ms",
        None,
        None,
    ),
    metric(
        "pace_adaptive_missing",
        11,
        "11 paced, adaptive: missing at the cut-off",
        "deliveries",
        None,
        None,
    ),
    metric(
        "pace_fixed_missing",
        11,
        "11 paced, fixed 32: missing at the cut-off",
        "deliveries",
        None,
        None,
    ),
    metric(
        "pace_fast_adaptive",
        11,
        "11 one fast endpoint, maxInFlight 64, adaptive",
        "deliveries/s",
        Some("pace_fast_fixed"),
        None,
    ),
    metric(
        "pace_fast_fixed",
        11,
        "11 one fast endpoint, maxInFlight 64, fixed",
        "deliveries/s",
        None,
        None,
    ),
    metric(
        "pace_fast_adaptive_window",
        11,
        "11 fast endpoint, adaptive: window reached",
        "requests",
        None,
        None,
    ),
    metric(
        "pace_fast_fixed_window",
        11,
        "11 fast endpoint, fixed: window",
        "requests",
        None,
        None,
    ),
    metric(
        "retention_clean_ack_p50",
        12,
        "12 push->202 at 500/s while retention cleans: p50",
        "ms",
        Some("retention_idle_ack_p50"),
        None,
    ),
    metric(
        "retention_clean_ack_p99",
        12,
        "12 push->202 at 500/s while retention cleans: p99",
        "ms",
        Some("retention_idle_ack_p99"),
        None,
    ),
    metric(
        "retention_clean_ack_max",
        12,
        "12 push->202 at 500/s while retention cleans: max",
        "ms",
        Some("retention_idle_ack_max"),
        None,
    ),
    metric(
        "retention_idle_ack_p50",
        12,
        "12 push->202 at 500/s, nothing to clean: p50",
        "ms",
        None,
        None,
    ),
    metric(
        "retention_idle_ack_p99",
        12,
        "12 push->202 at 500/s, nothing to clean: p99",
        "ms",
        None,
        None,
    ),
    metric(
        "retention_idle_ack_max",
        12,
        "12 push->202 at 500/s, nothing to clean: max",
        "ms",
        None,
        None,
    ),
    metric(
        "retention_clean_secs",
        12,
        "12 cleaning 1M finished deliveries: start -> done",
        "s",
        None,
        None,
    ),
    metric(
        "quiet_f1_50_cpu",
        13,
        "13 CPU/event at 50/s, fan-out 1 (SQLite)",
        "us/event",
        Some("quiet_f1_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_f1_200_cpu",
        13,
        "13 CPU/event at 200/s, fan-out 1 (SQLite)",
        "us/event",
        Some("quiet_f1_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_f1_500_cpu",
        13,
        "13 CPU/event at 500/s, fan-out 1 (SQLite)",
        "us/event",
        Some("quiet_f1_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_f1_sat_cpu",
        13,
        "13 CPU/event saturated, fan-out 1 (SQLite, baseline)",
        "us/event",
        None,
        None,
    ),
    metric(
        "quiet_f1_50_p99",
        13,
        "13 push->receipt p99 at 50/s, fan-out 1 (SQLite)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_f1_200_p99",
        13,
        "13 push->receipt p99 at 200/s, fan-out 1 (SQLite)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_f1_500_p99",
        13,
        "13 push->receipt p99 at 500/s, fan-out 1 (SQLite)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_f10_50_cpu",
        13,
        "13 CPU/event at 50/s, fan-out 10 (SQLite)",
        "us/event",
        Some("quiet_f10_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_f10_200_cpu",
        13,
        "13 CPU/event at 200/s, fan-out 10 (SQLite)",
        "us/event",
        Some("quiet_f10_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_f10_500_cpu",
        13,
        "13 CPU/event at 500/s, fan-out 10 (SQLite)",
        "us/event",
        Some("quiet_f10_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_f10_sat_cpu",
        13,
        "13 CPU/event saturated, fan-out 10 (SQLite, baseline)",
        "us/event",
        None,
        None,
    ),
    metric(
        "quiet_f10_50_p99",
        13,
        "13 push->receipt p99 at 50/s, fan-out 10 (SQLite)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_f10_200_p99",
        13,
        "13 push->receipt p99 at 200/s, fan-out 10 (SQLite)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_f10_500_p99",
        13,
        "13 push->receipt p99 at 500/s, fan-out 10 (SQLite)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_pg_f1_50_cpu",
        13,
        "13 CPU/event at 50/s, fan-out 1 (PostgreSQL)",
        "us/event",
        Some("quiet_pg_f1_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_pg_f1_200_cpu",
        13,
        "13 CPU/event at 200/s, fan-out 1 (PostgreSQL)",
        "us/event",
        Some("quiet_pg_f1_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_pg_f1_500_cpu",
        13,
        "13 CPU/event at 500/s, fan-out 1 (PostgreSQL)",
        "us/event",
        Some("quiet_pg_f1_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_pg_f1_sat_cpu",
        13,
        "13 CPU/event saturated, fan-out 1 (PostgreSQL, baseline)",
        "us/event",
        None,
        None,
    ),
    metric(
        "quiet_pg_f1_50_p99",
        13,
        "13 push->receipt p99 at 50/s, fan-out 1 (PostgreSQL)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_pg_f1_200_p99",
        13,
        "13 push->receipt p99 at 200/s, fan-out 1 (PostgreSQL)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_pg_f1_500_p99",
        13,
        "13 push->receipt p99 at 500/s, fan-out 1 (PostgreSQL)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_pg_f10_50_cpu",
        13,
        "13 CPU/event at 50/s, fan-out 10 (PostgreSQL)",
        "us/event",
        Some("quiet_pg_f10_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_pg_f10_200_cpu",
        13,
        "13 CPU/event at 200/s, fan-out 10 (PostgreSQL)",
        "us/event",
        Some("quiet_pg_f10_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_pg_f10_500_cpu",
        13,
        "13 CPU/event at 500/s, fan-out 10 (PostgreSQL)",
        "us/event",
        Some("quiet_pg_f10_sat_cpu"),
        Some(Target::RatioAtMost(2.0)),
    ),
    metric(
        "quiet_pg_f10_sat_cpu",
        13,
        "13 CPU/event saturated, fan-out 10 (PostgreSQL, baseline)",
        "us/event",
        None,
        None,
    ),
    metric(
        "quiet_pg_f10_50_p99",
        13,
        "13 push->receipt p99 at 50/s, fan-out 10 (PostgreSQL)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_pg_f10_200_p99",
        13,
        "13 push->receipt p99 at 200/s, fan-out 10 (PostgreSQL)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_pg_f10_500_p99",
        13,
        "13 push->receipt p99 at 500/s, fan-out 10 (PostgreSQL)",
        "ms",
        None,
        Some(Target::AtMost(10.0)),
    ),
    metric(
        "quiet_idle_cpu",
        13,
        "13 idle CPU, 10,000 idle endpoints",
        "ms/s",
        None,
        None,
    ),
    metric(
        "quiet_idle_wakeups",
        13,
        "13 idle wake-ups, 10,000 idle endpoints",
        "wakeups/s",
        None,
        None,
    ),
];

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// One metric summarised over the runs.
pub struct Row {
    pub metric: &'static Metric,
    pub values: Vec<f64>,
    pub median: Option<f64>,
    pub ratio: Option<f64>,
    pub met: Option<bool>,
}

pub fn summarise(values: &BTreeMap<&'static str, Vec<f64>>, figures: &[u8]) -> Vec<Row> {
    let med = |id: &str| values.get(id).and_then(|v| median(v));
    METRICS
        .iter()
        .filter(|m| figures.contains(&m.figure))
        // Figure 13's PostgreSQL rows exist only when it ran on PostgreSQL.
        .filter(|m| !m.id.starts_with("quiet_pg_") || values.contains_key(m.id))
        .map(|m| {
            let median = med(m.id);
            let ratio = match (median, m.baseline.and_then(med)) {
                (Some(v), Some(b)) if b > 0.0 => Some(v / b),
                _ => None,
            };
            let met = match m.target {
                Some(Target::RatioAtLeast(t)) => ratio.map(|r| r >= t),
                Some(Target::RatioAtMost(t)) => ratio.map(|r| r <= t),
                Some(Target::AtMost(t)) => median.map(|v| v <= t),
                None => None,
            };
            Row {
                metric: m,
                values: values.get(m.id).cloned().unwrap_or_default(),
                median,
                ratio,
                met,
            }
        })
        .collect()
}

/// 12345.6 → "12,346"; small values keep two decimals.
pub fn number(v: f64, unit: &str) -> String {
    if unit == "ms" || v.abs() < 100.0 {
        return format!("{v:.2}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn target_text(m: &Metric) -> String {
    match (m.target, m.baseline) {
        (Some(Target::RatioAtLeast(t)), Some(b)) => format!(">= {:.0}% of {b}", t * 100.0),
        (Some(Target::RatioAtMost(t)), Some(b)) => format!("<= {:.0}% of {b}", t * 100.0),
        (Some(Target::AtMost(t)), _) => format!("<= {t} {}", m.unit),
        _ => String::new(),
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<56} {:>12} {:<13} {:>7}  {:<27} {}\n",
        "figure", "median", "unit", "ratio", "target", "met"
    ));
    out.push_str(&format!("{}\n", "-".repeat(124)));
    for r in rows {
        let value = r
            .median
            .map_or("FAILED".to_string(), |v| number(v, r.metric.unit));
        let ratio = r
            .ratio
            .map_or(String::from("-"), |x| format!("{:.0}%", x * 100.0));
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        out.push_str(&format!(
            "{:<56} {:>12} {:<13} {:>7}  {:<27} {}\n",
            r.metric.label,
            value,
            r.metric.unit,
            ratio,
            target_text(r.metric),
            met
        ));
    }
    out
}

pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.metric.id,
                    "figure": r.metric.figure,
                    "label": r.metric.label,
                    "unit": r.metric.unit,
                    "median": r.median,
                    "runs": r.values,
                    "baseline": r.metric.baseline,
                    "ratio_to_baseline": r.ratio,
                    "target": target_text(r.metric),
                    "target_met": r.met,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_numbers() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(number(1234567.4, "req/s"), "1,234,567");
        assert_eq!(number(999.0, "req/s"), "999");
        assert_eq!(number(1.234, "ms"), "1.23");
    }
}
