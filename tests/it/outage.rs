//! Database outages: the PostgreSQL server goes away for a few seconds under
//! a steady stream of pushes, and comes back.
//!
//! While it is away a push answers 503 with `Retry-After` and a JSON error
//! within about 2 s (never a hang, never 500) and `/health` answers 503
//! `"ready": false` with a `"reason"`; once it is back every node resumes by
//! itself (no restart) and every event answered 202, before, during or after
//! the outage, reaches every endpoint within `--lease-ttl` plus a few seconds.
//!
//! Each test runs its own private PostgreSQL server (see `private_pg`), so
//! these run whenever the machine has the PostgreSQL binaries, whatever
//! `HOOKRELAY_TEST_POSTGRES_URL` says; without them they pass as skipped.
//!
//! What the requests saw is recorded by `outage_calls`; `outage_verdict`
//! judges it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::outage_calls::{CLIENT_TIMEOUT, Call, Observed, Timeline, poll_health, stream};
use crate::outage_verdict::{
    Missing, PushAnswers, Recovery, answer_failures, judge_health, node_failures, recovery_failures,
};
use crate::private_pg::{PrivatePostgres, private_postgres};

const SECRET: &str = "outage-secret-0123456789";
const LEASE_TTL: Duration = Duration::from_secs(3);
const ENDPOINTS: usize = 4;
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// The stream before the outage and after the return.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_secs(2);
/// The slowest answer allowed to a push during the outage (want ~2 s).
pub(crate) const SLOWEST_ANSWER: Duration = Duration::from_secs(3);
/// Every accepted event is delivered this long after the database's return.
pub(crate) const DELIVERED_WITHIN: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 10);

/// Runs a blocking `pg_ctl` step off the test's (single) async thread, so
/// that the stream and the clocks keep running meanwhile.
async fn pg_step(pg: &Arc<Mutex<PrivatePostgres>>, step: fn(&mut PrivatePostgres)) {
    let pg = pg.clone();
    actix_rt::task::spawn_blocking(move || step(&mut pg.lock().unwrap()))
        .await
        .expect("pg_ctl step panicked");
}

/// `nodes` hookrelay nodes (`outage-a`, `outage-b`, …) on `db`, each
/// asserted healthy.
async fn start_nodes(db: &Arc<PostgresDb>, nodes: usize) -> Vec<TestApp> {
    let mut apps = Vec::new();
    for n in 0..nodes {
        let name = format!("outage-{}", (b'a' + n as u8) as char);
        let app = TestApp::spawn_node(
            db,
            &[
                "--node-id",
                &name,
                "--lease-ttl",
                "3s",
                "--db-pool-size",
                "4",
            ],
        )
        .await;
        app.assert_healthy(&name).await;
        apps.push(app);
    }
    apps
}

/// Subscribes [`ENDPOINTS`] paths of `receiver` and waits until every node
/// routes to all of them; answers the paths.
async fn subscribe_endpoints(
    apps: &[TestApp],
    receiver: &Receiver,
    marketplace: i64,
) -> Vec<String> {
    let paths: Vec<String> = (0..ENDPOINTS).map(|i| format!("/ep{i}")).collect();
    let token = apps[0].token(marketplace, 1).await;
    for p in &paths {
        apps[0]
            .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url_at(p), SECRET)
            .await;
    }
    let mut marker = 1_000_000;
    for (n, app) in apps.iter().enumerate() {
        wait_until_async(
            SOON,
            &format!("node {n} routes to all {ENDPOINTS} subscriptions"),
            || {
                marker += 1;
                let ev = event(REVISION_STATUS_UPDATED, marketplace, marker);
                async move { app.push_event_ok(&ev).await["deliveries"] == ENDPOINTS as u64 }
            },
        )
        .await;
    }
    paths
}

/// Streams pushes to every node and polls their `/health` while PostgreSQL
/// goes away and comes back; waits until every push got its answer.
async fn record_the_outage(
    apps: &[TestApp],
    pg: &Arc<Mutex<PrivatePostgres>>,
    marketplace: i64,
) -> Observed {
    let push_urls: Vec<String> = apps
        .iter()
        .map(|a| a.internal("/internal/v1/events"))
        .collect();
    let health_urls: Vec<String> = apps.iter().map(|a| a.internal("/health")).collect();
    let stop = Rc::new(Cell::new(false));
    let calls = Rc::new(RefCell::new(Vec::<Call>::new()));
    let outstanding = Rc::new(Cell::new(0usize));
    let stream_done = stream(
        push_urls,
        marketplace,
        stop.clone(),
        calls.clone(),
        outstanding.clone(),
    );
    let health_done = poll_health(health_urls, stop.clone());
    let ((skipped, health), t) = futures_util::future::join(
        futures_util::future::join(stream_done, health_done),
        take_postgres_away(pg, &stop),
    )
    .await;
    wait_until(
        CLIENT_TIMEOUT + Duration::from_secs(5),
        "every push got its answer",
        || outstanding.get() == 0,
    )
    .await;
    let calls = calls.borrow().clone();
    Observed {
        calls,
        health,
        skipped,
        t,
    }
}

/// After [`BEFORE`] PostgreSQL stops, stays away [`OUTAGE`], and starts
/// again; [`AFTER`] later `stop` is set. The scenario's own durations: the
/// stream runs through each.
async fn take_postgres_away(pg: &Arc<Mutex<PrivatePostgres>>, stop: &Cell<bool>) -> Timeline {
    sleep(BEFORE).await;
    let down = Instant::now();
    pg_step(pg, PrivatePostgres::stop).await;
    let stopped = Instant::now();
    sleep(OUTAGE).await;
    let restarting = Instant::now();
    pg_step(pg, PrivatePostgres::start_again).await;
    let back = Instant::now();
    sleep(AFTER).await;
    stop.set(true);
    Timeline {
        down,
        stopped,
        restarting,
        back,
    }
}

/// Per node, how long after PostgreSQL's return it was ready again: the
/// first poll after the return that found it ready, as the poller saw it;
/// else asked again now, until [`DELIVERED_WITHIN`] after the return.
async fn wait_until_ready_again(
    apps: &[TestApp],
    health: &[Call],
    t: &Timeline,
) -> Vec<Option<Duration>> {
    let deadline = t.back + DELIVERED_WITHIN;
    let mut ready_again: Vec<Option<Duration>> = (0..apps.len())
        .map(|n| {
            health
                .iter()
                .filter(|h| h.node == n && h.sent >= t.back)
                .find(|h| h.answer.status() == Some(200) && h.answer.body()["ready"] == true)
                .map(|h| h.sent - t.back)
        })
        .collect();
    while ready_again.iter().any(Option::is_none) && Instant::now() <= deadline {
        for (n, a) in apps.iter().enumerate() {
            if ready_again[n].is_none() {
                let (status, body) = a.health().await;
                if status == 200 && body["ready"] == true {
                    ready_again[n] = Some(t.back.elapsed());
                }
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    ready_again
}

/// Each push answered 202, with when it was sent.
fn accepted_pushes(calls: &[Call]) -> HashMap<i64, Instant> {
    calls
        .iter()
        .filter(|c| c.answer.status() == Some(202))
        .map(|c| (c.id, c.sent))
        .collect()
}

/// Waits until every accepted event reached every path: `Ok(time from the
/// return to the last first arrival)`, or what is missing
/// [`DELIVERED_WITHIN`] after the return.
async fn wait_until_delivered(
    receiver: &Receiver,
    paths: &[String],
    accepted: &HashMap<i64, Instant>,
    t: &Timeline,
) -> Result<Duration, Missing> {
    let deadline = t.back + DELIVERED_WITHIN;
    let ids: HashSet<i64> = accepted.keys().copied().collect();
    loop {
        let firsts = first_arrivals(receiver);
        let mut missing: Missing = Vec::new();
        let mut last = t.back;
        for p in paths {
            let got = firsts.get(p.as_str());
            let mut miss: Vec<i64> = ids
                .iter()
                .filter(|i| !got.is_some_and(|g| g.contains_key(i)))
                .copied()
                .collect();
            miss.sort();
            if let Some(g) = got {
                for i in &ids {
                    if let Some(at) = g.get(i) {
                        last = last.max(*at);
                    }
                }
            }
            if !miss.is_empty() {
                let sample = miss
                    .iter()
                    .take(10)
                    .map(|i| format!("{i} (pushed {})", t.phase(accepted[i])))
                    .collect();
                missing.push((format!("{p}: {} missing", miss.len()), sample));
            }
        }
        if missing.is_empty() {
            return Ok(last - t.back);
        }
        if Instant::now() > deadline {
            return Err(missing);
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// `nodes` hookrelay nodes on one private PostgreSQL, four endpoints, a
/// steady stream of pushes alternating between the nodes; PostgreSQL stops
/// for [`OUTAGE`] and starts again. Checks what the pushes, `/health` and
/// the endpoints saw, and reports every failed check at once.
async fn outage_under_a_steady_stream(pg: PrivatePostgres, nodes: usize, marketplace: i64) {
    let pg = Arc::new(Mutex::new(pg));
    let db = pg.lock().unwrap().create_db();
    let mut apps = start_nodes(&db, nodes).await;
    let pids: Vec<u32> = apps.iter().map(TestApp::pid).collect();
    let receiver = Receiver::start().await;
    let paths = subscribe_endpoints(&apps, &receiver, marketplace).await;

    let seen = record_the_outage(&apps, &pg, marketplace).await;
    let answers = PushAnswers::of(&seen.calls, &seen.t);
    answers.report(nodes, &seen);
    let (health_wrong, first_not_ready) = judge_health(&seen.health, &seen.t, nodes);
    eprintln!(
        "/health first answered 503 \"ready\": false this long after PostgreSQL stopped, per node: {first_not_ready:?}"
    );
    let ready_again = wait_until_ready_again(&apps, &seen.health, &seen.t).await;
    let accepted = accepted_pushes(&seen.calls);
    let delivered = wait_until_delivered(&receiver, &paths, &accepted, &seen.t).await;
    eprintln!(
        "{nodes} node(s): /health ready again this long after PostgreSQL's return, per node: \
         {ready_again:?}; {} accepted \
         events at all {ENDPOINTS} endpoints, the last this long after the return: {:?}",
        accepted.len(),
        delivered
            .as_ref()
            .map_err(|m| format!("{} endpoints miss some", m.len()))
    );
    let recovery = Recovery {
        first_not_ready,
        ready_again,
        delivered,
        accepted: accepted.len(),
    };

    let mut failures = node_failures(&mut apps, &pids);
    failures.extend(answer_failures(&answers, &health_wrong));
    failures.extend(recovery_failures(&recovery, &seen));
    assert!(
        failures.is_empty(),
        "{nodes} node(s) through a {OUTAGE:?} database outage:\n- {}",
        failures.join("\n- ")
    );
}

/// `path → contextObjectId → first arrival`, the receiver's requests read
/// once.
fn first_arrivals(receiver: &Receiver) -> HashMap<String, HashMap<i64, Instant>> {
    let mut out: HashMap<String, HashMap<i64, Instant>> = HashMap::new();
    for r in receiver.requests() {
        let body = r.json();
        if body["event"] == "verification" {
            continue;
        }
        if let Some(id) = body["contextObjectId"].as_i64() {
            let e = out
                .entry(r.path.clone())
                .or_default()
                .entry(id)
                .or_insert(r.at);
            *e = (*e).min(r.at);
        }
    }
    out
}

#[actix_rt::test]
async fn while_postgres_is_down_one_node_answers_503_quickly_and_resumes_by_itself_when_it_returns()
{
    let pg = private_postgres!();
    outage_under_a_steady_stream(pg, 1, 9100).await;
}

#[actix_rt::test]
async fn while_postgres_is_down_two_nodes_answer_503_quickly_and_resume_by_themselves_when_it_returns()
 {
    let pg = private_postgres!();
    outage_under_a_steady_stream(pg, 2, 9200).await;
}
