//! An endpoint's policy from a test: `PATCH /internal/v1/endpoints/{id}`
//! and the listed endpoint it answers.

use awc::http::Method;
use serde_json::Value;

use super::{Body, Resp, TestApp};

impl TestApp {
    /// `PATCH /internal/v1/endpoints/{id}` with a JSON body.
    pub async fn patch_endpoint(&self, id: &str, body: Value) -> Resp {
        self.call(
            Method::PATCH,
            &self.internal(&format!("/internal/v1/endpoints/{id}")),
            self.internal_bearer(),
            &[],
            Body::Json(body),
        )
        .await
    }

    /// `PATCH /internal/v1/endpoints/{id}`, asserted 200; answers the
    /// endpoint as listed.
    pub async fn patch_endpoint_ok(&self, id: &str, body: Value) -> Value {
        let (status, answer) = self.patch_endpoint(id, body.clone()).await;
        assert_eq!(status, 200, "PATCH endpoint {id} with {body}: {answer}");
        answer
    }

    /// The listed endpoint with this id.
    pub async fn endpoint_by_id(&self, id: &str) -> Value {
        self.all_endpoints()
            .await
            .into_iter()
            .find(|e| e["id"].as_i64().map(|n| n.to_string()).as_deref() == Some(id))
            .unwrap_or_else(|| panic!("endpoint {id} is not in /internal/v1/endpoints"))
    }
}
