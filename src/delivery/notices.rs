//! Which lifecycle notices a change of an endpoint's health gives (pure, no
//! I/O): the endpoint actor asks after every observation, and hands what it
//! answers to the recorder, which stores them. Death is announced apart
//! (`on_death`), once the subscriptions it removed are known.

use super::health::{Health, State};
use crate::notice::{Kind, Scope};

/// The parts of health a notice depends on, as they were before an
/// observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    pub state: State,
    pub failed_verifications: u32,
}

impl Before {
    pub fn of(health: &Health) -> Before {
        Before {
            state: health.state,
            failed_verifications: health.failed_verifications,
        }
    }
}

/// The notices (about the endpoint's active subscriptions) that going from
/// `before` to `after` gives, in the order they happened:
/// - `endpoint.failing`: healthy → failing (the first failed attempt after
///   a success);
/// - `endpoint.paused`: → paused by self-healing;
/// - `endpoint.recovered`: failing or paused → healthy;
/// - `subscription.expiring`: the scheduled checks failed in a row reach
///   one short of `dead_after` (the next failure removes the subscriptions).
///
/// Death gives none here (see `on_death`).
pub fn after_change(before: Before, after: &Health, dead_after: u32) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if after.state == State::Dead {
        return kinds;
    }
    match (before.state, after.state) {
        (State::Healthy, State::Failing) => kinds.push(Kind::Failing),
        (State::Healthy, State::Paused) => kinds.extend([Kind::Failing, Kind::Paused]),
        (State::Failing, State::Paused) => kinds.push(Kind::Paused),
        (State::Failing | State::Paused, State::Healthy) => kinds.push(Kind::Recovered),
        _ => {}
    }
    if dead_after >= 2
        && after.failed_verifications > before.failed_verifications
        && after.failed_verifications == dead_after - 1
    {
        kinds.push(Kind::Expiring);
    }
    kinds
}

/// The notices of a death that removed `subscription_ids`: `endpoint.dead`
/// about all of them, then one `subscription.auto_removed` each.
pub fn on_death(subscription_ids: &[i64]) -> Vec<(Kind, Scope)> {
    let mut notices = vec![(Kind::Dead, Scope::Ids(subscription_ids.to_vec()))];
    notices.extend(
        subscription_ids
            .iter()
            .map(|id| (Kind::AutoRemoved, Scope::Ids(vec![*id]))),
    );
    notices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(state: State, failed_verifications: u32) -> Health {
        Health {
            state,
            failed_verifications,
            ..Health::default()
        }
    }

    fn before(state: State, failed_verifications: u32) -> Before {
        Before {
            state,
            failed_verifications,
        }
    }

    #[test]
    fn the_first_failure_after_success_is_failing_and_more_failures_say_nothing() {
        let h = health(State::Failing, 0);
        assert_eq!(
            after_change(before(State::Healthy, 0), &h, 3),
            vec![Kind::Failing]
        );
        assert!(after_change(before(State::Failing, 0), &h, 3).is_empty());
    }

    #[test]
    fn a_pause_is_announced_once() {
        let h = health(State::Paused, 0);
        assert_eq!(
            after_change(before(State::Failing, 0), &h, 3),
            vec![Kind::Paused]
        );
        assert!(after_change(before(State::Paused, 0), &h, 3).is_empty());
    }

    #[test]
    fn recovering_from_failing_or_paused_is_announced_and_staying_healthy_is_not() {
        let h = health(State::Healthy, 0);
        for from in [State::Failing, State::Paused] {
            assert_eq!(after_change(before(from, 0), &h, 3), vec![Kind::Recovered]);
        }
        assert!(after_change(before(State::Healthy, 0), &h, 3).is_empty());
    }

    #[test]
    fn expiring_comes_when_one_check_is_left_and_only_then() {
        assert!(after_change(before(State::Paused, 0), &health(State::Paused, 1), 3).is_empty());
        assert_eq!(
            after_change(before(State::Paused, 1), &health(State::Paused, 2), 3),
            vec![Kind::Expiring]
        );
        // A save of the same count (no new failed check) repeats nothing.
        assert!(after_change(before(State::Paused, 2), &health(State::Paused, 2), 3).is_empty());
        // With a single allowed check there is no warning before death.
        assert!(after_change(before(State::Healthy, 0), &health(State::Healthy, 0), 1).is_empty());
    }

    #[test]
    fn death_is_announced_apart_with_one_removal_per_subscription() {
        assert!(after_change(before(State::Paused, 2), &health(State::Dead, 3), 3).is_empty());
        assert_eq!(
            on_death(&[4, 9]),
            vec![
                (Kind::Dead, Scope::Ids(vec![4, 9])),
                (Kind::AutoRemoved, Scope::Ids(vec![4])),
                (Kind::AutoRemoved, Scope::Ids(vec![9])),
            ]
        );
    }
}
