//! The Router actor (one per node): owns the registry of endpoint actors
//! and keeps it in step with the routing table (`routing`, which reports
//! its changes here). After each group commit it hands the stored
//! deliveries to their endpoint actors. In a cluster it also takes the
//! publishes themselves: it knows which endpoints other nodes own, and has
//! them told of new work.
//!
//! The router imports only downward (ingest, routing, cluster, delivery);
//! the layers below report to it through the recipients they were handed.
//! Its messages are listed in `messages`, its handlers in `handlers`.

mod handlers;
pub mod messages;
pub mod policy;

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::cluster::Ownership;
use crate::cluster::lease::Claim;
use crate::delivery::endpoint::{
    self, AddSubscription, DeliverySettings, EndpointActor, EndpointPolicy, Owner,
};
use crate::delivery::recorder::Recorder;
use crate::endpoint_url::EndpointUrl;
use crate::ingest::publisher::Ingest;
use crate::metrics::{self, ErrorSite};
use crate::signing::Secrets;
use crate::store::Store;
use crate::store::endpoints::{HealthRow, PolicyRow};
use crate::store::subscriptions::RouteRow;

use messages::StartMore;
pub use messages::{
    ApplyPolicy, CancelDeliveries, EndpointAddr, EndpointDied, Endpoints, Replay, Retired,
};

/// The router of one node; see the module documentation.
pub struct Router {
    me: Addr<Router>,
    store: Store,
    recorder: Addr<Recorder>,
    settings: Arc<DeliverySettings>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// Which endpoints this node runs the actors of.
    ownership: Ownership,
    /// The routing table, the group commit and the publish backlog.
    ingest: Ingest,
    /// subscription id → its endpoint, for the routed subscriptions.
    keys: HashMap<i64, i64>,
    /// endpoint id → its URL and the secrets of its subscriptions.
    known_endpoints: HashMap<i64, EndpointInfo>,
    /// The endpoint actors running on this node.
    actors: HashMap<i64, Addr<EndpointActor>>,
    /// Endpoint actors still to start after a restart (id, has a backlog).
    to_start: VecDeque<(i64, bool)>,
    /// Saved health of endpoints whose actors have not started yet.
    saved: HashMap<i64, HealthRow>,
    /// The policies other than the default of the endpoints known here;
    /// each actor starts with its endpoint's.
    policies: HashMap<i64, EndpointPolicy>,
    /// How many policy changes were announced (a reload started before
    /// one is not applied: it may have read an older policy).
    policy_news: u64,
    /// Told once every actor of the start has been started.
    on_loaded: Option<oneshot::Sender<()>>,
}

/// Actors started per step while loading, between other messages.
const START_CHUNK: usize = 2000;

/// What the router's endpoint actors are started with.
pub struct Deps {
    pub store: Store,
    pub recorder: Addr<Recorder>,
    pub settings: Arc<DeliverySettings>,
    /// The threads endpoint actors run on, taken in turn.
    pub arbiters: Vec<ArbiterHandle>,
}

/// What the router starts from.
pub struct Initial {
    /// Every active subscription (the routing table's, at its version).
    pub routes: Vec<RouteRow>,
    /// Endpoints with pending deliveries (used when this node owns all).
    pub backlog: Vec<(i64, String)>,
    /// Saved health of endpoints (used when this node owns all).
    pub health: Vec<(i64, HealthRow)>,
    /// Stored policies other than the default (used when this node owns
    /// all; leased endpoints come with theirs).
    pub policies: Vec<(i64, PolicyRow)>,
    /// Told once every endpoint actor has started (the node is ready).
    pub on_loaded: oneshot::Sender<()>,
}

struct EndpointInfo {
    url: Arc<EndpointUrl>,
    subscriptions: HashMap<i64, Arc<Secrets>>,
}

/// A subscription just put in the registry.
struct Recorded {
    endpoint_id: i64,
    subscription_id: i64,
    secret: Arc<Secrets>,
    /// Not routed here before.
    new_here: bool,
}

impl Router {
    /// The router at `me` (its context's address, taken before it runs, so
    /// that the layers below could be handed its recipients), with the
    /// active routes loaded. Owning every endpoint, it starts their actors
    /// in chunks once it runs: first those with a backlog. Otherwise actors
    /// start as leases are acquired.
    pub fn new(
        me: Addr<Router>,
        deps: Deps,
        ingest: Ingest,
        ownership: Ownership,
        initial: Initial,
    ) -> Router {
        let Deps {
            store,
            recorder,
            settings,
            arbiters,
        } = deps;
        let mut router = Router {
            me,
            store,
            recorder,
            settings,
            arbiters,
            next_arbiter: 0,
            ownership,
            ingest,
            keys: HashMap::new(),
            known_endpoints: HashMap::new(),
            actors: HashMap::new(),
            to_start: VecDeque::new(),
            saved: HashMap::new(),
            policies: HashMap::new(),
            policy_news: 0,
            on_loaded: Some(initial.on_loaded),
        };
        if router.ownership.owns_all() {
            router.saved = initial.health.into_iter().collect();
            router.policies = initial
                .policies
                .into_iter()
                .map(|(id, row)| (id, policy::from_row(row)))
                .collect();
            router.queue_start(initial.backlog, &initial.routes);
        }
        for row in initial.routes {
            router.record_route(row);
        }
        router
    }

    /// Queues every endpoint's actor to start, with its saved health:
    /// those with a backlog start by reading it, the others empty. They
    /// start in chunks once the router runs, so the listeners answer
    /// meanwhile.
    fn queue_start(&mut self, backlog: Vec<(i64, String)>, routes: &[RouteRow]) {
        let mut seen = HashSet::new();
        for (id, url) in backlog {
            if self.learn_endpoint(id, &url) && seen.insert(id) {
                self.to_start.push_back((id, true));
            }
        }
        for row in routes {
            let id = row.subscription.endpoint_id;
            if self.learn_endpoint(id, &row.endpoint_url) && seen.insert(id) {
                self.to_start.push_back((id, false));
            }
        }
    }

    /// Starts the next chunk of queued actors; once none is left, the node
    /// is loaded. `false` while some remain.
    fn start_chunk(&mut self) -> bool {
        for _ in 0..START_CHUNK {
            let Some((id, backlog)) = self.to_start.pop_front() else {
                break;
            };
            self.start_actor(id, backlog, None);
        }
        if !self.to_start.is_empty() {
            return false;
        }
        self.saved = HashMap::new();
        if let Some(loaded) = self.on_loaded.take() {
            let _ = loaded.send(());
        }
        true
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
                metrics::internal_error(ErrorSite::Routing);
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
        let policy = self.policy_of(id);
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
            EndpointActor::new(
                id, url, settings, store, recorder, owner, backlog, saved, policy,
            )
        });
        for (sub, secret) in &info.subscriptions {
            addr.do_send(AddSubscription {
                id: *sub,
                secret: secret.clone(),
            });
        }
        self.actors.insert(id, addr.clone());
        self.ingest.actors.insert(id, addr.clone());
        Some(addr)
    }

    /// The running actor of an endpoint, started if this node owns it.
    fn actor(&mut self, id: i64) -> Option<Addr<EndpointActor>> {
        match self.actors.get(&id) {
            Some(addr) if addr.connected() => Some(addr.clone()),
            _ if self.ownership.owns_all() => self.start_actor(id, true, None),
            _ => None,
        }
    }

    /// Keeps the endpoint side of a routed subscription: its endpoint
    /// known, its actor told of it (started, or its lease claimed). The
    /// routing table itself is `RouteTable`'s.
    fn add_route(&mut self, row: RouteRow) {
        self.forget_old_endpoint(&row.subscription);
        let Some(added) = self.record_route(row) else {
            return;
        };
        let running = match self.actors.get(&added.endpoint_id) {
            Some(addr) if addr.connected() => Some(addr.clone()),
            _ => self.place(added.endpoint_id, added.new_here),
        };
        if let Some(addr) = running {
            addr.do_send(AddSubscription {
                id: added.subscription_id,
                secret: added.secret,
            });
        }
    }

    /// Puts a routed subscription in the registry: its endpoint known, its
    /// secret kept for the endpoint's actor. `None` when its secret or URL
    /// is unusable (logged; the table does not route it either).
    fn record_route(&mut self, row: RouteRow) -> Option<Recorded> {
        let sub = row.subscription;
        let secret = Arc::new(sub.secrets().ok()?);
        if !self.learn_endpoint(sub.endpoint_id, &row.endpoint_url) {
            return None;
        }
        if let Some(info) = self.known_endpoints.get_mut(&sub.endpoint_id) {
            info.subscriptions.insert(sub.id, secret.clone());
        }
        let new_here = self.keys.insert(sub.id, sub.endpoint_id).is_none();
        Some(Recorded {
            endpoint_id: sub.endpoint_id,
            subscription_id: sub.id,
            secret,
            new_here,
        })
    }

    /// Finds a home for an endpoint whose actor does not run: owning every
    /// endpoint, its actor starts (unless the loading chunks start it);
    /// otherwise its lease is claimed when it is `new_here`.
    fn place(&mut self, endpoint_id: i64, new_here: bool) -> Option<Addr<EndpointActor>> {
        match &self.ownership {
            Ownership::All if self.on_loaded.is_some() => None,
            Ownership::All => self.start_actor(endpoint_id, false, None),
            Ownership::Leased(claims) => {
                if new_here {
                    claims.do_send(Claim(vec![endpoint_id]));
                }
                None
            }
        }
    }

    /// An endpoint actor stopped by itself (dead or unused). A subscription
    /// that arrived meanwhile gets a fresh actor (or, clustered, a fresh
    /// claim); otherwise the endpoint is forgotten.
    fn actor_stopped(&mut self, endpoint_id: i64, actor: &Addr<EndpointActor>) {
        if self.actors.get(&endpoint_id) == Some(actor) {
            self.actors.remove(&endpoint_id);
            self.ingest.actors.remove(endpoint_id);
        }
        let resubscribed = self
            .known_endpoints
            .get(&endpoint_id)
            .is_some_and(|info| !info.subscriptions.is_empty());
        if !resubscribed {
            self.known_endpoints.remove(&endpoint_id);
            return;
        }
        match &self.ownership {
            Ownership::Leased(claims) => claims.do_send(Claim(vec![endpoint_id])),
            Ownership::All if !self.actors.contains_key(&endpoint_id) => {
                self.start_actor(endpoint_id, true, None);
            }
            Ownership::All => {}
        }
    }

    /// A subscription moved to another endpoint: from now on it is the new
    /// endpoint's. The old endpoint's actor is not told, so it still signs
    /// and sends the deliveries routed to it before the move.
    fn forget_old_endpoint(&mut self, sub: &crate::store::models::Subscription) {
        let Some(old) = self.keys.get(&sub.id).copied() else {
            return;
        };
        if old == sub.endpoint_id {
            return;
        }
        self.keys.remove(&sub.id);
        if let Some(info) = self.known_endpoints.get_mut(&old) {
            info.subscriptions.remove(&sub.id);
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
        let (table, store) = (self.ingest.routes.clone(), self.store.clone());
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
