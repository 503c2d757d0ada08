//! One `hookrelay serve` child process, by default on a fresh SQLite file in
//! a temporary directory (or on a given database, with extra options),
//! stopped by its pid and cleaned up on drop.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::clock;

const READY_PREFIX: &str = "hookrelay listening ";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How to start the child.
#[derive(Clone, Debug)]
pub struct Launch {
    pub binary: PathBuf,
    /// A command line put in front of the binary (e.g. `valgrind
    /// --tool=callgrind`), for profiling.
    pub wrapper: Vec<String>,
    pub max_in_flight: u32,
}

/// What a child runs on, beyond the common options.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// `--database-url`: a SQLite path or a `postgres://` URL. `None`: a new
    /// SQLite file in the instance's own directory.
    pub database: Option<String>,
    /// More options appended to `serve` (e.g. `--node-id a`).
    pub args: Vec<String>,
}

pub struct Instance {
    child: Child,
    dir: PathBuf,
    graceful: bool,
    pub public: String,
    pub internal: String,
    /// Clock reading just before the process was spawned.
    pub spawned_ns: u64,
    /// Clock reading when its `hookrelay listening …` line was read.
    pub ready_ns: u64,
}

impl Instance {
    /// A child on a fresh SQLite file.
    pub fn start(launch: &Launch) -> Result<Instance, String> {
        Instance::start_with(launch, &Setup::default())
    }

    /// A child on `setup.database` (or a fresh SQLite file) with
    /// `setup.args` added.
    pub fn start_with(launch: &Launch, setup: &Setup) -> Result<Instance, String> {
        let dir = std::env::temp_dir().join(format!(
            "hookrelay-bench-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log_path = dir.join("hookrelay.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let db = match &setup.database {
            Some(url) => url.clone(),
            None => dir.join("bench.db").to_string_lossy().into_owned(),
        };
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&launch.binary);
                c
            }
            None => Command::new(&launch.binary),
        };
        command
            .arg("serve")
            .arg("--database-url")
            .arg(&db)
            .args(["--public-addr", "127.0.0.1:0"])
            .args(["--internal-addr", "127.0.0.1:0"])
            .arg("--allow-private-endpoints")
            .arg("--max-in-flight-per-endpoint")
            .arg(launch.max_in_flight.to_string())
            .args(&setup.args)
            .env("RUST_LOG", "warn")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        // Only the options above: no HOOKRELAY_* setting of the caller's.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HOOKRELAY_") {
                command.env_remove(key);
            }
        }
        let spawned_ns = clock::now_ns();
        let mut child = command.spawn().map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            format!("cannot start {}: {e}", launch.binary.display())
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then keeps draining stdout until the child ends.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = false;
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if !sent && line.starts_with(READY_PREFIX) {
                    let _ = tx.send((line.trim().to_string(), clock::now_ns()));
                    sent = true;
                }
                line.clear();
            }
        });
        let mut instance = Instance {
            child,
            dir,
            graceful: !launch.wrapper.is_empty(),
            public: String::new(),
            internal: String::new(),
            spawned_ns,
            ready_ns: 0,
        };
        // Generous: a debug build loading 100,000 endpoints takes a while.
        let wait = if launch.wrapper.is_empty() {
            Duration::from_secs(120)
        } else {
            Duration::from_secs(300)
        };
        let line = match rx.recv_timeout(wait) {
            Ok((line, at)) => {
                instance.ready_ns = at;
                line
            }
            Err(e) => {
                // Give an exiting child a moment so its status is known.
                std::thread::sleep(Duration::from_millis(100));
                let status = instance.child.try_wait().ok().flatten();
                let what = match (e, status) {
                    (_, Some(s)) => format!("hookrelay exited before it was ready ({s})"),
                    (mpsc::RecvTimeoutError::Timeout, None) => format!(
                        "hookrelay did not print its `{READY_PREFIX}…` line within {}s",
                        wait.as_secs()
                    ),
                    (mpsc::RecvTimeoutError::Disconnected, None) => {
                        "hookrelay closed its stdout before it was ready".to_string()
                    }
                };
                return Err(format!(
                    "{what}; its log ends with:\n{}",
                    tail(&log_path, 2000)
                ));
            }
        };
        for part in line.split_whitespace() {
            if let Some(v) = part.strip_prefix("public=") {
                instance.public = v.trim_end_matches('/').to_string();
            } else if let Some(v) = part.strip_prefix("internal=") {
                instance.internal = v.trim_end_matches('/').to_string();
            }
        }
        if instance.public.is_empty() || instance.internal.is_empty() {
            return Err(format!("cannot read the addresses from `{line}`"));
        }
        Ok(instance)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to this pid and waits up to `within` for it to exit;
    /// `None` when it is still running then.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends SIGKILL to this pid and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The end of the child's log (stderr).
    pub fn log_tail(&self, bytes: u64) -> String {
        tail(&self.dir.join("hookrelay.log"), bytes)
    }

    /// Lines of the child's log, for the report (warnings it printed).
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.join("hookrelay.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.graceful {
            // A profiler wrapper writes its output only on a clean exit:
            // SIGTERM this pid and give it time.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let until = Instant::now() + Duration::from_secs(120);
            while Instant::now() < until {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tail(path: &Path, bytes: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
    let mut raw = Vec::new();
    let _ = f.read_to_end(&mut raw);
    let s = String::from_utf8_lossy(&raw).into_owned();
    if s.is_empty() {
        String::from("(empty log)")
    } else {
        s
    }
}
