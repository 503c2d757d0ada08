//! Calls for the OpenAPI documents, the Swagger UI and the operators'
//! subscription search.

use awc::http::Method;
use serde_json::Value;

use super::{Body, Resp, TestApp, url_encode};

/// Which listener a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

impl TestApp {
    fn listener_url(&self, listener: Listener, path: &str) -> String {
        match listener {
            Listener::Public => self.public(path),
            Listener::Internal => self.internal(path),
        }
    }

    /// `GET /openapi.json` of a listener, without a token.
    pub async fn openapi_document(&self, listener: Listener) -> Resp {
        let url = self.listener_url(listener, "/openapi.json");
        self.call(Method::GET, &url, None, &[], Body::Empty).await
    }

    /// `GET <path>` of a listener's Swagger UI: (status, content type, text).
    pub async fn docs(&self, listener: Listener, path: &str) -> (u16, String, String) {
        let url = self.listener_url(listener, path);
        let (status, content_type, bytes) = self
            .call_raw(Method::GET, &url, None, &[], Body::Empty)
            .await;
        (
            status,
            content_type,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    /// `GET /internal/v1/subscriptions?<query>`.
    pub async fn search_subscriptions(&self, query: &[(&str, String)]) -> Resp {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let url = self.internal(&format!("/internal/v1/subscriptions?{}", qs.join("&")));
        self.call(Method::GET, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    /// Every page of a search, following `nextCursor`.
    pub async fn search_all_subscriptions(&self, query: &[(&str, String)]) -> Vec<Value> {
        let mut found = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_vec();
            if let Some(c) = &cursor {
                q.push(("cursor", c.clone()));
            }
            let (status, page) = self.search_subscriptions(&q).await;
            assert_eq!(status, 200, "search {q:?}: {page}");
            found.extend(
                page["subscriptions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return found,
            }
        }
    }
}
