//! Databases prepared before hookrelay starts, written through the
//! hookrelay library itself (its migrations, schema and ingest write): a
//! SQLite file with many idle endpoints (figure 7) or with a large backlog
//! of pending deliveries (figure 8), and a scratch PostgreSQL database per
//! run (figure 9). Seeding is never timed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use hookrelay::store::events::{FixedRoutes, PreparedEvent, store_batch};
use hookrelay::store::models::{NewDelivery, NewEvent, NewSubscription};
use hookrelay::store::schema::{endpoints, subscriptions};
use hookrelay::store::{self, Conn, Store};

use crate::figures::{SUBSCRIBER_MARKETPLACE, SUBSCRIBER_USER, event_json};

/// The event type of every seeded subscription and event.
const EVENT_TYPE: &str = "qti_export_ready";
/// The secret of every seeded subscription.
const SECRET: &str = "bench-secret";
/// Rows per multi-row INSERT.
const ROWS_PER_INSERT: usize = 1000;
/// Events per `store_batch` transaction when seeding a backlog.
const EVENTS_PER_COMMIT: usize = 5000;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A new directory under the temp directory, removed on drop.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(what: &str) -> Result<ScratchDir, String> {
        let path = std::env::temp_dir().join(format!(
            "hookrelay-bench-{what}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_micros()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Opens (creating and migrating) a database through hookrelay's own
/// startup code, with a connection for seeding.
fn open(url: &str) -> Result<(Store, Conn), String> {
    let store = hookrelay::server::open_store(url, 2)
        .map_err(|e| format!("cannot open {}: {e}", store::redact(url)))?;
    let mut conn = store
        .conn()
        .map_err(|e| format!("cannot connect to {}: {e}", store::redact(url)))?;
    if let Conn::Sqlite(c) = &mut conn {
        // Seeding is not measured: skip the fsync of every commit.
        c.batch_execute("PRAGMA synchronous = OFF;")
            .map_err(|e| format!("cannot configure the seeding connection: {e}"))?;
    }
    Ok((store, conn))
}

/// Writes a seeded SQLite file (and its WAL, if one is left) to the disk,
/// so the kernel's write-back of the seeding does not land in the figure's
/// disk accounting (seeding skips fsync).
fn flush(path: &Path) -> Result<(), String> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    for file in [path.to_path_buf(), PathBuf::from(wal)] {
        if file.exists() {
            std::fs::File::open(&file)
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("cannot sync {}: {e}", file.display()))?;
        }
    }
    Ok(())
}

/// The receiver URL of endpoint `n`.
pub fn endpoint_url(receiver_port: u16, n: usize) -> String {
    format!("http://127.0.0.1:{receiver_port}/r/{n}")
}

/// `count` distinct endpoints (`/r/0`, `/r/1`, …), each with one active
/// subscription of the bench's subscriber, in one transaction.
pub fn idle_endpoints(path: &Path, count: usize, receiver_port: u16) -> Result<(), String> {
    seed_idle_endpoints(path, count, receiver_port)?;
    flush(path)
}

fn seed_idle_endpoints(path: &Path, count: usize, receiver_port: u16) -> Result<(), String> {
    let url = path.to_string_lossy().into_owned();
    let (_store, mut conn) = open(&url)?;
    let at = store::now();
    let urls: Vec<String> = (0..count).map(|n| endpoint_url(receiver_port, n)).collect();
    let result = hookrelay::db_transaction!(&mut conn, c => {
        for chunk in urls.chunks(ROWS_PER_INSERT) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|u| (endpoints::url.eq(u.as_str()), endpoints::created_at.eq(at)))
                .collect();
            diesel::insert_into(endpoints::table).values(&rows).execute(c)?;
        }
        let ids: HashMap<String, i64> = endpoints::table
            .select((endpoints::url, endpoints::id))
            .load::<(String, i64)>(c)?
            .into_iter()
            .collect();
        for chunk in urls.chunks(ROWS_PER_INSERT) {
            let rows: Vec<NewSubscription> = chunk
                .iter()
                .map(|u| NewSubscription {
                    marketplace_id: SUBSCRIBER_MARKETPLACE,
                    user_id: SUBSCRIBER_USER,
                    event: EVENT_TYPE,
                    endpoint_id: ids[u],
                    secret: SECRET,
                    active: true,
                    created_at: at,
                    last_modified: at,
                    // Seeded before the server starts, which loads every
                    // active subscription.
                    route_version: 0,
                })
                .collect();
            diesel::insert_into(subscriptions::table).values(&rows).execute(c)?;
        }
        Ok::<_, diesel::result::Error>(())
    });
    result.map_err(|e| format!("seeding {count} endpoints failed: {e}"))
}

/// `endpoints` endpoints (`/r/0`…) with one subscription each, and
/// `per_endpoint` pending deliveries for each (endpoint `n`'s carry
/// contextObjectId 1..=per_endpoint), every one with its own 300-byte
/// event, stored interleaved (as if they had been pushed in turn)
/// with hookrelay's own ingest write in transactions of 5,000 events.
pub fn backlog(
    path: &Path,
    endpoints: usize,
    per_endpoint: usize,
    receiver_port: u16,
) -> Result<(), String> {
    seed_backlog(path, endpoints, per_endpoint, receiver_port)?;
    flush(path)
}

fn seed_backlog(
    path: &Path,
    endpoints: usize,
    per_endpoint: usize,
    receiver_port: u16,
) -> Result<(), String> {
    use hookrelay::store::subscriptions as subs;
    let url = path.to_string_lossy().into_owned();
    let (_store, mut conn) = open(&url)?;
    let mut targets = Vec::with_capacity(endpoints);
    for n in 0..endpoints {
        let endpoint_id = subs::endpoint_id_for(&mut conn, &endpoint_url(receiver_port, n))
            .map_err(|e| format!("seeding endpoint {n} failed: {e}"))?;
        let subscription = subs::insert(
            &mut conn,
            SUBSCRIBER_MARKETPLACE,
            SUBSCRIBER_USER,
            EVENT_TYPE,
            endpoint_id,
            SECRET,
        )
        .map_err(|e| format!("seeding subscription {n} failed: {e}"))?;
        targets.push((endpoint_id, subscription.id));
    }
    let at = hookrelay::store::db_time::DbTime::new(store::now());
    let mut batch = Vec::with_capacity(EVENTS_PER_COMMIT);
    for context_id in 1..=per_endpoint as u64 {
        for &(endpoint_id, subscription_id) in &targets {
            let event_id = hookrelay::ids::new_event_id();
            batch.push(PreparedEvent::fixed(
                NewEvent {
                    id: event_id.clone(),
                    marketplace_id: SUBSCRIBER_MARKETPLACE,
                    event: EVENT_TYPE.to_string(),
                    body: event_json(context_id),
                    idempotency_key: None,
                    delivery_count: 1,
                    created_at: at.clone(),
                },
                vec![NewDelivery::pending(
                    hookrelay::ids::delivery_id(&event_id, 0),
                    event_id,
                    subscription_id,
                    endpoint_id,
                    &at,
                )],
            ));
            if batch.len() == EVENTS_PER_COMMIT {
                store_batch(&mut conn, &mut batch, &[], &mut FixedRoutes)
                    .map_err(|e| format!("seeding the backlog failed: {e}"))?;
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        store_batch(&mut conn, &mut batch, &[], &mut FixedRoutes)
            .map_err(|e| format!("seeding the backlog failed: {e}"))?;
    }
    Ok(())
}

/// A fresh PostgreSQL database `hr_bench_<random>` on the server of an
/// admin URL, dropped (with its connections) on drop.
pub struct ScratchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl ScratchDatabase {
    pub fn create(admin_url: &str) -> Result<ScratchDatabase, String> {
        let name = format!(
            "hr_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut url = url::Url::parse(admin_url)
            .map_err(|e| format!("bad PostgreSQL URL {}: {e}", store::redact(admin_url)))?;
        url.set_path(&format!("/{name}"));
        let mut admin = diesel::PgConnection::establish(admin_url)
            .map_err(|e| format!("cannot connect to {}: {e}", store::redact(admin_url)))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("CREATE DATABASE {name} failed: {e}"))?;
        Ok(ScratchDatabase {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let dropped = diesel::PgConnection::establish(&self.admin_url)
            .map_err(|e| e.to_string())
            .and_then(|mut admin| {
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = dropped {
            eprintln!(
                "warning: could not drop the scratch database {}: {e}",
                self.name
            );
        }
    }
}
