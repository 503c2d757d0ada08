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

/// What an endpoint's notices have told so far: `trouble` is set by
/// `endpoint.failing` or `endpoint.paused` and cleared by
/// `endpoint.recovered`, so that an endpoint whose health flaps (it answers
/// its checks but fails its deliveries) is announced once, not on every
/// swing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced {
    pub trouble: bool,
}

impl Announced {
    /// What is taken as told for an endpoint whose actor starts with
    /// `health` (a stored failing or paused endpoint was announced before).
    pub fn at_start(health: &Health) -> Announced {
        Announced {
            trouble: matches!(health.state, State::Failing | State::Paused),
        }
    }
}

/// What the observation behind a change was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// A delivery the endpoint answered with a 2xx.
    DeliverySucceeded,
    /// Anything else: a failed delivery, a probe, a scheduled check.
    Other,
}

/// The notices (about the endpoint's active subscriptions) that going from
/// `before` to `after` gives, in the order they happened, given what was
/// `announced` (updated):
/// - `endpoint.failing`: healthy → failing (the first failed attempt after
///   a success), unless trouble is announced already;
/// - `endpoint.paused`: → paused by self-healing;
/// - `endpoint.recovered`: healthy again after announced trouble, once a
///   delivery succeeds, or as soon as a paused endpoint answers its probe
///   (an endpoint that answers its checks but fails its deliveries has not
///   recovered);
/// - `subscription.expiring`: the scheduled checks failed in a row reach
///   one short of `dead_after` (the next failure removes the subscriptions).
///
/// Death gives none here (see `on_death`).
pub fn after_change(
    before: Before,
    after: &Health,
    dead_after: u32,
    observed: Observed,
    announced: &mut Announced,
) -> Vec<Kind> {
    let mut kinds = Vec::new();
    if after.state == State::Dead {
        return kinds;
    }
    let entered = |state| before.state != state && after.state == state;
    if (entered(State::Failing) || entered(State::Paused)) && !announced.trouble {
        kinds.push(Kind::Failing);
        announced.trouble = true;
    }
    if entered(State::Paused) {
        kinds.push(Kind::Paused);
        announced.trouble = true;
    }
    let recovered = after.state == State::Healthy
        && (observed == Observed::DeliverySucceeded || before.state == State::Paused);
    if announced.trouble && recovered {
        kinds.push(Kind::Recovered);
        announced.trouble = false;
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

    fn change(from: Before, to: &Health, observed: Observed, told: &mut Announced) -> Vec<Kind> {
        after_change(from, to, 3, observed, told)
    }

    #[test]
    fn the_first_failure_after_success_is_failing_and_more_failures_say_nothing() {
        let h = health(State::Failing, 0);
        let mut told = Announced::default();
        assert_eq!(
            change(before(State::Healthy, 0), &h, Observed::Other, &mut told),
            vec![Kind::Failing]
        );
        assert!(told.trouble);
        assert!(change(before(State::Failing, 0), &h, Observed::Other, &mut told).is_empty());
    }

    #[test]
    fn a_pause_is_announced_once() {
        let h = health(State::Paused, 0);
        let mut told = Announced { trouble: true };
        assert_eq!(
            change(before(State::Failing, 0), &h, Observed::Other, &mut told),
            vec![Kind::Paused]
        );
        assert!(change(before(State::Paused, 0), &h, Observed::Other, &mut told).is_empty());
        let mut fresh = Announced::default();
        assert_eq!(
            change(before(State::Healthy, 0), &h, Observed::Other, &mut fresh),
            vec![Kind::Failing, Kind::Paused]
        );
    }

    #[test]
    fn a_delivery_that_succeeds_after_trouble_is_recovered_and_staying_healthy_is_not() {
        let h = health(State::Healthy, 0);
        let mut told = Announced { trouble: true };
        assert_eq!(
            change(
                before(State::Failing, 0),
                &h,
                Observed::DeliverySucceeded,
                &mut told
            ),
            vec![Kind::Recovered]
        );
        assert!(!told.trouble);
        assert!(
            change(
                before(State::Healthy, 0),
                &h,
                Observed::DeliverySucceeded,
                &mut told
            )
            .is_empty()
        );
    }

    #[test]
    fn a_paused_endpoint_that_answers_its_probe_is_recovered_at_once() {
        let mut told = Announced { trouble: true };
        assert_eq!(
            change(
                before(State::Paused, 0),
                &health(State::Healthy, 0),
                Observed::Other,
                &mut told
            ),
            vec![Kind::Recovered]
        );
    }

    #[test]
    fn an_endpoint_that_answers_checks_but_fails_deliveries_is_announced_once() {
        let mut told = Announced::default();
        let mut all = Vec::new();
        for _ in 0..5 {
            // A delivery fails, then the probe after the run of failures
            // is answered: healthy again, with no delivery delivered.
            all.extend(change(
                before(State::Healthy, 0),
                &health(State::Failing, 0),
                Observed::Other,
                &mut told,
            ));
            all.extend(change(
                before(State::Failing, 0),
                &health(State::Healthy, 0),
                Observed::Other,
                &mut told,
            ));
        }
        assert_eq!(all, vec![Kind::Failing]);
        assert_eq!(
            change(
                before(State::Healthy, 0),
                &health(State::Healthy, 0),
                Observed::DeliverySucceeded,
                &mut told
            ),
            vec![Kind::Recovered]
        );
    }

    #[test]
    fn an_actor_starting_on_a_failing_endpoint_takes_its_trouble_as_told() {
        assert!(Announced::at_start(&health(State::Paused, 0)).trouble);
        assert!(!Announced::at_start(&health(State::Healthy, 0)).trouble);
    }

    #[test]
    fn expiring_comes_when_one_check_is_left_and_only_then() {
        let mut told = Announced { trouble: true };
        let mut change = |from, to: &Health| after_change(from, to, 3, Observed::Other, &mut told);
        assert!(change(before(State::Paused, 0), &health(State::Paused, 1)).is_empty());
        assert_eq!(
            change(before(State::Paused, 1), &health(State::Paused, 2)),
            vec![Kind::Expiring]
        );
        // A save of the same count (no new failed check) repeats nothing.
        assert!(change(before(State::Paused, 2), &health(State::Paused, 2)).is_empty());
        // With a single allowed check there is no warning before death.
        let mut told = Announced::default();
        assert!(
            after_change(
                before(State::Healthy, 0),
                &health(State::Healthy, 0),
                1,
                Observed::Other,
                &mut told
            )
            .is_empty()
        );
    }

    #[test]
    fn death_is_announced_apart_with_one_removal_per_subscription() {
        let mut told = Announced { trouble: true };
        let dead = &health(State::Dead, 3);
        assert!(
            after_change(
                before(State::Paused, 2),
                dead,
                3,
                Observed::Other,
                &mut told
            )
            .is_empty()
        );
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
