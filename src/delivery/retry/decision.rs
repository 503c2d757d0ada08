//! Where a retry is decided: the one pure function that says what follows
//! a delivery attempt, from the endpoint's answer, the attempts made, the
//! endpoint's health and the retry schedule. The endpoint actor only
//! carries the answer out.
//!
//! ```text
//!  2xx ─────────────────────────────────────────────► succeeded
//!  failure ─┬─ endpoint dead ───────────────────────► released (its burial dead-letters it)
//!           ├─ endpoint paused ─────────────────────► held (the attempt does not count)
//!           ├─ schedule exhausted ──────────────────► dead letter
//!           └─ otherwise ───────────────────────────► retry after the schedule's step,
//!                                                      longer if the receiver asked
//!  429 / 503 with Retry-After, 429 without: every request to the endpoint waits too
//!  (not for a 429 without Retry-After to a window probe: the window narrows instead)
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{next_delay, retry_after};
use crate::delivery::health::State;
use crate::delivery::sender::Attempt;

/// A 429 without `Retry-After` waits this many times longer than a plain
/// failure, both the delivery and the whole endpoint.
const TOO_MANY_REQUESTS_FACTOR: u32 = 2;
/// The `Retry-After` cap when the schedule is empty.
const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
/// The first step assumed for a 429 when the schedule is empty.
const DEFAULT_FIRST_STEP: Duration = Duration::from_secs(10);

/// Everything besides the answer that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// Attempts made so far, this one included.
    pub attempts: u32,
    /// The endpoint's health once this attempt was counted.
    pub state: State,
    /// `--retry-schedule`.
    pub schedule: &'a [Duration],
    pub now: DateTime<Utc>,
    /// A random number in [0, 1) that picks the jitter.
    pub unit: f64,
    /// The request was an adaptive window's probe above the level the
    /// receiver last refused at: a 429 to it without `Retry-After` narrows
    /// the window and holds nothing else back.
    pub probe: bool,
}

/// What happens to the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It was delivered.
    Succeeded,
    /// The endpoint is paused: the delivery goes back to the queue, and
    /// the attempt does not count against it.
    Hold,
    /// The endpoint is dead: the delivery is let go, and the endpoint's
    /// burial dead-letters it.
    Release,
    /// It is sent again after this wait, keeping its slot.
    Retry { after: Duration },
    /// The schedule is used up: it is a dead letter.
    DeadLetter,
}

/// The decision after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub step: Step,
    /// Back-pressure: no request to the endpoint for this long.
    pub hold_endpoint_for: Option<Duration>,
}

/// What follows `attempt`, in `situation`.
pub fn next_step(attempt: &Attempt, situation: &Situation) -> Decision {
    if attempt.succeeded() {
        return Decision {
            step: Step::Succeeded,
            hold_endpoint_for: None,
        };
    }
    let asked = asked_wait(attempt, situation);
    let too_many = attempt.status == Some(429);
    let hold_endpoint_for = asked.or_else(|| {
        (too_many && !situation.probe).then(|| slowed_down(first_step(situation.schedule)))
    });
    let step = match situation.state {
        State::Dead => Step::Release,
        State::Paused => Step::Hold,
        State::Healthy | State::Failing => retry_step(asked, too_many, situation),
    };
    Decision {
        step,
        hold_endpoint_for,
    }
}

/// The retry of a delivery to an endpoint that may be used: the schedule's
/// step, or what the receiver asked if that is longer, or the step slowed
/// down after a 429 that asked nothing.
fn retry_step(asked: Option<Duration>, too_many: bool, situation: &Situation) -> Step {
    let Some(scheduled) = next_delay(situation.schedule, situation.attempts, situation.unit) else {
        return Step::DeadLetter;
    };
    let after = match asked {
        Some(asked) => asked.max(scheduled),
        None if too_many => slowed_down(scheduled),
        None => scheduled,
    };
    Step::Retry { after }
}

/// The wait a 429 or 503 asked for with `Retry-After`, capped.
fn asked_wait(attempt: &Attempt, situation: &Situation) -> Option<Duration> {
    match attempt.status {
        Some(429) | Some(503) => attempt.retry_after.as_deref().and_then(|header| {
            retry_after(header, situation.now, retry_after_cap(situation.schedule))
        }),
        _ => None,
    }
}

/// The longest delay a receiver's `Retry-After` may impose: the longest
/// step of the schedule.
fn retry_after_cap(schedule: &[Duration]) -> Duration {
    schedule
        .iter()
        .copied()
        .max()
        .unwrap_or(DEFAULT_RETRY_AFTER_CAP)
}

fn first_step(schedule: &[Duration]) -> Duration {
    schedule.first().copied().unwrap_or(DEFAULT_FIRST_STEP)
}

/// A wait after a 429 that did not say how long to wait.
fn slowed_down(wait: Duration) -> Duration {
    TOO_MANY_REQUESTS_FACTOR * wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::AttemptOutcome;

    const SCHEDULE: [Duration; 3] = [
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ];

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .map(|t| t.to_utc())
            .unwrap_or_default()
    }

    fn situation(attempts: u32, state: State) -> Situation<'static> {
        Situation {
            attempts,
            state,
            schedule: &SCHEDULE,
            now: now(),
            // No jitter: the step itself.
            unit: 0.5,
            probe: false,
        }
    }

    fn answered(status: u16, retry_after: Option<&str>) -> Attempt {
        Attempt {
            status: Some(status),
            error: (!(200..300).contains(&status)).then(|| format!("endpoint answered {status}")),
            retry_after: retry_after.map(str::to_string),
            duration: Duration::from_millis(5),
            outcome: AttemptOutcome::HttpError,
            excerpt: None,
        }
    }

    fn timed_out() -> Attempt {
        Attempt::failed(
            "timed out after 1s".into(),
            AttemptOutcome::Timeout,
            Duration::from_secs(1),
        )
    }

    fn retry(secs: u64) -> Step {
        Step::Retry {
            after: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_2xx_succeeds_and_holds_nothing_back() {
        let d = next_step(&answered(204, None), &situation(1, State::Healthy));
        assert_eq!(d.step, Step::Succeeded);
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn a_5xx_is_retried_after_the_schedule_step_of_its_attempt() {
        let d = next_step(&answered(500, None), &situation(1, State::Failing));
        assert_eq!(d.step, retry(10));
        let d = next_step(&answered(500, None), &situation(2, State::Failing));
        assert_eq!(d.step, retry(60));
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn a_timeout_is_retried_like_any_failure() {
        let d = next_step(&timed_out(), &situation(3, State::Failing));
        assert_eq!(d.step, retry(600));
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn the_retry_wait_carries_the_jitter() {
        let s = Situation {
            unit: 0.0,
            ..situation(1, State::Failing)
        };
        assert_eq!(next_step(&answered(500, None), &s).step, retry(8));
    }

    #[test]
    fn the_last_attempt_makes_a_dead_letter() {
        let d = next_step(&answered(500, None), &situation(4, State::Failing));
        assert_eq!(d.step, Step::DeadLetter);
    }

    #[test]
    fn the_last_attempt_makes_a_dead_letter_even_when_the_receiver_asks_for_a_wait() {
        let d = next_step(&answered(429, Some("5")), &situation(4, State::Failing));
        assert_eq!(d.step, Step::DeadLetter);
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(5)));
    }

    #[test]
    fn a_410_releases_the_delivery_to_the_burial_of_the_dead_endpoint() {
        // Health counts a 410 as death before the decision is made.
        let d = next_step(&answered(410, None), &situation(1, State::Dead));
        assert_eq!(d.step, Step::Release);
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn a_failure_on_a_paused_endpoint_holds_the_delivery_without_a_retry() {
        let d = next_step(&timed_out(), &situation(2, State::Paused));
        assert_eq!(d.step, Step::Hold);
    }

    #[test]
    fn a_429_without_retry_after_doubles_the_wait_and_holds_the_endpoint_back() {
        let d = next_step(&answered(429, None), &situation(2, State::Failing));
        assert_eq!(d.step, retry(120));
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(20)));
    }

    #[test]
    fn a_429_without_retry_after_to_a_window_probe_holds_nothing_else_back() {
        let probe = Situation {
            probe: true,
            ..situation(2, State::Failing)
        };
        let d = next_step(&answered(429, None), &probe);
        assert_eq!(d.step, retry(120));
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn a_retry_after_is_honoured_even_for_a_window_probe() {
        let probe = Situation {
            probe: true,
            ..situation(1, State::Failing)
        };
        let d = next_step(&answered(429, Some("30")), &probe);
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(30)));
        let d = next_step(&answered(503, Some("45")), &probe);
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(45)));
    }

    #[test]
    fn a_429_with_retry_after_waits_as_asked_when_that_is_longer_than_the_step() {
        let d = next_step(&answered(429, Some("30")), &situation(1, State::Failing));
        assert_eq!(d.step, retry(30));
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_429_with_a_short_retry_after_still_waits_the_schedule_step() {
        let d = next_step(&answered(429, Some("2")), &situation(2, State::Failing));
        assert_eq!(d.step, retry(60));
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_503_with_retry_after_holds_the_endpoint_and_one_without_does_not() {
        let d = next_step(&answered(503, Some("45")), &situation(1, State::Failing));
        assert_eq!(d.step, retry(45));
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(45)));
        let d = next_step(&answered(503, None), &situation(1, State::Failing));
        assert_eq!(d.step, retry(10));
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn retry_after_on_other_statuses_is_ignored() {
        let d = next_step(&answered(500, Some("300")), &situation(1, State::Failing));
        assert_eq!(d.step, retry(10));
        assert_eq!(d.hold_endpoint_for, None);
    }

    #[test]
    fn retry_after_is_capped_at_the_longest_step_of_the_schedule() {
        let d = next_step(&answered(429, Some("99999")), &situation(1, State::Failing));
        assert_eq!(d.step, retry(600));
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(600)));
        assert_eq!(retry_after_cap(&[]), DEFAULT_RETRY_AFTER_CAP);
    }

    #[test]
    fn back_pressure_holds_the_endpoint_whatever_its_health() {
        for state in [State::Paused, State::Dead] {
            let d = next_step(&answered(429, None), &situation(1, state));
            assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(20)));
        }
    }

    #[test]
    fn an_empty_schedule_still_slows_a_429_down() {
        let s = Situation {
            schedule: &[],
            ..situation(1, State::Failing)
        };
        let d = next_step(&answered(429, None), &s);
        assert_eq!(d.step, Step::DeadLetter);
        assert_eq!(d.hold_endpoint_for, Some(Duration::from_secs(20)));
    }
}
