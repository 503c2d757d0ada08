//! Startup and shutdown of `hookrelay serve`, as the steps of `run`: open
//! the store and load the catalog and routes; start the actors (endpoint
//! arbiters, recorder, group commit, in a cluster the lease manager,
//! listener and sync loop, then the router); bind both listeners; serve
//! (print one `hookrelay listening …` line once ready, wait for
//! SIGTERM/SIGINT); shut down in order (stop accepting, let in-flight
//! deliveries finish within the deadline, write what is buffered, hand
//! leases over).

mod listeners;
mod retention;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::api::{ApiSettings, AppState};
use crate::catalog::{Catalog, DEFAULT_EVENT_TYPES};
use crate::cluster::lease::{LeaseHolder, LeaseManager};
use crate::cluster::{Ownership, default_node_id, listener, sync};
use crate::config::ServeArgs;
use crate::delivery::endpoint::{DeliverySettings, drain};
use crate::delivery::health::Policy;
use crate::delivery::recorder::{Flush, Recorder};
use crate::ingest::directory::Directory;
use crate::ingest::group_commit::GroupCommit;
use crate::ingest::publisher::{Ingest, Publisher, Waiting};
use crate::metrics;
use crate::router::{Deps, Endpoints, Initial, Router};
use crate::routing::RouteTable;
use crate::store::subscriptions::RouteRow;
use crate::store::{self, Backend, SqliteSync, Store, StoreError};
use listeners::{Listeners, bind_listeners};

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
    #[error("cannot start the group-commit threads: {0}")]
    GroupCommit(std::io::Error),
    #[error("could not install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("--operator-webhook{0}")]
    OperatorWebhook(String),
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
    let node_id = configure_process(&args);
    let (store, loaded) = open(&args, &node_id).await?;
    let node = start_actors(&args, &store, &node_id, loaded)?;
    let state = app_state(&args, &store, &node, node_id.clone());
    let listeners = bind_listeners(&args, &state, node.threads)?;
    spawn_maintenance(&args, &store);
    serve(&state, &listeners, node.loaded).await?;
    shut_down(&args, &state, listeners, node.running).await;
    Ok(())
}

/// Makes the process-wide choices (TLS, endpoint addresses allowed, the
/// queued-bytes budget) and names this node; its id.
fn configure_process(args: &ServeArgs) -> Arc<str> {
    install_tls_provider();
    crate::delivery::sender::allow_private_endpoints(args.allow_private_endpoints);
    crate::delivery::budget::QUEUED.set_limit(args.max_queued_bytes);
    let node_id: Arc<str> = Arc::from(args.node_id.clone().unwrap_or_else(default_node_id));
    metrics::set_node(&node_id);
    node_id
}

/// `--operator-webhook` and its secret, checked: the URL (normalized) and
/// the secret, when set.
fn operator_webhook(args: &ServeArgs) -> Result<Option<(String, String)>, StartError> {
    let (Some(url), Some(secret)) = (&args.operator_webhook, &args.operator_webhook_secret) else {
        return Ok(None);
    };
    let url = crate::endpoint_url::EndpointUrl::parse(url)
        .map_err(|e| StartError::OperatorWebhook(format!(": {e}")))?;
    crate::signing::Secret::parse_new(secret)
        .map_err(|e| StartError::OperatorWebhook(format!("-secret: {e}")))?;
    Ok(Some((url.as_str().to_string(), secret.clone())))
}

/// Opens the store (migrating it), installs the operator webhook's route
/// and reads what the node starts from.
async fn open(args: &ServeArgs, node_id: &str) -> Result<(Store, Loaded), StartError> {
    let url = args.database.database_url.clone();
    let (pool_size, sync) = (args.db_pool_size, args.sqlite_synchronous);
    let webhook = operator_webhook(args)?;
    let (store, loaded) = tokio::task::spawn_blocking(move || {
        let store = open_store_with(&url, pool_size, sync)?;
        let operator = store::notices::install_operator(
            &mut store.conn()?,
            webhook.as_ref().map(|(u, s)| (u.as_str(), s.as_str())),
        )?;
        let loaded = load(&store, operator)?;
        Ok::<_, StoreError>((store, loaded))
    })
    .await
    .map_err(|_| StoreError::TaskFailed)??;
    log::info!(
        "node {node_id}: database {} ({:?}): {} active subscriptions, {} endpoints with pending deliveries",
        store::redact(&args.database.database_url),
        store.backend(),
        loaded.routes.len(),
        loaded.backlog.len()
    );
    Ok((store, loaded))
}

/// The actors of a started node, and when it is loaded.
struct StartedNode {
    running: Running,
    publisher: Publisher,
    ownership: Ownership,
    catalog: Catalog,
    /// Threads per listener.
    threads: usize,
    /// Answers once every endpoint actor has started.
    loaded: oneshot::Receiver<()>,
}

/// What shutting down stops, in order.
struct Running {
    router: Addr<Router>,
    recorder: Addr<Recorder>,
    arbiters: Vec<Arbiter>,
    /// Stops the cluster's LISTEN thread (which runs only in a cluster).
    stop_listener: Arc<AtomicBool>,
}

/// Starts the actors, lowest first: the endpoint arbiters and the
/// recorder, the group commit, in a cluster the lease manager, listener
/// and sync loop, then the router they all report to (its address is
/// taken before it runs, so that they could be handed its recipients).
fn start_actors(
    args: &ServeArgs,
    store: &Store,
    node_id: &Arc<str>,
    loaded: Loaded,
) -> Result<StartedNode, StartError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
    let router_ctx = Context::<Router>::new();
    let me = router_ctx.address();
    let operator_endpoint = loaded.operator.as_ref().map(|o| o.endpoint_id);
    let recorder = Recorder::new(store.clone(), loaded.operator, me.clone().recipient()).start();
    let catalog = Catalog::new(loaded.catalog);
    let ingest = start_ingest(store, loaded.routing_version, &loaded.routes, &me)?;
    let stop_listener = Arc::new(AtomicBool::new(false));
    let ownership = match store.backend() {
        Backend::Sqlite => Ownership::All,
        Backend::Postgres => {
            let cluster = ClusterStart {
                store,
                node_id,
                routes: &ingest.routes,
                catalog: &catalog,
                stop_listener: &stop_listener,
            };
            start_cluster(args, cluster, &me)
        }
    };
    let deps = Deps {
        store: store.clone(),
        recorder: recorder.clone(),
        settings: delivery_settings(args, operator_endpoint),
        arbiters: arbiters.iter().map(Arbiter::handle).collect(),
    };
    let (on_loaded, loaded_rx) = oneshot::channel();
    let initial = Initial {
        routes: loaded.routes,
        backlog: loaded.backlog,
        health: loaded.health,
        policies: loaded.policies,
        on_loaded,
    };
    let router = Router::new(me, deps, ingest.clone(), ownership.clone(), initial);
    let router = router_ctx.run(router);
    Ok(StartedNode {
        publisher: Publisher::new(ingest, &ownership, router.clone().recipient()),
        running: Running {
            router,
            recorder,
            arbiters,
            stop_listener,
        },
        ownership,
        catalog,
        threads,
        loaded: loaded_rx,
    })
}

/// Starts the group commit, routing against the table of `routes` at
/// `version` (as loaded at start);
/// both report to `router` (which runs only once the rest has started).
/// Its threads failing to start fails the start.
fn start_ingest(
    store: &Store,
    version: i64,
    routes: &[RouteRow],
    router: &Addr<Router>,
) -> Result<Ingest, StartError> {
    let routes = RouteTable::new(version, routes, router.clone().recipient());
    let (actors, waiting) = (Directory::default(), Waiting::default());
    let commits = GroupCommit::start(
        store.clone(),
        routes.clone(),
        router.clone().recipient(),
        (actors.clone(), waiting.clone()),
    )
    .map_err(StartError::GroupCommit)?;
    Ok(Ingest {
        routes,
        commits,
        waiting,
        actors,
    })
}

/// What the delivery of every endpoint actor is bounded by.
fn delivery_settings(args: &ServeArgs, operator_endpoint: Option<i64>) -> Arc<DeliverySettings> {
    Arc::new(DeliverySettings {
        timeout: args.delivery_timeout,
        retry_schedule: args.retry_schedule.0.clone(),
        max_in_flight: args.max_in_flight_per_endpoint,
        adaptive_concurrency: args.adaptive_concurrency,
        verify_interval: args.verify_interval,
        probe_interval: args.probe_interval,
        probe_max_interval: args.probe_max_interval,
        policy: Policy {
            pause_after_failures: args.pause_after_failures,
            dead_after_failed_verifications: args.dead_after_failed_verifications,
        },
        operator_endpoint,
    })
}

/// What the cluster's parts share with the rest of the node.
struct ClusterStart<'a> {
    store: &'a Store,
    node_id: &'a Arc<str>,
    routes: &'a RouteTable,
    catalog: &'a Catalog,
    stop_listener: &'a Arc<AtomicBool>,
}

/// Starts the lease manager, the LISTEN thread and the sync loop, each
/// reporting to `router`; the node then owns the endpoints it leases.
fn start_cluster(args: &ServeArgs, cluster: ClusterStart, router: &Addr<Router>) -> Ownership {
    let holder = LeaseHolder {
        acquired: router.clone().recipient(),
        lost: router.clone().recipient(),
        release: router.clone().recipient(),
    };
    let leases = LeaseManager::new(
        cluster.store.clone(),
        cluster.node_id.clone(),
        args.lease_ttl,
        holder,
    )
    .start();
    listener::spawn(
        args.database.database_url.clone(),
        listener::Listeners {
            work: router.clone().recipient(),
            leases: leases.clone().recipient(),
            policy: router.clone().recipient(),
            cancelled: router.clone().recipient(),
        },
        cluster.stop_listener.clone(),
    );
    actix_rt::spawn(sync::run(
        cluster.store.clone(),
        cluster.routes.clone(),
        sync::Reports {
            work: router.clone().recipient(),
            policy: router.clone().recipient(),
        },
        cluster.catalog.clone(),
        cluster.node_id.to_string(),
    ));
    Ownership::Leased(leases.recipient())
}

/// What every handler of both listeners shares.
fn app_state(args: &ServeArgs, store: &Store, node: &StartedNode, node_id: Arc<str>) -> AppState {
    AppState {
        store: store.clone(),
        router: node.running.router.clone(),
        publisher: node.publisher.clone(),
        ownership: node.ownership.clone(),
        catalog: node.catalog.clone(),
        settings: Arc::new(ApiSettings {
            allow_private_endpoints: args.allow_private_endpoints,
            verification_timeout: args.delivery_timeout,
            max_body_bytes: args.max_body_bytes,
            max_batch_events: args.max_batch_events,
            internal_token_hash: args.internal_token.as_deref().map(crate::token::hash),
            max_subscriptions_per_token: args.max_subscriptions_per_token,
            request_timeout: args.request_timeout,
            history_retention: args.history_retention,
        }),
        ready: Arc::new(AtomicBool::new(false)),
        node_id,
    }
}

/// The retention passes (history cleanup), the probe that finds the database working
/// again after trouble, and the sampler of the last hour's metrics.
fn spawn_maintenance(args: &ServeArgs, store: &Store) {
    metrics::recent::spawn_sampler();
    actix_rt::spawn(watch_storage(store.clone()));
    actix_rt::spawn(retention::run(
        store.clone(),
        retention::Retention {
            history: args.history_retention,
            keys: args.idempotency_retention,
            every: args.retention_interval,
        },
    ));
}

/// Says the node is ready once every endpoint actor runs (the listeners
/// answer meanwhile: /health alive, not ready), then waits for SIGTERM or
/// SIGINT.
async fn serve(
    state: &AppState,
    listeners: &Listeners,
    loaded: oneshot::Receiver<()>,
) -> Result<(), StartError> {
    let _ = loaded.await;
    state.ready.store(true, Ordering::Relaxed);
    let (public, internal) = (listeners.public, listeners.internal);
    println!("hookrelay listening public=http://{public} internal=http://{internal}");
    log::info!(
        "hookrelay {} node {} ready: public {public}, internal {internal}",
        env!("CARGO_PKG_VERSION"),
        state.node_id
    );
    wait_for_signal().await.map_err(StartError::Signals)
}

/// Stops in order: no new requests, in-flight deliveries finish (within
/// the shutdown timeout), buffered outcomes are written, in a cluster the
/// leases are handed over, then the endpoint threads stop.
async fn shut_down(args: &ServeArgs, state: &AppState, listeners: Listeners, running: Running) {
    log::info!(
        "shutting down: no new requests; waiting up to {} for in-flight work",
        humantime::format_duration(args.shutdown_timeout)
    );
    state.ready.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + args.shutdown_timeout;
    futures_util::future::join_all(listeners.handles.iter().map(|h| h.stop(true))).await;
    if let Ok(endpoints) = running.router.send(Endpoints).await {
        drain(&endpoints, deadline).await;
    }
    if running.recorder.send(Flush).await.is_err() {
        log::error!(
            "could not write the last delivery outcomes; those deliveries will be sent again"
        );
        metrics::internal_error(metrics::ErrorSite::Shutdown);
    }
    if let Ownership::Leased(_) = state.ownership {
        running.stop_listener.store(true, Ordering::Relaxed);
        leave_cluster(&state.store, &state.node_id).await;
    }
    for arbiter in running.arbiters {
        arbiter.stop();
    }
    log::info!("stopped");
}

/// Hands this node's leases over at once, rather than at their expiry.
async fn leave_cluster(store: &Store, node_id: &str) {
    let node = node_id.to_string();
    if let Err(e) = store
        .run(move |conn| store::leases::leave(conn, &node))
        .await
    {
        log::warn!("could not hand over leases ({e}); other nodes take over when they expire");
    }
}

/// What a node reads from the database at start.
struct Loaded {
    catalog: Vec<(String, String)>,
    routes: Vec<RouteRow>,
    /// The routing version `routes` are at (or newer).
    routing_version: i64,
    backlog: Vec<(i64, String)>,
    health: Vec<(i64, store::endpoints::HealthRow)>,
    /// Endpoints' policies other than the default.
    policies: Vec<(i64, store::endpoints::PolicyRow)>,
    /// Where lifecycle notices are delivered, when an operator webhook is set.
    operator: Option<store::notices::OperatorRoute>,
}

/// Reads what a node starts from, in one connection.
fn load(
    store: &Store,
    operator: Option<store::notices::OperatorRoute>,
) -> Result<Loaded, StoreError> {
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
    let policies = store::endpoints::policies_set(&mut conn)?;
    Ok(Loaded {
        catalog,
        routes,
        routing_version,
        backlog,
        health,
        policies,
        operator,
    })
}

/// Returns on the first SIGTERM or SIGINT.
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
