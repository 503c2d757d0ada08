//! The retry policy: which delay follows a failed attempt (from
//! `--retry-schedule`, with ±20% jitter), and how a receiver's `Retry-After`
//! is honoured within bounds. What follows an attempt is decided in one
//! place: `decision::next_step`.

use std::time::Duration;

mod decision;

pub use decision::{Decision, Situation, Step, next_step};

/// Fraction of each delay randomly added or removed.
pub const JITTER: f64 = 0.2;

/// The delay before the next attempt after `attempts_made` attempts failed,
/// or `None` when the schedule is exhausted (the delivery is dead).
/// `unit` is a random number in [0, 1) that picks the jitter.
pub fn next_delay(schedule: &[Duration], attempts_made: u32, unit: f64) -> Option<Duration> {
    let step = schedule.get((attempts_made as usize).checked_sub(1)?)?;
    let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
    Some(step.mul_f64(factor))
}

/// The delay a receiver asked for with `Retry-After` (seconds, or an HTTP
/// date), capped at `cap` so a receiver cannot park deliveries forever.
pub fn retry_after(
    header: &str,
    now: chrono::DateTime<chrono::Utc>,
    cap: Duration,
) -> Option<Duration> {
    let header = header.trim();
    let asked = if let Ok(secs) = header.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(header).ok()?;
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(asked.min(cap))
}

/// A random number in [0, 1) for jitter.
pub fn unit_random() -> f64 {
    rand::random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Vec<Duration> {
        vec![
            Duration::from_secs(10),
            Duration::from_secs(60),
            Duration::from_secs(600),
        ]
    }

    #[test]
    fn each_failure_takes_the_next_step_of_the_schedule() {
        let s = schedule();
        assert_eq!(next_delay(&s, 1, 0.5), Some(Duration::from_secs(10)));
        assert_eq!(next_delay(&s, 2, 0.5), Some(Duration::from_secs(60)));
        assert_eq!(next_delay(&s, 3, 0.5), Some(Duration::from_secs(600)));
        assert_eq!(next_delay(&s, 4, 0.5), None);
        assert_eq!(next_delay(&s, 0, 0.5), None);
        assert_eq!(next_delay(&[], 1, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let s = schedule();
        assert_eq!(next_delay(&s, 1, 0.0), Some(Duration::from_secs(8)));
        let high = next_delay(&s, 1, 0.999_999).unwrap();
        assert!(high < Duration::from_secs(12) && high > Duration::from_millis(11_999));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let cap = Duration::from_secs(600);
        assert_eq!(retry_after("2", now, cap), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("99999", now, cap), Some(cap));
        assert_eq!(
            retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now, cap),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after("soon", now, cap), None);
    }
}
