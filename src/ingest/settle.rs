//! Settling a stored group: each publisher answered with what became of
//! its events (new, repeated, conflicting; or an error when the disk sync
//! failed), and the deliveries of the new events gathered per endpoint for
//! the router.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prometheus::IntCounter;

use super::{PublishError, PublishReply, Published};
use crate::delivery::endpoint::Job;
use crate::metrics::METRICS;
use crate::store::events::{PreparedEvent, Stored};

const SYNC_FAILED: &str = "the database could not confirm the write on disk; push again \
                           (with an Idempotency-Key to avoid duplicates)";

/// `hookrelay_events_ingested_total` per event type, each series looked up
/// once (event types are the catalog's few).
#[derive(Default)]
pub(super) struct IngestCounters(HashMap<String, IntCounter>);

impl IngestCounters {
    fn inc(&mut self, event_type: String) {
        self.0
            .entry(event_type)
            .or_insert_with_key(|t| METRICS.events_ingested.with_label_values(&[t.as_str()]))
            .inc();
    }
}

/// Answers the publishers of a stored group (with an error if `unsynced`)
/// and returns the deliveries of its new events, per endpoint.
pub(super) fn settle(
    parts: Vec<(usize, PublishReply)>,
    rows: Vec<PreparedEvent>,
    stored: Vec<Stored>,
    unsynced: bool,
    ingested: &mut IngestCounters,
) -> Vec<(i64, Vec<Job>)> {
    let mut events = rows.into_iter().zip(stored);
    let mut by_endpoint: HashMap<i64, Vec<Job>> = HashMap::new();
    for (count, reply) in parts {
        let mut results = Vec::with_capacity(count);
        for (prepared, stored) in events.by_ref().take(count) {
            match stored {
                Stored::Duplicate {
                    event_id,
                    deliveries,
                } => {
                    results.push(Published {
                        event_id,
                        deliveries: deliveries.max(0) as usize,
                        repeated: true,
                        conflicting: false,
                    });
                    continue;
                }
                Stored::Conflict { event_id } => {
                    results.push(Published {
                        event_id,
                        deliveries: 0,
                        repeated: true,
                        conflicting: true,
                    });
                    continue;
                }
                Stored::New => {}
            }
            let PreparedEvent {
                event,
                deliveries,
                secrets,
                ..
            } = prepared;
            results.push(Published {
                event_id: event.id,
                deliveries: deliveries.len(),
                repeated: false,
                conflicting: false,
            });
            ingested.inc(event.event);
            let body = Bytes::from(event.body);
            for (delivery, secret) in deliveries.into_iter().zip(secrets) {
                by_endpoint
                    .entry(delivery.endpoint_id)
                    .or_default()
                    .push(Job::new(
                        Arc::from(delivery.id),
                        delivery.subscription_id,
                        secret,
                        body.clone(),
                    ));
            }
        }
        let _ = reply.send(if unsynced {
            Err(PublishError::Storage(SYNC_FAILED.into()))
        } else {
            Ok(results)
        });
    }
    by_endpoint.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;
    use crate::ingest::Outcome;
    use crate::signing::Secret;
    use crate::store::db_time::DbTime;
    use crate::store::models::{NewDelivery, NewEvent};

    /// An event with one delivery per endpoint in `endpoints`.
    fn event(id: &str, endpoints: &[i64]) -> PreparedEvent {
        let now = DbTime::new(crate::store::now());
        let deliveries: Vec<NewDelivery> = endpoints
            .iter()
            .enumerate()
            .map(|(n, endpoint)| {
                NewDelivery::pending(
                    format!("{id}-d{n}"),
                    id.into(),
                    100 + *endpoint,
                    *endpoint,
                    &now,
                )
            })
            .collect();
        let secret = Arc::new(
            Secret::parse("a-long-enough-secret")
                .expect("a valid secret")
                .into(),
        );
        let mut prepared = PreparedEvent::fixed(
            NewEvent {
                delivery_count: deliveries.len() as i32,
                ..NewEvent::example(id, now)
            },
            deliveries,
        );
        prepared.secrets = vec![secret; endpoints.len()];
        prepared
    }

    fn part(count: usize) -> ((usize, PublishReply), oneshot::Receiver<Outcome>) {
        let (reply, answer) = oneshot::channel();
        ((count, reply), answer)
    }

    fn answer(mut rx: oneshot::Receiver<Outcome>) -> Outcome {
        rx.try_recv().expect("the publisher was answered")
    }

    fn published(
        event_id: &str,
        deliveries: usize,
        repeated: bool,
        conflicting: bool,
    ) -> Published {
        Published {
            event_id: event_id.into(),
            deliveries,
            repeated,
            conflicting,
        }
    }

    /// Settles a group whose sync succeeded.
    fn settle_synced(
        parts: Vec<(usize, PublishReply)>,
        rows: Vec<PreparedEvent>,
        stored: Vec<Stored>,
    ) -> Vec<(i64, Vec<Job>)> {
        settle(parts, rows, stored, false, &mut IngestCounters::default())
    }

    fn job_ids(deliveries: &[(i64, Vec<Job>)], endpoint: i64) -> Vec<String> {
        deliveries
            .iter()
            .filter(|(id, _)| *id == endpoint)
            .flat_map(|(_, jobs)| jobs.iter().map(|j| j.id.to_string()))
            .collect()
    }

    #[test]
    fn each_publisher_is_answered_with_its_own_events_in_order() {
        let (first, first_answer) = part(2);
        let (second, second_answer) = part(1);
        let rows = vec![event("e1", &[1]), event("e2", &[]), event("e3", &[1, 2])];
        let stored = vec![Stored::New, Stored::New, Stored::New];
        settle_synced(vec![first, second], rows, stored);
        assert_eq!(
            answer(first_answer).expect("stored"),
            vec![
                published("e1", 1, false, false),
                published("e2", 0, false, false)
            ]
        );
        assert_eq!(
            answer(second_answer).expect("stored"),
            vec![published("e3", 2, false, false)]
        );
    }

    #[test]
    fn the_deliveries_of_new_events_go_to_their_endpoints_in_the_order_published() {
        let (whole, _answer) = part(2);
        let rows = vec![event("e1", &[1, 2]), event("e2", &[1])];
        let stored = vec![Stored::New, Stored::New];
        let deliveries = settle_synced(vec![whole], rows, stored);
        assert_eq!(job_ids(&deliveries, 1), vec!["e1-d0", "e2-d0"]);
        assert_eq!(job_ids(&deliveries, 2), vec!["e1-d1"]);
    }

    #[test]
    fn a_repeated_or_conflicting_event_is_answered_with_the_earlier_one_and_delivers_nothing() {
        let (whole, whole_answer) = part(2);
        let rows = vec![event("e1", &[1]), event("e2", &[1])];
        let stored = vec![
            Stored::Duplicate {
                event_id: "earlier".into(),
                deliveries: 3,
            },
            Stored::Conflict {
                event_id: "other".into(),
            },
        ];
        let deliveries = settle_synced(vec![whole], rows, stored);
        assert_eq!(
            answer(whole_answer).expect("answered"),
            vec![
                published("earlier", 3, true, false),
                published("other", 0, true, true)
            ]
        );
        assert!(deliveries.is_empty());
    }

    #[test]
    fn after_a_failed_sync_the_publishers_hear_of_a_storage_error_but_the_deliveries_go_out() {
        let (whole, whole_answer) = part(1);
        let rows = vec![event("e1", &[1])];
        let deliveries = settle(
            vec![whole],
            rows,
            vec![Stored::New],
            true,
            &mut IngestCounters::default(),
        );
        assert!(matches!(
            answer(whole_answer),
            Err(PublishError::Storage(_))
        ));
        assert_eq!(job_ids(&deliveries, 1), vec!["e1-d0"]);
    }
}
