//! The adaptive concurrency window of one endpoint: how many requests may
//! be in flight at once, within the endpoint's `maxInFlight`. It starts at
//! `min(maxInFlight, 4)`, grows by one per good and fast answer in slow
//! start (doubling per window of answers) and by one per window of good
//! answers after the first congestion signal, and halves on congestion
//! (429, 503, a timeout), at most once per window's worth of answers, never
//! below 1. Fixed (not adaptive) it is always `maxInFlight`.

/// The window a fresh endpoint starts with, at most.
const INITIAL: u32 = 4;

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
        }
    }

    /// Requests that may be in flight now.
    pub fn limit(&self) -> u32 {
        self.limit
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

    /// A good (2xx) and fast answer: the window grows.
    pub fn widen(&mut self) {
        self.count_answer();
        if !self.adaptive {
            return;
        }
        if self.slow_start {
            self.limit = (self.limit + 1).min(self.max);
            return;
        }
        self.good += 1;
        if self.good >= self.limit {
            self.good = 0;
            self.limit = (self.limit + 1).min(self.max);
        }
    }

    /// Any other answer that is no congestion signal: nothing changes but
    /// the count of answers since the last cut.
    pub fn steady(&mut self) {
        self.count_answer();
    }

    /// A congestion signal (429, 503, a timeout): the window halves, unless
    /// it did so less than a window's worth of answers ago.
    pub fn narrow(&mut self) {
        self.count_answer();
        if !self.adaptive {
            return;
        }
        self.slow_start = false;
        if self.since_cut.is_some_and(|n| n < self.limit) {
            return;
        }
        self.limit = (self.limit / 2).max(1);
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

    #[test]
    fn an_adaptive_window_starts_at_four_or_at_its_bound_if_smaller() {
        assert_eq!(Window::new(32, true).limit(), 4);
        assert_eq!(Window::new(2, true).limit(), 2);
        assert_eq!(Window::new(0, true).limit(), 1);
    }

    #[test]
    fn a_fixed_window_is_always_its_bound() {
        let mut w = Window::new(32, false);
        w.narrow();
        w.narrow();
        assert_eq!(w.limit(), 32);
        w.set_max(5);
        assert_eq!(w.limit(), 5);
    }

    #[test]
    fn good_fast_answers_double_the_window_per_window_in_slow_start_up_to_its_bound() {
        let mut w = Window::new(32, true);
        for _ in 0..4 {
            w.widen();
        }
        assert_eq!(w.limit(), 8);
        for _ in 0..8 {
            w.widen();
        }
        assert_eq!(w.limit(), 16);
        for _ in 0..100 {
            w.widen();
        }
        assert_eq!(w.limit(), 32);
    }

    #[test]
    fn congestion_halves_the_window_and_then_it_grows_by_one_per_window() {
        let mut w = Window::new(32, true);
        for _ in 0..12 {
            w.widen();
        }
        w.narrow();
        assert_eq!(w.limit(), 8);
        for _ in 0..7 {
            w.widen();
        }
        assert_eq!(w.limit(), 8);
        w.widen();
        assert_eq!(w.limit(), 9);
    }

    #[test]
    fn the_window_halves_at_most_once_per_windows_worth_of_answers() {
        let mut w = Window::new(32, true);
        for _ in 0..12 {
            w.widen();
        }
        w.narrow();
        w.narrow();
        w.narrow();
        assert_eq!(w.limit(), 8);
        for _ in 0..5 {
            w.steady();
        }
        w.narrow();
        assert_eq!(w.limit(), 4);
    }

    #[test]
    fn the_window_never_falls_below_one() {
        let mut w = Window::new(32, true);
        for _ in 0..50 {
            w.narrow();
        }
        assert_eq!(w.limit(), 1);
    }

    #[test]
    fn a_smaller_bound_shrinks_the_window_and_a_larger_one_lets_it_grow() {
        let mut w = Window::new(32, true);
        w.set_max(2);
        assert_eq!(w.limit(), 2);
        w.set_max(10);
        assert_eq!(w.limit(), 2);
        w.widen();
        assert_eq!(w.limit(), 3);
    }
}
