//! [`TestApp`] calls of the subscriber self-service routes (a
//! subscription's deliveries, one delivery, its resend, the catch-up feed)
//! and the operators' event lookup, plus waits built on them.

use std::fmt::Display;
use std::time::Duration;

use awc::http::Method;
use serde_json::Value;

use super::http::url_encode;
use super::{Body, Resp, TestApp, wait_for};

/// `?k=v&…`, each value URL-encoded; empty for no pairs.
fn query_string(query: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", url_encode(v)))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

impl TestApp {
    /// `GET /v1/subscription/{sub}/deliveries?…`
    pub async fn deliveries(&self, token: &str, sub: impl Display, query: &[(&str, &str)]) -> Resp {
        let path = format!("/v1/subscription/{sub}/deliveries{}", query_string(query));
        self.call(
            Method::GET,
            &self.public(&path),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /v1/subscription/{sub}/deliveries/{id}`
    pub async fn delivery(&self, token: &str, sub: impl Display, id: &str) -> Resp {
        let path = format!("/v1/subscription/{sub}/deliveries/{}", url_encode(id));
        self.call(
            Method::GET,
            &self.public(&path),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `POST /v1/subscription/{sub}/deliveries/{id}/resend`
    pub async fn resend(&self, token: &str, sub: impl Display, id: &str) -> Resp {
        let path = format!(
            "/v1/subscription/{sub}/deliveries/{}/resend",
            url_encode(id)
        );
        self.call(
            Method::POST,
            &self.public(&path),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /v1/subscription/{sub}/events?…`
    pub async fn feed(&self, token: &str, sub: impl Display, query: &[(&str, &str)]) -> Resp {
        let path = format!("/v1/subscription/{sub}/events{}", query_string(query));
        self.call(
            Method::GET,
            &self.public(&path),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /internal/v1/events/{id}`
    pub async fn event_lookup(&self, id: &str) -> Resp {
        let url = self.internal(&format!("/internal/v1/events/{}", url_encode(id)));
        self.call(Method::GET, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    /// Waits until the subscription's newest delivery satisfies `cond`;
    /// returns its detail view.
    pub async fn wait_for_delivery(
        &self,
        token: &str,
        sub: i64,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_for(Duration::from_secs(30), what, || async {
            let (status, list) = self.deliveries(token, sub, &[("limit", "1")]).await;
            assert_eq!(status, 200, "deliveries of {sub}: {list}");
            let id = list["deliveries"][0]["deliveryId"].as_str()?.to_string();
            let (status, detail) = self.delivery(token, sub, &id).await;
            assert_eq!(status, 200, "delivery {id}: {detail}");
            cond(&detail).then_some(detail)
        })
        .await
    }
}
