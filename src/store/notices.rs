//! Queries on `notices`: storing lifecycle notices (each with the
//! subscriptions it is about, read in the same transaction) and, when an
//! operator webhook is set, the event and the delivery that carry each one
//! there; listing them oldest first; and installing the reserved
//! subscription of `--operator-webhook` at start.

use std::sync::Arc;

use diesel::prelude::*;

use super::db_time::DbTime;
use super::models::{NewDelivery, NewEvent, Subscription};
use super::schema::{notices, subscriptions};
use super::subscriptions::Created;
use super::{Conn, StoreError, now};
use crate::notice::{
    Draft, NOTICE_EVENT, Notice, NoticeSubscription, OPERATOR_MARKETPLACE, OPERATOR_USER,
};
use crate::signing::Secrets;

/// Where notices are delivered: the reserved subscription of
/// `--operator-webhook`.
#[derive(Debug, Clone)]
pub struct OperatorRoute {
    pub subscription_id: i64,
    pub endpoint_id: i64,
    pub url: String,
    pub secrets: Arc<Secrets>,
}

/// A stored notice's delivery to the operator webhook, to hand to that
/// endpoint's actor.
#[derive(Debug, Clone)]
pub struct QueuedNotice {
    pub delivery_id: String,
    pub subscription_id: i64,
    pub endpoint_id: i64,
    pub endpoint_url: String,
    pub body: String,
}

/// A stored notice.
#[derive(Debug, Clone, Queryable)]
pub struct NoticeRow {
    pub id: String,
    pub body: String,
}

/// The body of `insert`, for a transaction that writes more than notices
/// (`endpoints::bury` stores the notices of a death with it): on the
/// transaction's connection `$c`, stores `$drafts` (`&[Draft]`, stamped)
/// and, with `$operator` (`Option<&OperatorRoute>`), their carriers,
/// created at `$at` (`&DbTime`). Evaluates to
/// `Result<Vec<QueuedNotice>, diesel::result::Error>`. A macro because
/// the connection's type differs by backend (`db_transaction!`).
macro_rules! store_drafts {
    ($c:ident, $drafts:expr, $operator:expr, $at:expr) => {{
        use diesel::prelude::*;
        use $crate::notice::Scope;
        use $crate::store::schema::{deliveries, events, notices, subscriptions};
        let mut queued = Vec::new();
        for draft in $drafts {
            let stored: i64 = notices::table
                .filter(notices::id.eq(&draft.id))
                .count()
                .get_result($c)?;
            if stored > 0 {
                continue;
            }
            let about = match &draft.scope {
                Scope::Active => subscriptions::table
                    .filter(subscriptions::endpoint_id.eq(draft.endpoint_id))
                    .filter(subscriptions::active.eq(true))
                    .into_boxed(),
                Scope::Ids(ids) => subscriptions::table
                    .filter(subscriptions::id.eq_any(ids.clone()))
                    .into_boxed(),
            };
            let subscriptions: Vec<(i64, i64, i64)> = about
                .order(subscriptions::id)
                .select((
                    subscriptions::id,
                    subscriptions::marketplace_id,
                    subscriptions::user_id,
                ))
                .load($c)?;
            let body = $crate::store::notices::body_of(draft, subscriptions);
            diesel::insert_into(notices::table)
                .values((
                    notices::id.eq(&draft.id),
                    notices::kind.eq(draft.kind.as_str()),
                    notices::endpoint_id.eq(draft.endpoint_id),
                    notices::body.eq(&body),
                    notices::created_at.eq(draft.at.naive_utc()),
                ))
                .execute($c)?;
            if let Some(route) = $operator {
                let (event, delivery, to_send) =
                    $crate::store::notices::carrier(draft, body, route, $at);
                diesel::insert_into(events::table)
                    .values(&event)
                    .execute($c)?;
                diesel::insert_into(deliveries::table)
                    .values(&delivery)
                    .execute($c)?;
                queued.push(to_send);
            }
        }
        Ok::<_, diesel::result::Error>(queued)
    }};
}
pub(crate) use store_drafts;

/// Stores `drafts` in one transaction, in order; with `operator`, also an
/// event and a pending delivery to the operator webhook for each. A draft
/// stored already (a write repeated after an error) is skipped. Returns
/// the deliveries to hand to the operator webhook's actor.
pub fn insert(
    conn: &mut Conn,
    drafts: &[Draft],
    operator: Option<&OperatorRoute>,
) -> Result<Vec<QueuedNotice>, StoreError> {
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let at = DbTime::new(now());
    Ok(crate::db_transaction!(conn, c => store_drafts!(c, drafts, operator, &at))?)
}

/// The notice's JSON body about `subscriptions` (id, marketplace, user).
pub(crate) fn body_of(draft: &Draft, subscriptions: Vec<(i64, i64, i64)>) -> String {
    let about = subscriptions
        .into_iter()
        .map(
            |(subscription_id, marketplace_id, user_id)| NoticeSubscription {
                subscription_id,
                marketplace_id,
                user_id,
            },
        )
        .collect();
    serde_json::to_string(&Notice::of(draft, about)).unwrap_or_else(|_| "{}".into())
}

/// The event (id: the notice's) and the pending delivery that carry a
/// notice to the operator webhook, and what to hand to its actor.
pub(crate) fn carrier(
    draft: &Draft,
    body: String,
    route: &OperatorRoute,
    at: &DbTime,
) -> (NewEvent, NewDelivery, QueuedNotice) {
    let delivery_id = crate::ids::delivery_id(&draft.id, 0);
    let event = NewEvent {
        id: draft.id.clone(),
        marketplace_id: OPERATOR_MARKETPLACE,
        event: draft.kind.as_str().to_string(),
        body: body.clone(),
        idempotency_key: None,
        delivery_count: 1,
        created_at: at.clone(),
    };
    let delivery = NewDelivery::pending(
        delivery_id.clone(),
        draft.id.clone(),
        route.subscription_id,
        route.endpoint_id,
        at,
    );
    let queued = QueuedNotice {
        delivery_id,
        subscription_id: route.subscription_id,
        endpoint_id: route.endpoint_id,
        endpoint_url: route.url.clone(),
        body,
    };
    (event, delivery, queued)
}

/// Up to `limit` notices after the one with id `after`, oldest first.
pub fn list(
    conn: &mut Conn,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<NoticeRow>, StoreError> {
    let after = after.unwrap_or("").to_string();
    Ok(crate::db_run!(conn, c => notices::table
        .filter(notices::id.gt(&after))
        .select((notices::id, notices::body))
        .order(notices::id)
        .limit(limit)
        .load(c))?)
}

/// The newest `limit` notices, newest first (the web console).
pub fn latest(conn: &mut Conn, limit: i64) -> Result<Vec<NoticeRow>, StoreError> {
    Ok(crate::db_run!(conn, c => notices::table
        .select((notices::id, notices::body))
        .order(notices::id.desc())
        .limit(limit)
        .load(c))?)
}

/// Makes the reserved subscription of `--operator-webhook` match the
/// configuration (`webhook`: URL and secret): created, its secret
/// replaced, or, when the webhook moved or is no longer set, the old one
/// removed (with a reason). Returns the route notices take, if any.
pub fn install_operator(
    conn: &mut Conn,
    webhook: Option<(&str, &str)>,
) -> Result<Option<OperatorRoute>, StoreError> {
    let installed: Vec<Subscription> = crate::db_run!(conn, c => subscriptions::table
        .filter(subscriptions::marketplace_id.eq(OPERATOR_MARKETPLACE))
        .filter(subscriptions::user_id.eq(OPERATOR_USER))
        .filter(subscriptions::event.eq(NOTICE_EVENT))
        .filter(subscriptions::active.eq(true))
        .select(Subscription::as_select())
        .load(c))?;
    let Some((url, secret)) = webhook else {
        let ids: Vec<i64> = installed.iter().map(|s| s.id).collect();
        if !ids.is_empty() {
            super::subscriptions::deactivate(
                conn,
                &ids,
                "the operator webhook is no longer configured",
            )?;
        }
        return Ok(None);
    };
    let endpoint_id = super::subscriptions::endpoint_id_for(conn, url)?;
    let (keep, moved): (Vec<_>, Vec<_>) = installed
        .into_iter()
        .partition(|s| s.endpoint_id == endpoint_id);
    let moved: Vec<i64> = moved.iter().map(|s| s.id).collect();
    if !moved.is_empty() {
        super::subscriptions::deactivate(
            conn,
            &moved,
            "the operator webhook moved to another URL",
        )?;
    }
    let subscription_id = match keep.first() {
        Some(s) if s.secret == secret => s.id,
        Some(s) => {
            // A new secret signs from now on; nothing overlaps.
            super::subscriptions::rotate_secret(
                conn,
                s.id,
                (OPERATOR_MARKETPLACE, OPERATOR_USER),
                secret,
                now(),
            )?;
            s.id
        }
        None => match super::subscriptions::create(
            conn,
            OPERATOR_MARKETPLACE,
            OPERATOR_USER,
            NOTICE_EVENT,
            endpoint_id,
            secret,
            i64::MAX,
        )? {
            Created::New(s) => s.id,
            // Another node installed it meanwhile (same configuration).
            Created::Duplicate(id) | Created::TooMany(id) => id,
        },
    };
    let secrets = Secrets::from_stored(secret, None, None)
        .map_err(|e| StoreError::Query(diesel::result::Error::QueryBuilderError(e.into())))?;
    Ok(Some(OperatorRoute {
        subscription_id,
        endpoint_id,
        url: url.to_string(),
        secrets: Arc::new(secrets),
    }))
}
