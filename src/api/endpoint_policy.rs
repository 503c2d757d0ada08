//! `PATCH /internal/v1/endpoints/{id}`: an operator's policy of one
//! endpoint (hold, `maxInFlight`, `maxPerSecond`, `timeout`). The body is
//! read strictly (a field left out is unchanged, `null` clears it, anything
//! else out of bounds is a 400 naming the field and its range); the policy
//! is stored (which notifies the other nodes) and handed to the endpoint's
//! actor if it runs here. Answers the endpoint as `GET
//! /internal/v1/endpoints` lists it.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::State;
use super::auth::Operator;
use super::body::read_json;
use super::endpoint_list::{EndpointView, views};
use super::openapi::ErrorResponses;
use crate::delivery::endpoint::EndpointPolicy;
use crate::error::{ApiError, ErrorCode};
use crate::router::ApplyPolicy;
use crate::router::policy::{from_row, to_row};
use crate::store::endpoints::{self, PolicyRow};

/// The bounds of `maxInFlight`.
const MAX_IN_FLIGHT: (u32, u32) = (1, 1000);
/// The bounds of `maxPerSecond`.
const MAX_PER_SECOND: (u32, u32) = (1, 10_000);
/// The bounds of `timeout`.
const TIMEOUT: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(120));

/// An endpoint's policy as operators see it: `null` is the global default.
#[derive(Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// The operator's hold: deliveries wait, in order, until it is lifted.
    pub paused: bool,
    pub max_in_flight: Option<u32>,
    pub max_per_second: Option<u32>,
    /// The request timeout, e.g. `250ms` or `10s`.
    pub timeout: Option<String>,
}

impl From<PolicyRow> for PolicyView {
    fn from(row: PolicyRow) -> Self {
        let policy = from_row(row);
        PolicyView {
            paused: policy.paused,
            max_in_flight: policy.max_in_flight,
            max_per_second: policy.max_per_second,
            timeout: policy
                .timeout
                .map(|t| humantime::format_duration(t).to_string()),
        }
    }
}

/// A change of policy: a field left out stays as it is, `null` clears an
/// override (back to the global default).
#[derive(Debug, Default, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PolicyChange {
    /// Hold (`true`) or release (`false`) the endpoint's deliveries.
    #[schema(value_type = Option<bool>)]
    pub paused: Option<bool>,
    /// At most this many requests in flight, 1 to 1000 (1: strict order).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000, nullable)]
    pub max_in_flight: Option<Option<u32>>,
    /// At most this many requests started per second, 1 to 10000.
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10000, nullable)]
    pub max_per_second: Option<Option<u32>>,
    /// The request timeout, 100ms to 120s, e.g. `250ms` or `10s`.
    #[schema(value_type = Option<String>, example = "10s", nullable)]
    pub timeout: Option<Option<Duration>>,
}

impl PolicyChange {
    /// `policy` with this change made.
    pub fn apply(&self, policy: EndpointPolicy) -> EndpointPolicy {
        EndpointPolicy {
            paused: self.paused.unwrap_or(policy.paused),
            max_in_flight: self.max_in_flight.unwrap_or(policy.max_in_flight),
            max_per_second: self.max_per_second.unwrap_or(policy.max_per_second),
            timeout: self.timeout.unwrap_or(policy.timeout),
        }
    }
}

/// Reads a change from a parsed body, or says what is wrong with it.
pub fn parse_change(body: &Value) -> Result<PolicyChange, String> {
    let Value::Object(fields) = body else {
        return Err("the body must be a JSON object, e.g. {\"paused\": true}".into());
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["paused", "maxInFlight", "maxPerSecond", "timeout"].contains(&k.as_str()))
    {
        return Err(format!(
            "unknown field `{}`; the fields are paused, maxInFlight, maxPerSecond and timeout",
            super::quote(unknown)
        ));
    }
    Ok(PolicyChange {
        paused: paused(fields)?,
        max_in_flight: limit(fields, "maxInFlight", MAX_IN_FLIGHT)?,
        max_per_second: limit(fields, "maxPerSecond", MAX_PER_SECOND)?,
        timeout: timeout(fields)?,
    })
}

fn paused(fields: &Map<String, Value>) -> Result<Option<bool>, String> {
    match fields.get("paused") {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err("`paused` must be true or false".into()),
    }
}

/// A whole number within `(low, high)`, or `null`.
fn limit(
    fields: &Map<String, Value>,
    name: &str,
    (low, high): (u32, u32),
) -> Result<Option<Option<u32>>, String> {
    let wrong = || {
        format!(
            "`{name}` must be a whole number from {low} to {high}, or null for the global default"
        )
    };
    match fields.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (u64::from(low)..=u64::from(high)).contains(&v) => Ok(Some(Some(v as u32))),
            _ => Err(wrong()),
        },
        Some(_) => Err(wrong()),
    }
}

/// A duration like `250ms` or `10s` within `TIMEOUT`, or `null`.
fn timeout(fields: &Map<String, Value>) -> Result<Option<Option<Duration>>, String> {
    let wrong = "`timeout` must be a duration from 100ms to 120s, like \"250ms\" or \"10s\", or null for the global default";
    match fields.get("timeout") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) if (TIMEOUT.0..=TIMEOUT.1).contains(&d) => Ok(Some(Some(d))),
            _ => Err(wrong.into()),
        },
        Some(_) => Err(wrong.into()),
    }
}

#[utoipa::path(patch, path = "/internal/v1/endpoints/{id}", tag = "endpoints",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The endpoint's id")),
    request_body = PolicyChange,
    responses((status = 200, description = "The endpoint, as listed", body = EndpointView), ErrorResponses))]
pub(crate) async fn patch_endpoint(
    _op: Operator,
    state: State,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let raw = id.into_inner();
    let id: i64 = raw.parse().map_err(|_| no_endpoint(&raw))?;
    let body = read_json(&req, payload, &state.settings).await?;
    let change =
        parse_change(&body).map_err(|m| ApiError::bad_request(ErrorCode::InvalidField, m))?;
    Ok(HttpResponse::Ok().json(change_policy(&state, id, change).await?))
}

fn no_endpoint(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no endpoint `{}`", super::quote(raw)))
}

/// Stores a policy change of endpoint `id`, hands it to its actor, and
/// answers the endpoint as listed (the web console calls this too).
pub(crate) async fn change_policy(
    state: &State,
    id: i64,
    change: PolicyChange,
) -> Result<EndpointView, ApiError> {
    let no_such = || no_endpoint(&id.to_string());
    let stored = state
        .store
        .run(move |conn| {
            endpoints::change_policy(conn, id, |row| to_row(change.apply(from_row(row))))
        })
        .await?
        .ok_or_else(no_such)?;
    let _ = state
        .router
        .send(ApplyPolicy {
            endpoint_id: id,
            policy: from_row(stored),
        })
        .await;
    let row = state
        .store
        .run(move |conn| endpoints::one(conn, id))
        .await?
        .ok_or_else(no_such)?;
    views(state, vec![row]).await.pop().ok_or_else(no_such)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(body: Value) -> Result<PolicyChange, String> {
        parse_change(&body)
    }

    #[test]
    fn a_field_left_out_is_unchanged_and_null_clears_it() {
        let c = change(json!({"maxInFlight": null, "timeout": "250ms"})).unwrap();
        assert_eq!(c.paused, None);
        assert_eq!(c.max_in_flight, Some(None));
        assert_eq!(c.max_per_second, None);
        assert_eq!(c.timeout, Some(Some(Duration::from_millis(250))));
        let before = EndpointPolicy {
            paused: true,
            max_in_flight: Some(3),
            max_per_second: Some(7),
            timeout: None,
        };
        let after = c.apply(before);
        assert_eq!(
            after,
            EndpointPolicy {
                max_in_flight: None,
                timeout: Some(Duration::from_millis(250)),
                ..before
            }
        );
    }

    #[test]
    fn an_empty_object_changes_nothing() {
        assert_eq!(change(json!({})).unwrap(), PolicyChange::default());
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let c = change(json!({"maxInFlight": 1000, "maxPerSecond": 1, "timeout": "120s"})).unwrap();
        assert_eq!(c.max_in_flight, Some(Some(1000)));
        assert_eq!(c.max_per_second, Some(Some(1)));
        assert_eq!(c.timeout, Some(Some(Duration::from_secs(120))));
        let c = change(json!({"timeout": "100ms", "paused": false})).unwrap();
        assert_eq!(c.timeout, Some(Some(Duration::from_millis(100))));
        assert_eq!(c.paused, Some(false));
    }

    #[test]
    fn zero_negative_absurd_and_fractional_limits_name_the_field_and_its_range() {
        for bad in [
            json!(0),
            json!(-1),
            json!(1001),
            json!(1e30),
            json!(2.5),
            json!("4"),
        ] {
            let error = change(json!({ "maxInFlight": bad })).unwrap_err();
            assert!(
                error.contains("`maxInFlight`") && error.contains("1 to 1000"),
                "{error}"
            );
        }
        let error = change(json!({"maxPerSecond": 10_001})).unwrap_err();
        assert!(
            error.contains("`maxPerSecond`") && error.contains("1 to 10000"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_or_out_of_range_timeout_is_refused() {
        for bad in [
            json!("soon"),
            json!("50ms"),
            json!("121s"),
            json!(10),
            json!(""),
        ] {
            let error = change(json!({ "timeout": bad })).unwrap_err();
            assert!(
                error.contains("`timeout`") && error.contains("100ms to 120s"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_wrong_type_an_unknown_field_or_a_non_object_is_refused() {
        assert!(
            change(json!({"paused": "yes"}))
                .unwrap_err()
                .contains("`paused`")
        );
        assert!(
            change(json!({"paused": null})).is_err(),
            "the hold has no default to go back to"
        );
        assert!(
            change(json!({"pause": true}))
                .unwrap_err()
                .contains("unknown field `pause`")
        );
        assert!(change(json!([true])).is_err());
    }

    #[test]
    fn a_policy_is_shown_with_its_timeout_as_a_duration() {
        let view = PolicyView::from(PolicyRow {
            operator_paused: true,
            max_in_flight: Some(1),
            max_per_second: None,
            timeout_ms: Some(250),
        });
        assert_eq!(
            serde_json::to_value(view).unwrap(),
            json!({"paused": true, "maxInFlight": 1, "maxPerSecond": null, "timeout": "250ms"})
        );
    }
}
