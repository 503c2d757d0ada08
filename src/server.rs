//! Startup and shutdown of `hookrelay serve`: opens the store, loads the
//! catalog and routes, starts the recorder, the endpoint arbiters and the
//! router, binds both listeners (printing one `hookrelay listening …` line
//! once ready), runs the history cleanup, and on SIGTERM/SIGINT stops
//! accepting, lets in-flight deliveries finish within the deadline, writes
//! what is buffered, and returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{App, web};

use crate::api::{self, ApiSettings, AppState};
use crate::catalog::{Catalog, DEFAULT_EVENT_TYPES};
use crate::cluster::lease::LeaseManager;
use crate::cluster::{default_node_id, listener, sync};
use crate::config::ServeArgs;
use crate::delivery::endpoint::{DeliverySettings, drain};
use crate::delivery::health::Policy;
use crate::delivery::recorder::{Flush, Recorder};
use crate::metrics;
use crate::router::{Endpoints, Initial, Router, UseLeaseManager};
use crate::store::{self, Backend, SqliteSync, Store, StoreError};

/// How often old history is cleaned up.
const CLEANUP_EVERY: Duration = Duration::from_secs(600);
/// How often a database in trouble is tried again.
const PROBE_STORAGE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {addr} for the {which} listener: {source}; choose another address with --{which}-addr"
    )]
    Bind {
        which: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("could not install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Opens the database (migrating it) and seeds the default event types.
pub fn open_store(url: &str, pool_size: u32) -> Result<Store, StoreError> {
    open_store_with(url, pool_size, SqliteSync::Full)
}

/// `open_store`, choosing SQLite's commit durability.
pub fn open_store_with(url: &str, pool_size: u32, sync: SqliteSync) -> Result<Store, StoreError> {
    let store = Store::open_with(url, pool_size, sync)?;
    store::catalog::seed(&mut store.conn()?, DEFAULT_EVENT_TYPES)?;
    Ok(store)
}

/// Makes the process-wide TLS choice (ring) before any client is built.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs the engine until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> Result<(), StartError> {
    install_tls_provider();
    crate::delivery::sender::allow_private_endpoints(args.allow_private_endpoints);
    crate::delivery::budget::QUEUED.set_limit(args.max_queued_bytes);
    let node_id: Arc<str> = Arc::from(args.node_id.clone().unwrap_or_else(default_node_id));
    metrics::set_node(&node_id);
    let url = args.database.database_url.clone();
    let pool_size = args.db_pool_size;
    let sync = args.sqlite_synchronous;
    let (store, loaded) = tokio::task::spawn_blocking(move || {
        let store = open_store_with(&url, pool_size, sync)?;
        let loaded = load(&store)?;
        Ok::<_, StoreError>((store, loaded))
    })
    .await
    .map_err(|_| StoreError::TaskFailed)??;
    let clustered = store.backend() == Backend::Postgres;
    log::info!(
        "node {node_id}: database {} ({:?}): {} active subscriptions, {} endpoints with pending deliveries",
        store::redact(&args.database.database_url),
        store.backend(),
        loaded.routes.len(),
        loaded.backlog.len()
    );

    let settings = Arc::new(DeliverySettings {
        timeout: args.delivery_timeout,
        retry_schedule: args.retry_schedule.0.clone(),
        max_in_flight: args.max_in_flight_per_endpoint,
        verify_interval: args.verify_interval,
        probe_interval: args.probe_interval,
        probe_max_interval: args.probe_max_interval,
        policy: Policy {
            pause_after_failures: args.pause_after_failures,
            dead_after_failed_verifications: args.dead_after_failed_verifications,
        },
    });
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let handles = arbiters.iter().map(Arbiter::handle).collect();
    let recorder = Recorder::new(store.clone()).start();
    let catalog = Catalog::new(loaded.catalog);
    // On PostgreSQL, endpoint actors start as this node acquires leases.
    let (backlog, health) = if clustered {
        (Vec::new(), Vec::new())
    } else {
        (loaded.backlog, loaded.health)
    };
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let (router, publisher) = Router::launch(
        store.clone(),
        recorder.clone(),
        settings,
        handles,
        Initial {
            owns_all: !clustered,
            routes: loaded.routes,
            version: loaded.routing_version,
            backlog,
            health,
            on_loaded: loaded_tx,
        },
    );
    let stop_listener = Arc::new(AtomicBool::new(false));
    if clustered {
        let leases = LeaseManager::new(
            store.clone(),
            node_id.clone(),
            args.lease_ttl,
            router.clone(),
        )
        .start();
        router.do_send(UseLeaseManager(leases.clone()));
        listener::spawn(
            args.database.database_url.clone(),
            listener::Listeners {
                work: router.clone().recipient(),
                leases: leases.recipient(),
            },
            stop_listener.clone(),
        );
        actix_rt::spawn(sync::run(
            store.clone(),
            publisher.routes().clone(),
            router.clone(),
            catalog.clone(),
            node_id.to_string(),
        ));
    }

    let state = AppState {
        store: store.clone(),
        router: router.clone(),
        publisher,
        catalog,
        settings: Arc::new(ApiSettings {
            allow_private_endpoints: args.allow_private_endpoints,
            verification_timeout: args.delivery_timeout,
            max_body_bytes: args.max_body_bytes,
            max_batch_events: args.max_batch_events,
            internal_token_hash: args.internal_token.as_deref().map(crate::token::hash),
            max_subscriptions_per_token: args.max_subscriptions_per_token,
            request_timeout: args.request_timeout,
        }),
        ready: Arc::new(AtomicBool::new(false)),
        node_id: node_id.clone(),
    };

    let limits = ListenerLimits {
        workers: threads,
        shutdown_timeout: args.shutdown_timeout,
        max_connections: args.max_connections as usize,
    };
    let (public, public_addr) = bind(
        "public",
        args.public_addr,
        &state,
        api::public::routes,
        &limits,
    )?;
    let (internal, internal_addr) = bind(
        "internal",
        args.internal_addr,
        &state,
        api::internal::routes,
        &limits,
    )?;
    let (public_handle, internal_handle) = (public.handle(), internal.handle());
    actix_rt::spawn(public);
    actix_rt::spawn(internal);
    actix_rt::spawn(watch_storage(store.clone()));
    actix_rt::spawn(cleanup_loop(
        store.clone(),
        args.history_retention,
        args.idempotency_retention,
    ));

    // The listeners answer (/health: alive, not ready) while the endpoint
    // actors start; the node is ready once they all run.
    let _ = loaded_rx.await;
    state.ready.store(true, Ordering::Relaxed);
    println!("hookrelay listening public=http://{public_addr} internal=http://{internal_addr}");
    log::info!(
        "hookrelay {} node {node_id} ready: public {public_addr}, internal {internal_addr}",
        env!("CARGO_PKG_VERSION")
    );

    wait_for_signal().await.map_err(StartError::Signals)?;
    log::info!(
        "shutting down: no new requests; waiting up to {} for in-flight work",
        humantime::format_duration(args.shutdown_timeout)
    );
    state.ready.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + args.shutdown_timeout;
    futures_util::future::join(public_handle.stop(true), internal_handle.stop(true)).await;
    if let Ok(endpoints) = router.send(Endpoints).await {
        drain(&endpoints, deadline).await;
    }
    if recorder.send(Flush).await.is_err() {
        log::error!(
            "could not write the last delivery outcomes; those deliveries will be sent again"
        );
    }
    if clustered {
        stop_listener.store(true, Ordering::Relaxed);
        let node = node_id.to_string();
        if let Err(e) = store
            .run(move |conn| store::leases::leave(conn, &node))
            .await
        {
            log::warn!("could not hand over leases ({e}); other nodes take over when they expire");
        }
    }
    for arbiter in arbiters {
        arbiter.stop();
    }
    log::info!("stopped");
    Ok(())
}

/// A client must send its request headers within this long of connecting
/// (or of its previous request, on a kept-alive connection), or gets a 408
/// and the connection is closed.
const HEADERS_WITHIN: Duration = Duration::from_secs(5);
/// An idle kept-alive connection is closed after this long.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// What both listeners are bounded by.
struct ListenerLimits {
    workers: usize,
    shutdown_timeout: Duration,
    /// Open connections per listener (over all its workers).
    max_connections: usize,
}

/// Binds one listener with its routes; `which` names it in errors. Each
/// connection's stream is wrapped so that what the HTTP layer refuses by
/// itself is answered in JSON too (`api::framing`).
fn bind(
    which: &'static str,
    addr: std::net::SocketAddr,
    state: &AppState,
    routes: fn(&mut web::ServiceConfig),
    limits: &ListenerLimits,
) -> Result<(actix_web::dev::Server, std::net::SocketAddr), StartError> {
    use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
    let bind_error = |source| StartError::Bind {
        which,
        addr,
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let state = web::Data::new(state.clone());
    let server = actix_server::Server::build()
        .workers(limits.workers)
        .disable_signals()
        .shutdown_timeout(limits.shutdown_timeout.as_secs().max(1))
        .max_concurrent_connections(limits.max_connections.div_ceil(limits.workers).max(1))
        .listen(which, listener, move || {
            let state = state.clone();
            let app = App::new()
                .app_data(state)
                .wrap(api::json_errors())
                .configure(routes)
                .default_service(web::to(api::not_found))
                .into_factory()
                .map_err(|e: actix_web::Error| e.error_response());
            let http = actix_http::HttpService::build()
                .keep_alive(KEEP_ALIVE)
                .client_request_timeout(HEADERS_WITHIN)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(bound)
                .finish(map_config(app, |_| actix_web::dev::AppConfig::default()));
            fn_service(|io: actix_rt::net::TcpStream| async move {
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    api::framing::JsonFraming::new(io),
                    actix_http::Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })
        .map_err(bind_error)?
        .run();
    Ok((server, bound))
}

/// What a node reads from the database at start.
struct Loaded {
    catalog: Vec<(String, String)>,
    routes: Vec<store::subscriptions::RouteRow>,
    /// The routing version `routes` are at (or newer).
    routing_version: i64,
    backlog: Vec<(i64, String)>,
    health: Vec<(i64, store::endpoints::HealthRow)>,
}

fn load(store: &Store) -> Result<Loaded, StoreError> {
    let mut conn = store.conn()?;
    let catalog = store::catalog::list(&mut conn)?;
    // The version first: the routes read after it reflect it (or newer
    // changes, which catching up applies again harmlessly).
    let routing_version = store::routing::current(&mut conn)?;
    let routes = store::subscriptions::all_active(&mut conn)?;
    let backlog = store::deliveries::endpoints_with_pending(&mut conn)?;
    let mut ids: Vec<i64> = routes.iter().map(|r| r.subscription.endpoint_id).collect();
    ids.extend(backlog.iter().map(|(id, _)| *id));
    ids.sort_unstable();
    ids.dedup();
    let health = store::endpoints::health_of(&mut conn, &ids)?;
    Ok(Loaded {
        catalog,
        routes,
        routing_version,
        backlog,
        health,
    })
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// While the database is in trouble, tries it every second, so the node
/// says it is ready again once the database works, even with no traffic.
async fn watch_storage(store: Store) {
    let mut tick = tokio::time::interval(PROBE_STORAGE_EVERY);
    loop {
        tick.tick().await;
        store.probe().await;
    }
}

/// Removes history older than the retention settings, periodically.
async fn cleanup_loop(store: Store, history: Duration, keys: Duration) {
    let mut tick = tokio::time::interval(CLEANUP_EVERY);
    loop {
        tick.tick().await;
        let now = chrono::Utc::now();
        let history_before = (now
            - chrono::Duration::from_std(history).unwrap_or(chrono::Duration::days(7)))
        .naive_utc();
        let keys_before = (now
            - chrono::Duration::from_std(keys).unwrap_or(chrono::Duration::days(1)))
        .naive_utc();
        match store
            .run_background(move |conn| {
                store::deliveries::cleanup(conn, history_before, keys_before)
            })
            .await
        {
            Ok(0) => {}
            Ok(n) => log::info!("cleanup removed {n} rows of old history"),
            Err(e) => {
                log::error!("history cleanup failed: {e}");
                crate::metrics::internal_error(crate::metrics::ErrorSite::Cleanup);
            }
        }
    }
}
