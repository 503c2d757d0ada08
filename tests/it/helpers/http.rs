//! Generic HTTP calls from a [`TestApp`] to its listeners: one request
//! with a bearer token, headers and a body, answered as [`Resp`].

use awc::http::Method;
use serde_json::Value;

use super::TestApp;

/// `(HTTP status, parsed JSON body)`; a body that is not JSON is given as
/// `Value::String(raw text)`, an empty body as `Value::Null`.
pub type Resp = (u16, Value);

/// What a test sends as a request body.
pub enum Body {
    Empty,
    Json(Value),
    Raw {
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
}

impl TestApp {
    pub fn public(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }

    pub fn internal(&self, path: &str) -> String {
        format!("{}{}", self.internal_url, path)
    }

    /// One HTTP call; `bearer` adds `Authorization: Bearer …`.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        let (status, _, bytes) = self.call_raw(method, url, bearer, headers, body).await;
        (status, parse_body(&bytes))
    }

    /// One HTTP call answering `(status, content type, raw body)`.
    pub async fn call_raw(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> (u16, String, bytes::Bytes) {
        let what = format!("{method} {url}");
        let mut req = self.client.request(method, url);
        if let Some(t) = bearer {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Body::Empty => req.send().await,
            Body::Json(v) => req.send_json(&v).await,
            Body::Raw {
                content_type,
                bytes,
            } => {
                if let Some(ct) = content_type {
                    req = req.insert_header(("Content-Type", ct));
                }
                req.send_body(bytes).await
            }
        };
        let mut res = sent.unwrap_or_else(|e| panic!("{what} failed: {e}\n{}", self.log_tail(30)));
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = res
            .body()
            .limit(256 << 20)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
        (status, content_type, bytes)
    }

    pub(super) fn internal_bearer(&self) -> Option<&str> {
        self.internal_token.as_deref()
    }

    /// POSTs JSON, with extra headers, to an internal path.
    pub(super) async fn post_internal_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> Resp {
        let url = self.internal(path);
        self.call(
            Method::POST,
            &url,
            self.internal_bearer(),
            headers,
            Body::Json(body),
        )
        .await
    }

    /// POSTs raw bytes (with an optional Content-Type) to an internal path.
    pub(super) async fn post_internal_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let url = self.internal(path);
        self.post_raw(&url, self.internal_bearer(), content_type, bytes)
            .await
    }

    /// POSTs raw bytes (with an optional Content-Type) to `url`.
    pub(super) async fn post_raw(
        &self,
        url: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let body = Body::Raw {
            content_type: content_type.map(str::to_string),
            bytes: bytes.into(),
        };
        self.call(Method::POST, url, bearer, &[], body).await
    }
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
