//! Both webhook signatures, computed independently of the server, and the
//! assertion that a delivered request carries them.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

use super::Recorded;

/// `X-Inspera-Signature`: lowercase hex HMAC-SHA1(secret, body).
pub fn inspera_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Standard Webhooks key: base64-decoded part after `whsec_`, else the secret bytes.
pub fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("test whsec_ secrets are valid base64"),
        None => secret.as_bytes().to_vec(),
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn standard_webhooks_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&standard_webhooks_key(secret))
        .expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A fresh random `whsec_` secret.
pub fn whsec_secret() -> String {
    let mut key = Vec::new();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Asserts a recorded request carries both valid signatures for `secret`,
/// a JSON content type and a hookrelay User-Agent.
#[track_caller]
pub fn assert_signed(req: &Recorded, secret: &str) {
    let ctx = format!(
        "request {} {} with body {}",
        req.method,
        req.path,
        req.body_text()
    );
    assert_eq!(req.method, "POST", "{ctx}: webhooks are POSTed");
    let inspera = req
        .header("x-inspera-signature")
        .unwrap_or_else(|| panic!("{ctx}: no X-Inspera-Signature"));
    assert_eq!(
        inspera,
        inspera_signature(secret, &req.body),
        "{ctx}: X-Inspera-Signature is not HMAC-SHA1(secret, body) in lowercase hex"
    );
    let id = req
        .header("webhook-id")
        .unwrap_or_else(|| panic!("{ctx}: no webhook-id"));
    assert!(!id.is_empty(), "{ctx}: empty webhook-id");
    let ts = req
        .header("webhook-timestamp")
        .unwrap_or_else(|| panic!("{ctx}: no webhook-timestamp"));
    let ts_num: i64 = ts
        .parse()
        .unwrap_or_else(|_| panic!("{ctx}: webhook-timestamp {ts:?} is not integer seconds"));
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - ts_num).abs() < 600,
        "{ctx}: webhook-timestamp {ts} is far from now ({now})"
    );
    let sig = req
        .header("webhook-signature")
        .unwrap_or_else(|| panic!("{ctx}: no webhook-signature"));
    let expected = standard_webhooks_signature(secret, id, ts, &req.body);
    assert!(
        sig.split(' ').any(|s| s == expected),
        "{ctx}: webhook-signature {sig:?} does not contain the expected {expected:?}"
    );
    let ua = req
        .header("user-agent")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        ua.contains("hookrelay"),
        "{ctx}: User-Agent {ua:?} does not mention hookrelay"
    );
    let ct = req
        .header("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        ct.starts_with("application/json"),
        "{ctx}: Content-Type {ct:?} is not application/json"
    );
}
