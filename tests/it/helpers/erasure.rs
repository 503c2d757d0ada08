//! [`TestApp`] calls of erasure by data subject (`POST
//! /internal/v1/erasure`, `GET /internal/v1/erasure/{id}`), and the byte
//! search of a SQLite database's files.

use awc::http::Method;
use serde_json::Value;

use super::http::url_encode;
use super::{Body, Resp, TestApp};

impl TestApp {
    /// `POST /internal/v1/erasure` with a JSON body and extra headers.
    pub async fn erase(&self, body: Value, headers: &[(&str, &str)]) -> Resp {
        self.call(
            Method::POST,
            &self.internal("/internal/v1/erasure"),
            self.internal_bearer(),
            headers,
            Body::Json(body),
        )
        .await
    }

    /// `GET /internal/v1/erasure/{id}`
    pub async fn erasure(&self, id: &str) -> Resp {
        let url = self.internal(&format!("/internal/v1/erasure/{}", url_encode(id)));
        self.call(Method::GET, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    /// The files of its SQLite database that exist now: the database file
    /// and its write-ahead log.
    pub fn sqlite_files(&self) -> Vec<std::path::PathBuf> {
        let wal = std::path::PathBuf::from(format!("{}-wal", self.db_path.display()));
        [self.db_path.clone(), wal]
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    }
}

/// How many times `needle` occurs in the bytes of `file` (0 when it does
/// not exist).
pub fn occurrences_in_file(file: &std::path::Path, needle: &str) -> usize {
    let bytes = std::fs::read(file).unwrap_or_default();
    bytes
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}
