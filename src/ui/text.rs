//! How the web UI words figures: the last answer of an endpoint from its
//! failure reason, times as "… ago", rates and durations. Pure functions.

use chrono::{DateTime, Utc};

/// The last answer of an endpoint in a few characters, from the reason of
/// its last failure (`crate::delivery::sender` words them): the HTTP
/// status code it answered, or what happened instead (`refused`,
/// `timeout`, `blocked`, `dns`, `tls`, `error`); empty when none.
pub fn last_status(reason: Option<&str>) -> String {
    let Some(reason) = reason else {
        return String::new();
    };
    let reason = reason
        .strip_prefix("probe: ")
        .or_else(|| reason.strip_prefix("verification: "))
        .unwrap_or(reason);
    if let Some(rest) = reason.strip_prefix("endpoint answered ") {
        let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !code.is_empty() {
            return code;
        }
    }
    let lower = reason.to_ascii_lowercase();
    let kind = if lower.contains("connection refused") {
        "refused"
    } else if lower.contains("timed out") {
        "timeout"
    } else if lower.starts_with("refused before connecting") {
        "blocked"
    } else if lower.contains("resolve") {
        "dns"
    } else if lower.contains("tls") || lower.contains("certificate") {
        "tls"
    } else {
        "error"
    };
    kind.to_string()
}

/// How long ago `at` was, coarsely ("12 s ago", "3 min ago", "2 h ago",
/// "4 d ago"), or how soon it comes ("in 40 s"); empty when never.
pub fn ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = at else {
        return String::new();
    };
    let s = (now - at).num_seconds();
    if s < 0 {
        return format!("in {}", span(-s));
    }
    format!("{} ago", span(s))
}

/// A span of `s` seconds, coarsely.
fn span(s: i64) -> String {
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A UTC time as shown: `2026-12-06 21:04:05 UTC`; empty when none.
pub fn when(at: Option<DateTime<Utc>>) -> String {
    at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// `part` of `whole` as a percentage with one decimal; empty when
/// `whole` is 0.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return String::new();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

/// Milliseconds as shown: `0.8 ms`, `12 ms`, `1.3 s`; empty when none.
pub fn millis(ms: Option<f64>) -> String {
    match ms {
        None => String::new(),
        Some(v) if !v.is_finite() => String::new(),
        Some(v) if v < 10.0 => format!("{v:.1} ms"),
        Some(v) if v < 1000.0 => format!("{v:.0} ms"),
        Some(v) => format!("{:.1} s", v / 1000.0),
    }
}

/// A stored body pretty-printed, or a note that it was erased.
pub fn pretty_json(payload: Option<&serde_json::value::RawValue>) -> String {
    match payload {
        None => "(erased on request)".to_string(),
        Some(raw) => serde_json::from_str::<serde_json::Value>(raw.get())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| raw.get().to_string()),
    }
}

/// An hour of per-minute figures summed up: attempts, the share that
/// succeeded, and the worst minute's p99 (percentiles of different
/// minutes do not add up, so the hour's worst is what is shown).
#[derive(Debug, Clone, PartialEq)]
pub struct HourSummary {
    pub attempts: u64,
    pub success_rate: String,
    pub worst_p99: String,
}

/// Sums up an hour of `(attempts by outcome, p99)` minutes; success is the
/// first outcome (`crate::metrics::recent::OUTCOMES`).
pub fn hour_summary<'a>(minutes: impl Iterator<Item = (&'a [u64; 5], Option<f64>)>) -> HourSummary {
    let (mut attempts, mut succeeded, mut worst) = (0u64, 0u64, None::<f64>);
    for (counts, p99) in minutes {
        attempts += counts.iter().sum::<u64>();
        succeeded += counts[0];
        if let Some(p) = p99.filter(|p| p.is_finite()) {
            worst = Some(worst.map_or(p, |w: f64| w.max(p)));
        }
    }
    HourSummary {
        attempts,
        success_rate: percent(succeeded, attempts),
        worst_p99: millis(worst),
    }
}

/// A count or nothing (a figure only the owning node knows).
pub fn count<T: std::fmt::Display>(n: Option<T>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_status_is_the_code_answered_or_what_happened_instead() {
        let status = |r| last_status(Some(r));
        assert_eq!(
            status("endpoint answered 503 Service Unavailable: busy"),
            "503"
        );
        assert_eq!(
            status("probe: endpoint answered 500 Internal Server Error"),
            "500"
        );
        assert_eq!(status("verification: connection refused"), "refused");
        assert_eq!(status("timed out after 5s"), "timeout");
        assert_eq!(status("timed out while connecting"), "timeout");
        assert_eq!(
            status("refused before connecting: 10.0.0.1 is private"),
            "blocked"
        );
        assert_eq!(status("could not resolve the host"), "dns");
        assert_eq!(status("something else"), "error");
        assert_eq!(last_status(None), "");
    }

    #[test]
    fn times_ago_grow_coarser() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let before = |s| Some(now - chrono::Duration::seconds(s));
        assert_eq!(ago(before(5), now), "5 s ago");
        assert_eq!(ago(before(600), now), "10 min ago");
        assert_eq!(ago(before(3 * 3600), now), "3 h ago");
        assert_eq!(ago(before(3 * 86_400), now), "3 d ago");
        assert_eq!(ago(before(-40), now), "in 40 s");
        assert_eq!(ago(before(0), now), "0 s ago");
        assert_eq!(ago(None, now), "");
    }

    #[test]
    fn an_hour_sums_its_attempts_and_keeps_its_worst_p99() {
        let minutes = [
            ([3, 1, 0, 0, 0], Some(12.0)),
            ([0; 5], None),
            ([4, 0, 0, 0, 0], Some(40.0)),
        ];
        let summary = hour_summary(minutes.iter().map(|(a, p)| (a, *p)));
        assert_eq!(summary.attempts, 8);
        assert_eq!(summary.success_rate, "87.5 %");
        assert_eq!(summary.worst_p99, "40 ms");
        let idle = hour_summary(std::iter::empty());
        assert_eq!(
            (idle.success_rate.as_str(), idle.worst_p99.as_str()),
            ("", "")
        );
    }

    #[test]
    fn rates_and_durations_read_naturally() {
        assert_eq!(percent(1, 3), "33.3 %");
        assert_eq!(percent(0, 0), "");
        assert_eq!(millis(Some(0.75)), "0.8 ms");
        assert_eq!(millis(Some(42.4)), "42 ms");
        assert_eq!(millis(Some(1260.0)), "1.3 s");
        assert_eq!(millis(Some(f64::NAN)), "");
        assert_eq!(millis(None), "");
    }
}
