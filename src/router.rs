//! The Router actor (one per node): owns the routing table
//! (marketplaceId, event type) → routes and the registry of endpoint actors.
//! On publish it resolves the routes (never across tenants, skipping the
//! triggering user's own subscriptions) and passes the events with their
//! deliveries to the group-commit threads (`group_commit`), which store
//! them and answer the publisher; after the commit the router hands the
//! deliveries to their endpoint actors.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::cluster::lease::{Claim, LeaseManager};
use crate::delivery::endpoint::{
    self, AddSubscription, DeliverySettings, EndpointActor, Enqueue, Job,
};
use crate::delivery::recorder::{Flush, Recorder};
use crate::endpoint_url::EndpointUrl;
use crate::event::Event;
use crate::group_commit::{Committed, GroupCommit, Pending};
use crate::signing::Secret;
use crate::store::Store;
use crate::store::db_time::DbTime;
use crate::store::endpoints::HealthRow;
use crate::store::events::PreparedEvent;
use crate::store::leases::{self, Acquired};
use crate::store::models::{NewDelivery, NewEvent, PENDING};
use crate::store::subscriptions::RouteRow;

/// Events waiting for a commit beyond which publishers are told to retry.
const MAX_WAITING: usize = 200_000;

/// One subscription as the router sees it.
#[derive(Clone)]
struct Route {
    subscription_id: i64,
    user_id: i64,
    endpoint_id: i64,
    secret: Arc<Secret>,
}

/// An event to publish, validated.
pub struct Incoming {
    pub event: Event,
    /// `Idempotency-Key` header, or else the event's `eventId`.
    pub idempotency_key: Option<String>,
}

/// The result of publishing one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub event_id: String,
    pub deliveries: usize,
    /// True when the idempotency key was seen before: nothing new was stored.
    pub repeated: bool,
}

/// Why a publish failed; the publisher should retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("hookrelay is overloaded: {0} events are waiting to be stored; retry shortly")]
    Overloaded(usize),
    #[error("the events could not be stored: {0}")]
    Storage(String),
}

pub type PublishReply = oneshot::Sender<Result<Vec<Published>, PublishError>>;

/// Store and route events; the answer comes on `reply` after the commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub events: Vec<Incoming>,
    pub reply: PublishReply,
}

/// A subscription was created (or found active at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddRoute(pub RouteRow);

/// Subscriptions were deactivated: stop routing to them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveRoutes(pub Vec<i64>);

/// A dead letter was put back in its queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay {
    pub endpoint_id: i64,
    pub endpoint_url: String,
    pub job: Job,
}

/// An endpoint actor counted itself dead and removed these subscriptions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndpointDied {
    pub endpoint_id: i64,
    pub actor: Addr<EndpointActor>,
    pub subscription_ids: Vec<i64>,
}

/// The actor of one endpoint, if it runs on this node.
#[derive(Message)]
#[rtype(result = "Option<Addr<EndpointActor>>")]
pub struct EndpointAddr(pub i64);

/// The addresses of every endpoint actor.
#[derive(Message)]
#[rtype(result = "Vec<Addr<EndpointActor>>")]
pub struct Endpoints;

pub struct Router {
    me: Addr<Router>,
    store: Store,
    recorder: Addr<Recorder>,
    settings: Arc<DeliverySettings>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// True on a single-node (SQLite) store: this node owns every endpoint.
    /// Otherwise it owns the endpoints it holds leases on.
    owns_all: bool,
    table: HashMap<(i64, String), Vec<Route>>,
    /// subscription id → its table key.
    keys: HashMap<i64, (i64, String)>,
    /// endpoint id → its URL and the secrets of its subscriptions.
    known_endpoints: HashMap<i64, EndpointInfo>,
    /// The endpoint actors running on this node.
    actors: HashMap<i64, Addr<EndpointActor>>,
    /// Where to claim endpoints of new subscriptions (clustered mode).
    leases: Option<Addr<LeaseManager>>,
    /// Where publishes go to be stored; `None` until the router runs.
    commits: Option<GroupCommit>,
    /// Events sent to be stored whose commit has not been reported yet.
    waiting_events: usize,
    /// Endpoint actors still to start after a restart (id, has a backlog).
    to_start: VecDeque<(i64, bool)>,
    /// Saved health of endpoints whose actors have not started yet.
    saved: HashMap<i64, HealthRow>,
    /// Told once every actor of the start has been started.
    on_loaded: Option<oneshot::Sender<()>>,
}

/// Actors started per step while loading, between other messages.
const START_CHUNK: usize = 2000;

/// Start the next chunk of endpoint actors.
#[derive(Message)]
#[rtype(result = "()")]
struct StartMore;

/// What the router starts from.
pub struct Initial {
    /// This node owns every endpoint (single node on SQLite).
    pub owns_all: bool,
    /// Every active subscription.
    pub routes: Vec<RouteRow>,
    /// Endpoints with pending deliveries (used when `owns_all`).
    pub backlog: Vec<(i64, String)>,
    /// Saved health of endpoints (used when `owns_all`).
    pub health: Vec<(i64, HealthRow)>,
    /// Told once every endpoint actor has started (the node is ready).
    pub on_loaded: oneshot::Sender<()>,
}

struct EndpointInfo {
    url: Arc<EndpointUrl>,
    subscriptions: HashMap<i64, Arc<Secret>>,
}

impl Router {
    /// Starts the router with the active routes loaded. With `owns_all`,
    /// every endpoint's actor runs here: `backlog` lists endpoints that have
    /// pending deliveries, `health` their saved health. Otherwise actors
    /// start as leases are acquired.
    pub fn launch(
        store: Store,
        recorder: Addr<Recorder>,
        settings: Arc<DeliverySettings>,
        arbiters: Vec<ArbiterHandle>,
        initial: Initial,
    ) -> Addr<Router> {
        let Initial {
            owns_all,
            routes,
            backlog,
            health,
            on_loaded,
        } = initial;
        let on_loaded = Some(on_loaded);
        Router::create(move |ctx| {
            let mut router = Router {
                me: ctx.address(),
                store,
                recorder,
                settings,
                arbiters,
                next_arbiter: 0,
                owns_all,
                table: HashMap::new(),
                keys: HashMap::new(),
                known_endpoints: HashMap::new(),
                actors: HashMap::new(),
                leases: None,
                commits: None,
                waiting_events: 0,
                to_start: VecDeque::new(),
                saved: health.into_iter().collect(),
                on_loaded,
            };
            if owns_all {
                // Endpoints with a backlog start by reading it; the others
                // start empty. Either way with their saved health. They
                // start in chunks once the router runs, so the listeners
                // answer meanwhile.
                let mut seen = HashSet::new();
                for (id, url) in backlog {
                    if router.learn_endpoint(id, &url) && seen.insert(id) {
                        router.to_start.push_back((id, true));
                    }
                }
                for row in &routes {
                    let id = row.subscription.endpoint_id;
                    if router.learn_endpoint(id, &row.endpoint_url) && seen.insert(id) {
                        router.to_start.push_back((id, false));
                    }
                }
            }
            for row in routes {
                router.add_route(row);
            }
            router
        })
    }

    fn learn_endpoint(&mut self, id: i64, url: &str) -> bool {
        if self.known_endpoints.contains_key(&id) {
            return true;
        }
        match EndpointUrl::parse(url) {
            Ok(url) => {
                self.known_endpoints.insert(
                    id,
                    EndpointInfo {
                        url: Arc::new(url),
                        subscriptions: HashMap::new(),
                    },
                );
                true
            }
            Err(e) => {
                log::error!("endpoint {id} has an unusable URL ({e}); its deliveries wait");
                false
            }
        }
    }

    /// Starts the actor of an endpoint this node owns, unless it runs.
    fn start_actor(
        &mut self,
        id: i64,
        backlog: bool,
        saved: Option<HealthRow>,
    ) -> Option<Addr<EndpointActor>> {
        if let Some(addr) = self.actors.get(&id)
            && addr.connected()
        {
            return Some(addr.clone());
        }
        let saved = saved.or_else(|| self.saved.remove(&id));
        let info = self.known_endpoints.get(&id)?;
        let arbiter = &self.arbiters[self.next_arbiter % self.arbiters.len()];
        self.next_arbiter += 1;
        let (settings, store, recorder, router, url) = (
            self.settings.clone(),
            self.store.clone(),
            self.recorder.clone(),
            self.me.clone(),
            info.url.clone(),
        );
        let addr = EndpointActor::start_in_arbiter(arbiter, move |_| {
            EndpointActor::new(id, url, settings, store, recorder, router, backlog, saved)
        });
        for (sub, secret) in &info.subscriptions {
            addr.do_send(AddSubscription {
                id: *sub,
                secret: secret.clone(),
            });
        }
        self.actors.insert(id, addr.clone());
        Some(addr)
    }

    /// The running actor of an endpoint, started if this node owns it.
    fn actor(&mut self, id: i64) -> Option<Addr<EndpointActor>> {
        match self.actors.get(&id) {
            Some(addr) if addr.connected() => Some(addr.clone()),
            _ if self.owns_all => self.start_actor(id, true, None),
            _ => None,
        }
    }

    fn add_route(&mut self, row: RouteRow) {
        let sub = row.subscription;
        let secret = match Secret::parse(&sub.secret) {
            Ok(secret) => Arc::new(secret),
            Err(e) => {
                log::error!(
                    "subscription {} has an unusable secret ({e}); not routed",
                    sub.id
                );
                return;
            }
        };
        if !self.learn_endpoint(sub.endpoint_id, &row.endpoint_url) {
            return;
        }
        if let Some(info) = self.known_endpoints.get_mut(&sub.endpoint_id) {
            info.subscriptions.insert(sub.id, secret.clone());
        }
        let new_here = !self.keys.contains_key(&sub.id);
        let running = match self.actors.get(&sub.endpoint_id) {
            Some(addr) if addr.connected() => Some(addr.clone()),
            _ if self.owns_all && self.on_loaded.is_some() => None,
            _ if self.owns_all => self.start_actor(sub.endpoint_id, false, None),
            _ => {
                if new_here && let Some(leases) = &self.leases {
                    leases.do_send(Claim(vec![sub.endpoint_id]));
                }
                None
            }
        };
        if let Some(addr) = running {
            addr.do_send(AddSubscription {
                id: sub.id,
                secret: secret.clone(),
            });
        }
        let key = (sub.marketplace_id, sub.event.clone());
        let routes = self.table.entry(key.clone()).or_default();
        routes.retain(|r| r.subscription_id != sub.id);
        routes.push(Route {
            subscription_id: sub.id,
            user_id: sub.user_id,
            endpoint_id: sub.endpoint_id,
            secret,
        });
        self.keys.insert(sub.id, key);
    }

    /// An endpoint actor stopped by itself (dead or unused). A subscription
    /// that arrived meanwhile gets a fresh actor (or, clustered, a fresh
    /// claim); otherwise the endpoint is forgotten.
    fn actor_stopped(&mut self, endpoint_id: i64, actor: &Addr<EndpointActor>) {
        if self.actors.get(&endpoint_id) == Some(actor) {
            self.actors.remove(&endpoint_id);
        }
        let resubscribed = self
            .known_endpoints
            .get(&endpoint_id)
            .is_some_and(|info| !info.subscriptions.is_empty());
        if !resubscribed {
            self.known_endpoints.remove(&endpoint_id);
        } else if let Some(leases) = &self.leases {
            leases.do_send(Claim(vec![endpoint_id]));
        } else if self.owns_all && !self.actors.contains_key(&endpoint_id) {
            self.start_actor(endpoint_id, true, None);
        }
    }

    fn remove_route(&mut self, subscription_id: i64) {
        let Some(key) = self.keys.remove(&subscription_id) else {
            return;
        };
        if let Some(routes) = self.table.get_mut(&key) {
            if let Some(route) = routes.iter().find(|r| r.subscription_id == subscription_id) {
                let endpoint_id = route.endpoint_id;
                if let Some(info) = self.known_endpoints.get_mut(&endpoint_id) {
                    info.subscriptions.remove(&subscription_id);
                }
                if let Some(addr) = self.actors.get(&endpoint_id) {
                    addr.do_send(endpoint::ForgetSubscription(subscription_id));
                }
            }
            routes.retain(|r| r.subscription_id != subscription_id);
            if routes.is_empty() {
                self.table.remove(&key);
            }
        }
    }

    /// Resolves routes and builds the rows and jobs of one publish.
    fn prepare(&self, events: Vec<Incoming>) -> (Vec<PreparedEvent>, Vec<Vec<(i64, Job)>>) {
        let now = DbTime::new(crate::store::now());
        let mut prepared = Vec::with_capacity(events.len());
        let mut jobs = Vec::with_capacity(events.len());
        for incoming in events {
            let event = incoming.event;
            let body = event.to_body();
            let bytes = Bytes::from(body.clone());
            let event_id = uuid::Uuid::now_v7().to_string();
            let routes: Vec<&Route> = self
                .table
                .get(&(event.marketplace_id, event.event.clone()))
                .map(|routes| {
                    routes
                        .iter()
                        .filter(|r| Some(r.user_id) != event.triggering_user_id)
                        .collect()
                })
                .unwrap_or_default();
            let mut deliveries = Vec::with_capacity(routes.len());
            let mut event_jobs = Vec::with_capacity(routes.len());
            for route in routes {
                let id = uuid::Uuid::now_v7().to_string();
                deliveries.push(NewDelivery {
                    id: id.clone(),
                    event_id: event_id.clone(),
                    subscription_id: route.subscription_id,
                    endpoint_id: route.endpoint_id,
                    status: PENDING,
                    attempts: 0,
                    next_attempt_at: now.clone(),
                    last_error: None,
                    created_at: now.clone(),
                    updated_at: now.clone(),
                });
                event_jobs.push((
                    route.endpoint_id,
                    Job {
                        id: Arc::from(id),
                        subscription_id: route.subscription_id,
                        secret: route.secret.clone(),
                        body: bytes.clone(),
                        attempts: 0,
                        not_before: None,
                    },
                ));
            }
            prepared.push(PreparedEvent {
                event: NewEvent {
                    id: event_id,
                    marketplace_id: event.marketplace_id,
                    event: event.event.clone(),
                    body,
                    idempotency_key: incoming.idempotency_key,
                    delivery_count: deliveries.len() as i32,
                    created_at: now.clone(),
                },
                deliveries,
            });
            jobs.push(event_jobs);
        }
        (prepared, jobs)
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(100_000);
        match GroupCommit::start(self.store.clone(), ctx.address().recipient()) {
            Ok(commits) => self.commits = Some(commits),
            // Publishes are then refused with a storage error (and logged).
            Err(e) => log::error!("cannot start the group-commit thread: {e}"),
        }
        ctx.notify(StartMore);
    }
}

impl Handler<StartMore> for Router {
    type Result = ();

    fn handle(&mut self, _: StartMore, ctx: &mut Self::Context) {
        for _ in 0..START_CHUNK {
            let Some((id, backlog)) = self.to_start.pop_front() else {
                break;
            };
            self.start_actor(id, backlog, None);
        }
        if self.to_start.is_empty() {
            self.saved = HashMap::new();
            if let Some(loaded) = self.on_loaded.take() {
                let _ = loaded.send(());
            }
        } else {
            ctx.notify(StartMore);
        }
    }
}

impl Handler<Publish> for Router {
    type Result = ();

    fn handle(&mut self, msg: Publish, _ctx: &mut Self::Context) {
        if self.waiting_events + msg.events.len() > MAX_WAITING {
            let _ = msg
                .reply
                .send(Err(PublishError::Overloaded(self.waiting_events)));
            return;
        }
        let (events, jobs) = self.prepare(msg.events);
        let mut remote: Vec<i64> = Vec::new();
        if !self.owns_all {
            for (endpoint_id, _) in jobs.iter().flatten() {
                if !self.actors.contains_key(endpoint_id) {
                    remote.push(*endpoint_id);
                }
            }
            remote.sort_unstable();
            remote.dedup();
        }
        let count = events.len();
        let pending = Pending {
            events,
            jobs,
            remote,
            reply: msg.reply,
        };
        let refused = match &self.commits {
            Some(commits) => commits.send(pending).err(),
            None => Some(pending),
        };
        match refused {
            None => self.waiting_events += count,
            Some(pending) => {
                let _ = pending.reply.send(Err(PublishError::Storage(
                    "the group-commit thread is not running; see the server log".into(),
                )));
            }
        }
    }
}

impl Handler<Committed> for Router {
    type Result = ();

    fn handle(&mut self, msg: Committed, _ctx: &mut Self::Context) {
        self.waiting_events = self.waiting_events.saturating_sub(msg.events);
        for (endpoint_id, jobs) in msg.deliveries {
            // Normally running; if this node lost the endpoint meanwhile, its
            // new owner reads these deliveries from the database.
            if let Some(addr) = self.actor(endpoint_id) {
                addr.do_send(Enqueue(jobs));
            }
        }
    }
}

impl Handler<AddRoute> for Router {
    type Result = ();

    fn handle(&mut self, msg: AddRoute, _ctx: &mut Self::Context) {
        self.add_route(msg.0);
    }
}

impl Handler<RemoveRoutes> for Router {
    type Result = ();

    fn handle(&mut self, msg: RemoveRoutes, _ctx: &mut Self::Context) {
        for id in msg.0 {
            self.remove_route(id);
        }
    }
}

impl Handler<Replay> for Router {
    type Result = ();

    fn handle(&mut self, msg: Replay, ctx: &mut Self::Context) {
        if !self.learn_endpoint(msg.endpoint_id, &msg.endpoint_url) {
            return;
        }
        match self.actor(msg.endpoint_id) {
            Some(addr) => addr.do_send(endpoint::Replayed(msg.job)),
            None => {
                // Another node owns it: tell it to read its queue.
                let store = self.store.clone();
                let ids = vec![msg.endpoint_id];
                let notify = async move { store.run(move |conn| leases::notify(conn, &ids)).await };
                ctx.spawn(notify.into_actor(self).map(|result, _, _| {
                    if let Err(e) = result {
                        log::error!("could not notify the owner of a replayed delivery: {e}");
                    }
                }));
            }
        }
    }
}

impl Handler<Endpoints> for Router {
    type Result = MessageResult<Endpoints>;

    fn handle(&mut self, _: Endpoints, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.actors.values().cloned().collect())
    }
}

impl Handler<EndpointAddr> for Router {
    type Result = Option<Addr<EndpointActor>>;

    fn handle(&mut self, msg: EndpointAddr, _ctx: &mut Self::Context) -> Self::Result {
        self.actors.get(&msg.0).cloned()
    }
}

impl Handler<EndpointDied> for Router {
    type Result = ();

    fn handle(&mut self, msg: EndpointDied, _ctx: &mut Self::Context) {
        for id in msg.subscription_ids {
            self.remove_route(id);
        }
        self.actor_stopped(msg.endpoint_id, &msg.actor);
    }
}

/// This node now holds leases on these endpoints: start their actors.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesAcquired(pub Vec<Acquired>);

/// This node lost these leases (expired or could not be renewed): stop
/// their actors at once. Another node may own them already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeasesLost(pub Vec<i64>);

/// Hand these endpoints over: stop their actors once in-flight requests are
/// done (or `deadline`), write their outcomes, then answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseEndpoints {
    pub ids: Vec<i64>,
    pub deadline: std::time::Instant,
}

/// An endpoint actor stopped because nothing uses its endpoint any more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retired {
    pub endpoint_id: i64,
    pub actor: Addr<EndpointActor>,
}

impl Handler<Retired> for Router {
    type Result = ();

    fn handle(&mut self, msg: Retired, _ctx: &mut Self::Context) {
        self.actor_stopped(msg.endpoint_id, &msg.actor);
    }
}

/// The lease manager to claim new endpoints with (clustered mode).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UseLeaseManager(pub Addr<LeaseManager>);

impl Handler<UseLeaseManager> for Router {
    type Result = ();

    fn handle(&mut self, msg: UseLeaseManager, _ctx: &mut Self::Context) {
        self.leases = Some(msg.0);
    }
}

/// Other nodes stored deliveries for these endpoints.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkArrived(pub Vec<i64>);

impl Handler<LeasesAcquired> for Router {
    type Result = ();

    fn handle(&mut self, msg: LeasesAcquired, _ctx: &mut Self::Context) {
        for acquired in msg.0 {
            if self.learn_endpoint(acquired.id, &acquired.url) {
                let health = acquired.health();
                self.start_actor(acquired.id, true, Some(health));
            }
        }
    }
}

impl Handler<LeasesLost> for Router {
    type Result = ();

    fn handle(&mut self, msg: LeasesLost, _ctx: &mut Self::Context) {
        for id in msg.0 {
            if let Some(addr) = self.actors.remove(&id) {
                addr.do_send(endpoint::StopNow);
            }
        }
    }
}

impl Handler<ReleaseEndpoints> for Router {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: ReleaseEndpoints, _ctx: &mut Self::Context) -> Self::Result {
        let addrs: Vec<_> = msg
            .ids
            .iter()
            .filter_map(|id| self.actors.remove(id))
            .collect();
        let recorder = self.recorder.clone();
        Box::pin(async move {
            endpoint::drain(&addrs, msg.deadline).await;
            for addr in &addrs {
                let _ = addr.send(endpoint::StopNow).await;
            }
            let _ = recorder.send(Flush).await;
        })
    }
}

impl Handler<WorkArrived> for Router {
    type Result = ();

    fn handle(&mut self, msg: WorkArrived, _ctx: &mut Self::Context) {
        for id in msg.0 {
            if let Some(addr) = self.actors.get(&id) {
                addr.do_send(endpoint::Poke);
            }
        }
    }
}
