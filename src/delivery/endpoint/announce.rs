//! The endpoint's lifecycle notices: after each health observation the
//! actor asks `delivery::notices` which ones the change gives, words their
//! reasons, and hands them to the recorder (`Notify`), which stores them
//! with its next write; those of its death go with its burial (`Bury`).
//! The operator webhook's own endpoint announces nothing about itself, so
//! a failing operator webhook never feeds itself.

use super::EndpointActor;
use crate::delivery::notices::{self, Before, Observed};
use crate::delivery::recorder::{DeathNotices, Notify};
use crate::notice::{Draft, Kind, Scope};

impl EndpointActor {
    /// The notices of the change from `before` to the current health, which
    /// `observed` brought about.
    pub(super) fn announce(&mut self, before: Before, observed: Observed) {
        if self.health.spare {
            return;
        }
        let dead_after = self.settings.policy.dead_after_failed_verifications;
        let kinds = notices::after_change(
            before,
            &self.health,
            dead_after,
            observed,
            &mut self.announced,
        );
        let drafts: Vec<Draft> = kinds
            .into_iter()
            .map(|kind| self.draft(kind, Scope::Active, self.reason(kind)))
            .collect();
        if !drafts.is_empty() {
            self.recorder.do_send(Notify(drafts));
        }
    }

    /// How to word the notices of its death (for `Bury`, which stores them
    /// with the burial), once the subscriptions it removed are known: none
    /// for a spare actor.
    pub(super) fn death_notices(&self, reason: &str) -> DeathNotices {
        if self.health.spare {
            return Box::new(|_| Vec::new());
        }
        let (id, url, reason) = (self.id, self.url.to_string(), reason.to_string());
        Box::new(move |subscription_ids| {
            notices::on_death(subscription_ids)
                .into_iter()
                .map(|(kind, scope)| {
                    let why = match kind {
                        Kind::AutoRemoved => format!("its endpoint is dead: {reason}"),
                        _ => reason.clone(),
                    };
                    Draft::new(kind, id, &url, scope, why)
                })
                .collect()
        })
    }

    fn draft(&self, kind: Kind, scope: Scope, reason: String) -> Draft {
        Draft::new(kind, self.id, &self.url.to_string(), scope, reason)
    }

    /// Why, in words an owner can act on.
    fn reason(&self, kind: Kind) -> String {
        let last = self
            .health
            .last_failure_reason
            .as_deref()
            .unwrap_or("unknown");
        match kind {
            Kind::Failing => format!("a delivery attempt failed: {last}"),
            Kind::Paused => format!(
                "{} delivery attempts in a row failed and the endpoint did not answer a verification call ({last}); its deliveries are held and it is probed until it answers 2xx",
                self.health.consecutive_failures
            ),
            Kind::Recovered => {
                "the endpoint answers 2xx again; held deliveries are being sent".to_string()
            }
            Kind::Expiring => {
                let allowed = self.settings.policy.dead_after_failed_verifications;
                format!(
                    "{} of {allowed} scheduled verification calls in a row failed ({last}); if the next one, due in about {}, fails too, its subscriptions are removed",
                    self.health.failed_verifications,
                    humantime::format_duration(self.settings.verify_interval)
                )
            }
            Kind::Dead | Kind::AutoRemoved => last.to_string(),
        }
    }
}
