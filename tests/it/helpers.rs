//! Test harness for the hookrelay integration tests.
//!
//! * [`TestApp`] runs the real `hookrelay` binary as a child process on a
//!   database file in its own temporary directory, and offers one async method
//!   per API call, each answering `(status, json body)`.
//! * [`Receiver`] is an actix-web server inside the test process that plays a
//!   subscriber endpoint: it records every request (headers, body, arrival
//!   time) and answers whatever the test tells it to, switchable at runtime.
//! * Signature helpers compute both signatures independently of the server.
//! * [`wait_until`] and friends poll for an outcome with a deadline; tests
//!   never sleep a fixed time to wait for something to happen.
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::fmt::Display;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
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
    postgres: Option<PostgresDb>,
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
        let server = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
        let db = PostgresDb::create(&server);
        let url = db.url.clone();
        let mut full: Vec<&str> = vec!["--database-url", &url];
        full.extend_from_slice(args);
        let mut app = Self::unstarted(true, &full, Some(db), false);
        app.start().await;
        Some(app)
    }

    async fn launch(allow_private: bool, args: &[&str]) -> TestApp {
        let mut app = Self::unstarted(allow_private, args, None, true);
        app.start().await;
        app
    }

    fn unstarted(
        allow_private: bool,
        args: &[&str],
        postgres: Option<PostgresDb>,
        sqlite: bool,
    ) -> TestApp {
        let dir = tempfile::Builder::new()
            .prefix("hookrelay-it-")
            .tempdir()
            .expect("tempdir");
        let dir_path = dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
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
        let body = Body::Raw {
            content_type: content_type.map(str::to_string),
            bytes: bytes.into(),
        };
        self.call(
            Method::POST,
            &self.public("/v1/subscription"),
            Some(token),
            &[],
            body,
        )
        .await
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
        self.call(
            Method::POST,
            &self.internal("/internal/v1/events"),
            self.internal_bearer(),
            &[],
            Body::Json(event.clone()),
        )
        .await
    }

    /// Pushes and asserts 202; returns the body.
    pub async fn push_event_ok(&self, event: &Value) -> Value {
        let (status, body) = self.push_event(event).await;
        assert_eq!(status, 202, "push {event} answered {status}: {body}");
        body
    }

    pub async fn push_event_with_idempotency_key(&self, event: &Value, key: &str) -> Resp {
        self.call(
            Method::POST,
            &self.internal("/internal/v1/events"),
            self.internal_bearer(),
            &[("Idempotency-Key", key)],
            Body::Json(event.clone()),
        )
        .await
    }

    pub async fn push_event_raw(
        &self,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let body = Body::Raw {
            content_type: content_type.map(str::to_string),
            bytes: bytes.into(),
        };
        self.call(
            Method::POST,
            &self.internal("/internal/v1/events"),
            self.internal_bearer(),
            &[],
            body,
        )
        .await
    }

    pub async fn push_batch(&self, events: &[Value]) -> Resp {
        self.call(
            Method::POST,
            &self.internal("/internal/v1/events/batch"),
            self.internal_bearer(),
            &[],
            Body::Json(Value::Array(events.to_vec())),
        )
        .await
    }

    pub async fn push_batch_raw(
        &self,
        content_type: Option<&str>,
        bytes: impl Into<Vec<u8>>,
    ) -> Resp {
        let body = Body::Raw {
            content_type: content_type.map(str::to_string),
            bytes: bytes.into(),
        };
        self.call(
            Method::POST,
            &self.internal("/internal/v1/events/batch"),
            self.internal_bearer(),
            &[],
            body,
        )
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
                    db.url
                );
                std::mem::forget(db);
            }
        }
    }
}

/// Names the PostgreSQL server the PostgreSQL tests run on.
pub const POSTGRES_ENV: &str = "HOOKRELAY_TEST_POSTGRES_URL";

/// A throw-away database, created and dropped with `psql`.
pub struct PostgresDb {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PostgresDb {
    fn create(server_url: &str) -> PostgresDb {
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
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
        }
    }
    pub fn delayed(delay: Duration, status: u16) -> Reply {
        Reply { status, delay }
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
        .bind(("127.0.0.1", 0))
        .expect("bind receiver");
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        let task = actix_rt::spawn(server);
        Receiver {
            port,
            shared,
            handle,
            task,
        }
    }

    /// The endpoint URL to subscribe with.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
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
    HttpResponse::build(status)
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
