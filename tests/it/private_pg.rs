//! A private PostgreSQL server for one test, so that a test may stop and
//! start "the database" without disturbing anyone else: `initdb` into a temp
//! folder, its own free port on 127.0.0.1, its unix socket in that folder,
//! `fsync=off`. Started and stopped with the machine's `pg_ctl`
//! (`/usr/lib/postgresql/<version>/bin/`, the newest one found).
//!
//! PostgreSQL refuses to run as root: as root the folder is handed to the
//! `postgres` user and `initdb`/`pg_ctl` run through `runuser -u postgres --`.
//!
//! Tests that need it use [`private_postgres!`], which passes them as skipped
//! (saying so) when no PostgreSQL binaries are installed.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::PostgresDb;

/// Where the distribution packages put each version's server binaries.
const PACKAGES_DIR: &str = "/usr/lib/postgresql";

/// Starts a [`PrivatePostgres`], or prints why not and returns from the test.
macro_rules! private_postgres {
    () => {
        match $crate::private_pg::PrivatePostgres::start() {
            Ok(pg) => pg,
            Err(why) => {
                eprintln!("skipped: no private PostgreSQL server: {why}");
                return;
            }
        }
    };
}
pub(crate) use private_postgres;

/// One PostgreSQL server of the test's own, stopped (immediate shutdown) on
/// drop. Its folder is removed then, or kept when the test failed.
pub struct PrivatePostgres {
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Run the server's tools as the `postgres` user (we are root).
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster with `initdb` and starts it. `Err` (a reason to
    /// skip) when the binaries are missing, or when running as root without
    /// a `postgres` user; panics when they are there but fail.
    pub fn start() -> Result<PrivatePostgres, String> {
        let bin = find_bin_dir()?;
        let as_postgres = is_root();
        let owner =
            if as_postgres {
                Some(postgres_ids().ok_or(
                    "running as root, and there is no `postgres` user to run the server as",
                )?)
            } else {
                None
            };
        let dir = tempfile::Builder::new()
            .prefix("hookrelay-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let dir_path = dir.path().to_path_buf();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir_path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", dir_path.display()));
        }
        let mut pg = PrivatePostgres {
            data: dir_path.join("data"),
            log: dir_path.join("postgres.log"),
            dir: Some(dir),
            dir_path,
            bin,
            port: free_port(),
            as_postgres,
            running: false,
        };
        let data = pg.data.to_string_lossy().into_owned();
        pg.run_ok(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let settings = format!(
            "\n# hookrelay tests: a private server\n\
             port = {port}\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{socket}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 100\n",
            port = pg.port,
            socket = pg.dir_path.display(),
        );
        let conf = pg.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("read {}: {e}", conf.display()));
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap_or_else(|e| panic!("write {}: {e}", conf.display()));
        pg.start_again();
        Ok(pg)
    }

    /// The port it listens on (the same across stop/start).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the server, as
    /// [`PostgresDb::create`] and `psql` take it.
    pub fn server_url(&self) -> String {
        self.url("postgres")
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A fresh database on this server, for [`crate::helpers::TestApp::spawn_node`].
    pub fn create_db(&self) -> Arc<PostgresDb> {
        Arc::new(PostgresDb::create(&self.server_url()))
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Whether something accepts TCP connections on its port.
    pub fn accepts_connections(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    }

    /// Fast shutdown (clients are disconnected), waiting until it is down.
    pub fn stop(&mut self) {
        assert!(self.running, "private PostgreSQL is not running");
        let data = self.data.to_string_lossy().into_owned();
        self.run_ok(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"],
        );
        self.running = false;
    }

    /// Starts it again on the same data folder and port, waiting until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        assert!(!self.running, "private PostgreSQL is already running");
        let data = self.data.to_string_lossy().into_owned();
        let log = self.log.to_string_lossy().into_owned();
        self.run_ok(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-w", "-t", "60", "start"],
        );
        self.running = true;
    }

    /// Runs `sql` with `psql` on database `db`: its output (unaligned,
    /// tuples only), or its error text.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .arg(self.url(db))
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running psql: {e}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let from = all.len().saturating_sub(lines);
        format!(
            "--- last {} lines of {} ---\n{}",
            all.len() - from,
            self.log.display(),
            all[from..].join("\n")
        )
    }

    /// Runs one of the server's tools (as `postgres` when we are root).
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args)
            // The test's working directory may not be readable by `postgres`.
            .current_dir(&self.dir_path)
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()))
    }

    fn run_ok(&self, tool: &str, args: &[&str]) {
        let out = self.run(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({}):\n{}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(30)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            // By its data folder (pg_ctl reads the postmaster's pid there).
            let data = self.data.to_string_lossy().into_owned();
            let out = self.run(
                "pg_ctl",
                &["-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"],
            );
            if !out.status.success() {
                eprintln!(
                    "stopping the private PostgreSQL failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            self.running = false;
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "(test failed: kept the private PostgreSQL's folder {}, log {})",
                kept.display(),
                self.log.display()
            );
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and
/// `pg_ctl`.
fn find_bin_dir() -> Result<PathBuf, String> {
    let entries = std::fs::read_dir(PACKAGES_DIR)
        .map_err(|e| format!("{PACKAGES_DIR} cannot be read ({e}): PostgreSQL is not installed"))?;
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let bin = e.path().join("bin");
            let has = |t: &str| bin.join(t).is_file();
            if !(has("initdb") && has("pg_ctl") && has("postgres")) {
                return None;
            }
            let version = e
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|p| p.parse().unwrap_or(0))
                .collect();
            Some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no {PACKAGES_DIR}/*/bin has initdb, pg_ctl and postgres"))
}

fn is_root() -> bool {
    id(&["-u"]).as_deref() == Some("0")
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> Option<(u32, u32)> {
    let uid = id(&["-u", "postgres"])?.parse().ok()?;
    let gid = id(&["-g", "postgres"])?.parse().ok()?;
    Some((uid, gid))
}

fn id(args: &[&str]) -> Option<String> {
    let out = Command::new("id")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A port nothing listens on right now (bound to 127.0.0.1:0, then freed).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

#[test]
fn a_private_postgres_server_starts_answers_stops_and_starts_again_on_the_same_data() {
    let mut pg = private_postgres!();
    let port = pg.port();
    eprintln!("private PostgreSQL on port {port} ({})", pg.bin.display());
    assert!(pg.accepts_connections(), "it listens on 127.0.0.1:{port}");
    assert!(
        pg.dir_path.join(format!(".s.PGSQL.{port}")).exists(),
        "its unix socket is in its own folder"
    );
    assert_eq!(pg.psql("postgres", "SHOW fsync").as_deref(), Ok("off"));
    pg.psql(
        "postgres",
        "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)",
    )
    .expect("create a table");

    // A database made the way the hookrelay tests make theirs.
    let db = pg.create_db();
    assert!(
        db.url
            .starts_with(&format!("postgres://postgres@127.0.0.1:{port}/")),
        "{}",
        db.url
    );
    let name = db.url.rsplit('/').next().unwrap().to_string();
    assert_eq!(pg.psql(&name, "SELECT 1").as_deref(), Ok("1"));

    assert!(pg.is_running());
    pg.stop();
    assert!(!pg.is_running());
    assert!(!pg.accepts_connections(), "stopped, it no longer listens");
    let refused = pg.psql("postgres", "SELECT 1");
    assert!(refused.is_err(), "psql while stopped: {refused:?}");
    assert!(!pg.data.join("postmaster.pid").exists());

    pg.start_again();
    assert_eq!(pg.port(), port);
    assert!(pg.accepts_connections());
    assert_eq!(
        pg.psql("postgres", "SELECT v FROM kept").as_deref(),
        Ok("42"),
        "the data survived the restart"
    );
    assert_eq!(pg.psql(&name, "SELECT 2").as_deref(), Ok("2"));

    drop(db);
    let pid_file = pg.data.join("postmaster.pid");
    assert!(pid_file.exists());
    let dir = pg.dir_path.clone();
    drop(pg);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "dropped, the server is stopped"
    );
    assert!(!dir.exists(), "dropped, its folder is removed");
}
