//! Several `hookrelay serve` nodes on one PostgreSQL database: endpoints are
//! split between the nodes by leases, events pushed to any node reach every
//! endpoint exactly once, a killed node's endpoints are taken over, and a
//! subscription change on one node reaches the others' routing.
//!
//! PostgreSQL only: each test creates one database on the server named by
//! `HOOKRELAY_TEST_POSTGRES_URL` and shares it between its nodes; without
//! that variable the tests pass as skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const SECRET: &str = "cluster-secret-0123456789";
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const ENDPOINTS: usize = 8;
const LEASE_TTL: Duration = Duration::from_secs(3);

/// Three nodes, one token, eight subscriptions (one receiver playing eight
/// endpoints `/ep0`…`/ep7`) to `revision_status_updated`.
struct Cluster {
    /// `None` once killed.
    nodes: Vec<Option<TestApp>>,
    receiver: Receiver,
    paths: Vec<String>,
    token: String,
    marketplace: i64,
    /// Declared last: dropped after the nodes are stopped.
    _db: Arc<PostgresDb>,
}

macro_rules! cluster {
    ($marketplace:expr, $reply:expr, $args:expr) => {
        match Cluster::start($marketplace, $reply, $args).await {
            Some(c) => c,
            None => {
                eprintln!("skipped: {POSTGRES_ENV} is not set (cluster tests need PostgreSQL)");
                return;
            }
        }
    };
}

impl Cluster {
    async fn start(marketplace: i64, reply: Reply, extra: &[&str]) -> Option<Cluster> {
        let db = PostgresDb::create_from_env()?;
        let mut nodes = Vec::new();
        // One after the other: the first runs the migrations.
        for name in NODES {
            let node = TestApp::spawn_cluster_node(&db, name, extra).await;
            let (status, health) = node.health().await;
            assert_eq!(status, 200, "{name}: /health {health}");
            assert_eq!(health["node"], name, "{name}: /health {health}");
            assert_eq!(health["backend"], "postgres", "{name}: /health {health}");
            nodes.push(Some(node));
        }
        let receiver = Receiver::start().await;
        let paths: Vec<String> = (0..ENDPOINTS).map(|i| format!("/ep{i}")).collect();
        let cluster = Cluster {
            nodes,
            receiver,
            paths,
            token: String::new(),
            marketplace,
            _db: db,
        };
        let token = cluster.node(0).token(marketplace, 1).await;
        for path in &cluster.paths {
            cluster
                .node(0)
                .subscribe_ok(
                    &token,
                    REVISION_STATUS_UPDATED,
                    &cluster.receiver.url_at(path),
                    SECRET,
                )
                .await;
        }
        cluster.receiver.set_reply(reply);
        let cluster = Cluster { token, ..cluster };
        let owners = cluster.wait_for_owners(&NODES).await;
        eprintln!("endpoint owners: {owners:?}");
        cluster.wait_until_every_node_routes_to_all().await;
        Some(cluster)
    }

    fn node(&self, i: usize) -> &TestApp {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{} was killed", NODES[i]))
    }

    fn url(&self, path: &str) -> String {
        self.receiver.url_at(path)
    }

    /// `path → ownerNode` as node `via` lists them (only our endpoints).
    async fn owners(&self, via: usize) -> HashMap<String, Option<String>> {
        let listed = self.node(via).all_endpoints().await;
        self.paths
            .iter()
            .map(|p| {
                let url = self.url(p);
                let owner = listed
                    .iter()
                    .find(|e| {
                        e["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(url.as_str())
                    })
                    .and_then(|e| e["ownerNode"].as_str().map(str::to_string));
                (p.clone(), owner)
            })
            .collect()
    }

    /// Waits until every endpoint has an owner among `live` and the
    /// endpoints are spread over more than one of them.
    async fn wait_for_owners(&self, live: &[&str]) -> HashMap<String, String> {
        let via = NODES
            .iter()
            .position(|n| live.contains(n))
            .expect("a live node");
        wait_for(
            SOON,
            &format!("every endpoint owned by one of {live:?}, spread over several"),
            || async {
                let owners = self.owners(via).await;
                let all: Option<HashMap<String, String>> = owners
                    .into_iter()
                    .map(|(p, o)| o.filter(|o| live.contains(&o.as_str())).map(|o| (p, o)))
                    .collect();
                let all = all?;
                let distinct: HashSet<&String> = all.values().collect();
                (distinct.len() > 1).then_some(all)
            },
        )
        .await
    }

    /// Pushes marker events to each node until it routes to all eight
    /// subscriptions (subscriptions made on node A reach the others' routing
    /// tables shortly after).
    async fn wait_until_every_node_routes_to_all(&self) {
        let mut marker = 1_000_000;
        for (i, name) in NODES.iter().enumerate() {
            let Some(node) = &self.nodes[i] else { continue };
            wait_until_async(
                SOON,
                &format!("{name} routes events to all {ENDPOINTS} subscriptions"),
                || {
                    marker += 1;
                    let ev = event(REVISION_STATUS_UPDATED, self.marketplace, marker);
                    async move { node.push_event_ok(&ev).await["deliveries"] == ENDPOINTS as u64 }
                },
            )
            .await;
        }
    }

    /// Waits until each endpoint's owner reports nothing queued or in flight.
    async fn wait_until_settled(&self) {
        wait_until_async(
            Duration::from_secs(60),
            "every owner reports an empty queue and nothing in flight",
            || async {
                let mut settled = 0;
                for (i, name) in NODES.iter().enumerate() {
                    let Some(node) = &self.nodes[i] else { continue };
                    for e in node.all_endpoints().await {
                        if e["ownerNode"] == *name
                            && self.paths.iter().any(|p| e["url"] == self.url(p))
                            && e["queueDepth"].as_u64() == Some(0)
                            && e["inFlight"].as_u64() == Some(0)
                        {
                            settled += 1;
                        }
                    }
                }
                settled == ENDPOINTS
            },
        )
        .await;
    }

    /// How often each contextObjectId arrived at `path`, and when first.
    fn arrivals(&self, path: &str) -> HashMap<i64, (usize, Instant)> {
        let mut out: HashMap<i64, (usize, Instant)> = HashMap::new();
        for d in self.receiver.deliveries_at(path) {
            if let Some(id) = d.context_object_id() {
                let e = out.entry(id).or_insert((0, d.at));
                e.0 += 1;
                e.1 = e.1.min(d.at);
            }
        }
        out
    }

    /// Waits until every endpoint got every id in `ids`.
    async fn wait_for_everywhere(&self, ids: &HashSet<i64>, deadline: Duration) {
        let start = Instant::now();
        loop {
            let missing: Vec<(String, usize)> = self
                .paths
                .iter()
                .map(|p| {
                    let got = self.arrivals(p);
                    (
                        p.clone(),
                        ids.iter().filter(|i| !got.contains_key(i)).count(),
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            if missing.is_empty() {
                return;
            }
            if start.elapsed() > deadline {
                panic!(
                    "after {deadline:?} endpoints still miss events (path, how many of {}): {missing:?}",
                    ids.len()
                );
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Pushes event `i` to one of `survivors` (round robin); `true` when it was
/// accepted (202). A 503 (overloaded) is allowed; anything else fails.
async fn push_to(c: &Cluster, survivors: &[usize], i: i64) -> bool {
    let node = c.node(survivors[i as usize % survivors.len()]);
    let ev = event(REVISION_STATUS_UPDATED, c.marketplace, i);
    let (status, body) = node.push_event(&ev).await;
    assert!(
        status == 202 || status == 503,
        "push of event {i} answered {status}: {body}"
    );
    status == 202
}

/// Ids delivered more than once to `path` among `ids`, with their counts.
fn duplicates(arrivals: &HashMap<i64, (usize, Instant)>, ids: &HashSet<i64>) -> Vec<(i64, usize)> {
    let mut d: Vec<(i64, usize)> = arrivals
        .iter()
        .filter(|(id, (n, _))| *n > 1 && ids.contains(id))
        .map(|(id, (n, _))| (*id, *n))
        .collect();
    d.sort();
    d
}

#[actix_rt::test]
async fn events_pushed_round_robin_to_three_nodes_reach_every_endpoint_exactly_once() {
    let c = cluster!(8100, Reply::status(200), &[]);
    const TOTAL: i64 = 300;
    for i in 1..=TOTAL {
        let node = c.node(i as usize % NODES.len());
        let pushed = node
            .push_event_ok(&event(REVISION_STATUS_UPDATED, c.marketplace, i))
            .await;
        assert_eq!(
            pushed["deliveries"],
            ENDPOINTS as u64,
            "event {i} via {}: {pushed}",
            NODES[i as usize % NODES.len()]
        );
    }
    let ids: HashSet<i64> = (1..=TOTAL).collect();
    c.wait_for_everywhere(&ids, Duration::from_secs(60)).await;
    c.wait_until_settled().await;
    let mut problems = Vec::new();
    for p in &c.paths {
        let arrivals = c.arrivals(p);
        let dups = duplicates(&arrivals, &ids);
        if !dups.is_empty() {
            problems.push(format!("{p}: {dups:?}"));
        }
        // The warm-up markers too: never twice.
        let marker_dups: Vec<_> = arrivals.iter().filter(|(_, (n, _))| *n > 1).collect();
        if !marker_dups.is_empty() {
            problems.push(format!("{p} (markers): {marker_dups:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "with every node alive each endpoint must get each event once; duplicates (id, count): {problems:?}"
    );
    for d in c.receiver.deliveries().iter().step_by(97) {
        assert_signed(d, SECRET);
    }
}

/// The node owning the most endpoints, and their paths.
fn busiest_node(owners: &HashMap<String, Option<String>>) -> (usize, HashSet<String>) {
    let owned_by = |i: usize| {
        owners
            .iter()
            .filter(|(_, o)| o.as_deref() == Some(NODES[i]))
            .map(|(p, _)| p.clone())
            .collect::<HashSet<String>>()
    };
    let busiest = (0..NODES.len())
        .max_by_key(|i| owned_by(*i).len())
        .expect("the cluster has nodes");
    (busiest, owned_by(busiest))
}

/// Pushes the events `ids` to `survivors` (round robin); answers those
/// accepted.
async fn push_all(
    c: &Cluster,
    survivors: &[usize],
    ids: std::ops::RangeInclusive<i64>,
) -> HashSet<i64> {
    let mut accepted = HashSet::new();
    for i in ids {
        if push_to(c, survivors, i).await {
            accepted.insert(i);
        }
    }
    accepted
}

/// Pushes events 101..=300 to `survivors` while they take the killed node's
/// endpoints over; answers the accepted ids and how long after `killed`
/// every endpoint had an owner among `live`.
async fn push_during_takeover(
    c: &Cluster,
    survivors: &[usize],
    live: &[&str],
    killed: Instant,
) -> (HashSet<i64>, Duration) {
    let pushing = push_all(c, survivors, 101..=300);
    let takeover = async {
        c.wait_for_owners(live).await;
        killed.elapsed()
    };
    futures_util::future::join(pushing, takeover).await
}

/// Duplicates beyond what the victim had in flight when it died, or had had
/// answered but not yet recorded (outcomes are written in batches every few
/// tens of milliseconds): on the victim's endpoints, an event repeated
/// though first sent more than 2 s before or 250 ms after the kill; on a
/// survivor's, any repeat.
fn duplicates_beyond_the_kill(
    c: &Cluster,
    victim_paths: &HashSet<String>,
    accepted: &HashSet<i64>,
    killed: Instant,
) -> Vec<String> {
    let (before, after) = (Duration::from_secs(2), Duration::from_millis(250));
    let mut problems = Vec::new();
    let mut victim_dups = 0;
    let mut oldest = Duration::ZERO;
    for p in &c.paths {
        let arrivals = c.arrivals(p);
        let dups = duplicates(&arrivals, accepted);
        if victim_paths.contains(p) {
            victim_dups += dups.len();
            let mut outside = Vec::new();
            for (id, n) in &dups {
                let first = arrivals[id].1;
                if first > killed + after || first + before < killed {
                    outside.push((*id, *n));
                }
                oldest = oldest.max(killed.saturating_duration_since(first));
            }
            if !outside.is_empty() {
                problems.push(format!(
                    "{p} (was the victim's): repeated though first sent more than {before:?} before or {after:?} after the kill: {outside:?}"
                ));
            }
        } else if !dups.is_empty() {
            problems.push(format!("{p} (a survivor's): {dups:?}"));
        }
    }
    eprintln!(
        "duplicates on the victim's endpoints: {victim_dups}, first sent at most {oldest:?} before the kill"
    );
    problems
}

#[actix_rt::test]
async fn a_killed_nodes_endpoints_are_taken_over_and_every_accepted_event_is_delivered() {
    let mut c = cluster!(
        8200,
        Reply::delayed(Duration::from_millis(20), 200),
        &["--max-in-flight-per-endpoint", "4"]
    );
    let owners = c.owners(0).await;
    let (victim, victim_paths) = busiest_node(&owners);
    assert!(!victim_paths.is_empty(), "{owners:?}");
    let survivors: Vec<usize> = (0..NODES.len()).filter(|i| *i != victim).collect();
    let live: Vec<&str> = survivors.iter().map(|i| NODES[*i]).collect();
    eprintln!(
        "killing {} which owns {victim_paths:?}; survivors {live:?}",
        NODES[victim]
    );

    let mut accepted = push_all(&c, &survivors, 1..=100).await;
    // The victim is delivering when it dies.
    wait_until(SOON, "the victim delivered some of the stream", || {
        victim_paths.iter().any(|p| {
            c.arrivals(p)
                .keys()
                .filter(|id| (1..=100).contains(*id))
                .count()
                >= 10
        })
    })
    .await;
    // Taken out of the cluster; kept until the end for its log.
    let mut dead = c.nodes[victim].take().expect("victim running");
    dead.kill9();
    let killed = Instant::now();

    let (more, took) = push_during_takeover(&c, &survivors, &live, killed).await;
    accepted.extend(more);
    eprintln!(
        "the killed node's endpoints had new owners {took:?} after the kill; {} of 300 pushes accepted",
        accepted.len()
    );
    assert!(
        took <= LEASE_TTL + Duration::from_secs(8),
        "the killed node's endpoints got new owners only {took:?} after the kill (lease TTL {LEASE_TTL:?})"
    );
    assert!(
        accepted.len() >= 250,
        "the survivors refused {} of 300 pushes",
        300 - accepted.len()
    );

    c.wait_for_everywhere(&accepted, Duration::from_secs(60))
        .await;
    c.wait_until_settled().await;
    let problems = duplicates_beyond_the_kill(&c, &victim_paths, &accepted, killed);
    assert!(!dead.is_running());
    assert!(
        problems.is_empty(),
        "duplicates beyond the killed node's in-flight requests (id, count): {problems:?}"
    );
}

#[actix_rt::test]
async fn a_subscription_deleted_on_one_node_stops_routing_on_another() {
    let c = cluster!(8300, Reply::status(200), &[]);
    let (a, b) = (c.node(0), c.node(1));
    let gone_path = c.paths[0].clone();
    let gone_url = c.url(&gone_path);
    let subs = a.subscriptions_of(&c.token).await;
    let sub = subs
        .iter()
        .find(|s| s["endpoint"] == Value::String(gone_url.clone()))
        .and_then(|s| s["subscriptionId"].as_i64())
        .unwrap_or_else(|| panic!("{gone_url} not among {subs:?}"));

    let (status, body) = a.delete_subscription(&c.token, sub).await;
    assert_eq!(status, 204, "DELETE via node A: {body}");
    let deleted = Instant::now();
    assert_json_error(
        &b.get_subscription(&c.token, sub).await,
        404,
        "node B after the delete on node A",
    );

    // Push markers via B until it routes to seven subscriptions only.
    let mut marker = 2_000_000;
    let stopped = wait_for(
        Duration::from_secs(30),
        "node B stops routing to the deleted subscription",
        || {
            marker += 1;
            let ev = event(REVISION_STATUS_UPDATED, c.marketplace, marker);
            async move {
                let pushed = b.push_event_ok(&ev).await;
                (pushed["deliveries"] == ENDPOINTS as u64 - 1).then(|| deleted.elapsed())
            }
        },
    )
    .await;
    eprintln!("node B stopped routing to the deleted subscription {stopped:?} after the delete");
    assert!(
        stopped <= Duration::from_secs(5),
        "node B still routed to a subscription deleted on node A {stopped:?} later (want ~1-2 s)"
    );

    for i in 1..=20 {
        let pushed = b
            .push_event_ok(&event(REVISION_STATUS_UPDATED, c.marketplace, i))
            .await;
        assert_eq!(
            pushed["deliveries"],
            ENDPOINTS as u64 - 1,
            "event {i} via B: {pushed}"
        );
    }
    let ids: HashSet<i64> = (1..=20).collect();
    let start = Instant::now();
    for p in c.paths.iter().filter(|p| **p != gone_path) {
        wait_until(
            Duration::from_secs(30).saturating_sub(start.elapsed()),
            &format!("{p} got the 20 events pushed via B"),
            || ids.iter().all(|i| c.arrivals(p).contains_key(i)),
        )
        .await;
    }
    let leaked: Vec<i64> = c
        .arrivals(&gone_path)
        .into_keys()
        .filter(|i| ids.contains(i))
        .collect();
    assert!(
        leaked.is_empty(),
        "events pushed via B after the delete reached the deleted subscription: {leaked:?}"
    );
}
