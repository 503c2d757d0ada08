//! Row types read from and written to the tables in `schema.rs`, and the
//! delivery status values stored in `deliveries.status`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::db_time::DbTime;
use super::schema::{attempts, deliveries, events, subscriptions, tokens};

/// `deliveries.status`: waiting for (another) attempt.
pub const PENDING: &str = "pending";
/// `deliveries.status`: the endpoint answered 2xx.
pub const SUCCEEDED: &str = "succeeded";
/// `deliveries.status`: retries exhausted (a dead letter).
pub const DEAD: &str = "dead";
/// `deliveries.status`: its subscription was removed before it was delivered.
pub const CANCELLED: &str = "cancelled";

#[derive(Insertable)]
#[diesel(table_name = tokens)]
pub struct NewToken<'a> {
    pub token_hash: &'a str,
    pub marketplace_id: i64,
    pub user_id: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub struct Subscription {
    pub id: i64,
    pub marketplace_id: i64,
    pub user_id: i64,
    pub event: String,
    pub endpoint_id: i64,
    pub secret: String,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub last_modified: NaiveDateTime,
    pub deactivated_at: Option<NaiveDateTime>,
    pub deactivation_reason: Option<String>,
    /// The routing version of its last change (`store::routing`).
    pub route_version: i64,
    /// The secret the last rotation replaced, signing too until
    /// `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<NaiveDateTime>,
    pub secret_rotated_at: Option<NaiveDateTime>,
}

impl Subscription {
    /// Its signing key set (`Secrets::from_stored`).
    pub fn secrets(&self) -> Result<crate::signing::Secrets, String> {
        crate::signing::Secrets::from_stored(
            &self.secret,
            self.previous_secret.as_deref(),
            self.previous_secret_until,
        )
    }
}

#[derive(Insertable)]
#[diesel(table_name = subscriptions)]
pub struct NewSubscription<'a> {
    pub marketplace_id: i64,
    pub user_id: i64,
    pub event: &'a str,
    pub endpoint_id: i64,
    pub secret: &'a str,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub last_modified: NaiveDateTime,
    pub route_version: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events, treat_none_as_null = true)]
pub struct NewEvent {
    pub id: String,
    pub marketplace_id: i64,
    pub event: String,
    pub body: String,
    pub idempotency_key: Option<String>,
    pub delivery_count: i32,
    pub created_at: DbTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = deliveries, treat_none_as_null = true)]
pub struct NewDelivery {
    pub id: String,
    pub event_id: String,
    pub subscription_id: i64,
    pub endpoint_id: i64,
    pub status: &'static str,
    pub attempts: i32,
    pub next_attempt_at: DbTime,
    pub last_error: Option<String>,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

#[cfg(test)]
impl NewEvent {
    /// An event of type `a` in marketplace 7 with an empty body, for unit
    /// tests of the ingest path.
    pub fn example(id: &str, at: DbTime) -> NewEvent {
        NewEvent {
            id: id.into(),
            marketplace_id: 7,
            event: "a".into(),
            body: "{}".into(),
            idempotency_key: None,
            delivery_count: 0,
            created_at: at,
        }
    }
}

impl NewDelivery {
    /// A delivery not yet attempted, due at once (`at`).
    pub fn pending(
        id: String,
        event_id: String,
        subscription_id: i64,
        endpoint_id: i64,
        at: &DbTime,
    ) -> NewDelivery {
        NewDelivery {
            id,
            event_id,
            subscription_id,
            endpoint_id,
            status: PENDING,
            attempts: 0,
            next_attempt_at: at.clone(),
            last_error: None,
            created_at: at.clone(),
            updated_at: at.clone(),
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = attempts, treat_none_as_null = true)]
pub struct NewAttempt {
    pub delivery_id: String,
    pub endpoint_id: i64,
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// At most the first 1 KiB of the endpoint's answer (`sender::excerpt`).
    pub response_excerpt: Option<String>,
}

/// An active subscription with its endpoint URL: what the router needs.
#[derive(Debug, Clone)]
pub struct RouteRow {
    pub subscription: Subscription,
    pub endpoint_url: String,
}
