//! Consistency across the nodes of a cluster (several `hookrelay serve` on
//! one PostgreSQL database):
//!
//! * routing reads its own writes across nodes: once one node answered a
//!   subscription create (201) or delete (204), or recorded an auto-removal
//!   (410 Gone), an event pushed to another node right afterwards, with no
//!   waiting for any sync, is routed accordingly; an event type registered
//!   on one node is known to the others at once;
//! * hand-over without a stall: under a steady stream, no endpoint goes
//!   silent for long when a node joins, leaves (SIGTERM) or dies (kill -9),
//!   every accepted event arrives, and duplicates come only from the kill.
//!
//! PostgreSQL only: each test creates one database on the server named by
//! `HOOKRELAY_TEST_POSTGRES_URL` and shares it between its nodes; without
//! that variable the tests pass as skipped.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

const SECRET: &str = "consistency-secret";
const LEASE_TTL: Duration = Duration::from_secs(3);

/// Some nodes on one fresh database.
struct Nodes {
    /// `None` once stopped or killed.
    apps: Vec<Option<TestApp>>,
    names: Vec<String>,
    /// Declared last: dropped after the nodes are stopped.
    db: Arc<PostgresDb>,
}

macro_rules! nodes {
    ($names:expr) => {
        match Nodes::start($names).await {
            Some(n) => n,
            None => {
                eprintln!(
                    "skipped: {POSTGRES_ENV} is not set (cluster consistency tests need PostgreSQL)"
                );
                return;
            }
        }
    };
}

impl Nodes {
    async fn start(names: &[&str]) -> Option<Nodes> {
        let db = PostgresDb::create_from_env()?;
        let mut nodes = Nodes {
            apps: Vec::new(),
            names: Vec::new(),
            db,
        };
        // One after the other: the first runs the migrations.
        for name in names {
            nodes.join(name).await;
        }
        Some(nodes)
    }

    /// Starts one more node on the database.
    async fn join(&mut self, name: &str) {
        let app = TestApp::spawn_node(
            &self.db,
            &[
                "--node-id",
                name,
                "--lease-ttl",
                "3s",
                // Several nodes per test, several tests at once: stay well
                // under the server's connection limit.
                "--db-pool-size",
                "4",
            ],
        )
        .await;
        let (status, health) = app.health().await;
        assert_eq!(status, 200, "{name}: /health {health}");
        assert_eq!(health["node"], name, "{name}: /health {health}");
        self.apps.push(Some(app));
        self.names.push(name.to_string());
    }

    fn node(&self, i: usize) -> &TestApp {
        self.apps[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.names[i]))
    }

    /// Pushes markers (contextObjectId from `*marker` on) to each running
    /// node until it routes `n` subscriptions of `marketplace`.
    async fn wait_until_every_node_routes(&self, marketplace: i64, n: usize, marker: &mut i64) {
        for (i, app) in self.apps.iter().enumerate() {
            let Some(app) = app else { continue };
            wait_until_async(
                SOON,
                &format!("{} routes to all {n} subscriptions", self.names[i]),
                || {
                    *marker += 1;
                    let ev = event(REVISION_STATUS_UPDATED, marketplace, *marker);
                    async move { app.push_event_ok(&ev).await["deliveries"] == n as u64 }
                },
            )
            .await;
        }
    }
}

/// The owner node of each of `urls`, as `via` lists the endpoints.
async fn owners(via: &TestApp, urls: &[String]) -> Vec<Option<String>> {
    let listed = via.all_endpoints().await;
    urls.iter()
        .map(|url| {
            listed
                .iter()
                .find(|e| e["url"].as_str().map(|u| u.trim_end_matches('/')) == Some(url.as_str()))
                .and_then(|e| e["ownerNode"].as_str().map(str::to_string))
        })
        .collect()
}

/// Waits until each of `urls` is owned by one of `live`, and each of `live`
/// owns at least one; answers how many each owns.
async fn wait_for_owners(via: &TestApp, urls: &[String], live: &[&str]) -> HashMap<String, usize> {
    wait_for(
        SOON,
        &format!(
            "every one of {} endpoints owned by one of {live:?}, each owning some",
            urls.len()
        ),
        || async {
            let owners = owners(via, urls).await;
            let mut per: HashMap<String, usize> = HashMap::new();
            for o in owners {
                let o = o.filter(|o| live.contains(&o.as_str()))?;
                *per.entry(o).or_default() += 1;
            }
            (per.len() == live.len()).then_some(per)
        },
    )
    .await
}

/// Every delivery (not verification) the receiver got of contextObjectIds
/// in `ids`: `path → [(id, arrival)]` in arrival order, read in one pass.
pub(crate) fn arrivals_by_path(
    receiver: &Receiver,
    ids: impl Fn(i64) -> bool,
) -> HashMap<String, Vec<(i64, Instant)>> {
    let mut out: HashMap<String, Vec<(i64, Instant)>> = HashMap::new();
    for r in receiver.requests() {
        let body = r.json();
        if body["event"] == "verification" {
            continue;
        }
        if let Some(id) = body["contextObjectId"].as_i64().filter(|i| ids(*i)) {
            out.entry(r.path.clone()).or_default().push((id, r.at));
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|(_, at)| *at);
    }
    out
}

/// Waits until each path got each of its expected ids; `Err` names what is
/// still missing at the deadline.
async fn wait_for_expected(
    receiver: &Receiver,
    expected: &HashMap<String, HashSet<i64>>,
    deadline: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let got = arrivals_by_path(receiver, |_| true);
        let mut missing: Vec<(String, Vec<i64>)> = expected
            .iter()
            .filter_map(|(p, want)| {
                let have: HashSet<i64> = got
                    .get(p)
                    .map(|v| v.iter().map(|(i, _)| *i).collect())
                    .unwrap_or_default();
                let mut m: Vec<i64> = want.difference(&have).copied().collect();
                m.sort();
                (!m.is_empty()).then(|| (p.clone(), m))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > deadline {
            missing.sort();
            return Err(format!(
                "after {deadline:?} endpoints still miss events (path, ids): {missing:?}"
            ));
        }
        sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// Read-your-writes routing
// ---------------------------------------------------------------------------

#[actix_rt::test]
async fn a_subscription_created_on_one_node_routes_an_event_pushed_to_another_right_afterwards() {
    let c = nodes!(&["ryw-a", "ryw-b"]);
    let marketplace = 9300;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    const N: usize = 30;
    let mut problems = Vec::new();
    for i in 0..N {
        // Created on one node, pushed to the other, both ways in turn.
        let (on, to) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
        let path = format!("/new{i}");
        c.node(on)
            .subscribe_ok(
                &token,
                REVISION_STATUS_UPDATED,
                &receiver.url_at(&path),
                SECRET,
            )
            .await;
        let id = i as i64 + 1;
        let pushed = c
            .node(to)
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        if pushed["deliveries"] != (i + 1) as u64 {
            problems.push(format!(
                "event {id} pushed to {} right after {} answered 201 for subscription #{} ({path}): \
                 {pushed} (want {} deliveries)",
                c.names[to],
                c.names[on],
                i + 1,
                i + 1
            ));
        }
    }
    // Endpoint i gets the events pushed after its subscription: i+1..=N.
    let expected: HashMap<String, HashSet<i64>> = (0..N)
        .map(|i| (format!("/new{i}"), (i as i64 + 1..=N as i64).collect()))
        .collect();
    if let Err(e) = wait_for_expected(&receiver, &expected, SOON).await {
        problems.push(e);
    }
    let got = arrivals_by_path(&receiver, |_| true);
    for i in 0..N {
        let path = format!("/new{i}");
        let early: Vec<i64> = got
            .get(&path)
            .into_iter()
            .flatten()
            .map(|(id, _)| *id)
            .filter(|id| *id <= i as i64)
            .collect();
        if !early.is_empty() {
            problems.push(format!(
                "{path} got events pushed before it was subscribed: {early:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{N} pushes, each right after a subscription create on the other node:\n{}",
        problems.join("\n")
    );
}

#[actix_rt::test]
async fn a_subscription_deleted_on_one_node_is_not_routed_by_another_right_afterwards() {
    let c = nodes!(&["del-a", "del-b"]);
    let marketplace = 9400;
    const ENDPOINTS: usize = 8;
    const DELETED: usize = 6;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let paths: Vec<String> = (0..ENDPOINTS).map(|i| format!("/ep{i}")).collect();
    let mut subs = Vec::new();
    for p in &paths {
        subs.push(
            c.node(0)
                .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url_at(p), SECRET)
                .await,
        );
    }
    let mut marker = 1_000_000;
    c.wait_until_every_node_routes(marketplace, ENDPOINTS, &mut marker)
        .await;

    let mut problems = Vec::new();
    for k in 0..DELETED {
        let (on, to) = if k % 2 == 0 { (0, 1) } else { (1, 0) };
        let (status, body) = c.node(on).delete_subscription(&token, subs[k]).await;
        assert_eq!(
            status, 204,
            "DELETE {} via {}: {body}",
            paths[k], c.names[on]
        );
        let id = k as i64 + 1;
        let pushed = c
            .node(to)
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        let want = ENDPOINTS - (k + 1);
        if pushed["deliveries"] != want as u64 {
            problems.push(format!(
                "event {id} pushed to {} right after {} answered 204 for {}: {pushed} (want {want} deliveries)",
                c.names[to], c.names[on], paths[k]
            ));
        }
    }
    // Event k+1 was pushed after subscriptions 0..=k were deleted: the
    // endpoints kept get every event; endpoint j < DELETED never one pushed
    // after its delete (ids > j). Whether it still gets those pushed before
    // (ids <= j) is left open.
    let expected: HashMap<String, HashSet<i64>> = paths[DELETED..]
        .iter()
        .map(|p| (p.clone(), (1..=DELETED as i64).collect()))
        .collect();
    if let Err(e) = wait_for_expected(&receiver, &expected, SOON).await {
        problems.push(e);
    }
    let got = arrivals_by_path(&receiver, |i| (1..=DELETED as i64).contains(&i));
    for (j, p) in paths.iter().enumerate().take(DELETED) {
        let leaked: Vec<i64> = got
            .get(p)
            .map(|v| {
                v.iter()
                    .map(|(i, _)| *i)
                    .filter(|i| *i > j as i64)
                    .collect()
            })
            .unwrap_or_default();
        if !leaked.is_empty() {
            problems.push(format!(
                "{p} got events pushed after its subscription was deleted: {leaked:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "pushes right after a delete on the other node:\n{}",
        problems.join("\n")
    );
}

#[actix_rt::test]
async fn an_endpoint_gone_on_its_owner_gets_nothing_pushed_to_another_node_once_its_subscription_left_the_list()
 {
    let c = nodes!(&["gone-a", "gone-b"]);
    let marketplace = 9500;
    const CONTROLS: usize = 4;
    let control = Receiver::start().await;
    let gone = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let paths: Vec<String> = (0..CONTROLS).map(|i| format!("/ep{i}")).collect();
    for p in &paths {
        c.node(0)
            .subscribe_ok(&token, REVISION_STATUS_UPDATED, &control.url_at(p), SECRET)
            .await;
    }
    let gone_url = gone.url();
    let gone_sub = c
        .node(0)
        .subscribe_ok(&token, REVISION_STATUS_UPDATED, &gone_url, SECRET)
        .await;
    let mut marker = 1_000_000;
    c.wait_until_every_node_routes(marketplace, CONTROLS + 1, &mut marker)
        .await;
    let owner_name = wait_for(SOON, "the gone endpoint has an owner", || async {
        owners(c.node(0), std::slice::from_ref(&gone_url))
            .await
            .remove(0)
            .filter(|o| c.names.contains(o))
    })
    .await;
    let owner = c.names.iter().position(|n| *n == owner_name).unwrap();
    let other = 1 - owner;
    eprintln!(
        "the endpoint to die is owned by {owner_name}; pushing to {} after",
        c.names[other]
    );

    gone.set_status(410);
    let pushed = c
        .node(owner)
        .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, 1))
        .await;
    assert_eq!(pushed["deliveries"], CONTROLS as u64 + 1, "{pushed}");
    let answered = Instant::now();
    wait_until_async(
        SOON,
        "the gone endpoint's subscription left its owner's list",
        || async {
            !c.node(owner)
                .subscriptions_of(&token)
                .await
                .iter()
                .any(|s| s["subscriptionId"] == gone_sub)
        },
    )
    .await;
    eprintln!(
        "the subscription left the list {:?} after the 410 was asked for",
        answered.elapsed()
    );

    let mut problems = Vec::new();
    for id in 2..=11 {
        let pushed = c
            .node(other)
            .push_event_ok(&event(REVISION_STATUS_UPDATED, marketplace, id))
            .await;
        if pushed["deliveries"] != CONTROLS as u64 {
            problems.push(format!(
                "event {id} via {}: {pushed} (want {CONTROLS} deliveries)",
                c.names[other]
            ));
        }
    }
    let expected: HashMap<String, HashSet<i64>> = paths
        .iter()
        .map(|p| (p.clone(), (1..=11).collect()))
        .collect();
    if let Err(e) = wait_for_expected(&control, &expected, SOON).await {
        problems.push(e);
    }
    let late: Vec<i64> = gone
        .delivered_context_ids()
        .into_iter()
        .filter(|i| (2..=11).contains(i))
        .collect();
    if !late.is_empty() {
        problems.push(format!(
            "events pushed after its subscription left the list reached the gone endpoint: {late:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "pushes to {} right after the auto-removal on {owner_name}:\n{}",
        c.names[other],
        problems.join("\n")
    );
}

#[actix_rt::test]
async fn an_event_type_registered_on_one_node_can_be_pushed_and_subscribed_to_on_another_at_once() {
    let c = nodes!(&["type-a", "type-b"]);
    let marketplace = 9600;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    const TYPES: usize = 6;
    let mut problems = Vec::new();
    let mut expected: HashMap<String, HashSet<i64>> = HashMap::new();
    for k in 0..TYPES {
        let (on, to) = if k % 2 == 0 { (0, 1) } else { (1, 0) };
        let (a, b) = (&c.names[on], &c.names[to]);
        let name = format!("custom_{suffix}_{k}");
        let (status, body) = c
            .node(on)
            .put_event_type(&name, json!({"description": format!("custom type {k}")}))
            .await;
        assert!(
            (200..300).contains(&status),
            "PUT event type {name} via {a} answered {status}: {body}"
        );
        // Pushed to the other node at once…
        let id = 100 + k as i64;
        let (status, body) = c.node(to).push_event(&event(&name, marketplace, id)).await;
        if status != 202 {
            problems.push(format!(
                "{name} registered on {a}, pushed to {b} at once: {status} {body} (want 202)"
            ));
        }
        // …and subscribed to there at once; then pushed back on the first.
        let path = format!("/t{k}");
        let (status, body) = c
            .node(to)
            .subscribe(&token, &name, &receiver.url_at(&path), SECRET)
            .await;
        if status != 201 {
            problems.push(format!(
                "{name} registered on {a}, subscribed to on {b} at once: {status} {body} (want 201)"
            ));
            continue;
        }
        let id = k as i64 + 1;
        let (status, body) = c.node(on).push_event(&event(&name, marketplace, id)).await;
        if status != 202 || body["deliveries"] != 1 {
            problems.push(format!(
                "{name} subscribed to on {b}, pushed to {a} at once: {status} {body} (want 202, 1 delivery)"
            ));
            continue;
        }
        expected.insert(path, HashSet::from([id]));
    }
    if let Err(e) = wait_for_expected(&receiver, &expected, SOON).await {
        problems.push(e);
    }
    assert!(
        problems.is_empty(),
        "event types registered on one node, used on the other at once:\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Hand-over without a stall
// ---------------------------------------------------------------------------

const STREAM_ENDPOINTS: usize = 56;
/// One push this often: every endpoint normally hears every 100 ms.
const STREAM_EVERY: Duration = Duration::from_millis(100);
/// How long each phase streams once its change has settled.
const SETTLED_STREAM: Duration = Duration::from_secs(3);
/// Longest silence allowed around a join or a graceful leave (want ≤ 1 s
/// plus in-flight requests; tolerance for a noisy 2-core machine).
const HANDOVER_SILENCE: Duration = Duration::from_millis(2500);
/// Longest silence allowed around a kill -9: lease TTL + 1 s, plus tolerance.
const KILL_SILENCE: Duration = Duration::from_millis(LEASE_TTL.as_millis() as u64 + 2500);

/// What the stream saw of one push.
struct Pushed {
    id: i64,
    node: usize,
    sent: Instant,
    status: Option<u16>,
    problem: Option<String>,
}

#[actix_rt::test]
async fn under_a_steady_stream_no_endpoint_goes_silent_for_long_when_a_node_joins_leaves_or_is_killed()
 {
    let mut c = nodes!(&["st-a", "st-b"]);
    let marketplace = 9700;
    let receiver = Receiver::start().await;
    let token = c.node(0).token(marketplace, 1).await;
    let paths: Vec<String> = (0..STREAM_ENDPOINTS).map(|i| format!("/ep{i}")).collect();
    let urls: Vec<String> = paths.iter().map(|p| receiver.url_at(p)).collect();
    for u in &urls {
        c.node(0)
            .subscribe_ok(&token, REVISION_STATUS_UPDATED, u, SECRET)
            .await;
    }
    let per = wait_for_owners(c.node(0), &urls, &["st-a", "st-b"]).await;
    eprintln!("endpoints per node at the start: {per:?}");
    let mut marker = 1_000_000;
    c.wait_until_every_node_routes(marketplace, STREAM_ENDPOINTS, &mut marker)
        .await;

    // The stream: one push every STREAM_EVERY, round robin over `live`
    // (node index, push URL); `current` is the node a push is waiting on.
    let live: RefCell<Vec<(usize, String)>> = RefCell::new(
        (0..2)
            .map(|i| (i, c.node(i).internal("/internal/v1/events")))
            .collect(),
    );
    let current: Cell<Option<usize>> = Cell::new(None);
    let stop = Cell::new(false);
    let pushed: RefCell<Vec<Pushed>> = RefCell::new(Vec::new());
    let pusher = async {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        let mut id = 0i64;
        let mut next = Instant::now();
        while !stop.get() {
            id += 1;
            let (node, url) = {
                let l = live.borrow();
                l[id as usize % l.len()].clone()
            };
            current.set(Some(node));
            let sent = Instant::now();
            let ev = event(REVISION_STATUS_UPDATED, marketplace, id);
            let (status, problem) = match client.post(&url).send_json(&ev).await {
                Ok(mut res) => {
                    let status = res.status().as_u16();
                    let body = res.body().await.unwrap_or_default();
                    let problem = (status != 202 && status != 503)
                        .then(|| format!("{status} {}", String::from_utf8_lossy(&body)));
                    (Some(status), problem)
                }
                Err(e) => (None, Some(format!("no answer: {e}"))),
            };
            current.set(None);
            pushed.borrow_mut().push(Pushed {
                id,
                node,
                sent,
                status,
                problem,
            });
            next += STREAM_EVERY;
            sleep(next.saturating_duration_since(Instant::now())).await;
        }
    };
    // Takes `node` out of the stream and waits until no push awaits it.
    let take_out = |node: usize| {
        live.borrow_mut().retain(|(n, _)| *n != node);
        let current = &current;
        async move {
            wait_until(
                SOON,
                "the stream's push to the leaving node answered",
                || current.get() != Some(node),
            )
            .await;
        }
    };

    let mut phases: Vec<(&str, Instant)> = Vec::new();
    let mut killed = Instant::now();
    let controller = async {
        phases.push(("steady, 2 nodes", Instant::now()));
        sleep(SETTLED_STREAM).await;

        phases.push(("st-c joins", Instant::now()));
        c.join("st-c").await;
        live.borrow_mut()
            .push((2, c.node(2).internal("/internal/v1/events")));
        let per = wait_for_owners(c.node(0), &urls, &["st-a", "st-b", "st-c"]).await;
        eprintln!("endpoints per node after st-c joined: {per:?}");
        sleep(SETTLED_STREAM).await;

        phases.push(("st-b leaves (SIGTERM)", Instant::now()));
        take_out(1).await;
        let mut b = c.apps[1].take().expect("st-b running");
        let status = b.sigterm(Duration::from_secs(20)).await;
        assert!(
            status.is_some(),
            "st-b did not exit within 20 s of SIGTERM\n{}",
            b.log_tail(40)
        );
        let per = wait_for_owners(c.node(0), &urls, &["st-a", "st-c"]).await;
        eprintln!("endpoints per node after st-b left: {per:?}");
        sleep(SETTLED_STREAM).await;

        take_out(2).await;
        killed = Instant::now();
        phases.push(("st-c killed (-9)", killed));
        let mut victim = c.apps[2].take().expect("st-c running");
        victim.kill9();
        let per = wait_for_owners(c.node(0), &urls, &["st-a"]).await;
        eprintln!(
            "endpoints per node {:?} after st-c was killed: {per:?}",
            killed.elapsed()
        );
        sleep(SETTLED_STREAM).await;
        stop.set(true);
        // Kept until the end of the test for their logs.
        (b, victim)
    };
    let ((), _stopped) = futures_util::future::join(pusher, controller).await;
    let stream_end = Instant::now();
    let pushed = pushed.into_inner();

    // ---- every accepted event arrives everywhere -------------------------
    let wrong: Vec<String> = pushed
        .iter()
        .filter_map(|p| {
            p.problem
                .as_ref()
                .map(|e| format!("event {} via {}: {e}", p.id, c.names[p.node]))
        })
        .collect();
    let accepted: HashSet<i64> = pushed
        .iter()
        .filter(|p| p.status == Some(202))
        .map(|p| p.id)
        .collect();
    let refused = pushed.iter().filter(|p| p.status == Some(503)).count();
    let longest_push_gap = pushed
        .windows(2)
        .map(|w| w[1].sent - w[0].sent)
        .max()
        .unwrap_or_default();
    eprintln!(
        "stream: {} pushes, {} accepted, {refused} answered 503, {} otherwise; longest gap between \
         two pushes {longest_push_gap:?}",
        pushed.len(),
        accepted.len(),
        wrong.len()
    );
    let expected: HashMap<String, HashSet<i64>> = paths
        .iter()
        .map(|p| (p.clone(), accepted.clone()))
        .collect();
    let mut problems = Vec::new();
    match wait_for_expected(&receiver, &expected, Duration::from_secs(30)).await {
        Ok(()) => eprintln!(
            "every accepted event reached every endpoint {:?} after the stream stopped",
            stream_end.elapsed()
        ),
        Err(e) => problems.push(format!("not every accepted event arrived: {e}")),
    }

    // ---- silences per phase ---------------------------------------------
    let arrivals = arrivals_by_path(&receiver, |i| i < 1_000_000);
    let phase_of = |at: Instant| {
        phases
            .iter()
            .rposition(|(_, start)| *start <= at)
            .unwrap_or(0)
    };
    // Per phase: every endpoint's longest silence (a gap counts in the phase
    // its end falls in: the change that caused it came before).
    let mut silence: Vec<Vec<(Duration, &str)>> = vec![Vec::new(); phases.len()];
    for p in &paths {
        let mut longest = vec![Duration::ZERO; phases.len()];
        for w in arrivals.get(p).map_or(&[][..], Vec::as_slice).windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            let ph = phase_of(b);
            longest[ph] = longest[ph].max(b - a);
        }
        for (ph, l) in longest.into_iter().enumerate() {
            silence[ph].push((l, p.as_str()));
        }
    }
    for (ph, (name, _)) in phases.iter().enumerate() {
        let s = &mut silence[ph];
        s.sort();
        let bound = if name.contains("killed") {
            KILL_SILENCE
        } else {
            HANDOVER_SILENCE
        };
        let worst: Vec<String> = s
            .iter()
            .rev()
            .take(5)
            .map(|(d, p)| format!("{p} {:.2}s", d.as_secs_f64()))
            .collect();
        let over = s.iter().filter(|(d, _)| *d > bound).count();
        eprintln!(
            "phase {name:<24} longest silence per endpoint: median {:.2}s, max {:.2}s; worst {worst:?}; \
             {over} of {} over {bound:?}",
            s[s.len() / 2].0.as_secs_f64(),
            s.last().map_or(0.0, |x| x.0.as_secs_f64()),
            s.len()
        );
        if over > 0 {
            problems.push(format!(
                "phase {name:?}: {over} endpoints silent longer than {bound:?}, worst {worst:?}"
            ));
        }
    }

    // ---- duplicates only from the kill ----------------------------------
    let (before, after) = (Duration::from_secs(2), Duration::from_millis(250));
    let mut kill_dups = 0;
    for p in &paths {
        let mut seen: HashMap<i64, (usize, Instant)> = HashMap::new();
        for (id, at) in arrivals.get(p).into_iter().flatten() {
            let e = seen.entry(*id).or_insert((0, *at));
            e.0 += 1;
        }
        let mut outside: Vec<(i64, usize)> = Vec::new();
        for (id, (n, first)) in &seen {
            if *n < 2 {
                continue;
            }
            if *first + before >= killed && *first <= killed + after {
                kill_dups += 1;
            } else {
                outside.push((*id, *n));
            }
        }
        if !outside.is_empty() {
            outside.sort();
            problems.push(format!(
                "{p}: repeated though first delivered more than {before:?} before or {after:?} after the kill (id, count): {outside:?}"
            ));
        }
    }
    eprintln!("duplicates from the kill: {kill_dups}");
    assert!(
        wrong.is_empty(),
        "stream pushes must answer 202 or 503: {wrong:?}"
    );
    assert!(
        problems.is_empty(),
        "hand-over under a steady stream:\n{}",
        problems.join("\n")
    );
}
