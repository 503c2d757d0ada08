//! Lifecycle notices (DESIGN.md section 9): `GET /internal/v1/notices`
//! read page by page, and the notices an operator receiver got.

use awc::http::Method;
use serde_json::Value;

use super::{Body, Receiver, Recorded, Resp, TestApp, url_encode};

impl TestApp {
    /// One page of `GET /internal/v1/notices`.
    pub async fn notices_page(&self, query: &[(&str, &str)]) -> Resp {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let url = self.internal(&format!("/internal/v1/notices?{}", qs.join("&")));
        self.call(Method::GET, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    /// Every notice, following `nextCursor` with pages of `limit`.
    pub async fn all_notices(&self, limit: usize) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        let limit = limit.to_string();
        loop {
            let mut query = vec![("limit", limit.as_str())];
            if let Some(a) = after.as_deref() {
                query.push(("after", a));
            }
            let (status, body) = self.notices_page(&query).await;
            assert_eq!(status, 200, "notices: {body}");
            all.extend(body["notices"].as_array().cloned().unwrap_or_default());
            match body["nextCursor"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return all,
            }
        }
    }
}

/// The `event` of each notice, in order.
pub fn notice_kinds(notices: &[Value]) -> Vec<String> {
    notices
        .iter()
        .map(|n| n["event"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The notices `receiver` got (verification calls left out), first
/// arrival of each `noticeId` only, in arrival order.
pub fn received_notices(receiver: &Receiver) -> Vec<(Recorded, Value)> {
    let mut seen = std::collections::HashSet::new();
    receiver
        .deliveries()
        .into_iter()
        .filter_map(|r| {
            let body = r.json();
            let id = body["noticeId"].as_str()?.to_string();
            seen.insert(id).then_some((r, body))
        })
        .collect()
}
