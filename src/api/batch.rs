//! The batch push (`POST /internal/v1/events/batch`): each event of the
//! array is checked on its own, the valid ones are stored in one publish,
//! and the answer has a result for each event.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::State;
use super::auth::Operator;
use super::body::{parse_json, read_body};
use super::internal::{EventChecker, idempotency_conflict, publish};
use super::openapi::ErrorResponses;
use crate::error::{ApiError, ErrorCode};
use crate::ingest::Incoming;

/// The result of one event of a batch: `accepted` with its id and number
/// of deliveries, or `rejected` with the error code and message.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Its position in the array.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `accepted` or `rejected`.
    pub status: &'static str,
}

/// The answer to a batch; when no event was accepted it is a 400 that also
/// carries `error` and `message`.
#[derive(Serialize, ToSchema)]
pub struct BatchAnswer {
    pub accepted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub error: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
    pub rejected: usize,
    /// One per event, in the order of the array.
    pub results: Vec<BatchResult>,
}

/// `POST /internal/v1/events/batch`: each event is checked on its own, the
/// valid ones are stored in one publish, and the answer has a result for
/// each event.
#[utoipa::path(post, path = "/internal/v1/events/batch", tag = "events",
    security(("bearer" = [])), request_body = Vec<crate::event::Event>,
    params(("Idempotency-Key" = Option<String>, Header, description = "Not used for a batch: each event's `eventId` is its key")),
    responses((status = 202, body = BatchAnswer), ErrorResponses))]
pub(crate) async fn push_batch(
    _op: Operator,
    state: State,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, &state.settings).await?;
    let items = batch_items(&body, state.settings.max_batch_events)?;
    let mut results: Vec<Option<BatchResult>> = (0..items.len()).map(|_| None).collect();
    let valid = check_batch(&state, &items, &mut results).await;
    let accepted = publish_batch(&state, valid, &mut results).await?;
    Ok(batch_answer(results, accepted))
}

/// The events of a batch body, each kept as its JSON text (it is validated
/// from it); refuses a body that is no array, an empty one, or one over
/// `limit` events.
fn batch_items(body: &[u8], limit: usize) -> Result<Vec<&RawValue>, ApiError> {
    let items: Vec<&RawValue> = match serde_json::from_slice(body) {
        Ok(items) => items,
        Err(_) => {
            parse_json(body)?;
            return Err(ApiError::bad_request(
                ErrorCode::InvalidJson,
                "the batch body must be a JSON array of events",
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::EmptyBatch,
            "the batch is an empty array; send at least one event",
        ));
    }
    if items.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch has {} events; at most {limit} are accepted per call (--max-batch-events); split it",
            items.len()
        )));
    }
    Ok(items)
}

/// Checks every event of a batch: the valid ones are returned with their
/// index, the others get their rejection in `results`.
async fn check_batch(
    state: &State,
    items: &[&RawValue],
    results: &mut [Option<BatchResult>],
) -> Vec<(usize, Incoming)> {
    let mut valid = Vec::with_capacity(items.len());
    let mut checker = EventChecker::default();
    for (index, item) in items.iter().enumerate() {
        match checker.check(state, item.get().as_bytes()).await {
            Ok(event) => {
                let idempotency_key = event.event_id.clone();
                valid.push((
                    index,
                    Incoming {
                        event,
                        idempotency_key,
                    },
                ));
            }
            Err(e) => results[index] = Some(rejection(index, &e)),
        }
    }
    valid
}

/// Publishes a batch's valid events and writes each one's result; answers
/// how many were accepted (an idempotency conflict is not).
async fn publish_batch(
    state: &State,
    valid: Vec<(usize, Incoming)>,
    results: &mut [Option<BatchResult>],
) -> Result<usize, ApiError> {
    if valid.is_empty() {
        return Ok(0);
    }
    let (indexes, events): (Vec<usize>, Vec<Incoming>) = valid.into_iter().unzip();
    let mut accepted = indexes.len();
    let published = publish(state, events).await?;
    for (index, p) in indexes.into_iter().zip(published) {
        results[index] = Some(if p.conflicting {
            accepted -= 1;
            rejection(index, &idempotency_conflict(&p.event_id))
        } else {
            BatchResult {
                deliveries: Some(p.deliveries),
                error: None,
                event_id: Some(p.event_id),
                index,
                message: None,
                status: "accepted",
            }
        });
    }
    Ok(accepted)
}

/// The result of a batch's event that was refused.
fn rejection(index: usize, error: &ApiError) -> BatchResult {
    let body = error.body();
    BatchResult {
        deliveries: None,
        error: Some(error.code().as_str().to_string()),
        event_id: None,
        index,
        message: body["message"].as_str().map(str::to_string),
        status: "rejected",
    }
}

/// The answer to a batch: 202 when any event was accepted, else 400.
fn batch_answer(results: Vec<Option<BatchResult>>, accepted: usize) -> HttpResponse {
    let rejected = results.len().saturating_sub(accepted);
    let results: Vec<BatchResult> = results.into_iter().flatten().collect();
    let mut body = BatchAnswer {
        accepted,
        error: None,
        message: None,
        rejected,
        results,
    };
    if accepted == 0 {
        body.error = Some(ErrorCode::InvalidEvents);
        body.message =
            Some("no event of the batch was accepted; see `results` for each one's reason");
        return HttpResponse::BadRequest().json(body);
    }
    HttpResponse::Accepted().json(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(result: Result<Vec<&RawValue>, ApiError>) -> ErrorCode {
        match result {
            Ok(items) => panic!("accepted {} items", items.len()),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_batch_that_is_no_array_is_invalid_json() {
        assert_eq!(
            code(batch_items(br#"{"event":"a"}"#, 10)),
            ErrorCode::InvalidJson
        );
    }

    #[test]
    fn a_batch_that_is_no_json_names_the_json_error() {
        assert_eq!(code(batch_items(b"[{", 10)), ErrorCode::InvalidJson);
    }

    #[test]
    fn an_empty_batch_is_refused() {
        assert_eq!(code(batch_items(b"[]", 10)), ErrorCode::EmptyBatch);
    }

    #[test]
    fn a_batch_over_the_limit_is_too_large() {
        assert_eq!(code(batch_items(b"[1,2,3]", 2)), ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn each_event_is_kept_as_its_json_text() {
        let items = batch_items(br#"[{"a": 1}, "x"]"#, 2).unwrap_or_default();
        let texts: Vec<&str> = items.iter().map(|i| i.get()).collect();
        assert_eq!(texts, [r#"{"a": 1}"#, r#""x""#]);
    }

    #[test]
    fn a_batch_with_an_accepted_event_answers_202() {
        let answer = batch_answer(vec![None, None], 1);
        assert_eq!(answer.status().as_u16(), 202);
    }

    #[test]
    fn a_batch_with_no_accepted_event_answers_400() {
        let answer = batch_answer(vec![None], 0);
        assert_eq!(answer.status().as_u16(), 400);
    }

    #[test]
    fn a_rejection_carries_the_code_and_message() {
        let error = ApiError::bad_request(ErrorCode::InvalidEvent, "no type");
        assert_eq!(
            serde_json::to_value(rejection(3, &error)).unwrap_or_default(),
            serde_json::json!({ "index": 3, "status": "rejected", "error": "invalid_event", "message": "no type" })
        );
    }
}
