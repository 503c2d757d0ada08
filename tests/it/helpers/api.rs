//! [`TestApp`]'s client: one method per call of the public and internal
//! APIs, plus the few that also check the answer (`subscribe_ok`, `token`,
//! `scrape`, …).

use std::fmt::Display;
use std::future::Future;

use awc::http::Method;
use serde_json::{Value, json};

use super::http::url_encode;
use super::{Body, PromText, Resp, TestApp};

impl TestApp {
    // ---- public API -------------------------------------------------------

    pub async fn event_types(&self, token: &str) -> Resp {
        self.call(
            Method::GET,
            &self.public("/v1/subscription/events"),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    pub async fn subscribe(&self, token: &str, event: &str, endpoint: &str, secret: &str) -> Resp {
        self.subscribe_json(
            token,
            json!({"event": event, "endpoint": endpoint, "secret": secret}),
        )
        .await
    }

    /// Subscribes and asserts 201; returns the subscriptionId.
    #[track_caller]
    pub fn subscribe_ok<'a>(
        &'a self,
        token: &'a str,
        event: &'a str,
        endpoint: &'a str,
        secret: &'a str,
    ) -> impl Future<Output = i64> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let (status, body) = self.subscribe(token, event, endpoint, secret).await;
            assert_eq!(
                status, 201,
                "subscribe {event} -> {endpoint} (called at {caller}) answered {status}: {body}"
            );
            body["subscriptionId"]
                .as_i64()
                .unwrap_or_else(|| panic!("subscriptionId is not an integer in {body}"))
        }
    }

    pub async fn subscribe_json(&self, token: &str, body: Value) -> Resp {
        self.call(
            Method::POST,
            &self.public("/v1/subscription"),
            Some(token),
            &[],
            Body::Json(body),
        )
        .await
    }

    pub async fn subscribe_raw(
        &self,
        token: &str,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let url = self.public("/v1/subscription");
        self.post_raw(&url, Some(token), content_type, bytes).await
    }

    pub async fn list_subscriptions(&self, token: &str) -> Resp {
        self.call(
            Method::GET,
            &self.public("/v1/subscription"),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    /// The caller's subscriptions (asserts 200).
    pub async fn subscriptions_of(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.list_subscriptions(token).await;
        assert_eq!(status, 200, "list subscriptions answered {status}: {body}");
        body["subscriptions"]
            .as_array()
            .unwrap_or_else(|| panic!("no subscriptions array in {body}"))
            .clone()
    }

    pub async fn get_subscription(&self, token: &str, id: impl Display) -> Resp {
        self.call(
            Method::GET,
            &self.public(&format!("/v1/subscription/{id}")),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    pub async fn delete_subscription(&self, token: &str, id: impl Display) -> Resp {
        self.call(
            Method::DELETE,
            &self.public(&format!("/v1/subscription/{id}")),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    // ---- internal API -----------------------------------------------------

    pub async fn create_token(&self, body: Value) -> Resp {
        self.call(
            Method::POST,
            &self.internal("/internal/v1/tokens"),
            self.internal_bearer(),
            &[],
            Body::Json(body),
        )
        .await
    }

    /// A fresh API token for (marketplaceId, userId); asserts 201.
    pub async fn token(&self, marketplace_id: i64, user_id: i64) -> String {
        let (status, body) = self
            .create_token(json!({"marketplaceId": marketplace_id, "userId": user_id}))
            .await;
        assert_eq!(status, 201, "token creation answered {status}: {body}");
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {body}"))
            .to_string()
    }

    pub async fn push_event(&self, event: &Value) -> Resp {
        self.post_internal_json("/internal/v1/events", &[], event.clone())
            .await
    }

    /// Pushes and asserts 202; returns the body.
    pub async fn push_event_ok(&self, event: &Value) -> Value {
        let (status, body) = self.push_event(event).await;
        assert_eq!(status, 202, "push {event} answered {status}: {body}");
        body
    }

    pub async fn push_event_with_idempotency_key(&self, event: &Value, key: &str) -> Resp {
        let headers = [("Idempotency-Key", key)];
        self.post_internal_json("/internal/v1/events", &headers, event.clone())
            .await
    }

    pub async fn push_event_raw(
        &self,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        self.post_internal_raw("/internal/v1/events", content_type, bytes)
            .await
    }

    pub async fn push_batch(&self, events: &[Value]) -> Resp {
        let body = Value::Array(events.to_vec());
        self.post_internal_json("/internal/v1/events/batch", &[], body)
            .await
    }

    pub async fn push_batch_raw(
        &self,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        self.post_internal_raw("/internal/v1/events/batch", content_type, bytes)
            .await
    }

    /// `GET /internal/v1/dead-letters?…`
    pub async fn dead_letters(&self, query: &[(&str, String)]) -> Resp {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let url = if qs.is_empty() {
            self.internal("/internal/v1/dead-letters")
        } else {
            self.internal(&format!("/internal/v1/dead-letters?{}", qs.join("&")))
        };
        self.call(Method::GET, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    pub async fn replay_dead_letter(&self, id: impl Display) -> Resp {
        let url = self.internal(&format!(
            "/internal/v1/dead-letters/{}/replay",
            url_encode(&id.to_string())
        ));
        self.call(Method::POST, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    /// `GET /metrics` on the internal listener: `(status, content type, text)`.
    pub async fn metrics(&self) -> (u16, String, String) {
        let (status, ct, bytes) = self
            .call_raw(
                Method::GET,
                &self.internal("/metrics"),
                self.internal_bearer(),
                &[],
                Body::Empty,
            )
            .await;
        (status, ct, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn endpoints(&self) -> Resp {
        self.call(
            Method::GET,
            &self.internal("/internal/v1/endpoints"),
            self.internal_bearer(),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /internal/v1/endpoints?limit=&cursor=`.
    pub async fn endpoints_page(&self, limit: Option<i64>, cursor: Option<&str>) -> Resp {
        let mut qs = Vec::new();
        if let Some(l) = limit {
            qs.push(format!("limit={l}"));
        }
        if let Some(c) = cursor {
            qs.push(format!("cursor={}", url_encode(c)));
        }
        let path = if qs.is_empty() {
            "/internal/v1/endpoints".to_string()
        } else {
            format!("/internal/v1/endpoints?{}", qs.join("&"))
        };
        self.call(
            Method::GET,
            &self.internal(&path),
            self.internal_bearer(),
            &[],
            Body::Empty,
        )
        .await
    }

    /// Every endpoint, following `nextCursor` (asserts 200 on each page).
    pub async fn all_endpoints(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let (status, body) = self.endpoints_page(Some(100), cursor.as_deref()).await;
            assert_eq!(
                status, 200,
                "GET /internal/v1/endpoints answered {status}: {body}"
            );
            let page = body["endpoints"]
                .as_array()
                .unwrap_or_else(|| panic!("no endpoints array in {body}"));
            all.extend(page.iter().cloned());
            match &body["nextCursor"] {
                Value::Null => return all,
                Value::String(c) => cursor = Some(c.clone()),
                other => cursor = Some(other.to_string()),
            }
        }
        panic!("/internal/v1/endpoints kept answering a nextCursor for 1000 pages");
    }

    /// The listed endpoint whose `url` is `url`, if any.
    pub async fn endpoint_with_url(&self, url: &str) -> Option<Value> {
        let want = url.trim_end_matches('/');
        self.all_endpoints()
            .await
            .into_iter()
            .find(|e| e["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(want))
    }

    /// The id of the endpoint with this URL, as `/metrics` labels it.
    pub async fn endpoint_id(&self, url: &str) -> String {
        let e = self
            .endpoint_with_url(url)
            .await
            .unwrap_or_else(|| panic!("{url} is not in /internal/v1/endpoints"));
        match &e["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("endpoint id {other} is neither a number nor a string in {e}"),
        }
    }

    /// `GET /metrics`, asserted 200 and parsed strictly as Prometheus text.
    pub async fn scrape(&self) -> PromText {
        let (status, content_type, text) = self.metrics().await;
        assert_eq!(status, 200, "GET /metrics answered {status}: {text}");
        assert!(
            content_type.starts_with("text/plain"),
            "/metrics Content-Type {content_type:?} is not Prometheus text"
        );
        PromText::parse(&text)
            .unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{text}"))
    }

    pub async fn internal_event_types(&self) -> Resp {
        self.call(
            Method::GET,
            &self.internal("/internal/v1/event-types"),
            self.internal_bearer(),
            &[],
            Body::Empty,
        )
        .await
    }

    pub async fn put_event_type(&self, name: &str, body: Value) -> Resp {
        self.call(
            Method::PUT,
            &self.internal(&format!("/internal/v1/event-types/{}", url_encode(name))),
            self.internal_bearer(),
            &[],
            Body::Json(body),
        )
        .await
    }

    pub async fn health(&self) -> Resp {
        self.call(
            Method::GET,
            &self.internal("/health"),
            None,
            &[],
            Body::Empty,
        )
        .await
    }

    /// Asserts /health answers 200 `{"status":"ok"}`.
    pub async fn assert_healthy(&self, context: &str) {
        let (status, body) = self.health().await;
        assert_eq!(status, 200, "{context}: /health answered {status}: {body}");
        assert_eq!(body["status"], "ok", "{context}: /health body {body}");
    }
}
