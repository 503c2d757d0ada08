//! The adaptive concurrency window of one endpoint: how many requests may
//! be in flight at once, within the endpoint's `maxInFlight`. Fixed (not
//! adaptive) it is always `maxInFlight`. Adaptive:
//! - it starts at `min(maxInFlight, 4)` and grows by one per good and fast
//!   answer (slow start: doubling per window of answers) until the first
//!   congestion signal (429, 503, a timeout);
//! - a 429 or 503 the receiver gave at once (it took the others in flight
//!   and refused one more) narrows the window to the requests still in
//!   flight at the refusal; a timeout or a slow refusal halves it, at most
//!   once per window's worth of answers; never below 1;
//! - the level at the last congestion signal is remembered (the ceiling):
//!   below it the window grows by one per window of good answers; above it
//!   it probes only after a quiet spell (`PROBE_AFTER` of answers without a
//!   congestion signal), which doubles each time a probe is refused, up to
//!   `PROBE_AFTER_MAX`. A probe that holds for a window of good answers
//!   forgets the ceiling: the receiver takes more now.
//!
//! Time is passed in; there is no clock inside.

use std::time::{Duration, Instant};

/// The window a fresh endpoint starts with, at most.
const INITIAL: u32 = 4;
/// The quiet spell before the first probe above the ceiling.
pub const PROBE_AFTER: Duration = Duration::from_secs(5);
/// The longest quiet spell before a probe, however often probes were refused.
pub const PROBE_AFTER_MAX: Duration = Duration::from_secs(80);

/// A congestion signal as the window hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Congestion {
    /// Other requests still in flight when the signal came.
    pub others: u32,
    /// The receiver refused at once (a 429 or 503 much faster than its good
    /// answers): it was busy with the others and took no more.
    pub instant: bool,
    /// The refused request was sent as a probe (`Window::probing`).
    pub probe: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    limit: u32,
    max: u32,
    adaptive: bool,
    /// Still doubling: no congestion seen yet.
    slow_start: bool,
    /// Good and fast answers since the window last grew (after slow start).
    good: u32,
    /// Answers since the window last shrank (`None`: it never did).
    since_cut: Option<u32>,
    /// The level of the last congestion signal: the window stays at or
    /// under it until `probe_at` (`None`: no such level known).
    ceiling: Option<u32>,
    /// When the window may next grow above `ceiling`.
    probe_at: Option<Instant>,
    /// The quiet spell before the next probe.
    probe_after: Duration,
}

impl Window {
    /// A window within `max` (at least 1); fixed at `max` unless `adaptive`.
    pub fn new(max: u32, adaptive: bool) -> Window {
        let max = max.max(1);
        Window {
            limit: if adaptive { max.min(INITIAL) } else { max },
            max,
            adaptive,
            slow_start: true,
            good: 0,
            since_cut: None,
            ceiling: None,
            probe_at: None,
            probe_after: PROBE_AFTER,
        }
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The remembered level of the last congestion signal, if any.
    pub fn ceiling(&self) -> Option<u32> {
        self.ceiling
    }

    /// Whether a request sent as the `level`-th in flight is a probe: above
    /// the remembered level, or while no level is known (a fixed window
    /// never probes).
    pub fn probing(&self, level: u32) -> bool {
        self.adaptive && self.ceiling.is_none_or(|c| level > c)
    }

    /// Whether good answers have nothing to tell the window: it is fixed,
    /// or it sits at its bound with no congestion remembered. The actor
    /// then skips its per-answer pacing work.
    pub fn at_rest(&self) -> bool {
        !self.adaptive
            || (self.limit == self.max
                && self.ceiling.is_none()
                && self.since_cut.is_none_or(|n| n >= self.limit))
    }

    /// A new bound (an operator changed `maxInFlight`): the window stays
    /// where it is, within it; a fixed window follows it.
    pub fn set_max(&mut self, max: u32) {
        self.max = max.max(1);
        self.limit = if self.adaptive {
            self.limit.min(self.max)
        } else {
            self.max
        };
    }

    /// A good (2xx) and fast answer at `now`: the window grows, up to the
    /// ceiling, and above it once the quiet spell is over.
    pub fn widen(&mut self, now: Instant) {
        self.count_answer();
        if !self.adaptive {
            return;
        }
        if self.slow_start {
            self.limit = (self.limit + 1).min(self.max);
            return;
        }
        self.good += 1;
        if self.good < self.limit {
            return;
        }
        match self.ceiling {
            Some(c) if self.limit > c => {
                // A probe held for a whole window: the receiver takes more.
                self.ceiling = None;
                self.probe_at = None;
                self.probe_after = PROBE_AFTER;
            }
            Some(c) if self.limit == c && self.probe_at.is_some_and(|t| now < t) => {
                // At the remembered level: wait for the quiet spell.
                return;
            }
            _ => {}
        }
        self.good = 0;
        self.limit = (self.limit + 1).min(self.max);
    }

    /// Any other answer that is no congestion signal: nothing changes but
    /// the count of answers since the last cut.
    pub fn steady(&mut self) {
        self.count_answer();
    }

    /// A congestion signal at `now` (429, 503, a timeout). An instant
    /// refusal narrows the window to the requests still in flight; any
    /// other signal halves it, unless it did so less than a window's worth
    /// of answers ago. The quiet spell before the next probe starts again
    /// (twice as long when a probe was refused).
    pub fn narrow(&mut self, signal: Congestion, now: Instant) {
        self.count_answer();
        if !self.adaptive {
            return;
        }
        self.slow_start = false;
        if signal.probe && self.ceiling.is_some() {
            self.probe_after = (self.probe_after * 2).min(PROBE_AFTER_MAX);
        }
        self.probe_at = Some(now + self.probe_after);
        if signal.instant {
            let level = signal.others.max(1);
            if level < self.limit {
                self.cut_to(level);
            }
            self.ceiling = Some(level.min(self.limit));
            return;
        }
        if self.since_cut.is_some_and(|n| n < self.limit) {
            return;
        }
        self.cut_to((self.limit / 2).max(1));
        self.ceiling = Some(signal.others.max(self.limit));
    }

    fn cut_to(&mut self, limit: u32) {
        self.limit = limit;
        self.good = 0;
        self.since_cut = Some(0);
    }

    fn count_answer(&mut self) {
        if let Some(n) = &mut self.since_cut {
            *n = n.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(others: u32) -> Congestion {
        Congestion {
            others,
            instant: false,
            probe: false,
        }
    }

    fn refused(others: u32, probe: bool) -> Congestion {
        Congestion {
            others,
            instant: true,
            probe,
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A window after slow start grew it to 16 and a timeout halved it to 8
    /// with 15 others in flight (ceiling 15).
    fn halved_at_16(t: Instant) -> Window {
        let mut w = Window::new(32, true);
        for _ in 0..12 {
            w.widen(t);
        }
        w.narrow(slow(15), t);
        w
    }

    /// A window that found a receiver taking 3 at once, at `t`.
    fn settled_at_three(t: Instant) -> Window {
        let mut w = Window::new(32, true);
        w.narrow(refused(3, true), t);
        w
    }

    #[test]
    fn an_adaptive_window_starts_at_four_or_at_its_bound_if_smaller() {
        assert_eq!(Window::new(32, true).limit(), 4);
        assert_eq!(Window::new(2, true).limit(), 2);
        assert_eq!(Window::new(0, true).limit(), 1);
    }

    #[test]
    fn a_fixed_window_is_always_its_bound_and_never_probes() {
        let t = Instant::now();
        let mut w = Window::new(32, false);
        w.narrow(slow(3), t);
        w.narrow(refused(3, false), t);
        assert_eq!(w.limit(), 32);
        assert!(!w.probing(33));
        assert!(w.at_rest());
        w.set_max(5);
        assert_eq!(w.limit(), 5);
    }

    #[test]
    fn good_fast_answers_double_the_window_per_window_in_slow_start_up_to_its_bound() {
        let t = Instant::now();
        let mut w = Window::new(32, true);
        for _ in 0..4 {
            w.widen(t);
        }
        assert_eq!(w.limit(), 8);
        for _ in 0..8 {
            w.widen(t);
        }
        assert_eq!(w.limit(), 16);
        for _ in 0..100 {
            w.widen(t);
        }
        assert_eq!(w.limit(), 32);
    }

    #[test]
    fn a_slow_signal_halves_the_window_and_it_grows_back_by_one_per_window_to_the_ceiling() {
        let t = Instant::now();
        let mut w = halved_at_16(t);
        assert_eq!(w.limit(), 8);
        assert_eq!(w.ceiling(), Some(15));
        for _ in 0..7 {
            w.widen(t);
        }
        assert_eq!(w.limit(), 8);
        w.widen(t);
        assert_eq!(w.limit(), 9);
        for _ in 0..200 {
            w.widen(t + secs(1));
        }
        assert_eq!(
            w.limit(),
            15,
            "no higher than the ceiling before the quiet spell"
        );
    }

    #[test]
    fn the_window_halves_at_most_once_per_windows_worth_of_answers() {
        let t = Instant::now();
        let mut w = halved_at_16(t);
        w.narrow(slow(7), t);
        w.narrow(slow(7), t);
        assert_eq!(w.limit(), 8);
        for _ in 0..5 {
            w.steady();
        }
        w.narrow(slow(7), t);
        assert_eq!(w.limit(), 4);
    }

    #[test]
    fn an_instant_refusal_narrows_to_the_requests_still_in_flight() {
        let t = Instant::now();
        let w = settled_at_three(t);
        assert_eq!(w.limit(), 3);
        assert_eq!(w.ceiling(), Some(3));
    }

    #[test]
    fn instant_refusals_in_a_row_narrow_each_time_to_what_the_receiver_took() {
        let t = Instant::now();
        let mut w = Window::new(32, true);
        w.narrow(refused(3, true), t);
        w.narrow(refused(2, true), t);
        w.narrow(refused(1, true), t);
        assert_eq!(w.limit(), 1);
        assert_eq!(w.ceiling(), Some(1));
        w.narrow(refused(0, false), t);
        assert_eq!(w.limit(), 1, "never below one");
    }

    #[test]
    fn the_window_stays_at_the_ceiling_until_the_quiet_spell_is_over_then_probes_one_above() {
        let t = Instant::now();
        let mut w = settled_at_three(t);
        for _ in 0..300 {
            w.widen(t + secs(4));
        }
        assert_eq!(w.limit(), 3);
        assert!(!w.probing(3));
        for _ in 0..3 {
            w.widen(t + PROBE_AFTER);
        }
        assert_eq!(w.limit(), 4);
        assert!(w.probing(4));
    }

    #[test]
    fn a_refused_probe_goes_back_to_the_ceiling_and_doubles_the_quiet_spell() {
        let t = Instant::now();
        let mut w = settled_at_three(t);
        let probe_time = t + PROBE_AFTER;
        for _ in 0..3 {
            w.widen(probe_time);
        }
        w.narrow(refused(3, true), probe_time);
        assert_eq!(w.limit(), 3);
        assert_eq!(w.ceiling(), Some(3));
        for _ in 0..30 {
            w.widen(probe_time + PROBE_AFTER * 2 - secs(1));
        }
        assert_eq!(w.limit(), 3, "the next probe waits twice as long");
        for _ in 0..3 {
            w.widen(probe_time + PROBE_AFTER * 2);
        }
        assert_eq!(w.limit(), 4);
    }

    #[test]
    fn the_quiet_spell_doubles_up_to_its_maximum() {
        let t = Instant::now();
        let mut w = settled_at_three(t);
        for _ in 0..10 {
            w.narrow(refused(3, true), t);
        }
        for _ in 0..30 {
            w.widen(t + PROBE_AFTER_MAX - secs(1));
        }
        assert_eq!(w.limit(), 3);
        for _ in 0..3 {
            w.widen(t + PROBE_AFTER_MAX);
        }
        assert_eq!(w.limit(), 4);
    }

    #[test]
    fn congestion_at_the_ceiling_restarts_the_quiet_spell_without_doubling_it() {
        let t = Instant::now();
        let mut w = settled_at_three(t);
        w.narrow(refused(3, false), t + secs(4));
        for _ in 0..30 {
            w.widen(t + secs(8));
        }
        assert_eq!(w.limit(), 3);
        for _ in 0..3 {
            w.widen(t + secs(4) + PROBE_AFTER);
        }
        assert_eq!(w.limit(), 4);
    }

    #[test]
    fn a_probe_that_holds_for_a_window_forgets_the_ceiling_and_growth_goes_on() {
        let t = Instant::now();
        let mut w = settled_at_three(t);
        let later = t + PROBE_AFTER;
        for _ in 0..3 {
            w.widen(later);
        }
        assert_eq!(w.limit(), 4);
        for _ in 0..4 {
            w.widen(later);
        }
        assert_eq!(w.ceiling(), None);
        assert_eq!(w.limit(), 5);
        assert!(w.probing(5));
        for _ in 0..5 {
            w.widen(later);
        }
        assert_eq!(w.limit(), 6);
    }

    #[test]
    fn every_request_probes_while_no_level_is_known() {
        let w = Window::new(32, true);
        assert!(w.probing(1));
        assert!(w.probing(4));
    }

    #[test]
    fn the_window_is_at_rest_only_at_its_bound_with_no_congestion_remembered() {
        let t = Instant::now();
        let mut w = Window::new(8, true);
        assert!(!w.at_rest());
        for _ in 0..4 {
            w.widen(t);
        }
        assert_eq!(w.limit(), 8);
        assert!(w.at_rest());
        let mut w = halved_at_16(t);
        w.set_max(8);
        assert!(!w.at_rest(), "a ceiling is remembered");
    }

    #[test]
    fn a_smaller_bound_shrinks_the_window_and_a_larger_one_lets_it_grow() {
        let t = Instant::now();
        let mut w = Window::new(32, true);
        w.set_max(2);
        assert_eq!(w.limit(), 2);
        w.set_max(10);
        assert_eq!(w.limit(), 2);
        w.widen(t);
        assert_eq!(w.limit(), 3);
    }
}
