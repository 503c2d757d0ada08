//! Reads of the delivery history for self-service and operators: a
//! subscription's deliveries (newest first, by status), one delivery with
//! its body and logged attempts, a subscription's catch-up feed of events
//! (oldest first), and one event with its fan-out. Every page is keyed by
//! the delivery id, which is time-ordered and unique, so a cursor is stable
//! and pages neither repeat nor skip (index `deliveries_subscription`).

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::event_deliveries::EventDeliveries;
use super::models::{CANCELLED, DEAD, PENDING, SUCCEEDED};
use super::schema::{attempts, deliveries, events};
use super::{Conn, StoreError};

/// A delivery's status as subscribers see it: a stored `pending` delivery
/// is `failed` once an attempt failed and it waits for a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

impl DeliveryStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [DeliveryStatus; 5] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Dead,
        DeliveryStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `text`, if there is one.
    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The status of a stored row (`deliveries.status`, `attempts`).
    pub fn of(stored: &str, attempts: i32) -> DeliveryStatus {
        match stored {
            PENDING if attempts > 0 => DeliveryStatus::Failed,
            SUCCEEDED => DeliveryStatus::Succeeded,
            DEAD => DeliveryStatus::Dead,
            CANCELLED => DeliveryStatus::Cancelled,
            _ => DeliveryStatus::Pending,
        }
    }

    /// The stored status it is read from, and whether it needs a failed
    /// attempt (`Some(true)`), none (`Some(false)`) or either (`None`).
    fn stored(self) -> (&'static str, Option<bool>) {
        match self {
            DeliveryStatus::Pending => (PENDING, Some(false)),
            DeliveryStatus::Failed => (PENDING, Some(true)),
            DeliveryStatus::Succeeded => (SUCCEEDED, None),
            DeliveryStatus::Dead => (DEAD, None),
            DeliveryStatus::Cancelled => (CANCELLED, None),
        }
    }
}

/// One delivery with its event's type.
#[derive(Debug, Clone, Queryable)]
pub struct DeliveryRow {
    pub id: String,
    pub event_id: String,
    pub subscription_id: i64,
    pub event: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The columns of a `DeliveryRow`, deliveries joined with events.
type DeliveryColumns = (
    deliveries::id,
    deliveries::event_id,
    deliveries::subscription_id,
    events::event,
    deliveries::status,
    deliveries::attempts,
    deliveries::next_attempt_at,
    deliveries::last_error,
    deliveries::created_at,
    deliveries::updated_at,
);

const DELIVERY_COLUMNS: DeliveryColumns = (
    deliveries::id,
    deliveries::event_id,
    deliveries::subscription_id,
    events::event,
    deliveries::status,
    deliveries::attempts,
    deliveries::next_attempt_at,
    deliveries::last_error,
    deliveries::created_at,
    deliveries::updated_at,
);

/// When a delivery was last tried and what the endpoint answered, from its
/// newest logged attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastAttempt {
    pub at: NaiveDateTime,
    pub status_code: Option<i32>,
}

/// A first attempt kept on its delivery's row: attempted at, status code,
/// duration (`None`: nothing kept), answer excerpt.
pub type KeptRow = (NaiveDateTime, Option<i32>, Option<i64>, Option<String>);

/// A delivery id, when an attempt was made and what it answered.
type TimedStatus = (String, NaiveDateTime, Option<i32>);

/// One logged attempt.
#[derive(Debug, Clone, Queryable)]
pub struct AttemptRow {
    pub at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    pub response_excerpt: Option<String>,
}

/// One event of a subscription's catch-up feed; `cursor` is its delivery id.
#[derive(Debug, Clone, Queryable)]
pub struct FeedRow {
    pub cursor: String,
    pub event_id: String,
    pub accepted_at: NaiveDateTime,
    pub body: String,
}

/// An event as accepted.
#[derive(Debug, Clone, Queryable)]
pub struct EventRow {
    pub id: String,
    pub marketplace_id: i64,
    pub event: String,
    pub body: String,
    pub accepted_at: NaiveDateTime,
}

/// A subscription's deliveries with ids before `before` (all when `None`),
/// newest first, optionally of one status.
pub fn deliveries_of(
    conn: &mut Conn,
    subscription_id: i64,
    status: Option<DeliveryStatus>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    Ok(crate::db_run!(conn, c => {
        let mut q = deliveries::table
            .inner_join(events::table)
            .filter(deliveries::subscription_id.eq(subscription_id))
            .into_boxed();
        if let Some(before) = before {
            q = q.filter(deliveries::id.lt(before.to_string()));
        }
        if let Some(status) = status {
            let (stored, tried) = status.stored();
            q = q.filter(deliveries::status.eq(stored));
            q = match tried {
                Some(true) => q.filter(deliveries::attempts.gt(0)),
                Some(false) => q.filter(deliveries::attempts.eq(0)),
                None => q,
            };
        }
        q.order(deliveries::id.desc()).limit(limit).select(DELIVERY_COLUMNS).load(c)
    })?)
}

/// The newest logged attempt of each of `ids` that has one.
pub fn last_attempts(
    conn: &mut Conn,
    ids: &[String],
) -> Result<HashMap<String, LastAttempt>, StoreError> {
    let (rows, kept): (Vec<TimedStatus>, Vec<TimedStatus>) = crate::db_run!(conn, c => {
        let logged = attempts::table
            .filter(attempts::delivery_id.eq_any(ids))
            .order(attempts::id)
            .select((attempts::delivery_id, attempts::attempted_at, attempts::status_code))
            .load(c)?;
        let kept = deliveries::table
            .filter(deliveries::id.eq_any(ids))
            .filter(deliveries::first_duration_ms.is_not_null())
            .select((deliveries::id, deliveries::updated_at, deliveries::first_status_code))
            .load(c)?;
        Ok::<_, diesel::result::Error>((logged, kept))
    })?;
    // A kept first attempt is older than any logged one.
    Ok(newest_per_delivery(kept.into_iter().chain(rows).collect()))
}

/// Keeps the last row of each delivery (rows come oldest first).
fn newest_per_delivery(
    rows: Vec<(String, NaiveDateTime, Option<i32>)>,
) -> HashMap<String, LastAttempt> {
    rows.into_iter()
        .map(|(id, at, status_code)| (id, LastAttempt { at, status_code }))
        .collect()
}

/// One delivery of a subscription and its event's body.
pub fn delivery_of(
    conn: &mut Conn,
    subscription_id: i64,
    id: &str,
) -> Result<Option<(DeliveryRow, String)>, StoreError> {
    Ok(crate::db_run!(conn, c => deliveries::table
        .inner_join(events::table)
        .filter(deliveries::id.eq(id))
        .filter(deliveries::subscription_id.eq(subscription_id))
        .select((DELIVERY_COLUMNS, events::body))
        .first(c)
        .optional())?)
}

/// A delivery's attempts, oldest first: the first one kept on its row
/// when it succeeded at once (`deliveries::KeptAttempt`), then the logged
/// ones.
pub fn attempts_of(conn: &mut Conn, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(crate::db_run!(conn, c => {
        let kept: Option<KeptRow> = deliveries::table
            .filter(deliveries::id.eq(id))
            .select((
                deliveries::updated_at,
                deliveries::first_status_code,
                deliveries::first_duration_ms,
                deliveries::first_excerpt,
            ))
            .first(c)
            .optional()?;
        let logged: Vec<AttemptRow> = attempts::table
            .filter(attempts::delivery_id.eq(id))
            .order(attempts::id)
            .select((
                attempts::attempted_at,
                attempts::status_code,
                attempts::error,
                attempts::duration_ms,
                attempts::response_excerpt,
            ))
            .load(c)?;
        Ok::<_, diesel::result::Error>(with_kept(kept, logged))
    })?)
}

/// A logged attempt with its delivery's id, as read.
type FailureColumns = (
    String,
    NaiveDateTime,
    Option<i32>,
    Option<String>,
    i64,
    Option<String>,
);

/// The newest failed attempts of an endpoint (newest first), each with its
/// delivery's id: an answer that was not 2xx, or no answer. Reads the
/// `attempts_endpoint` index backwards; a first-try success, kept on its
/// delivery's row, is never a failure.
pub fn recent_failures(
    conn: &mut Conn,
    endpoint_id: i64,
    limit: i64,
) -> Result<Vec<(String, AttemptRow)>, StoreError> {
    let rows: Vec<FailureColumns> = crate::db_run!(conn, c => attempts::table
            .filter(attempts::endpoint_id.eq(endpoint_id))
            .filter(
                attempts::status_code
                    .is_null()
                    .or(attempts::status_code.lt(200))
                    .or(attempts::status_code.gt(299)),
            )
            .order(attempts::attempted_at.desc())
            .select((
                attempts::delivery_id,
                attempts::attempted_at,
                attempts::status_code,
                attempts::error,
                attempts::duration_ms,
                attempts::response_excerpt,
            ))
            .limit(limit)
            .load(c))?;
    Ok(rows
        .into_iter()
        .map(
            |(id, at, status_code, error, duration_ms, response_excerpt)| {
                let attempt = AttemptRow {
                    at,
                    status_code,
                    error,
                    duration_ms,
                    response_excerpt,
                };
                (id, attempt)
            },
        )
        .collect())
}

/// The attempts of a delivery: its kept first attempt (if its row has one)
/// before the logged ones.
fn with_kept(kept: Option<KeptRow>, logged: Vec<AttemptRow>) -> Vec<AttemptRow> {
    match kept {
        Some((at, status_code, Some(duration_ms), response_excerpt)) => {
            let mut all = Vec::with_capacity(logged.len() + 1);
            all.push(AttemptRow {
                at,
                status_code,
                error: None,
                duration_ms,
                response_excerpt,
            });
            all.extend(logged);
            all
        }
        _ => logged,
    }
}

/// Which deliveries the feed may serve: routed at or after `from` (the
/// history retention) and before `until` (settled: no delivery routed
/// before it can still commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedWindow {
    pub from: NaiveDateTime,
    pub until: NaiveDateTime,
}

/// The events routed to a subscription after the delivery id `after`,
/// oldest first (what the history cleanup has left), leaving out those
/// whose payload was erased on request.
pub fn feed(
    conn: &mut Conn,
    subscription_id: i64,
    after: &str,
    window: FeedWindow,
    limit: i64,
) -> Result<Vec<FeedRow>, StoreError> {
    let (from, until) = (window.from, window.until);
    Ok(crate::db_run!(conn, c => deliveries::table
        .inner_join(events::table)
        .filter(deliveries::subscription_id.eq(subscription_id))
        .filter(deliveries::id.gt(after))
        .filter(deliveries::created_at.ge(from))
        .filter(deliveries::created_at.lt(until))
        .filter(events::body.ne(crate::erasure::ERASED_BODY))
        .order(deliveries::id)
        .limit(limit)
        .select((deliveries::id, events::id, events::created_at, events::body))
        .load(c))?)
}

/// An event and its deliveries (one per subscription it was routed to).
pub fn event_with_deliveries(
    conn: &mut Conn,
    id: &str,
) -> Result<Option<(EventRow, Vec<DeliveryRow>)>, StoreError> {
    Ok(crate::db_run!(conn, c => {
        let event: Option<EventRow> = events::table
            .find(id)
            .select((events::id, events::marketplace_id, events::event, events::body, events::created_at))
            .first(c)
            .optional()?;
        match event {
            None => Ok::<_, diesel::result::Error>(None),
            Some(event) => {
                let ids: Vec<String> = c
                    .deliveries_of_events(std::slice::from_ref(&event.id))?
                    .into_iter()
                    .map(|(delivery, _)| delivery)
                    .collect();
                // In bounded groups: SQLite binds at most 32,766 values.
                let mut rows: Vec<DeliveryRow> = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(1_000) {
                    rows.extend(
                        deliveries::table
                            .inner_join(events::table)
                            .filter(deliveries::id.eq_any(chunk))
                            .select(DELIVERY_COLUMNS)
                            .load::<DeliveryRow>(c)?,
                    );
                }
                rows.sort_by_key(|d| d.subscription_id);
                Ok(Some((event, rows)))
            }
        }
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_delivery_with_a_failed_attempt_shows_as_failed() {
        assert_eq!(DeliveryStatus::of(PENDING, 0), DeliveryStatus::Pending);
        assert_eq!(DeliveryStatus::of(PENDING, 2), DeliveryStatus::Failed);
        assert_eq!(DeliveryStatus::of(SUCCEEDED, 3), DeliveryStatus::Succeeded);
        assert_eq!(DeliveryStatus::of(DEAD, 5), DeliveryStatus::Dead);
        assert_eq!(DeliveryStatus::of(CANCELLED, 0), DeliveryStatus::Cancelled);
    }

    #[test]
    fn every_status_parses_from_its_name_and_reads_back_as_itself() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            let (stored, tried) = status.stored();
            let attempts = i32::from(tried.unwrap_or(false));
            assert_eq!(DeliveryStatus::of(stored, attempts), status);
        }
        assert_eq!(DeliveryStatus::parse("delivered"), None);
    }

    #[test]
    fn a_kept_first_attempt_comes_before_the_logged_ones_and_only_when_kept() {
        let t = |s| chrono::DateTime::from_timestamp(s, 0).unwrap().naive_utc();
        let logged = || {
            vec![AttemptRow {
                at: t(5),
                status_code: Some(500),
                error: Some("500".into()),
                duration_ms: 3,
                response_excerpt: None,
            }]
        };
        let all = with_kept(
            Some((t(1), Some(200), Some(9), Some("ok".into()))),
            logged(),
        );
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].at, all[0].status_code, all[0].duration_ms),
            (t(1), Some(200), 9)
        );
        assert_eq!(all[0].response_excerpt.as_deref(), Some("ok"));
        assert_eq!(all[1].at, t(5));
        // Nothing kept (no duration): only the logged attempts.
        assert_eq!(with_kept(Some((t(1), None, None, None)), logged()).len(), 1);
        assert_eq!(with_kept(None, logged()).len(), 1);
    }

    #[test]
    fn the_newest_attempt_of_each_delivery_is_kept() {
        let t = |s| chrono::DateTime::from_timestamp(s, 0).unwrap().naive_utc();
        let rows = vec![
            ("a".to_string(), t(1), Some(500)),
            ("b".to_string(), t(2), None),
            ("a".to_string(), t(3), Some(200)),
        ];
        let last = newest_per_delivery(rows);
        assert_eq!(
            last["a"],
            LastAttempt {
                at: t(3),
                status_code: Some(200)
            }
        );
        assert_eq!(last["b"].status_code, None);
        assert_eq!(last.len(), 2);
    }
}
