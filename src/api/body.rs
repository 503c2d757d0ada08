//! Request bodies: the size limit (413), the time limit (408), the JSON
//! content type (415), and JSON parsing with errors that say what is wrong
//! (400), duplicate keys included.

use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiSettings;
use crate::error::{ApiError, ErrorCode, body_too_large};

/// Reads the whole body (within the size and time limits of `settings`)
/// and parses it as JSON.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    settings: &ApiSettings,
) -> Result<Value, ApiError> {
    parse_json(&read_body(req, payload, settings).await?)
}

/// Reads the whole body of a JSON request, at most `--max-body-bytes`,
/// within `--request-timeout`; refuses another content type and an empty
/// body.
pub async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    settings: &ApiSettings,
) -> Result<web::Bytes, ApiError> {
    match tokio::time::timeout(
        settings.request_timeout,
        read_body_within(req, payload, settings.max_body_bytes),
    )
    .await
    {
        Ok(body) => body,
        Err(_) => Err(ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} (--request-timeout); send it at once",
            humantime::format_duration(settings.request_timeout)
        ))),
    }
}

/// Reads the body in chunks after checking its type and declared length.
async fn read_body_within(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    check_json_type(header("Content-Type").unwrap_or(""))?;
    let declared = header("Content-Length").and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(body_too_large());
    }
    let mut buf = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if buf.len() + chunk.len() > limit {
            return Err(body_too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.is_empty() {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidJson,
            "the request body is empty; send a JSON document",
        ));
    }
    Ok(buf.freeze())
}

/// Refuses a `Content-Type` that is not JSON (`application/json` or a
/// `+json` type, any parameters and case).
fn check_json_type(content_type: &str) -> Result<(), ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "the body must be JSON sent with `Content-Type: application/json` (got `{}`)",
        if content_type.is_empty() {
            "no Content-Type"
        } else {
            content_type
        }
    )))
}

/// Parses a body read by `read_body`; an object with the same key twice is
/// refused (which one would count is a guess).
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    crate::json::parse_strict(body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// Converts a parsed body into a typed request, naming what is wrong.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(ErrorCode::InvalidField, format!("{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_with_a_key_twice_is_refused_at_any_depth() {
        assert!(parse_json(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_json(br#"[{"x":{"b":1,"b":1}}]"#).is_err());
        assert_eq!(
            parse_json(br#"{"a":[1,{"b":null}],"c":"d"}"#).unwrap(),
            serde_json::json!({"a":[1,{"b":null}],"c":"d"})
        );
        assert!(parse_json(b"{} x").is_err(), "trailing text");
        assert_eq!(parse_json(b"1.5").unwrap(), serde_json::json!(1.5));
        assert_eq!(
            parse_json(b"18446744073709551615").unwrap(),
            serde_json::json!(u64::MAX)
        );
    }

    #[test]
    fn json_with_parameters_or_a_suffix_is_accepted() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/cloudevents+json",
        ] {
            assert!(check_json_type(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn another_or_a_missing_content_type_is_unsupported() {
        for refused in ["text/plain", "", "application/jsonx"] {
            let error = check_json_type(refused).err();
            assert_eq!(
                error.map(|e| e.code()),
                Some(ErrorCode::UnsupportedMediaType),
                "{refused}"
            );
        }
    }
}
