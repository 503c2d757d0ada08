//! Storage: picks SQLite or PostgreSQL from the database URL, owns the
//! connection pool and the embedded migrations of each backend, and runs
//! diesel code on the blocking thread pool (`Store::run`), never on an async
//! thread. Query modules write their diesel code once; `db_run!` compiles it
//! for each backend, so per-backend SQL exists only where it must differ.

pub mod catalog;
pub mod db_time;
pub mod deliveries;
pub mod endpoints;
pub mod erasures;
pub mod event_deliveries;
pub mod events;
pub mod history;
pub mod leases;
pub mod models;
pub mod notices;
pub mod overview;
pub mod prepared;
pub mod retention;
pub mod routing;
pub mod schema;
pub mod subscriptions;
pub mod tokens;
pub mod ui_sessions;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Connections for `write_unsynced`: the group-commit thread's, and one
/// each for the recorder and retention batches, so that neither makes
/// the group commit wait for a connection.
const WAL_SYNC_POOL_SIZE: u32 = 3;

/// How long a SQLite connection waits for a lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;

/// How long taking a pooled connection may wait: a request that needs the
/// database answers 503 after about this long when it does not answer.
const POOL_WAIT: Duration = Duration::from_secs(2);
/// ... and while the database is known to be unreachable, so that requests
/// fail fast until it answers again.
const POOL_WAIT_WHILE_DOWN: Duration = Duration::from_millis(250);
/// `connect_timeout` (seconds) added to a PostgreSQL URL that sets none.
const PG_CONNECT_TIMEOUT_S: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("cannot open the database `{url}`: {reason}")]
    Connect { url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("a database task stopped unexpectedly")]
    TaskFailed,
    #[error("could not sync the SQLite write-ahead log `{path}` to disk: {source}")]
    WalSync {
        path: String,
        source: std::io::Error,
    },
}

/// Which database engine a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// One pooled connection of either backend.
pub enum Conn {
    Sqlite(PooledConnection<ConnectionManager<SqliteConnection>>),
    Pg(PooledConnection<ConnectionManager<PgConnection>>),
}

/// Runs the same diesel code on whichever backend `conn` is:
/// `db_run!(conn, c => diesel::delete(t).execute(c))`.
#[macro_export]
macro_rules! db_run {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite(pooled) => {
                let $c: &mut diesel::SqliteConnection = &mut *pooled;
                $body
            }
            $crate::store::Conn::Pg(pooled) => {
                let $c: &mut diesel::PgConnection = &mut *pooled;
                $body
            }
        }
    };
}

/// Like `db_run!`, inside one write transaction. On SQLite the transaction
/// is `BEGIN IMMEDIATE` and is taken under the process's SQLite write lock:
/// SQLite has one writer, and waiting on a mutex wakes at once when the
/// previous writer commits, where SQLite's own busy handler sleeps for
/// milliseconds at a time.
#[macro_export]
macro_rules! db_transaction {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::Conn::Sqlite(pooled) => {
                let conn: &mut diesel::SqliteConnection = &mut *pooled;
                let _writer = $crate::store::sqlite_writer();
                conn.immediate_transaction(|$c| $body)
            }
            $crate::store::Conn::Pg(pooled) => {
                let conn: &mut diesel::PgConnection = &mut *pooled;
                diesel::Connection::transaction(conn, |$c| $body)
            }
        }
    };
}

#[derive(Clone)]
enum Pools {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Pg(Pool<ConnectionManager<PgConnection>>),
}

static SQLITE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held while a SQLite write transaction runs (see `db_transaction!`).
pub fn sqlite_writer() -> std::sync::MutexGuard<'static, ()> {
    SQLITE_WRITER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What keeps the database from doing its work, as this node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// No connection can be made (PostgreSQL down or out of reach).
    Unreachable(String),
    /// Connections work but writes fail (disk full, read-only file, I/O
    /// error).
    WritesFailing(String),
}

impl Trouble {
    /// What an operator or a caller is told.
    pub fn explain(&self) -> String {
        match self {
            Trouble::Unreachable(cause) => format!(
                "the database does not answer ({cause}); nothing accepted is lost, and hookrelay resumes by itself once it is back"
            ),
            Trouble::WritesFailing(cause) => format!(
                "the database cannot store anything ({cause}); free disk space (or shorten --history-retention) and check that the database file is writable; nothing accepted is lost, and hookrelay resumes by itself"
            ),
        }
    }

    /// Which kind, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Trouble::Unreachable(_) => "unreachable",
            Trouble::WritesFailing(_) => "writes_failing",
        }
    }
}

/// The database's health as the node's own work finds it: set by failures
/// that are the database's (not a query's), cleared when a connection or a
/// write works again. One flag to read on hot paths.
#[derive(Default)]
struct Health {
    troubled: std::sync::atomic::AtomicBool,
    trouble: std::sync::Mutex<Option<Trouble>>,
}

impl Health {
    fn set(&self, trouble: Trouble) {
        let mut current = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref() != Some(&trouble) {
            log::error!("storage trouble: {}", trouble.explain());
            crate::metrics::METRICS
                .storage_trouble
                .with_label_values(&[trouble.kind()])
                .inc();
        }
        *current = Some(trouble);
        self.troubled
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Clears trouble of the kind `cleared` matches.
    fn clear(&self, cleared: impl Fn(&Trouble) -> bool) {
        if !self.troubled.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut current = self.trouble.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_some_and(cleared) {
            log::info!("storage works again");
            *current = None;
            self.troubled
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }

    fn get(&self) -> Option<Trouble> {
        if !self.troubled.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.trouble
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn unreachable(&self) -> bool {
        self.troubled.load(std::sync::atomic::Ordering::Acquire)
            && matches!(self.get(), Some(Trouble::Unreachable(_)))
    }
}

impl StoreError {
    /// Why the caller should retry later, when this error is the
    /// database's (in trouble, or too busy to hand out a connection) rather
    /// than a failed query of ours.
    pub fn unavailable(&self) -> Option<String> {
        match (self.trouble(), self) {
            (Some(trouble), _) => Some(trouble.explain()),
            (None, StoreError::Pool(_)) => Some(
                "the database did not hand out a connection in time (it is busy or does not answer)"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The database's own trouble behind this error, if it is that rather
    /// than a failed query.
    pub fn trouble(&self) -> Option<Trouble> {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            // r2d2 names the last connection error when connecting failed;
            // a plain timeout means every connection was busy.
            StoreError::Pool(e) => {
                let text = e.to_string();
                text.split_once(": ")
                    .map(|(_, cause)| Trouble::Unreachable(cause.trim().to_string()))
            }
            StoreError::Connect { reason, .. } => Some(Trouble::Unreachable(reason.clone())),
            StoreError::WalSync { source, .. } => Some(Trouble::WritesFailing(source.to_string())),
            StoreError::Query(Error::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    Some(Trouble::Unreachable(info.message().to_string()))
                }
                _ => {
                    let message = info.message();
                    let lower = message.to_ascii_lowercase();
                    let storage = [
                        "disk is full",
                        "database is locked",
                        "disk i/o error",
                        "readonly database",
                        "read-only",
                        "no space left",
                        "unable to open database",
                        "could not extend file",
                        "terminating connection",
                        "the database system is",
                    ];
                    storage.iter().any(|s| lower.contains(s)).then(|| {
                        if lower.contains("terminating connection")
                            || lower.contains("the database system is")
                        {
                            Trouble::Unreachable(message.to_string())
                        } else {
                            Trouble::WritesFailing(message.to_string())
                        }
                    })
                }
            },
            _ => None,
        }
    }
}

/// Waits, as a task, for a place among those `admits` lets in at once.
async fn turn(
    admits: &tokio::sync::Semaphore,
) -> Result<tokio::sync::SemaphorePermit<'_>, StoreError> {
    admits.acquire().await.map_err(|_| StoreError::TaskFailed)
}

/// The database: a pool of connections of one backend.
#[derive(Clone)]
pub struct Store {
    pools: Pools,
    health: std::sync::Arc<Health>,
    /// Admits background work (`run_background`): at most half the
    /// connections, each on one blocking thread, whatever the number of
    /// endpoint actors asking at once; the rest stay free for requests.
    background: std::sync::Arc<tokio::sync::Semaphore>,
    /// Admits every `run`: at most as many at once as there are
    /// connections, so that work waiting for a connection waits as a task,
    /// not on a blocking thread of its own (a burst of requests or actors
    /// then takes a few threads, not one each).
    connections: std::sync::Arc<tokio::sync::Semaphore>,
    /// SQLite with `synchronous = FULL` in WAL mode: how `write_unsynced`
    /// commits are made durable by `sync_commits` with `fdatasync`.
    wal_sync: Option<WalSync>,
}

/// Durable SQLite commits whose disk sync is separate from the write.
///
/// With `synchronous = FULL`, SQLite syncs the WAL inside `COMMIT`, while it
/// holds its single write lock: nobody else can write during the sync.
/// `write_unsynced` commits on a connection with `synchronous = NORMAL`
/// instead (the WAL frames are written, not synced) and `sync_commits`
/// then calls `fdatasync` on the WAL file itself, outside the write lock.
/// Once that returns, every commit written before it is exactly as durable
/// as under `FULL`: `fdatasync` writes the file's data and its size, which
/// is all a WAL commit needs (PostgreSQL syncs its WAL the same way on
/// Linux). SQLite still syncs the WAL header at each WAL reset and the
/// directory when it creates the WAL, also under `NORMAL`, and syncs around
/// every checkpoint. Meanwhile the next group, the recorder and the API
/// write, and one sync covers every group written before it started.
#[derive(Clone)]
struct WalSync {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    wal: std::sync::Arc<std::path::PathBuf>,
}

/// How SQLite makes a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SqliteSync {
    /// Every commit is on disk before it is acknowledged (the default):
    /// nothing accepted is lost even if the machine loses power.
    #[default]
    Full,
    /// Commits survive a crash of the process (kill -9) but the last ones
    /// before a power loss or kernel crash can be lost. Faster.
    Normal,
}

#[derive(Debug)]
struct SqlitePragmas(SqliteSync);

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        let sync = match self.0 {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        };
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF;"
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Store {
    /// Opens the database, runs pending migrations, and builds the pool.
    pub fn open(url: &str, pool_size: u32) -> Result<Store, StoreError> {
        Store::open_with(url, pool_size, SqliteSync::Full)
    }

    /// `open`, choosing SQLite's commit durability.
    pub fn open_with(
        url: &str,
        pool_size: u32,
        sqlite_sync: SqliteSync,
    ) -> Result<Store, StoreError> {
        let connect_error = |reason: String| StoreError::Connect {
            url: redact(url),
            reason,
        };
        let mut wal_sync = None;
        let pools = match Backend::from_url(url) {
            Backend::Sqlite => {
                let path = url.strip_prefix("sqlite://").unwrap_or(url);
                // WAL is a property of the file: set it once, on one connection,
                // before the pool opens several (doing it per connection races).
                let mut first =
                    SqliteConnection::establish(path).map_err(|e| connect_error(e.to_string()))?;
                first
                    .batch_execute(&format!(
                        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL;"
                    ))
                    .map_err(|e| connect_error(e.to_string()))?;
                first
                    .run_pending_migrations(SQLITE_MIGRATIONS)
                    .map_err(|e| StoreError::Migration(e.to_string()))?;
                // The WAL file exists once the first connection has used the
                // database in WAL mode (a URI or in-memory database has none
                // beside it, and then commits sync by themselves).
                let wal = std::path::PathBuf::from(format!("{path}-wal"));
                let has_wal_file = wal.is_file();
                drop(first);
                let sqlite_pool = |size: u32, sync: SqliteSync| {
                    Pool::builder()
                        .max_size(size)
                        .connection_timeout(POOL_WAIT)
                        .connection_customizer(Box::new(SqlitePragmas(sync)))
                        .build(ConnectionManager::<SqliteConnection>::new(path))
                        .map_err(|e| connect_error(e.to_string()))
                };
                if sqlite_sync == SqliteSync::Full && has_wal_file {
                    wal_sync = Some(WalSync {
                        pool: sqlite_pool(WAL_SYNC_POOL_SIZE, SqliteSync::Normal)?,
                        wal: std::sync::Arc::new(wal),
                    });
                }
                Pools::Sqlite(sqlite_pool(pool_size.max(2), sqlite_sync)?)
            }
            Backend::Postgres => {
                let url = &with_connect_timeout(url);
                let mut first =
                    PgConnection::establish(url).map_err(|e| connect_error(e.to_string()))?;
                first
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map_err(|e| StoreError::Migration(e.to_string()))?;
                drop(first);
                let pool = Pool::builder()
                    .max_size(pool_size.max(2))
                    .connection_timeout(POOL_WAIT)
                    .build(ConnectionManager::<PgConnection>::new(url))
                    .map_err(|e| connect_error(e.to_string()))?;
                Pools::Pg(pool)
            }
        };
        Ok(Store {
            pools,
            health: Default::default(),
            background: std::sync::Arc::new(tokio::sync::Semaphore::new(
                (pool_size.max(2) / 2) as usize,
            )),
            connections: std::sync::Arc::new(
                tokio::sync::Semaphore::new(pool_size.max(2) as usize),
            ),
            wal_sync,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Pg(_) => Backend::Postgres,
        }
    }

    /// Takes a connection on the current thread (for the CLI and for code
    /// already on a blocking thread). Waits at most `POOL_WAIT`, and
    /// briefly while the database is known not to answer.
    pub fn conn(&self) -> Result<Conn, StoreError> {
        let wait = if self.health.unreachable() {
            POOL_WAIT_WHILE_DOWN
        } else {
            POOL_WAIT
        };
        let conn = match &self.pools {
            Pools::Sqlite(p) => p.get_timeout(wait).map(Conn::Sqlite),
            Pools::Pg(p) => p.get_timeout(wait).map(Conn::Pg),
        };
        match conn {
            Ok(conn) => {
                self.health.clear(|t| matches!(t, Trouble::Unreachable(_)));
                Ok(conn)
            }
            Err(e) => Err(self.noted(StoreError::Pool(e))),
        }
    }

    /// Records the database trouble behind `e`, if any, and returns it.
    pub fn noted(&self, e: StoreError) -> StoreError {
        if let Some(trouble) = e.trouble() {
            self.health.set(trouble);
        }
        e
    }

    /// A write went through: the database stores again.
    pub fn write_succeeded(&self) {
        self.health.clear(|_| true);
    }

    /// What keeps the database from working now, if anything.
    pub fn trouble(&self) -> Option<Trouble> {
        self.health.get()
    }

    /// While there is trouble: one small write (on the blocking pool),
    /// which clears it when it works.
    pub async fn probe(&self) {
        if self.health.get().is_none() {
            return;
        }
        let probed = self
            .run(|conn| {
                Ok(crate::db_transaction!(conn, c => {
                    use diesel::RunQueryDsl;
                    diesel::sql_query(
                        "UPDATE routing_version SET version = version WHERE id = 1",
                    )
                    .execute(c)
                })?)
            })
            .await;
        if probed.is_ok() {
            self.write_succeeded();
        }
    }

    /// Runs `f` with a connection on the blocking thread pool, once one of
    /// the pool's connections is free.
    pub async fn run<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let _turn = turn(&self.connections).await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = store.conn()?;
            f(&mut conn).map_err(|e| store.noted(e))
        })
        .await
        .map_err(|_| StoreError::TaskFailed)?
    }

    /// `run` for work in the background of many actors (reading queues,
    /// burying endpoints, recording outcomes, cleaning up): it waits its
    /// turn without a thread, so a thousand endpoints failing at once take
    /// a few threads and connections, not a thousand, and requests keep
    /// theirs.
    pub async fn run_background<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let _turn = turn(&self.background).await?;
        self.run(f).await
    }

    /// `run_background` for writes that need not be durable at once: a
    /// retention batch lost to a power cut is simply done again by the
    /// next pass. On SQLite with `synchronous = FULL` they commit through
    /// `write_unsynced`, so that no `fsync` runs inside SQLite's write lock
    /// while ingest waits for it; the next sync of the WAL (the group
    /// commit's, or any other commit's) makes them durable.
    pub async fn run_background_unsynced<F, R>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let _turn = turn(&self.background).await?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.write_unsynced(f))
            .await
            .map_err(|_| StoreError::TaskFailed)?
    }

    /// Runs the write `f` on the current thread (a blocking one). Its
    /// commit is durable once `sync_commits` has returned after it: on
    /// SQLite with `synchronous = FULL` the commit is written but not
    /// synced (see `WalSync`); elsewhere it is durable already.
    pub fn write_unsynced<R>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let result = match &self.wal_sync {
            Some(wal_sync) => match wal_sync.pool.get() {
                Ok(conn) => f(&mut Conn::Sqlite(conn)),
                Err(e) => Err(StoreError::Pool(e)),
            },
            None => self.conn().and_then(|mut conn| f(&mut conn)),
        };
        result.map_err(|e| self.noted(e))
    }

    /// Makes every commit of `write_unsynced` that returned before this
    /// call durable: one `fdatasync` of the WAL file covers them all. A
    /// no-op where commits are durable by themselves.
    pub fn sync_commits(&self) -> Result<(), StoreError> {
        let Some(wal_sync) = &self.wal_sync else {
            return Ok(());
        };
        let synced = match std::fs::File::open(&*wal_sync.wal) {
            Ok(wal) => wal.sync_data(),
            // SQLite deletes the WAL only when its last connection closes,
            // after checkpointing it into the database file and syncing
            // that: nothing is left to sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        synced.map_err(|source| {
            self.noted(StoreError::WalSync {
                path: wal_sync.wal.display().to_string(),
                source,
            })
        })
    }
}

/// A PostgreSQL URL with a `connect_timeout` when it sets none, so that an
/// unreachable server fails a connection attempt in seconds.
fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}connect_timeout={PG_CONNECT_TIMEOUT_S}")
}

/// The database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// The smallest id (UUIDv7 text, whose first 12 hex digits are the
/// millisecond timestamp) of anything created at `at`: ids compare as text
/// in creation order, so time cut-offs can use the primary key.
pub fn id_floor(at: chrono::DateTime<chrono::Utc>) -> String {
    let ms = at.timestamp_millis().max(0) as u64;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// Current UTC time as stored in the database.
pub fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_migrations_revert_and_reapply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.db");
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        conn.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        conn.revert_all_migrations(SQLITE_MIGRATIONS).unwrap();
        conn.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
    }

    #[test]
    fn postgres_migrations_revert_and_reapply() {
        let Ok(url) = std::env::var("HOOKRELAY_TEST_POSTGRES_URL") else {
            eprintln!("HOOKRELAY_TEST_POSTGRES_URL not set: PostgreSQL migration test skipped");
            return;
        };
        let name = format!("hookrelay_mig_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&url).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
        {
            let mut conn = PgConnection::establish(&format!("{base}/{name}")).unwrap();
            conn.run_pending_migrations(POSTGRES_MIGRATIONS).unwrap();
            conn.revert_all_migrations(POSTGRES_MIGRATIONS).unwrap();
            conn.run_pending_migrations(POSTGRES_MIGRATIONS).unwrap();
        }
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .unwrap();
    }

    /// The first migration of this release (delivery ids derived from
    /// event ids): the previous release had every one before it.
    const THIS_RELEASE: &str = "2026-12-07-000013";

    /// Rows as an earlier release wrote them (they fit every schema since
    /// the first): a token, an endpoint, an active subscription, an event and
    /// its pending delivery.
    const PREVIOUS_RELEASE_ROWS: &str = "
        INSERT INTO tokens (token_hash, marketplace_id, user_id, created_at)
            VALUES ('h', 7, 1, '2026-11-30 10:00:00');
        INSERT INTO endpoints (url, created_at) VALUES ('https://example.com/h', '2026-11-30 10:00:00');
        INSERT INTO subscriptions (marketplace_id, user_id, event, endpoint_id, secret, active, created_at, last_modified)
            VALUES (7, 1, 'qti_export_ready', 1, 'a-long-enough-secret', TRUE, '2026-11-30 10:00:00', '2026-11-30 10:00:00');
        INSERT INTO events (id, marketplace_id, event, body, idempotency_key, delivery_count, created_at)
            VALUES ('019ad000-0000-7000-8000-000000000001', 7, 'qti_export_ready', '{}', NULL, 1, '2026-11-30 10:00:00');
        INSERT INTO deliveries (id, event_id, subscription_id, endpoint_id, status, attempts, next_attempt_at, last_error, created_at, updated_at)
            VALUES ('019ad000-0000-7000-8000-000000000002', '019ad000-0000-7000-8000-000000000001', 1, 1, 'pending', 0,
                    '2026-11-30 10:00:00', NULL, '2026-11-30 10:00:00', '2026-11-30 10:00:00');
        INSERT INTO attempts (delivery_id, endpoint_id, attempted_at, status_code, error, duration_ms)
            VALUES ('019ad000-0000-7000-8000-000000000002', 1, '2026-11-30 10:00:01', 500, 'endpoint answered 500', 12);
        INSERT INTO events (id, marketplace_id, event, body, idempotency_key, delivery_count, created_at)
            VALUES ('019ad000-0000-7000-8000-000000000003', 7, 'qti_export_ready', '{}', NULL, 1, '2026-11-30 10:00:00');
        INSERT INTO deliveries (id, event_id, subscription_id, endpoint_id, status, attempts, next_attempt_at, last_error, created_at, updated_at)
            VALUES ('019ad001-1111-7000-8000-00000000abcd', '019ad000-0000-7000-8000-000000000003', 1, 1, 'succeeded', 1,
                    '2026-11-30 10:00:00', NULL, '2026-11-30 10:00:00', '2026-11-30 10:00:01');";

    /// How many migrations the previous release had (every one before
    /// this release's).
    fn previous_release<DB: diesel::backend::Backend>(source: EmbeddedMigrations) -> usize {
        use diesel::migration::MigrationSource;
        MigrationSource::<DB>::migrations(&source)
            .unwrap()
            .iter()
            .filter(|m| m.name().to_string().as_str() < THIS_RELEASE)
            .count()
    }

    /// Opening a database of the previous release migrates it in place:
    /// its subscription is routed (at routing version 0) and its pending
    /// delivery is still there.
    fn assert_upgraded_in_place(store: &Store) {
        let conn = &mut store.conn().unwrap();
        assert_eq!(routing::current(conn).unwrap(), 0);
        let routes = subscriptions::all_active(conn).unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].subscription.route_version, 0);
        assert_eq!(routes[0].endpoint_url, "https://example.com/h");
        let pending = deliveries::pending_page(conn, 1, None, 10).unwrap();
        assert_eq!(pending.len(), 1, "the pending delivery survived");
        assert_eq!(pending[0].secret, "a-long-enough-secret");
        // Its secret-rotation columns are empty: only its secret signs.
        let old = &routes[0].subscription;
        assert!(old.previous_secret.is_none() && old.secret_rotated_at.is_none());
        assert_eq!(old.secrets().unwrap().valid_at(now()).count(), 1);
        // A rotation after the upgrade keeps the old secret signing too.
        let until = now() + chrono::Duration::hours(1);
        let rotated = subscriptions::rotate_secret(conn, 1, (7, 1), "a-newer-long-secret", until)
            .unwrap()
            .unwrap();
        let rotated = rotated.subscription;
        assert_eq!(
            rotated.previous_secret.as_deref(),
            Some("a-long-enough-secret")
        );
        assert_eq!(rotated.secrets().unwrap().valid_at(now()).count(), 2);
        // Its logged attempt is kept, with no answer excerpt.
        let logged = history::attempts_of(conn, &pending[0].id).unwrap();
        assert_eq!(logged.len(), 1, "the logged attempt survived");
        assert_eq!(
            (logged[0].status_code, logged[0].duration_ms),
            (Some(500), 12)
        );
        assert_eq!(logged[0].response_excerpt, None);
        // Its endpoint has the default policy: no hold, no overrides.
        assert_eq!(
            endpoints::policies_of(conn, &[1]).unwrap(),
            vec![(1, endpoints::PolicyRow::default())]
        );
        assert!(endpoints::policies_set(conn).unwrap().is_empty());
        // The erasure audit table exists, empty.
        assert!(erasures::get(conn, "none").unwrap().is_none());
        // A change after the upgrade moves the version and stamps its row.
        let removed = subscriptions::deactivate(conn, &[1], "test").unwrap();
        assert_eq!(removed, 1);
        let (as_of, changes) = routing::catch_up(conn, 0).unwrap().unwrap();
        assert_eq!((as_of, changes.len()), (2, 1));
        assert!(!changes[0].subscription.active);
        // The notices table is empty, and takes a notice.
        assert!(notices::list(conn, None, 10).unwrap().is_empty());
        let draft = crate::notice::Draft::new(
            crate::notice::Kind::Failing,
            1,
            "https://example.com/h",
            crate::notice::Scope::Ids(vec![1]),
            "test".into(),
        );
        let mut draft = draft;
        draft.stamp();
        assert!(notices::insert(conn, &[draft], None).unwrap().is_empty());
        let listed = notices::list(conn, None, 10).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].body.contains("\"marketplaceId\":7"));
        // The web UI's sessions table is new and takes a session.
        let later = now() + chrono::Duration::hours(1);
        ui_sessions::insert(conn, "id", "console", "", "csrf", later).unwrap();
        assert!(ui_sessions::find(conn, "id", "console").unwrap().is_some());
        // The logged attempt of the previous release is an endpoint's
        // recent failure (read through the new index).
        let failures = history::recent_failures(conn, 1, 10).unwrap();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].1.status_code, Some(500));
        // Both events' deliveries are found by the event lookup: ids of
        // the earlier releases were not derived from their events' ids.
        for (event, delivery) in [
            (
                "019ad000-0000-7000-8000-000000000001",
                "019ad000-0000-7000-8000-000000000002",
            ),
            (
                "019ad000-0000-7000-8000-000000000003",
                "019ad001-1111-7000-8000-00000000abcd",
            ),
        ] {
            let (_, found) = history::event_with_deliveries(conn, event)
                .unwrap()
                .unwrap();
            let found: Vec<&str> = found.iter().map(|d| d.id.as_str()).collect();
            assert_eq!(found, vec![delivery], "the deliveries of {event}");
        }
    }

    #[test]
    fn a_sqlite_database_of_the_previous_release_upgrades_in_place_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let path = path.to_str().unwrap();
        {
            let mut old = SqliteConnection::establish(path).unwrap();
            for _ in 0..previous_release::<diesel::sqlite::Sqlite>(SQLITE_MIGRATIONS) {
                old.run_next_migration(SQLITE_MIGRATIONS).unwrap();
            }
            old.batch_execute(PREVIOUS_RELEASE_ROWS).unwrap();
        }
        assert_upgraded_in_place(&Store::open(path, 2).unwrap());
    }

    #[test]
    fn a_postgres_database_of_the_previous_release_upgrades_in_place_with_nothing_lost() {
        let Ok(url) = std::env::var("HOOKRELAY_TEST_POSTGRES_URL") else {
            eprintln!("HOOKRELAY_TEST_POSTGRES_URL not set: PostgreSQL upgrade test skipped");
            return;
        };
        let name = format!("hookrelay_up_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&url).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
        let db_url = format!("{base}/{name}");
        {
            let mut old = PgConnection::establish(&db_url).unwrap();
            for _ in 0..previous_release::<diesel::pg::Pg>(POSTGRES_MIGRATIONS) {
                old.run_next_migration(POSTGRES_MIGRATIONS).unwrap();
            }
            old.batch_execute(PREVIOUS_RELEASE_ROWS).unwrap();
            let store = Store::open(&db_url, 2).unwrap();
            assert_upgraded_in_place(&store);
        }
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .unwrap();
    }

    #[test]
    fn unsynced_writes_are_synced_through_the_wal_file() {
        use diesel::RunQueryDsl;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let store = Store::open(path.to_str().unwrap(), 2).unwrap();
        assert!(
            store.wal_sync.is_some(),
            "FULL on a file syncs by fdatasync"
        );
        let written = store
            .write_unsynced(|conn| {
                Ok(crate::db_transaction!(conn, c => diesel::sql_query(
                    "INSERT INTO event_types (name, description, created_at) VALUES ('x', 'y', '2026-01-01')"
                )
                .execute(c))?)
            })
            .unwrap();
        assert_eq!(written, 1);
        store.sync_commits().unwrap();
        assert!(dir.path().join("w.db-wal").is_file());
        // Committed on one pool, visible on the other.
        let seen: i64 = crate::db_run!(&mut store.conn().unwrap(), c => diesel::select(
            diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT count(*) FROM event_types WHERE name = 'x')")
        )
        .get_result(c))
        .unwrap();
        assert_eq!(seen, 1);

        let normal = Store::open_with(
            dir.path().join("n.db").to_str().unwrap(),
            2,
            SqliteSync::Normal,
        )
        .unwrap();
        assert!(normal.wal_sync.is_none(), "NORMAL does not sync commits");
        normal.sync_commits().unwrap();
    }

    #[test]
    fn the_id_floor_of_a_millisecond_sorts_before_every_id_made_then() {
        let at = chrono::Utc::now();
        let floor = id_floor(at - chrono::Duration::milliseconds(1));
        let id = uuid::Uuid::now_v7().to_string();
        assert!(floor < id, "{floor} < {id}");
        assert!(id_floor(at + chrono::Duration::seconds(5)) > id);
    }

    #[test]
    fn the_backend_follows_the_url_scheme() {
        assert_eq!(Backend::from_url("postgres://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::from_url("postgresql://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::from_url("hookrelay.db"), Backend::Sqlite);
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn a_postgres_url_gets_a_connect_timeout_unless_it_sets_one() {
        assert_eq!(
            with_connect_timeout("postgres://h/db"),
            "postgres://h/db?connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?sslmode=disable"),
            "postgres://h/db?sslmode=disable&connect_timeout=2"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/db?connect_timeout=9"),
            "postgres://h/db?connect_timeout=9"
        );
    }

    #[test]
    fn storage_errors_are_told_apart_from_failed_queries() {
        use diesel::result::{DatabaseErrorKind, Error};
        let db = |kind, message: &str| {
            StoreError::Query(Error::DatabaseError(kind, Box::new(message.to_string())))
        };
        assert!(matches!(
            db(DatabaseErrorKind::Unknown, "database or disk is full").trouble(),
            Some(Trouble::WritesFailing(_))
        ));
        assert!(matches!(
            db(
                DatabaseErrorKind::Unknown,
                "attempt to write a readonly database"
            )
            .trouble(),
            Some(Trouble::WritesFailing(_))
        ));
        assert!(matches!(
            db(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection"
            )
            .trouble(),
            Some(Trouble::Unreachable(_))
        ));
        assert!(matches!(
            db(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command"
            )
            .trouble(),
            Some(Trouble::Unreachable(_))
        ));
        assert_eq!(
            db(DatabaseErrorKind::UniqueViolation, "duplicate key").trouble(),
            None
        );
        assert_eq!(StoreError::Query(Error::NotFound).trouble(), None);
    }
}
