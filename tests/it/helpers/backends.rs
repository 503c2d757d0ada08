//! The database a test server runs on: the backend chosen by
//! `HOOKRELAY_TEST_BACKEND`, and throw-away PostgreSQL databases created and
//! dropped with `psql`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Once};

/// Names the PostgreSQL server the PostgreSQL tests run on.
pub const POSTGRES_ENV: &str = "HOOKRELAY_TEST_POSTGRES_URL";
/// `sqlite` (the default) or `postgres`: the database every [`TestApp`] uses.
pub const BACKEND_ENV: &str = "HOOKRELAY_TEST_BACKEND";

/// The database a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `HOOKRELAY_TEST_POSTGRES_URL`, when set and not empty.
pub fn postgres_server_url() -> Option<String> {
    std::env::var(POSTGRES_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// The backend chosen by `HOOKRELAY_TEST_BACKEND` (`sqlite` when unset).
/// Panics on an unknown value, and on `postgres` without
/// `HOOKRELAY_TEST_POSTGRES_URL`: a run asked for PostgreSQL must not pass
/// silently on SQLite.
pub fn test_backend() -> Backend {
    let chosen = std::env::var(BACKEND_ENV).unwrap_or_default();
    match chosen.trim().to_ascii_lowercase().as_str() {
        "" | "sqlite" => Backend::Sqlite,
        "postgres" | "postgresql" => {
            if postgres_server_url().is_none() {
                panic!(
                    "{BACKEND_ENV}=postgres but {POSTGRES_ENV} is not set: name a PostgreSQL server \
                     the tests may create and drop databases on, e.g. \
                     {POSTGRES_ENV}=postgres://postgres@127.0.0.1:5432/test"
                );
            }
            Backend::Postgres
        }
        other => panic!("{BACKEND_ENV}={other:?} is not a backend; use sqlite or postgres"),
    }
}

/// Prints, once per test binary, which backend the suite runs on and whether
/// the PostgreSQL-only tests run. Written straight to stderr so the test
/// harness's output capture does not swallow it.
pub fn announce_backend() {
    static ONCE: Once = Once::new();
    let backend = test_backend();
    ONCE.call_once(|| {
        let server = postgres_server_url();
        let line = match (backend, &server) {
            (Backend::Postgres, Some(url)) => format!(
                "hookrelay tests: backend postgres: every TestApp gets a fresh database on {}",
                redact_url(url)
            ),
            (_, Some(url)) => format!(
                "hookrelay tests: backend sqlite ({BACKEND_ENV}=postgres runs the suite on \
                 PostgreSQL); PostgreSQL-only tests run on {}",
                redact_url(url)
            ),
            (_, None) => format!(
                "hookrelay tests: backend sqlite; {POSTGRES_ENV} is not set, so the PostgreSQL \
                 runs (postgres::*, cluster::*) are skipped"
            ),
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    });
}

/// `url` without the password of its user info.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('@');
    let path_start = rest.find('/').unwrap_or(rest.len());
    match host_start {
        Some(at) if at < path_start => {
            let user = &rest[..at];
            match user.split_once(':') {
                Some((name, _)) => format!("{}{name}:***{}", &url[..scheme_end], &rest[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// `args` with `--database-url url` in front, unless they name one already.
pub(super) fn with_database_url(url: &str, args: &[&str]) -> Vec<String> {
    let mut full = Vec::with_capacity(args.len() + 2);
    if !args.contains(&"--database-url") {
        full.push("--database-url".to_string());
        full.push(url.to_string());
    }
    full.extend(args.iter().map(|a| a.to_string()));
    full
}

/// A throw-away database, created and dropped with `psql`.
pub struct PostgresDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PostgresDb {
    /// A fresh database on the server named by `HOOKRELAY_TEST_POSTGRES_URL`;
    /// `None` when it is unset.
    pub fn create_from_env() -> Option<Arc<PostgresDb>> {
        postgres_server_url().map(|server| Arc::new(PostgresDb::create(&server)))
    }

    /// A fresh database on the server `server_url` names (any database in
    /// the URL is only used to find the server).
    pub fn create(server_url: &str) -> PostgresDb {
        let (without_query, query) = match server_url.split_once('?') {
            Some((u, q)) => (u, format!("?{q}")),
            None => (server_url, String::new()),
        };
        let scheme_end = without_query.find("://").map_or(0, |i| i + 3);
        let base = match without_query[scheme_end..].find('/') {
            Some(i) => &without_query[..scheme_end + i],
            None => without_query,
        };
        let name = format!(
            "hookrelay_it_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let admin_url = format!("{base}/postgres{query}");
        psql(&admin_url, &format!("CREATE DATABASE {name}"));
        PostgresDb {
            url: format!("{base}/{name}{query}"),
            admin_url,
            name,
        }
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("running psql for {sql:?}: {e}"));
    assert!(
        out.status.success(),
        "psql {url} -c {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
