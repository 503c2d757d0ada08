//! [`TestApp`]: the real `hookrelay` binary as a child process, its
//! lifecycle (spawn on a backend, start, SIGKILL, SIGTERM, restart) and the
//! tail of its log, printed when a test fails.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::backends::with_database_url;
use super::{
    BACKEND_ENV, Backend, POSTGRES_ENV, PostgresDb, announce_backend, redact_url, sleep,
    test_backend,
};

/// How long the server may take to print its ready line.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

/// One hookrelay server: a child process with its own temporary directory
/// (log, SQLite file) and the URLs of its two listeners.
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
    pub(super) internal_token: Option<String>,
    pub(super) client: awc::Client,
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
    /// A cluster node named `name` on `db` (`--lease-ttl 3s`, a small
    /// pool: several nodes per test and several tests at once stay well
    /// under the server's connection limit), plus `extra` arguments.
    pub async fn spawn_cluster_node(db: &Arc<PostgresDb>, name: &str, extra: &[&str]) -> TestApp {
        let mut args = vec![
            "--node-id",
            name,
            "--lease-ttl",
            "3s",
            "--db-pool-size",
            "4",
        ];
        args.extend_from_slice(extra);
        Self::spawn_node(db, &args).await
    }

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
        let log = self.open_log();
        let stderr = log.try_clone().expect("clone log handle");
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn hookrelay");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        let ready = forward_stdout(stdout, log);
        let line = self.wait_for_ready_line(ready).await;
        self.public_url = ready_line_field(&line, "public=");
        self.internal_url = ready_line_field(&line, "internal=");
    }

    /// `server.log`, opened for appending, with a line marking this start.
    fn open_log(&self) -> std::fs::File {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server.log");
        let _ = writeln!(log, "===== hookrelay start #{} =====", self.starts);
        log
    }

    /// `hookrelay serve` with this server's options, in its directory, on
    /// ephemeral ports, without the test run's own `HOOKRELAY_*` variables.
    fn command(&self) -> Command {
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
        cmd.args(&self.args).stdin(Stdio::null());
        cmd
    }

    /// The ready line from `ready`; panics with the log tail when the server
    /// exits first or stays silent past [`READY_DEADLINE`].
    async fn wait_for_ready_line(&mut self, ready: mpsc::Receiver<Option<String>>) -> String {
        let started = Instant::now();
        loop {
            match ready.try_recv() {
                Ok(Some(line)) => return line,
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
        }
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

/// Copies the server's stdout into `log` on a thread of its own; the
/// channel gets the ready line (`hookrelay listening …`), or `None` when
/// stdout closes without one.
fn forward_stdout(
    stdout: std::process::ChildStdout,
    mut log: std::fs::File,
) -> mpsc::Receiver<Option<String>> {
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
    rx
}

/// The URL after `name` (`public=`, `internal=`) in the ready line.
fn ready_line_field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .unwrap_or_else(|| panic!("ready line {line:?} lacks {name}"))
        .trim_end_matches('/')
        .to_string()
}
