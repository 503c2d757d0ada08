//! The Router actor (one per node): owns the routing table
//! (marketplaceId, event type) → routes, which the publishers read
//! (`publisher`), and the registry of endpoint actors. After each group
//! commit it hands the stored deliveries to their endpoint actors. In a
//! cluster it also takes the publishes themselves: it knows which
//! endpoints other nodes own, and has them told of new work.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::cluster::lease::{Claim, LeaseManager};
use crate::delivery::endpoint::{
    self, AddSubscription, DeliverySettings, EndpointActor, EndpointDied, Enqueue, Job, Owner,
    Retired,
};
use crate::delivery::recorder::{Flush, Recorder};
use crate::endpoint_url::EndpointUrl;
use crate::event::Event;
use crate::group_commit::{Committed, GroupCommit, Ticket};
use crate::publisher::{Publisher, Waiting, submit};
use crate::routing::{RouteTable, RoutesChanged};
use crate::signing::Secret;
use crate::store::Store;
use crate::store::endpoints::HealthRow;
use crate::store::leases::{self, Acquired};
use crate::store::subscriptions::RouteRow;

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
    /// True when the idempotency key was seen before with another event:
    /// nothing was stored (`event_id` is the earlier event's).
    pub conflicting: bool,
}

/// Why a publish failed; the publisher should retry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    #[error("hookrelay is overloaded: {0} events are waiting to be stored; retry shortly")]
    Overloaded(usize),
    /// The database's trouble (unreachable, disk full): retry later.
    #[error("the events could not be stored: {0}")]
    Storage(String),
    /// Refused for another reason (ours, and logged).
    #[error("the events could not be stored: {0}")]
    Failed(String),
}

pub type PublishReply = oneshot::Sender<Result<Vec<Published>, PublishError>>;

/// Store and route events; the answer comes on `reply` after the commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub events: Vec<Incoming>,
    pub ticket: Ticket,
    pub reply: PublishReply,
}

/// A dead letter was put back in its queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replay {
    pub endpoint_id: i64,
    pub endpoint_url: String,
    pub job: Job,
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
    table: RouteTable,
    /// subscription id → its endpoint, for the routed subscriptions.
    keys: HashMap<i64, i64>,
    /// endpoint id → its URL and the secrets of its subscriptions.
    known_endpoints: HashMap<i64, EndpointInfo>,
    /// The endpoint actors running on this node.
    actors: HashMap<i64, Addr<EndpointActor>>,
    /// Where to claim endpoints of new subscriptions (clustered mode).
    leases: Option<Addr<LeaseManager>>,
    /// Where publishes go to be stored; `None` if its threads could not
    /// start.
    commits: Option<GroupCommit>,
    /// Events sent to be stored whose deliveries have not arrived yet.
    waiting: Waiting,
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
    /// Every active subscription, as of routing version `version`.
    pub routes: Vec<RouteRow>,
    pub version: i64,
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
    ) -> (Addr<Router>, Publisher) {
        let Initial {
            owns_all,
            routes,
            version,
            backlog,
            health,
            on_loaded,
        } = initial;
        let on_loaded = Some(on_loaded);
        let waiting = Waiting::default();
        let shared_waiting = waiting.clone();
        let mut shared_table = None;
        let mut commits_for_publisher = None;
        let router = Router::create(|ctx| {
            let table = RouteTable::new(version, &routes, ctx.address().recipient());
            shared_table = Some(table.clone());
            let commits =
                match GroupCommit::start(store.clone(), table.clone(), ctx.address().recipient()) {
                    Ok(commits) => Some(commits),
                    // Publishes are then refused with a storage error (and logged).
                    Err(e) => {
                        log::error!("cannot start the group-commit threads: {e}");
                        None
                    }
                };
            if owns_all {
                commits_for_publisher = commits.clone();
            }
            let mut router = Router {
                me: ctx.address(),
                store,
                recorder,
                settings,
                arbiters,
                next_arbiter: 0,
                owns_all,
                table,
                keys: HashMap::new(),
                known_endpoints: HashMap::new(),
                actors: HashMap::new(),
                leases: None,
                commits,
                waiting,
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
        });
        let publisher = Publisher::new(
            shared_table.expect("set when the router was created"),
            commits_for_publisher,
            router.clone(),
            shared_waiting,
        );
        (router, publisher)
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
            let owner = Owner {
                retired: router.clone().recipient(),
                died: router.recipient(),
            };
            EndpointActor::new(id, url, settings, store, recorder, owner, backlog, saved)
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

    /// Keeps the endpoint side of a routed subscription: its endpoint
    /// known, its actor told of it (started, or its lease claimed). The
    /// routing table itself is `RouteTable`'s.
    fn add_route(&mut self, row: RouteRow) {
        let sub = row.subscription;
        let secret = match Secret::parse(&sub.secret) {
            // Logged by the routing table, which does not route it either.
            Ok(secret) => Arc::new(secret),
            Err(_) => return,
        };
        if !self.learn_endpoint(sub.endpoint_id, &row.endpoint_url) {
            return;
        }
        if let Some(info) = self.known_endpoints.get_mut(&sub.endpoint_id) {
            info.subscriptions.insert(sub.id, secret.clone());
        }
        let new_here = self.keys.insert(sub.id, sub.endpoint_id).is_none();
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
            addr.do_send(AddSubscription { id: sub.id, secret });
        }
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

    /// Forgets a subscription that is no longer routed.
    fn remove_route(&mut self, subscription_id: i64) {
        let Some(endpoint_id) = self.keys.remove(&subscription_id) else {
            return;
        };
        if let Some(info) = self.known_endpoints.get_mut(&endpoint_id) {
            info.subscriptions.remove(&subscription_id);
        }
        if let Some(addr) = self.actors.get(&endpoint_id) {
            addr.do_send(endpoint::ForgetSubscription(subscription_id));
        }
    }

    /// Brings the routing table up to date (after a change this node
    /// learned of other than through the table).
    fn catch_up(&self, ctx: &mut Context<Self>) {
        let (table, store) = (self.table.clone(), self.store.clone());
        ctx.spawn(
            async move {
                if let Err(e) = table.catch_up(&store).await {
                    // The next group commit catches up by itself.
                    log::warn!("could not read routing changes: {e}");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Router {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(100_000);
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
        let actors = &self.actors;
        let owns_all = self.owns_all;
        submit(
            &self.table,
            self.commits.as_ref(),
            &self.waiting,
            msg.events,
            msg.ticket,
            msg.reply,
            |events| {
                let mut remote: Vec<i64> = events
                    .iter()
                    .flat_map(|e| &e.deliveries)
                    .map(|d| d.endpoint_id)
                    .filter(|id| !owns_all && !actors.contains_key(id))
                    .collect();
                remote.sort_unstable();
                remote.dedup();
                remote
            },
        );
    }
}

impl Handler<Committed> for Router {
    type Result = ();

    fn handle(&mut self, msg: Committed, _ctx: &mut Self::Context) {
        self.waiting.done(msg.events);
        for (endpoint_id, jobs) in msg.deliveries {
            // Normally running; if this node lost the endpoint meanwhile, its
            // new owner reads these deliveries from the database.
            if let Some(addr) = self.actor(endpoint_id) {
                addr.do_send(Enqueue(jobs));
            }
        }
    }
}

impl Handler<RoutesChanged> for Router {
    type Result = ();

    fn handle(&mut self, msg: RoutesChanged, _ctx: &mut Self::Context) {
        for row in msg.0 {
            if row.subscription.active {
                self.add_route(row);
            } else {
                self.remove_route(row.subscription.id);
            }
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

    fn handle(&mut self, msg: EndpointDied, ctx: &mut Self::Context) {
        for id in msg.subscription_ids {
            self.remove_route(id);
        }
        self.actor_stopped(msg.endpoint_id, &msg.actor);
        // The removal is a routing change in the database already (every
        // group stored from now on sees it); this updates the table now.
        self.catch_up(ctx);
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
