//! Test harness for the hookrelay integration tests.
//!
//! * [`TestApp`] runs the real `hookrelay` binary as a child process, on a
//!   SQLite file in its own temporary directory or, with
//!   `HOOKRELAY_TEST_BACKEND=postgres`, on a fresh PostgreSQL database (see
//!   [`test_backend`]); several may share one PostgreSQL database as cluster
//!   nodes ([`TestApp::spawn_node`]). It offers one async method per API
//!   call, each answering `(status, json body)`.
//! * [`Receiver`] is an actix-web server inside the test process that plays a
//!   subscriber endpoint: it records every request (headers, body, arrival
//!   time) and answers whatever the test tells it to, switchable at runtime.
//! * Signature helpers compute both signatures independently of the server;
//!   [`PromText`] parses `/metrics` strictly as Prometheus text.
//! * [`wait_until`] and friends poll for an outcome with a deadline; tests
//!   never sleep a fixed time to wait for something to happen.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Display;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use awc::http::Method;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};

/// How long the server may take to print its ready line.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Default deadline for "this should happen soon" (noisy 2-core machine).
pub const SOON: Duration = Duration::from_secs(30);

/// `(HTTP status, parsed JSON body)`; a body that is not JSON is given as
/// `Value::String(raw text)`, an empty body as `Value::Null`.
pub type Resp = (u16, Value);

/// The event types every test relies on.
pub const REVISION_STATUS_UPDATED: &str = "revision_status_updated";
pub const QTI_EXPORT_READY: &str = "qti_export_ready";
pub const CONFIRM_FINAL_GRADES: &str = "confirm_final_grades";

// ---------------------------------------------------------------------------
// Polling helpers
// ---------------------------------------------------------------------------

pub async fn sleep(d: Duration) {
    actix_rt::time::sleep(d).await;
}

/// Polls `cond` every 25 ms until it holds; panics naming `what` after `deadline`.
pub async fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        sleep(Duration::from_millis(25)).await;
    }
}

/// Like [`wait_until`] with an async condition (e.g. an API call).
pub async fn wait_until_async<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it yields `Some`, and returns that value.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Events and assertions
// ---------------------------------------------------------------------------

/// A minimal valid event.
pub fn event(name: &str, marketplace_id: i64, context_object_id: i64) -> Value {
    json!({
        "event": name,
        "marketplaceId": marketplace_id,
        "contextObjectId": context_object_id,
        "contextObjectType": "QUESTION_SET",
        "timestamp": "2021-06-29T18:16:06Z",
    })
}

/// An event with every optional field set.
pub fn full_event(name: &str, marketplace_id: i64, context_object_id: i64) -> Value {
    json!({
        "event": name,
        "marketplaceId": marketplace_id,
        "contextObjectId": context_object_id,
        "contextObjectType": "ASSESSMENT_RUN",
        "associatedObjectId": 987654,
        "associatedObjectType": "CANDIDATE",
        "triggeringUserId": 424242,
        "triggeringUserName": "Ada Lovelace (ÆØÅ \"quoted\")",
        "timestamp": "2021-06-29T18:16:06Z",
        "extraInfo": {"type": "String", "value": "Approved", "previousValue": "Draft"},
    })
}

/// Asserts `resp` is the JSON error shape `{"error": code, "message": text}`
/// with the given status; returns the message.
#[track_caller]
pub fn assert_json_error(resp: &Resp, status: u16, context: &str) -> String {
    let (got, body) = resp;
    assert_eq!(
        *got, status,
        "{context}: expected status {status}, got {got} with body {body}"
    );
    let code = body.get("error").and_then(Value::as_str);
    let message = body.get("message").and_then(Value::as_str);
    assert!(
        code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
        "{context}: expected a JSON error {{\"error\",\"message\"}}, got {body}"
    );
    message.unwrap().to_string()
}

/// The body as JSON text, for "never contains X" checks.
pub fn text_of(v: &Value) -> String {
    v.to_string()
}

// ---------------------------------------------------------------------------
// Signatures (computed independently of the server)
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// TestApp: the server as a child process
// ---------------------------------------------------------------------------

pub enum Body {
    Empty,
    Json(Value),
    Raw {
        content_type: Option<String>,
        bytes: Vec<u8>,
    },
}

pub struct TestApp {
    dir: Option<tempfile::TempDir>,
    pub dir_path: PathBuf,
    pub db_path: PathBuf,
    pub log_path: PathBuf,
    args: Vec<String>,
    allow_private: bool,
    child: Option<Child>,
    pub public_url: String,
    pub internal_url: String,
    internal_token: Option<String>,
    client: awc::Client,
    starts: u32,
    /// Pass `--database-url <dir>/hookrelay.db` (false when `args` name a PostgreSQL database).
    sqlite: bool,
    /// The PostgreSQL database this server runs on (shared by the nodes of a
    /// cluster test); dropped with its last holder unless a test failed.
    postgres: Option<Arc<PostgresDb>>,
}

impl TestApp {
    /// A server with `--allow-private-endpoints` (receivers live on 127.0.0.1).
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// A server with `--allow-private-endpoints` plus `args`.
    pub async fn spawn_with(args: &[&str]) -> TestApp {
        Self::launch(true, args).await
    }

    /// A server WITHOUT `--allow-private-endpoints`, plus `args`.
    pub async fn spawn_refusing_private_endpoints(args: &[&str]) -> TestApp {
        Self::launch(false, args).await
    }

    /// A server (with `--allow-private-endpoints` plus `args`) on a fresh
    /// PostgreSQL database created on the server named by
    /// `HOOKRELAY_TEST_POSTGRES_URL`; `None` when that variable is unset.
    pub async fn spawn_on_postgres(args: &[&str]) -> Option<TestApp> {
        let db = PostgresDb::create_from_env()?;
        Some(Self::spawn_node(&db, args).await)
    }

    /// A server (with `--allow-private-endpoints` plus `args`) on the given
    /// PostgreSQL database, which other servers may share (a cluster node:
    /// give each one its own `--node-id`).
    pub async fn spawn_node(db: &Arc<PostgresDb>, args: &[&str]) -> TestApp {
        announce_backend();
        let mut app = Self::unstarted(
            true,
            &with_database_url(&db.url, args),
            Some(db.clone()),
            false,
        );
        app.start().await;
        app
    }

    /// A server (with `--allow-private-endpoints` plus `args`) on the SQLite
    /// file `path`, wherever it is (a small file system, say).
    pub async fn spawn_on_sqlite_file(path: &std::path::Path, args: &[&str]) -> TestApp {
        let mut full = vec!["--database-url", path.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        let mut app = Self::unstarted(true, &full, None, false);
        app.db_path = path.to_path_buf();
        app.start().await;
        app
    }

    /// A server on the backend chosen by `HOOKRELAY_TEST_BACKEND`
    /// (see [`test_backend`]): its own SQLite file, or its own fresh
    /// PostgreSQL database.
    async fn launch(allow_private: bool, args: &[&str]) -> TestApp {
        announce_backend();
        let mut app = match test_backend() {
            Backend::Sqlite => Self::unstarted(allow_private, args, None, true),
            Backend::Postgres => {
                let db = PostgresDb::create_from_env()
                    .unwrap_or_else(|| panic!("{BACKEND_ENV}=postgres needs {POSTGRES_ENV}"));
                let args = with_database_url(&db.url, args);
                Self::unstarted(allow_private, &args, Some(db), false)
            }
        };
        app.start().await;
        app
    }

    /// The database this server runs on.
    pub fn backend(&self) -> Backend {
        if self.postgres.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The PostgreSQL database this server runs on, if any.
    pub fn postgres_db(&self) -> Option<&Arc<PostgresDb>> {
        self.postgres.as_ref()
    }

    fn unstarted<S: AsRef<str>>(
        allow_private: bool,
        args: &[S],
        postgres: Option<Arc<PostgresDb>>,
        sqlite: bool,
    ) -> TestApp {
        let dir = tempfile::Builder::new()
            .prefix("hookrelay-it-")
            .tempdir()
            .expect("tempdir");
        let dir_path = dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.as_ref().to_string()).collect();
        let internal_token = args
            .iter()
            .position(|a| a == "--internal-token")
            .and_then(|i| args.get(i + 1).cloned());
        TestApp {
            db_path: dir_path.join("hookrelay.db"),
            log_path: dir_path.join("server.log"),
            dir: Some(dir),
            dir_path,
            args,
            allow_private,
            child: None,
            public_url: String::new(),
            internal_url: String::new(),
            internal_token,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(120))
                .disable_redirects()
                .finish(),
            starts: 0,
            sqlite,
            postgres,
        }
    }

    /// Whether the next `start` passes `--allow-private-endpoints` (a
    /// restart on the same database with the option changed).
    pub fn set_allow_private_endpoints(&mut self, allow: bool) {
        self.allow_private = allow;
    }

    /// Starts the server on the same database file (after `kill9`/`sigterm`).
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server.log");
        let _ = writeln!(log, "===== hookrelay start #{} =====", self.starts);
        let stderr = log.try_clone().expect("clone log handle");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookrelay"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HOOKRELAY_") {
                cmd.env_remove(key);
            }
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.current_dir(&self.dir_path).arg("serve");
        if self.sqlite {
            cmd.arg("--database-url").arg(&self.db_path);
        }
        cmd.args([
            "--public-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
        ]);
        if self.allow_private {
            cmd.arg("--allow-private-endpoints");
        }
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().expect("spawn hookrelay");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);

        let (tx, rx) = mpsc::channel::<Option<String>>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "[stdout] {line}");
                if line.contains("hookrelay listening")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(Some(line));
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(None);
            }
        });

        let started = Instant::now();
        let line = loop {
            match rx.try_recv() {
                Ok(Some(line)) => break line,
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => {
                    let status = self
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten());
                    panic!(
                        "hookrelay exited (status {status:?}) before printing its ready line\n{}",
                        self.log_tail(80)
                    );
                }
                Err(mpsc::TryRecvError::Empty) => {
                    if started.elapsed() > READY_DEADLINE {
                        panic!(
                            "hookrelay did not print its ready line within {READY_DEADLINE:?}\n{}",
                            self.log_tail(80)
                        );
                    }
                    sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("ready line {line:?} lacks {name}"))
                .trim_end_matches('/')
                .to_string()
        };
        self.public_url = field("public=");
        self.internal_url = field("internal=");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// SIGKILL (no chance to clean up), then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `deadline` for the exit. `None` if the
    /// server was still running at the deadline (it is then SIGKILLed).
    pub async fn sigterm(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take().expect("server running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(ok.success(), "kill -TERM {} failed", child.id());
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            sleep(Duration::from_millis(25)).await;
        }
    }

    /// Graceful restart on the same database file (SIGTERM, then start).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.sigterm(Duration::from_secs(30)).await;
            assert!(
                status.is_some(),
                "server did not stop on SIGTERM within 30 s\n{}",
                self.log_tail(40)
            );
        }
        self.start().await;
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of {} ---\n{}",
            all.len() - from,
            self.log_path.display(),
            all[from..].join("\n")
        )
    }

    // ---- generic HTTP -----------------------------------------------------

    pub fn public(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }

    pub fn internal(&self, path: &str) -> String {
        format!("{}{}", self.internal_url, path)
    }

    /// One HTTP call; `bearer` adds `Authorization: Bearer …`.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        let (status, _, bytes) = self.call_raw(method, url, bearer, headers, body).await;
        (status, parse_body(&bytes))
    }

    /// One HTTP call answering `(status, content type, raw body)`.
    pub async fn call_raw(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> (u16, String, bytes::Bytes) {
        let what = format!("{method} {url}");
        let mut req = self.client.request(method, url);
        if let Some(t) = bearer {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Body::Empty => req.send().await,
            Body::Json(v) => req.send_json(&v).await,
            Body::Raw {
                content_type,
                bytes,
            } => {
                if let Some(ct) = content_type {
                    req = req.insert_header(("Content-Type", ct));
                }
                req.send_body(bytes).await
            }
        };
        let mut res = sent.unwrap_or_else(|e| panic!("{what} failed: {e}\n{}", self.log_tail(30)));
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = res
            .body()
            .limit(256 << 20)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
        (status, content_type, bytes)
    }

    fn internal_bearer(&self) -> Option<&str> {
        self.internal_token.as_deref()
    }

    // ---- public API -------------------------------------------------------

    pub async fn event_types(&self, token: &str) -> Resp {
        self.call(
            Method::GET,
            &self.public("/v1/subscription/events"),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    pub async fn subscribe(&self, token: &str, event: &str, endpoint: &str, secret: &str) -> Resp {
        self.subscribe_json(
            token,
            json!({"event": event, "endpoint": endpoint, "secret": secret}),
        )
        .await
    }

    /// Subscribes and asserts 201; returns the subscriptionId.
    #[track_caller]
    pub fn subscribe_ok<'a>(
        &'a self,
        token: &'a str,
        event: &'a str,
        endpoint: &'a str,
        secret: &'a str,
    ) -> impl Future<Output = i64> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let (status, body) = self.subscribe(token, event, endpoint, secret).await;
            assert_eq!(
                status, 201,
                "subscribe {event} -> {endpoint} (called at {caller}) answered {status}: {body}"
            );
            body["subscriptionId"]
                .as_i64()
                .unwrap_or_else(|| panic!("subscriptionId is not an integer in {body}"))
        }
    }

    pub async fn subscribe_json(&self, token: &str, body: Value) -> Resp {
        self.call(
            Method::POST,
            &self.public("/v1/subscription"),
            Some(token),
            &[],
            Body::Json(body),
        )
        .await
    }

    pub async fn subscribe_raw(
        &self,
        token: &str,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let url = self.public("/v1/subscription");
        self.post_raw(&url, Some(token), content_type, bytes).await
    }

    pub async fn list_subscriptions(&self, token: &str) -> Resp {
        self.call(
            Method::GET,
            &self.public("/v1/subscription"),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    /// The caller's subscriptions (asserts 200).
    pub async fn subscriptions_of(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.list_subscriptions(token).await;
        assert_eq!(status, 200, "list subscriptions answered {status}: {body}");
        body["subscriptions"]
            .as_array()
            .unwrap_or_else(|| panic!("no subscriptions array in {body}"))
            .clone()
    }

    pub async fn get_subscription(&self, token: &str, id: impl Display) -> Resp {
        self.call(
            Method::GET,
            &self.public(&format!("/v1/subscription/{id}")),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    pub async fn delete_subscription(&self, token: &str, id: impl Display) -> Resp {
        self.call(
            Method::DELETE,
            &self.public(&format!("/v1/subscription/{id}")),
            Some(token),
            &[],
            Body::Empty,
        )
        .await
    }

    // ---- internal API -----------------------------------------------------

    pub async fn create_token(&self, body: Value) -> Resp {
        self.call(
            Method::POST,
            &self.internal("/internal/v1/tokens"),
            self.internal_bearer(),
            &[],
            Body::Json(body),
        )
        .await
    }

    /// A fresh API token for (marketplaceId, userId); asserts 201.
    pub async fn token(&self, marketplace_id: i64, user_id: i64) -> String {
        let (status, body) = self
            .create_token(json!({"marketplaceId": marketplace_id, "userId": user_id}))
            .await;
        assert_eq!(status, 201, "token creation answered {status}: {body}");
        body["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {body}"))
            .to_string()
    }

    pub async fn push_event(&self, event: &Value) -> Resp {
        self.post_internal_json("/internal/v1/events", &[], event.clone())
            .await
    }

    /// Pushes and asserts 202; returns the body.
    pub async fn push_event_ok(&self, event: &Value) -> Value {
        let (status, body) = self.push_event(event).await;
        assert_eq!(status, 202, "push {event} answered {status}: {body}");
        body
    }

    pub async fn push_event_with_idempotency_key(&self, event: &Value, key: &str) -> Resp {
        let headers = [("Idempotency-Key", key)];
        self.post_internal_json("/internal/v1/events", &headers, event.clone())
            .await
    }

    /// POSTs JSON, with extra headers, to an internal path.
    async fn post_internal_json(&self, path: &str, headers: &[(&str, &str)], body: Value) -> Resp {
        let url = self.internal(path);
        self.call(
            Method::POST,
            &url,
            self.internal_bearer(),
            headers,
            Body::Json(body),
        )
        .await
    }

    pub async fn push_event_raw(
        &self,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        self.post_internal_raw("/internal/v1/events", content_type, bytes)
            .await
    }

    /// POSTs raw bytes (with an optional Content-Type) to an internal path.
    async fn post_internal_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let url = self.internal(path);
        self.post_raw(&url, self.internal_bearer(), content_type, bytes)
            .await
    }

    /// POSTs raw bytes (with an optional Content-Type) to `url`.
    async fn post_raw(
        &self,
        url: &str,
        bearer: Option<&str>,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let body = Body::Raw {
            content_type: content_type.map(str::to_string),
            bytes: bytes.into(),
        };
        self.call(Method::POST, url, bearer, &[], body).await
    }

    pub async fn push_batch(&self, events: &[Value]) -> Resp {
        let body = Value::Array(events.to_vec());
        self.post_internal_json("/internal/v1/events/batch", &[], body)
            .await
    }

    pub async fn push_batch_raw(
        &self,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        self.post_internal_raw("/internal/v1/events/batch", content_type, bytes)
            .await
    }

    /// `GET /internal/v1/dead-letters?…`
    pub async fn dead_letters(&self, query: &[(&str, String)]) -> Resp {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let url = if qs.is_empty() {
            self.internal("/internal/v1/dead-letters")
        } else {
            self.internal(&format!("/internal/v1/dead-letters?{}", qs.join("&")))
        };
        self.call(Method::GET, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    pub async fn replay_dead_letter(&self, id: impl Display) -> Resp {
        let url = self.internal(&format!(
            "/internal/v1/dead-letters/{}/replay",
            url_encode(&id.to_string())
        ));
        self.call(Method::POST, &url, self.internal_bearer(), &[], Body::Empty)
            .await
    }

    /// `GET /metrics` on the internal listener: `(status, content type, text)`.
    pub async fn metrics(&self) -> (u16, String, String) {
        let (status, ct, bytes) = self
            .call_raw(
                Method::GET,
                &self.internal("/metrics"),
                self.internal_bearer(),
                &[],
                Body::Empty,
            )
            .await;
        (status, ct, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn endpoints(&self) -> Resp {
        self.call(
            Method::GET,
            &self.internal("/internal/v1/endpoints"),
            self.internal_bearer(),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /internal/v1/endpoints?limit=&cursor=`.
    pub async fn endpoints_page(&self, limit: Option<i64>, cursor: Option<&str>) -> Resp {
        let mut qs = Vec::new();
        if let Some(l) = limit {
            qs.push(format!("limit={l}"));
        }
        if let Some(c) = cursor {
            qs.push(format!("cursor={}", url_encode(c)));
        }
        let path = if qs.is_empty() {
            "/internal/v1/endpoints".to_string()
        } else {
            format!("/internal/v1/endpoints?{}", qs.join("&"))
        };
        self.call(
            Method::GET,
            &self.internal(&path),
            self.internal_bearer(),
            &[],
            Body::Empty,
        )
        .await
    }

    /// Every endpoint, following `nextCursor` (asserts 200 on each page).
    pub async fn all_endpoints(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let (status, body) = self.endpoints_page(Some(100), cursor.as_deref()).await;
            assert_eq!(
                status, 200,
                "GET /internal/v1/endpoints answered {status}: {body}"
            );
            let page = body["endpoints"]
                .as_array()
                .unwrap_or_else(|| panic!("no endpoints array in {body}"));
            all.extend(page.iter().cloned());
            match &body["nextCursor"] {
                Value::Null => return all,
                Value::String(c) => cursor = Some(c.clone()),
                other => cursor = Some(other.to_string()),
            }
        }
        panic!("/internal/v1/endpoints kept answering a nextCursor for 1000 pages");
    }

    /// The listed endpoint whose `url` is `url`, if any.
    pub async fn endpoint_with_url(&self, url: &str) -> Option<Value> {
        let want = url.trim_end_matches('/');
        self.all_endpoints()
            .await
            .into_iter()
            .find(|e| e["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(want))
    }

    /// The id of the endpoint with this URL, as `/metrics` labels it.
    pub async fn endpoint_id(&self, url: &str) -> String {
        let e = self
            .endpoint_with_url(url)
            .await
            .unwrap_or_else(|| panic!("{url} is not in /internal/v1/endpoints"));
        match &e["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("endpoint id {other} is neither a number nor a string in {e}"),
        }
    }

    /// `GET /metrics`, asserted 200 and parsed strictly as Prometheus text.
    pub async fn scrape(&self) -> PromText {
        let (status, content_type, text) = self.metrics().await;
        assert_eq!(status, 200, "GET /metrics answered {status}: {text}");
        assert!(
            content_type.starts_with("text/plain"),
            "/metrics Content-Type {content_type:?} is not Prometheus text"
        );
        PromText::parse(&text)
            .unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}\n{text}"))
    }

    pub async fn internal_event_types(&self) -> Resp {
        self.call(
            Method::GET,
            &self.internal("/internal/v1/event-types"),
            self.internal_bearer(),
            &[],
            Body::Empty,
        )
        .await
    }

    pub async fn put_event_type(&self, name: &str, body: Value) -> Resp {
        self.call(
            Method::PUT,
            &self.internal(&format!("/internal/v1/event-types/{}", url_encode(name))),
            self.internal_bearer(),
            &[],
            Body::Json(body),
        )
        .await
    }

    pub async fn health(&self) -> Resp {
        self.call(
            Method::GET,
            &self.internal("/health"),
            None,
            &[],
            Body::Empty,
        )
        .await
    }

    /// Asserts /health answers 200 `{"status":"ok"}`.
    pub async fn assert_healthy(&self, context: &str) {
        let (status, body) = self.health().await;
        assert_eq!(status, 200, "{context}: /health answered {status}: {body}");
        assert_eq!(body["status"], "ok", "{context}: /health body {body}");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(150));
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("(test failed: kept {} for inspection)", kept.display());
            }
            if let Some(db) = self.postgres.take() {
                eprintln!(
                    "(test failed: kept PostgreSQL database {} for inspection)",
                    redact_url(&db.url)
                );
                // Leaks this holder's reference: the database is never dropped.
                std::mem::forget(db);
            }
        }
    }
}

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
fn with_database_url(url: &str, args: &[&str]) -> Vec<String> {
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

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Receiver: a subscriber endpoint in the test process
// ---------------------------------------------------------------------------

/// One request as the receiver saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn is_verification(&self) -> bool {
        self.json()["event"] == "verification"
    }

    pub fn webhook_id(&self) -> String {
        self.header("webhook-id").unwrap_or_default().to_string()
    }

    pub fn context_object_id(&self) -> Option<i64> {
        self.json()["contextObjectId"].as_i64()
    }
}

/// What the receiver answers to one request.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    /// Sent as `Retry-After: <seconds>` when set.
    pub retry_after: Option<u32>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
    pub fn delayed(delay: Duration, status: u16) -> Reply {
        Reply {
            status,
            delay,
            retry_after: None,
        }
    }
    /// `status` at once with `Retry-After: <seconds>`.
    pub fn retry_after(status: u16, seconds: u32) -> Reply {
        Reply {
            retry_after: Some(seconds),
            ..Reply::status(status)
        }
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Replies used first, one per request, before falling back to `default`.
    script: Mutex<(VecDeque<Reply>, Reply)>,
    /// When set, verification calls get this answer whatever the script says
    /// (an endpoint that is up but refuses particular deliveries).
    verification_reply: Mutex<Option<Reply>>,
}

pub struct Receiver {
    pub port: u16,
    /// The host part of its URLs: `127.0.0.1`, or `[::1]`.
    host: String,
    shared: Arc<Shared>,
    handle: actix_web::dev::ServerHandle,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    /// A receiver answering 200 at once.
    pub async fn start() -> Receiver {
        Self::start_with(Reply::status(200)).await
    }

    pub async fn start_with(default: Reply) -> Receiver {
        Self::start_on("127.0.0.1", default).await
    }

    /// A receiver answering 200 at once on the IPv6 loopback address, its
    /// URLs `http://[::1]:port/...`.
    pub async fn start_on_ipv6_loopback() -> Receiver {
        Self::start_on("::1", Reply::status(200)).await
    }

    async fn start_on(ip: &'static str, default: Reply) -> Receiver {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new((VecDeque::new(), default)),
            verification_reply: Mutex::new(None),
        });
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(record))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .bind((ip, 0))
        .expect("bind receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        let task = actix_rt::spawn(server);
        Receiver {
            port,
            host: if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            },
            shared,
            handle,
            task,
        }
    }

    /// The endpoint URL to subscribe with.
    pub fn url(&self) -> String {
        self.url_at("/hook")
    }

    /// Another endpoint URL on this receiver (`path` starts with `/`): one
    /// receiver can play several endpoints, told apart by [`Recorded::path`].
    pub fn url_at(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.host, self.port)
    }

    /// The deliveries (not verification calls) that came to `path`.
    pub fn deliveries_at(&self, path: &str) -> Vec<Recorded> {
        self.deliveries()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// From now on answer `status` immediately (clears any script).
    pub fn set_status(&self, status: u16) {
        self.set_reply(Reply::status(status));
    }

    /// From now on answer `reply` (clears any script).
    pub fn set_reply(&self, reply: Reply) {
        let mut s = self.shared.script.lock().unwrap();
        s.0.clear();
        s.1 = reply;
    }

    /// Answer verification calls with `reply`, apart from the script.
    pub fn set_verification_reply(&self, reply: Reply) {
        *self.shared.verification_reply.lock().unwrap() = Some(reply);
    }

    /// Answer the `first` replies in order, then `then` for everything after.
    pub fn set_script(&self, first: Vec<Reply>, then: Reply) {
        let mut s = self.shared.script.lock().unwrap();
        s.0 = first.into();
        s.1 = then;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    pub fn verifications(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_verification())
            .collect()
    }

    /// Every request that is not a verification call.
    pub fn deliveries(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| !r.is_verification())
            .collect()
    }

    pub fn delivery_count(&self) -> usize {
        self.deliveries().len()
    }

    pub fn delivered_context_ids(&self) -> HashSet<i64> {
        self.deliveries()
            .iter()
            .filter_map(|r| r.context_object_id())
            .collect()
    }

    pub fn deliveries_of(&self, context_object_id: i64) -> Vec<Recorded> {
        self.deliveries()
            .into_iter()
            .filter(|r| r.context_object_id() == Some(context_object_id))
            .collect()
    }

    /// Waits until at least `n` deliveries arrived; returns all of them.
    pub async fn wait_for_deliveries(&self, n: usize, deadline: Duration) -> Vec<Recorded> {
        wait_until(
            deadline,
            &format!(
                "receiver :{} has {n} deliveries (has {})",
                self.port,
                self.delivery_count()
            ),
            || self.delivery_count() >= n,
        )
        .await;
        self.deliveries()
    }

    /// Waits until a delivery with this contextObjectId arrived; returns it.
    pub async fn wait_for_context_id(
        &self,
        context_object_id: i64,
        deadline: Duration,
    ) -> Recorded {
        wait_until(
            deadline,
            &format!(
                "receiver :{} got contextObjectId {context_object_id}",
                self.port
            ),
            || !self.deliveries_of(context_object_id).is_empty(),
        )
        .await;
        self.deliveries_of(context_object_id).remove(0)
    }

    /// Waits until every id in `ids` was delivered at least once.
    pub async fn wait_for_context_ids(&self, ids: &HashSet<i64>, deadline: Duration) {
        let start = Instant::now();
        loop {
            let got = self.delivered_context_ids();
            let missing = ids.difference(&got).count();
            if missing == 0 {
                return;
            }
            if start.elapsed() > deadline {
                let mut sample: Vec<_> = ids.difference(&got).copied().collect();
                sample.sort();
                sample.truncate(20);
                panic!(
                    "timed out after {deadline:?}: receiver :{} is missing {missing} of {} contextObjectIds, e.g. {sample:?}",
                    self.port,
                    ids.len()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Stop accepting; dropping the server future shuts the workers down.
        drop(self.handle.stop(false));
        self.task.abort();
    }
}

async fn record(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let recorded = Recorded {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
    };
    let verification = recorded.is_verification();
    shared.requests.lock().unwrap().push(recorded);
    let fixed = *shared.verification_reply.lock().unwrap();
    let reply = if let (true, Some(fixed)) = (verification, fixed) {
        fixed
    } else {
        let mut s = shared.script.lock().unwrap();
        let default = s.1;
        s.0.pop_front().unwrap_or(default)
    };
    if !reply.delay.is_zero() {
        actix_rt::time::sleep(reply.delay).await;
    }
    let status = actix_web::http::StatusCode::from_u16(reply.status).expect("valid status");
    let mut response = HttpResponse::build(status);
    if let Some(seconds) = reply.retry_after {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    response
        .content_type("application/json")
        .body(format!("{{\"status\":{}}}", reply.status))
}

/// A URL on 127.0.0.1 where nothing listens (connection refused).
pub fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/hook")
}

/// A unique-ish id so tests sharing nothing still use distinct values.
pub fn unique_i64() -> i64 {
    (uuid::Uuid::new_v4().as_u128() as i64 & 0x0000_ffff_ffff_ffff).max(1)
}

// ---------------------------------------------------------------------------
// Prometheus text format (a strict parser; no crate needed)
// ---------------------------------------------------------------------------

/// A series' labels as `(name, value)` pairs.
pub type Labels = Vec<(String, String)>;

/// One sample line: `name{label="value",…} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn matches(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name && labels.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// A scrape of Prometheus text format 0.0.4, checked strictly by
/// [`PromText::parse`].
#[derive(Clone, Debug, Default)]
pub struct PromText {
    pub samples: Vec<Sample>,
    /// Family name → `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub types: HashMap<String, String>,
    pub help: HashMap<String, String>,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value: a decimal float, `+Inf`, `-Inf` or `NaN`.
fn parse_prom_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => return Some(f64::INFINITY),
        "-Inf" => return Some(f64::NEG_INFINITY),
        "NaN" => return Some(f64::NAN),
        _ => {}
    }
    // Rust also reads "inf", "infinity" and "nan" in any case: not Prometheus.
    let plain = s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !plain || s.is_empty() {
        return None;
    }
    s.parse().ok()
}

/// Labels inside `{…}` (without the braces): `a="x",b="y"`, optional
/// trailing comma, values escaped with `\\`, `\"` and `\n` only.
fn parse_labels(src: &str) -> Result<Vec<(String, String)>, String> {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut rest = src;
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(labels);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("label without `=` in {{{src}}}"))?;
        let name = rest[..eq].trim_end_matches(' ');
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?} in {{{src}}}"));
        }
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name:?} repeated in {{{src}}}"));
        }
        rest = rest[eq + 1..].trim_start_matches(' ');
        let mut chars = rest.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name:?} value is not quoted in {{{src}}}"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i);
                    break;
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => {
                        return Err(format!(
                            "bad escape \\{} in label {name:?} of {{{src}}}",
                            other.map(String::from).unwrap_or_default()
                        ));
                    }
                },
                '\n' => return Err(format!("raw newline in label {name:?}")),
                c => value.push(c),
            }
        }
        let end =
            end.ok_or_else(|| format!("unterminated value of label {name:?} in {{{src}}}"))?;
        labels.push((name.to_string(), value));
        rest = rest[end + 1..].trim_start_matches(' ');
        if rest.is_empty() {
            return Ok(labels);
        }
        rest = rest
            .strip_prefix(',')
            .ok_or_else(|| format!("expected `,` after label {name:?} in {{{src}}}"))?;
    }
}

/// Splits `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or_else(|| "a sample line without a value".to_string())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        // The closing brace is the first `}` outside a quoted value.
        let body = &line[name_end + 1..];
        let (mut in_quotes, mut escaped, mut close) = (false, false, None);
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(|| "unclosed `{`".to_string())?;
        (parse_labels(&body[..close])?, &body[close + 1..])
    } else {
        (Vec::new(), &line[name_end..])
    };
    if !rest.starts_with([' ', '\t']) {
        return Err("no blank between the series and its value".into());
    }
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let value = match fields.as_slice() {
        [v] => *v,
        [v, ts] => {
            ts.parse::<i64>()
                .map_err(|_| format!("timestamp {ts:?} is not integer milliseconds"))?;
            *v
        }
        _ => return Err(format!("expected `value [timestamp]`, got {rest:?}")),
    };
    let value = parse_prom_float(value).ok_or_else(|| format!("value {value:?} is not a float"))?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

impl PromText {
    /// Parses `text` strictly: `# HELP name text`, `# TYPE name type` (once
    /// per family, before its samples), other comments, blank lines, and
    /// samples with a float value; each family's lines form one group; no
    /// series appears twice; counters are non-negative; a histogram's
    /// buckets carry `le`, grow with it, end at `+Inf` and agree with
    /// `_count`. The error names the offending line.
    pub fn parse(text: &str) -> Result<PromText, String> {
        let mut out = PromText::default();
        let mut seen_series: HashSet<String> = HashSet::new();
        let mut closed_families: HashSet<String> = HashSet::new();
        let mut current_family: Option<String> = None;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the text does not end with a newline".into());
        }
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if line.trim().is_empty() {
                continue;
            }
            let family_of_line;
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.trim_start().splitn(3, ' ').collect();
                match words.as_slice() {
                    ["HELP", name, ..] | ["TYPE", name, ..] if !is_metric_name(name) => {
                        return Err(at(format!("bad metric name {name:?}")));
                    }
                    ["HELP", name, help] => {
                        let mut chars = help.chars();
                        while let Some(c) = chars.next() {
                            if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                                return Err(at(
                                    "a HELP text escapes something but \\\\ or \\n".into()
                                ));
                            }
                        }
                        if out
                            .help
                            .insert(name.to_string(), help.to_string())
                            .is_some()
                        {
                            return Err(at(format!("second HELP for {name}")));
                        }
                        family_of_line = Some(name.to_string());
                    }
                    ["HELP", name] => {
                        out.help.insert(name.to_string(), String::new());
                        family_of_line = Some(name.to_string());
                    }
                    ["TYPE", name, kind] => {
                        if !matches!(
                            *kind,
                            "counter" | "gauge" | "histogram" | "summary" | "untyped"
                        ) {
                            return Err(at(format!("unknown type {kind:?}")));
                        }
                        if out
                            .types
                            .insert(name.to_string(), kind.to_string())
                            .is_some()
                        {
                            return Err(at(format!("second TYPE for {name}")));
                        }
                        if out
                            .samples
                            .iter()
                            .any(|s| family_name(&out.types, &s.name) == *name)
                        {
                            return Err(at(format!("TYPE of {name} after its samples")));
                        }
                        family_of_line = Some(name.to_string());
                    }
                    ["TYPE", ..] => return Err(at("TYPE without a type".into())),
                    _ => continue, // any other comment
                }
            } else {
                let sample = parse_sample(line).map_err(at)?;
                let family = family_name(&out.types, &sample.name);
                if out.types.get(&family).map(String::as_str) == Some("counter")
                    && (sample.value.is_nan() || sample.value < 0.0)
                {
                    return Err(at("a counter is negative or NaN".into()));
                }
                let mut key_labels = sample.labels.clone();
                key_labels.sort();
                let key = format!("{}{key_labels:?}", sample.name);
                if !seen_series.insert(key) {
                    return Err(at("the same series twice".into()));
                }
                family_of_line = Some(family);
                out.samples.push(sample);
            }
            if let Some(family) = family_of_line
                && current_family.as_deref() != Some(family.as_str())
            {
                if closed_families.contains(&family) {
                    return Err(at(format!("the lines of {family} are not one group")));
                }
                if let Some(prev) = current_family.replace(family) {
                    closed_families.insert(prev);
                }
            }
        }
        out.check_histograms()?;
        Ok(out)
    }

    fn check_histograms(&self) -> Result<(), String> {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let bucket = format!("{family}_bucket");
            let count = format!("{family}_count");
            let sum = format!("{family}_sum");
            // Series key (labels without `le`) → [(le, value)].
            let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
            for s in self.samples.iter().filter(|s| s.name == bucket) {
                let le = s
                    .label("le")
                    .ok_or_else(|| format!("{bucket} sample without `le`: {s:?}"))?;
                let le = parse_prom_float(le).ok_or_else(|| format!("{bucket} le {le:?}"))?;
                let mut key: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| k != "le")
                    .cloned()
                    .collect();
                key.sort();
                groups.entry(key).or_default().push((le, s.value));
            }
            for (key, mut buckets) in groups {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                    return Err(format!("{bucket}{key:?}: buckets shrink: {buckets:?}"));
                }
                let last = buckets.last().expect("a group has a bucket");
                if last.0 != f64::INFINITY {
                    return Err(format!("{bucket}{key:?} has no le=\"+Inf\" bucket"));
                }
                let labels: Vec<(&str, &str)> =
                    key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let counted = self.value(&count, &labels);
                if counted != Some(last.1) {
                    return Err(format!(
                        "{count}{key:?} is {counted:?} but the +Inf bucket holds {}",
                        last.1
                    ));
                }
                if self.value(&sum, &labels).is_none() {
                    return Err(format!("{sum}{key:?} is missing"));
                }
            }
        }
        Ok(())
    }

    /// The samples named `name` carrying every label in `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.matches(name, labels))
    }

    /// The value of the one series named `name` with exactly these labels
    /// (ignoring `node`); `None` when absent. Panics when several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self
            .find(name, labels)
            .filter(|s| {
                s.labels
                    .iter()
                    .all(|(k, _)| k == "node" || labels.iter().any(|(l, _)| l == k))
            })
            .collect();
        match found.as_slice() {
            [] => None,
            [one] => Some(one.value),
            many => panic!("{} series match {name}{labels:?}: {many:?}", many.len()),
        }
    }

    /// The sum over every series named `name` carrying `labels` (0 when none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).map(|s| s.value).sum()
    }
}

/// The family a sample belongs to: its name, or the histogram/summary whose
/// `_bucket`, `_sum` or `_count` it is.
fn family_name(types: &HashMap<String, String>, sample: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && let Some(kind) = types.get(base)
            && (kind == "histogram" || (kind == "summary" && suffix != "_bucket"))
        {
            return base.to_string();
        }
    }
    sample.to_string()
}
