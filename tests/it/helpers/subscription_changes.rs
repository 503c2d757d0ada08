//! Calls of the subscriber self-service routes that change a subscription
//! (move, secret rotation, test event), and checking a delivery's
//! signatures with the Standard Webhooks reference verifier (PyPI
//! `standardwebhooks`, run through `python3`).

use std::io::Write;
use std::process::{Command, Stdio};

use awc::http::Method;
use serde_json::{Value, json};

use super::{Body, Recorded, Resp, TestApp};

impl TestApp {
    /// `PATCH /v1/subscription/{id}`
    pub async fn patch_subscription(&self, token: &str, id: i64, body: Value) -> Resp {
        let url = self.public(&format!("/v1/subscription/{id}"));
        self.call(Method::PATCH, &url, Some(token), &[], Body::Json(body))
            .await
    }

    /// `PUT /v1/subscription/{id}/secret`
    pub async fn rotate_secret(&self, token: &str, id: i64, body: Value) -> Resp {
        let url = self.public(&format!("/v1/subscription/{id}/secret"));
        self.call(Method::PUT, &url, Some(token), &[], Body::Json(body))
            .await
    }

    /// `POST /v1/subscription/{id}/test`
    pub async fn test_subscription(&self, token: &str, id: i64) -> Resp {
        let url = self.public(&format!("/v1/subscription/{id}/test"));
        self.call(Method::POST, &url, Some(token), &[], Body::Empty)
            .await
    }
}

/// Whether `python3` can import the reference verifier.
pub fn standard_webhooks_available() -> bool {
    Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
req = json.load(sys.stdin)
try:
    Webhook(req["secret"]).verify(req["body"], req["headers"])
    print("accepted")
except Exception as e:
    print("refused: %s" % e)
"#;

/// Whether the reference verifier accepts `req` for the `whsec_` `secret`.
pub fn standard_webhooks_accepts(secret: &str, req: &Recorded) -> bool {
    let headers: serde_json::Map<String, Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let input = json!({"secret": secret, "body": req.body_text(), "headers": headers});
    let mut child = Command::new("python3")
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 finishes");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the verifier failed: {answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer.trim() == "accepted"
}
