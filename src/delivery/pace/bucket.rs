//! The token bucket of an endpoint's `maxPerSecond`: a request starts only
//! with a token; tokens come at `rate` per second, at most `rate` saved up
//! (the burst). Time is passed in; there is no clock inside.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    rate: u32,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `rate` tokens per second (at least 1), at `now`.
    pub fn new(rate: u32, now: Instant) -> Bucket {
        let rate = rate.max(1);
        Bucket {
            rate,
            tokens: f64::from(rate),
            at: now,
        }
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes a token at `now`, or answers how long until the next one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(self.until_next())
    }

    /// How long from `now` until a token is there (zero: one is there).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.until_next()
        }
    }

    fn refill(&mut self, now: Instant) {
        let passed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + passed * f64::from(self.rate)).min(f64::from(self.rate));
        self.at = self.at.max(now);
    }

    fn until_next(&self) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        // Rounded up so that waking then finds the token there.
        Duration::from_secs_f64(missing / f64::from(self.rate)) + Duration::from_micros(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_gives_a_burst_of_its_rate_and_then_makes_you_wait() {
        let t = Instant::now();
        let mut b = Bucket::new(5, t);
        for _ in 0..5 {
            assert_eq!(b.take(t), Ok(()));
        }
        let wait = b.take(t).unwrap_err();
        assert!(wait > Duration::from_millis(199) && wait < Duration::from_millis(201));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_no_more_than_the_burst_is_saved() {
        let t = Instant::now();
        let mut b = Bucket::new(10, t);
        for _ in 0..10 {
            b.take(t).unwrap();
        }
        assert!(b.take(t + Duration::from_millis(50)).is_err());
        assert_eq!(b.take(t + Duration::from_millis(101)), Ok(()));
        let later = t + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(b.take(later), Ok(()));
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn waiting_tells_when_the_next_token_is_due_without_taking_it() {
        let t = Instant::now();
        let mut b = Bucket::new(1, t);
        assert_eq!(b.wait(t), Duration::ZERO);
        b.take(t).unwrap();
        let wait = b.wait(t);
        assert!(wait > Duration::from_millis(999));
        assert_eq!(b.take(t + wait), Ok(()));
    }

    #[test]
    fn a_rate_of_zero_is_taken_as_one_per_second() {
        assert_eq!(Bucket::new(0, Instant::now()).rate(), 1);
    }
}
