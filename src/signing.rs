//! Request signing: the platform's `X-Inspera-Signature` (hex HMAC-SHA1 of the
//! body) and the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`).
//! A `Secret` keys both HMACs once (signing clones the keyed state), so signing a delivery
//! costs two HMACs (one more while a rotated secret still signs) and nothing else. `Secrets` is a subscription's signing
//! key set: its current secret and, for a while after a rotation, the
//! previous one, which also signs until its window ends (decided per request
//! from the clock, so no timer has to drop it).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::NaiveDateTime;
use hmac::{Hmac, KeyInit, Mac};

/// Longest secret accepted, in characters.
pub const MAX_SECRET_LEN: usize = 1024;

/// Shortest new secret accepted: characters, or bytes of a `whsec_` key.
pub const MIN_SECRET_LEN: usize = 16;

/// A subscription's signing secret, validated, with both HMACs keyed once:
/// signing a request clones a keyed state instead of hashing the key's
/// padded blocks again.
#[derive(Clone)]
pub struct Secret {
    raw: String,
    /// Bytes of the Standard Webhooks key (`parse_new` checks its length).
    standard_key_len: usize,
    standard: Hmac<sha2::Sha256>,
    inspera: Hmac<sha1::Sha1>,
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
            standard_key_len: standard_key.len(),
            standard: Hmac::new_from_slice(&standard_key).expect("HMAC accepts keys of any length"),
            inspera: Hmac::new_from_slice(raw.as_bytes()).expect("HMAC accepts keys of any length"),
        })
    }

    /// Validates a secret a subscriber chooses now (create, rotation): as
    /// `parse`, and at least `MIN_SECRET_LEN` characters, or a `whsec_` key
    /// of at least `MIN_SECRET_LEN` bytes. Stored secrets are read with
    /// `parse`, so older short ones keep working.
    pub fn parse_new(raw: &str) -> Result<Secret, String> {
        let secret = Secret::parse(raw)?;
        if raw.starts_with("whsec_") && secret.standard_key_len < MIN_SECRET_LEN {
            return Err(format!(
                "`secret` is a `whsec_` key of {} bytes; use a key of at least {MIN_SECRET_LEN} random bytes",
                secret.standard_key_len
            ));
        }
        if raw.chars().count() < MIN_SECRET_LEN {
            return Err(format!(
                "`secret` is {} characters long; choose a random string of at least {MIN_SECRET_LEN} characters",
                raw.chars().count()
            ));
        }
        Ok(secret)
    }

    /// The secret as the subscriber gave it (what is stored).
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// `X-Inspera-Signature`: lowercase hex HMAC-SHA1 of the body, keyed with
    /// the secret's bytes.
    pub fn inspera_signature(&self, body: &[u8]) -> String {
        let mut mac = self.inspera.clone();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
    /// `{id}.{timestamp}.{body}`.
    pub fn standard_signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.standard.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// A subscription's signing keys: the current secret and, after a
/// rotation, the previous one with the end of its window.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub current: Secret,
    pub previous: Option<(Secret, NaiveDateTime)>,
}

impl From<Secret> for Secrets {
    fn from(current: Secret) -> Secrets {
        Secrets {
            current,
            previous: None,
        }
    }
}

impl Secrets {
    /// The key set as stored: the current secret, and the previous one
    /// when both it and the end of its window are there. A previous
    /// secret that no longer parses is left out (only the current signs).
    pub fn from_stored(
        current: &str,
        previous: Option<&str>,
        previous_until: Option<NaiveDateTime>,
    ) -> Result<Secrets, String> {
        let current = Secret::parse(current)?;
        let previous = previous
            .zip(previous_until)
            .and_then(|(raw, until)| Secret::parse(raw).ok().map(|s| (s, until)));
        Ok(Secrets { current, previous })
    }

    /// The secrets that sign at `now` (UTC), newest first.
    pub fn valid_at(&self, now: NaiveDateTime) -> impl Iterator<Item = &Secret> {
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(secret, _)| secret);
        std::iter::once(&self.current).chain(previous)
    }

    /// All signature headers of one request at `now`: `webhook-signature`
    /// with one signature per valid secret, separated by a space, newest
    /// first; `X-Inspera-Signature` with the current secret. Each HMAC is
    /// computed once.
    pub fn sign(
        &self,
        id: &str,
        timestamp: i64,
        body: &[u8],
        now: NaiveDateTime,
    ) -> SignatureHeaders {
        let signature = self
            .valid_at(now)
            .map(|s| s.standard_signature(id, timestamp, body))
            .collect::<Vec<_>>()
            .join(" ");
        SignatureHeaders {
            inspera: self.current.inspera_signature(body),
            id: id.to_string(),
            timestamp: timestamp.to_string(),
            signature,
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
    fn the_keyed_state_is_reused_untouched_by_earlier_signatures() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let first = secret.standard_signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        secret.standard_signature("other", 1, b"{}");
        secret.inspera_signature(b"something else");
        let headers = Secrets::from(secret.clone()).sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            chrono::Utc::now().naive_utc(),
        );
        assert_eq!(headers.signature, first);
        assert_eq!(first, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(headers.inspera, secret.inspera_signature(body));
        assert_eq!(
            (headers.id.as_str(), headers.timestamp.as_str()),
            ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330")
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
    fn new_secrets_shorter_than_sixteen_characters_or_key_bytes_are_refused() {
        assert!(
            Secret::parse_new("fifteen-chars-x")
                .unwrap_err()
                .contains("16")
        );
        assert!(Secret::parse_new("sixteen-chars-xx").is_ok());
        // 12 bytes of key, though the text is longer than 16 characters.
        let short_key = format!("whsec_{}", STANDARD.encode([7u8; 12]));
        assert!(Secret::parse_new(&short_key).unwrap_err().contains("bytes"));
        assert!(Secret::parse_new(&format!("whsec_{}", STANDARD.encode([7u8; 16]))).is_ok());
        // Stored short secrets are still read.
        assert!(Secret::parse("short").is_ok());
    }

    fn at(seconds: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(seconds, 0)
            .unwrap()
            .naive_utc()
    }

    fn rotated() -> Secrets {
        Secrets {
            current: Secret::parse("new-secret-0123456789").unwrap(),
            previous: Some((Secret::parse("old-secret-0123456789").unwrap(), at(100))),
        }
    }

    #[test]
    fn during_the_window_both_secrets_sign_newest_first() {
        let secrets = rotated();
        let valid: Vec<&str> = secrets.valid_at(at(99)).map(Secret::as_str).collect();
        assert_eq!(valid, ["new-secret-0123456789", "old-secret-0123456789"]);
        let headers = secrets.sign("id1", 5, b"{}", at(99));
        let new = secrets.current.standard_signature("id1", 5, b"{}");
        let old = secrets
            .previous
            .as_ref()
            .unwrap()
            .0
            .standard_signature("id1", 5, b"{}");
        assert_eq!(headers.signature, format!("{new} {old}"));
        assert_eq!(headers.inspera, secrets.current.inspera_signature(b"{}"));
    }

    #[test]
    fn after_the_window_only_the_current_secret_signs() {
        let secrets = rotated();
        let valid: Vec<&str> = secrets.valid_at(at(100)).map(Secret::as_str).collect();
        assert_eq!(valid, ["new-secret-0123456789"]);
        let headers = secrets.sign("id1", 5, b"{}", at(100));
        assert_eq!(
            headers.signature,
            secrets.current.standard_signature("id1", 5, b"{}")
        );
    }

    #[test]
    fn a_stored_key_set_without_a_window_end_has_only_the_current_secret() {
        let secrets =
            Secrets::from_stored("new-secret-0123456789", Some("old-secret-0123456789"), None)
                .unwrap();
        assert!(secrets.previous.is_none());
        let secrets = Secrets::from_stored("new", Some("old"), Some(at(100))).unwrap();
        assert_eq!(secrets.valid_at(at(1)).count(), 2);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let secret = Secret::parse("hunter2-hunter2").unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
