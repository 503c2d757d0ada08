//! An endpoint's health as a small state machine, free of timers and I/O so
//! it can be tested alone. The endpoint actor feeds it delivery outcomes,
//! probe results and scheduled verification results, and carries out the
//! `Effect` it answers.
//!
//! ```text
//!  healthy ──failure──► failing ──N failures in a row──► probe now
//!     ▲                    │                          │ 2xx: the endpoint is up; the
//!     │                    │                          │ deliveries themselves fail and
//!     │                    │                          │ use up their retries
//!     │                    │                          ▼ no answer / error
//!     └──── any 2xx ───────┴──── probe / check 2xx ── paused (held, probed on backoff)
//!  any state ── 410 Gone, or `dead_after` scheduled checks failed ──► dead
//! ```
//! Probes (while paused) never count toward death; only the scheduled
//! verification calls do, so a paused endpoint has the full
//! `dead_after × verify_interval` to come back.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    Failing,
    Paused,
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Failing => "failing",
            State::Paused => "paused",
            State::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> State {
        match s {
            "failing" => State::Failing,
            "paused" => State::Paused,
            "dead" => State::Dead,
            _ => State::Healthy,
        }
    }
}

/// Thresholds from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failed delivery attempts in a row that pause the endpoint.
    pub pause_after_failures: u32,
    /// Failed scheduled verification calls in a row that make it dead.
    pub dead_after_failed_verifications: u32,
}

/// What the actor must do after an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    /// Send a verification call now to tell a down endpoint from
    /// deliveries it refuses.
    Probe,
    /// Stop sending deliveries and start probing.
    Pause,
    /// The endpoint answers again: send what is held, oldest first.
    Resume,
    /// Unsubscribe everything on the endpoint, for this reason.
    Die(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    pub consecutive_failures: u32,
    pub failed_verifications: u32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_failure_reason: Option<String>,
    /// Never dies (the operator webhook's own endpoint): what would kill it
    /// starts the count of failed checks again instead.
    pub spare: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Healthy,
            consecutive_failures: 0,
            failed_verifications: 0,
            last_success_at: None,
            last_failure_at: None,
            last_failure_reason: None,
            spare: false,
        }
    }
}

fn gone_reason(what: &str) -> String {
    format!("the endpoint answered 410 Gone to a {what}")
}

impl Health {
    /// A 2xx to a delivery: a sign of life.
    pub fn delivery_succeeded(&mut self, now: DateTime<Utc>) -> Effect {
        self.alive(now)
    }

    /// A failed delivery attempt; `gone` when it answered 410.
    pub fn delivery_failed(
        &mut self,
        now: DateTime<Utc>,
        reason: &str,
        gone: bool,
        policy: &Policy,
    ) -> Effect {
        if self.state == State::Dead {
            return Effect::Nothing;
        }
        self.failed(now, reason);
        if gone {
            return self.die(gone_reason("delivery"));
        }
        match self.state {
            State::Healthy | State::Failing
                if self.consecutive_failures >= policy.pause_after_failures =>
            {
                self.state = State::Failing;
                Effect::Probe
            }
            State::Healthy => {
                self.state = State::Failing;
                Effect::Nothing
            }
            _ => Effect::Nothing,
        }
    }

    /// The answer to the probe sent after a run of failures: an endpoint that
    /// answers is up (its failures are about the deliveries); one that does
    /// not is paused.
    pub fn suspicion_answered(
        &mut self,
        now: DateTime<Utc>,
        error: Option<&str>,
        gone: bool,
    ) -> Effect {
        match error {
            _ if self.state != State::Failing => Effect::Nothing,
            None => self.alive(now),
            Some(_) if gone => self.die(gone_reason("verification call")),
            Some(reason) => {
                self.probe_failed(now, reason);
                self.state = State::Paused;
                Effect::Pause
            }
        }
    }

    /// The answer to a probe sent while paused (never counts toward death).
    pub fn probe_answered(
        &mut self,
        now: DateTime<Utc>,
        error: Option<&str>,
        gone: bool,
    ) -> Effect {
        match error {
            _ if self.state == State::Dead => Effect::Nothing,
            None => self.alive(now),
            Some(_) if gone => self.die(gone_reason("verification call")),
            Some(reason) => {
                self.probe_failed(now, reason);
                Effect::Nothing
            }
        }
    }

    /// Notes a failed probe (which never counts toward death).
    fn probe_failed(&mut self, now: DateTime<Utc>, reason: &str) {
        self.last_failure_at = Some(now);
        self.last_failure_reason = Some(format!("probe: {reason}"));
    }

    /// The answer to a scheduled verification call.
    pub fn check_answered(
        &mut self,
        now: DateTime<Utc>,
        error: Option<&str>,
        gone: bool,
        policy: &Policy,
    ) -> Effect {
        match error {
            _ if self.state == State::Dead => Effect::Nothing,
            None => self.alive(now),
            Some(_) if gone => self.die(gone_reason("verification call")),
            Some(reason) => {
                self.failed_verifications += 1;
                self.last_failure_at = Some(now);
                self.last_failure_reason = Some(format!("verification: {reason}"));
                if self.failed_verifications >= policy.dead_after_failed_verifications {
                    self.die(format!(
                        "the endpoint failed {} verification calls in a row (last: {reason})",
                        self.failed_verifications
                    ))
                } else {
                    Effect::Nothing
                }
            }
        }
    }

    fn alive(&mut self, now: DateTime<Utc>) -> Effect {
        let was = self.state;
        if was == State::Dead {
            return Effect::Nothing;
        }
        self.state = State::Healthy;
        self.consecutive_failures = 0;
        self.failed_verifications = 0;
        self.last_success_at = Some(now);
        if was == State::Paused {
            Effect::Resume
        } else {
            Effect::Nothing
        }
    }

    fn failed(&mut self, now: DateTime<Utc>, reason: &str) {
        self.consecutive_failures += 1;
        self.last_failure_at = Some(now);
        self.last_failure_reason = Some(reason.to_string());
    }

    fn die(&mut self, reason: String) -> Effect {
        if self.spare {
            self.failed_verifications = 0;
            return Effect::Nothing;
        }
        self.state = State::Dead;
        Effect::Die(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        pause_after_failures: 3,
        dead_after_failed_verifications: 3,
    };

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn fail(h: &mut Health) -> Effect {
        h.delivery_failed(now(), "500", false, &POLICY)
    }

    #[test]
    fn one_failure_makes_it_failing_and_a_run_of_them_asks_for_a_probe() {
        let mut h = Health::default();
        assert_eq!(fail(&mut h), Effect::Nothing);
        assert_eq!(h.state, State::Failing);
        assert_eq!(fail(&mut h), Effect::Nothing);
        assert_eq!(fail(&mut h), Effect::Probe);
        assert_eq!(h.state, State::Failing);
    }

    #[test]
    fn a_failed_probe_pauses_and_an_answered_one_does_not() {
        let mut h = Health::default();
        for _ in 0..3 {
            fail(&mut h);
        }
        assert_eq!(h.suspicion_answered(now(), None, false), Effect::Nothing);
        assert_eq!(h.state, State::Healthy);
        assert_eq!(h.consecutive_failures, 0);
        for _ in 0..3 {
            fail(&mut h);
        }
        assert_eq!(
            h.suspicion_answered(now(), Some("timed out"), false),
            Effect::Pause
        );
        assert_eq!(h.state, State::Paused);
        assert_eq!(fail(&mut h), Effect::Nothing);
    }

    #[test]
    fn a_success_between_failures_resets_the_run() {
        let mut h = Health::default();
        fail(&mut h);
        fail(&mut h);
        h.delivery_succeeded(now());
        assert_eq!(h.state, State::Healthy);
        assert_eq!(fail(&mut h), Effect::Nothing);
    }

    #[test]
    fn a_paused_endpoint_resumes_on_a_good_probe_and_probes_never_kill() {
        let mut h = Health::default();
        for _ in 0..3 {
            fail(&mut h);
        }
        h.suspicion_answered(now(), Some("500"), false);
        for _ in 0..10 {
            assert_eq!(
                h.probe_answered(now(), Some("timed out"), false),
                Effect::Nothing
            );
        }
        assert_eq!(h.state, State::Paused);
        assert_eq!(h.probe_answered(now(), None, false), Effect::Resume);
        assert_eq!(h.state, State::Healthy);
    }

    #[test]
    fn exactly_n_failed_checks_kill_and_not_fewer() {
        let mut h = Health::default();
        assert_eq!(
            h.check_answered(now(), Some("500"), false, &POLICY),
            Effect::Nothing
        );
        assert_eq!(
            h.check_answered(now(), Some("500"), false, &POLICY),
            Effect::Nothing
        );
        assert!(matches!(
            h.check_answered(now(), Some("500"), false, &POLICY),
            Effect::Die(_)
        ));
        assert_eq!(h.state, State::Dead);
        assert_eq!(h.delivery_succeeded(now()), Effect::Nothing);
        assert_eq!(h.state, State::Dead);
    }

    #[test]
    fn a_good_check_or_delivery_resets_the_count() {
        let mut h = Health::default();
        h.check_answered(now(), Some("500"), false, &POLICY);
        h.check_answered(now(), Some("500"), false, &POLICY);
        h.delivery_succeeded(now());
        assert_eq!(h.failed_verifications, 0);
        h.check_answered(now(), Some("500"), false, &POLICY);
        h.check_answered(now(), Some("500"), false, &POLICY);
        assert_eq!(
            h.check_answered(now(), None, false, &POLICY),
            Effect::Nothing
        );
        assert_eq!(h.failed_verifications, 0);
    }

    #[test]
    fn a_spare_endpoint_never_dies_and_counts_its_checks_again() {
        let mut h = Health {
            spare: true,
            ..Health::default()
        };
        for _ in 0..3 {
            assert_eq!(
                h.check_answered(now(), Some("500"), false, &POLICY),
                Effect::Nothing
            );
        }
        assert_eq!(h.failed_verifications, 0);
        assert_eq!(
            h.delivery_failed(now(), "410", true, &POLICY),
            Effect::Nothing
        );
        assert_ne!(h.state, State::Dead);
    }

    #[test]
    fn gone_kills_at_once() {
        let mut h = Health::default();
        assert!(matches!(
            h.delivery_failed(now(), "410", true, &POLICY),
            Effect::Die(_)
        ));
        let mut h = Health::default();
        assert!(matches!(
            h.check_answered(now(), Some("410"), true, &POLICY),
            Effect::Die(_)
        ));
    }
}
