//! Request signing: the platform's `X-Inspera-Signature` (hex HMAC-SHA1 of the
//! body) and the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
//! A `Secret` decodes its Standard Webhooks key once, so signing a delivery
//! costs two HMACs and nothing else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};

/// Longest secret accepted, in characters.
pub const MAX_SECRET_LEN: usize = 1024;

/// A subscription's signing secret, validated, with its HMAC-SHA256 key.
#[derive(Clone)]
pub struct Secret {
    raw: String,
    standard_key: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Validates a secret: non-empty, at most `MAX_SECRET_LEN` characters, and
    /// when it starts with `whsec_` the rest must be base64.
    pub fn parse(raw: &str) -> Result<Secret, String> {
        if raw.trim().is_empty() {
            return Err("`secret` must not be empty: choose a random string of at least 16 characters, or a `whsec_`-prefixed base64 key".into());
        }
        if raw.chars().count() > MAX_SECRET_LEN {
            return Err(format!(
                "`secret` is longer than {MAX_SECRET_LEN} characters"
            ));
        }
        let standard_key = match raw.strip_prefix("whsec_") {
            Some(encoded) => STANDARD.decode(encoded).map_err(|e| {
                format!("`secret` starts with `whsec_` but the rest is not valid base64 ({e})")
            })?,
            None => raw.as_bytes().to_vec(),
        };
        if standard_key.is_empty() {
            return Err("`secret` decodes to an empty key".into());
        }
        Ok(Secret {
            raw: raw.to_string(),
            standard_key,
        })
    }

    /// The secret as the subscriber gave it (what is stored).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `X-Inspera-Signature`: lowercase hex HMAC-SHA1 of the body, keyed with
    /// the secret's bytes.
    pub fn inspera_signature(&self, body: &[u8]) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.raw.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn standard_signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.standard_key)
            .expect("HMAC accepts keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// All signature headers of one request.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> SignatureHeaders {
        SignatureHeaders {
            inspera: self.inspera_signature(body),
            id: id.to_string(),
            timestamp: timestamp.to_string(),
            signature: self.standard_signature(id, timestamp, body),
        }
    }
}

/// Header values for one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub inspera: String,
    pub id: String,
    pub timestamp: String,
    pub signature: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed independently with Python's hmac module; the
    // first is the example of the Standard Webhooks specification.
    #[test]
    fn standard_signature_matches_the_specification_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.standard_signature(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_plain_secret_is_its_own_standard_key() {
        let secret = Secret::parse("plain-secret").unwrap();
        assert_eq!(
            secret.standard_signature("id1", 1700000000, b"{}"),
            "v1,kgaJhCJe4jpwq7JLSW8elj2j5d7sUjxvhJpxFexLqU8="
        );
    }

    #[test]
    fn inspera_signature_is_lowercase_hex_hmac_sha1() {
        let secret = Secret::parse("my-secret").unwrap();
        assert_eq!(
            secret.inspera_signature(br#"{"event":"qti_export_ready"}"#),
            "ecd30e64a983be2a184a7ebb962cfab2f2d039f4"
        );
    }

    #[test]
    fn bad_secrets_are_refused_with_a_reason() {
        assert!(Secret::parse("").unwrap_err().contains("empty"));
        assert!(Secret::parse("   ").is_err());
        assert!(Secret::parse("whsec_!!!").unwrap_err().contains("base64"));
        assert!(Secret::parse(&"x".repeat(MAX_SECRET_LEN + 1)).is_err());
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let secret = Secret::parse("hunter2-hunter2").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
