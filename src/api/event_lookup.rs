//! `GET /internal/v1/events/{eventId}` (DESIGN.md section 7): an event as
//! accepted and its fan-out, one `Delivery` per subscription it was routed
//! to, for an operator following one event through the system.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::auth::Operator;
use super::deliveries::{Delivery, payload};
use super::openapi::ErrorResponses;
use super::{State, format_time};
use crate::error::ApiError;
use crate::store::history::{self, DeliveryRow, LastAttempt};

/// One delivery of the event, with the subscription it is for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventDelivery {
    pub subscription_id: i64,
    #[serde(flatten)]
    pub delivery: Delivery,
}

impl EventDelivery {
    fn of(row: DeliveryRow, last: Option<&LastAttempt>) -> EventDelivery {
        EventDelivery {
            subscription_id: row.subscription_id,
            delivery: Delivery::of(row, last),
        }
    }
}

/// The event as accepted, and its deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub event_id: String,
    pub event: String,
    pub marketplace_id: i64,
    pub accepted_at: String,
    /// The event as accepted; null once its payload was erased on request.
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<Box<RawValue>>,
    pub deliveries: Vec<EventDelivery>,
}

#[utoipa::path(get, path = "/internal/v1/events/{eventId}", tag = "events",
    security(("bearer" = [])),
    params(("eventId" = String, Path, description = "The event's id")),
    responses((status = 200, body = EventView), ErrorResponses))]
pub(crate) async fn event(
    _op: Operator,
    state: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(event_of(&state, id.into_inner()).await?))
}

/// Event `id` as accepted, with its deliveries (the web console calls
/// this too).
pub(crate) async fn event_of(state: &State, id: String) -> Result<EventView, ApiError> {
    let lookup = id.clone();
    let found = state
        .store
        .run(move |conn| {
            let Some((event, deliveries)) = history::event_with_deliveries(conn, &lookup)? else {
                return Ok(None);
            };
            let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
            let last = history::last_attempts(conn, &ids)?;
            Ok(Some((event, deliveries, last)))
        })
        .await?;
    let Some((event, deliveries, last)) = found else {
        return Err(ApiError::NotFound(format!(
            "there is no event `{id}` (events are kept for --history-retention)"
        )));
    };
    Ok(EventView {
        event_id: event.id,
        event: event.event,
        marketplace_id: event.marketplace_id,
        accepted_at: format_time(event.accepted_at),
        payload: payload(event.body),
        deliveries: deliveries
            .into_iter()
            .map(|d| {
                let l = last.get(&d.id);
                EventDelivery::of(d, l)
            })
            .collect(),
    })
}
