//! Whether an answer was fast, and what an answer tells the window.
//! `Latency` smooths the endpoint's own 2xx latencies (an exponentially
//! weighted moving average); an answer is fast while it takes at most
//! twice that (plus a little, so that a sub-millisecond endpoint's jitter
//! is no alarm): the window widens only while latency is not rising sharply.
//! A refusal is instant while it takes at most half the average (or a
//! couple of milliseconds): the receiver did not work on it, it was full.

use std::time::Duration;

/// The weight of a new sample in the average.
const WEIGHT: f64 = 0.2;
/// An answer up to this many times the average is fast.
const RISE: f64 = 2.0;
/// And up to this much over it, however small the average.
const SLACK: Duration = Duration::from_millis(5);
/// A refusal this fast is instant, whatever the average (none seen yet).
const INSTANT: Duration = Duration::from_millis(2);

/// The smoothed latency of the endpoint's good answers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    average: Option<f64>,
}

impl Latency {
    /// Whether a good answer that took `took` was fast, then counts it.
    pub fn observe(&mut self, took: Duration) -> bool {
        let seconds = took.as_secs_f64();
        let fast = self.is_fast(took);
        self.average = Some(match self.average {
            None => seconds,
            Some(avg) => avg + WEIGHT * (seconds - avg),
        });
        fast
    }

    /// Whether `took` is fast against the average so far.
    pub fn is_fast(&self, took: Duration) -> bool {
        self.average
            .is_none_or(|avg| took.as_secs_f64() <= avg * RISE + SLACK.as_secs_f64())
    }

    /// Whether a refusal that took `took` came at once: within half the
    /// average of good answers, or within `INSTANT`.
    pub fn is_instant(&self, took: Duration) -> bool {
        let limit = self.average.map_or(INSTANT.as_secs_f64(), |avg| {
            (avg / 2.0).max(INSTANT.as_secs_f64())
        });
        took.as_secs_f64() <= limit
    }

    /// The average so far, if any answer was seen.
    pub fn average(&self) -> Option<Duration> {
        self.average.map(Duration::from_secs_f64)
    }
}

/// What an answer tells the concurrency window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Good and fast: room for more.
    Widen,
    /// Nothing about capacity (a slow success, a 500, a refused connection).
    Steady,
    /// The receiver is overloaded: 429, 503 or a timeout.
    Narrow,
}

/// The signal of an answer with `status` (none when there was no answer),
/// whether it `timed_out`, and whether it was `fast`.
pub fn signal(status: Option<u16>, timed_out: bool, fast: bool) -> Signal {
    match status {
        _ if timed_out => Signal::Narrow,
        Some(429) | Some(503) => Signal::Narrow,
        Some(200..=299) if fast => Signal::Widen,
        _ => Signal::Steady,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_answer_is_fast_and_sets_the_average() {
        let mut l = Latency::default();
        assert!(l.observe(ms(100)));
        assert_eq!(l.average(), Some(ms(100)));
    }

    #[test]
    fn an_answer_taking_over_twice_the_average_is_slow() {
        let mut l = Latency::default();
        l.observe(ms(100));
        assert!(l.is_fast(ms(200)));
        assert!(!l.is_fast(ms(260)));
    }

    #[test]
    fn a_tiny_average_tolerates_a_few_milliseconds_of_jitter() {
        let mut l = Latency::default();
        l.observe(Duration::from_micros(300));
        assert!(l.is_fast(ms(4)));
        assert!(!l.is_fast(ms(10)));
    }

    #[test]
    fn the_average_moves_a_fifth_of_the_way_toward_each_new_answer() {
        let mut l = Latency::default();
        l.observe(ms(100));
        l.observe(ms(200));
        let avg = l.average().unwrap().as_secs_f64();
        assert!((avg - 0.120).abs() < 1e-9);
    }

    #[test]
    fn a_refusal_within_half_the_average_or_two_milliseconds_is_instant() {
        let mut l = Latency::default();
        assert!(l.is_instant(ms(2)));
        assert!(!l.is_instant(ms(3)));
        l.observe(ms(20));
        assert!(l.is_instant(ms(10)));
        assert!(!l.is_instant(ms(11)));
        let mut tiny = Latency::default();
        tiny.observe(Duration::from_micros(300));
        assert!(tiny.is_instant(Duration::from_micros(900)));
    }

    #[test]
    fn too_many_requests_unavailable_and_timeouts_narrow_the_window() {
        assert_eq!(signal(Some(429), false, true), Signal::Narrow);
        assert_eq!(signal(Some(503), false, true), Signal::Narrow);
        assert_eq!(signal(None, true, false), Signal::Narrow);
    }

    #[test]
    fn only_a_fast_success_widens_the_window() {
        assert_eq!(signal(Some(204), false, true), Signal::Widen);
        assert_eq!(signal(Some(200), false, false), Signal::Steady);
        assert_eq!(signal(Some(500), false, true), Signal::Steady);
        assert_eq!(signal(None, false, true), Signal::Steady);
    }
}
