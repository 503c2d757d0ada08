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
//! What the requests saw is recorded by `outage_calls`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::outage_calls::{
    Answer, CLIENT_TIMEOUT, Call, MAX_OUTSTANDING, Timeline, poll_health, stream,
};
use crate::private_pg::{PrivatePostgres, private_postgres};

const SECRET: &str = "outage-secret";
const LEASE_TTL: Duration = Duration::from_secs(3);
const ENDPOINTS: usize = 4;
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// The stream before the outage and after the return.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_secs(2);
/// The slowest answer allowed to a push during the outage (want ~2 s).
const SLOWEST_ANSWER: Duration = Duration::from_secs(3);
/// Every accepted event is delivered this long after the database's return.
const DELIVERED_WITHIN: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 10);

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

/// What the test saw while PostgreSQL went away and came back.
struct Observed {
    /// Every push, answered.
    calls: Vec<Call>,
    health: Vec<Call>,
    /// Ticks of the stream skipped with [`MAX_OUTSTANDING`] pushes unanswered.
    skipped: usize,
    t: Timeline,
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

/// What the pushes' answers showed.
#[derive(Default)]
struct PushAnswers {
    /// `(phase, status or "no answer")` → how many.
    counts: HashMap<(&'static str, String), usize>,
    /// Neither 202 (with an eventId) nor 503.
    wrong: Vec<String>,
    /// Sent during the outage and answered after more than [`SLOWEST_ANSWER`].
    slow: Vec<String>,
    /// 503 without `Retry-After` or a JSON error.
    bad_503: Vec<String>,
    slowest_503: Duration,
    slowest_during: Duration,
}

impl PushAnswers {
    fn of(calls: &[Call], t: &Timeline) -> PushAnswers {
        let mut answers = PushAnswers::default();
        for c in calls {
            answers.judge(c, t);
        }
        answers
    }

    fn judge(&mut self, c: &Call, t: &Timeline) {
        let phase = t.phase(c.sent);
        let label = c
            .answer
            .status()
            .map_or_else(|| "no answer".to_string(), |s| s.to_string());
        *self.counts.entry((phase, label)).or_default() += 1;
        let what = format!(
            "event {} via node {} sent at {} ({phase}), answered after {:?}",
            c.id,
            c.node,
            t.rel(c.sent),
            c.took
        );
        match &c.answer {
            Answer::None(e) => self.wrong.push(format!("{what}: {e}")),
            Answer::Status {
                status: 202, body, ..
            } => {
                if body["eventId"].is_null() {
                    self.wrong
                        .push(format!("{what}: 202 without an eventId: {body}"));
                }
            }
            Answer::Status {
                status: 503,
                retry_after,
                body,
            } => {
                self.slowest_503 = self.slowest_503.max(c.took);
                if retry_after.is_none()
                    || !body["error"].is_string()
                    || !body["message"].is_string()
                {
                    self.bad_503
                        .push(format!("{what}: Retry-After {retry_after:?}, body {body}"));
                }
            }
            Answer::Status { status, body, .. } => {
                self.wrong.push(format!("{what}: {status} {body}"))
            }
        }
        if phase == "during" {
            self.slowest_during = self.slowest_during.max(c.took);
            if c.took > SLOWEST_ANSWER {
                self.slow.push(what);
            }
        }
    }

    fn report(&self, nodes: usize, seen: &Observed) {
        let mut table: Vec<_> = self.counts.iter().collect();
        table.sort();
        let t = &seen.t;
        eprintln!(
            "{nodes} node(s): {} pushes ({} ticks skipped with {MAX_OUTSTANDING} unanswered); \
             PostgreSQL down {:?} (stop took {:?}, start took {:?}); answers by phase: {table:?}; \
             slowest 503 {:?}; slowest answer to a push sent during the outage {:?}",
            seen.calls.len(),
            seen.skipped,
            t.back - t.down,
            t.stopped - t.down,
            t.back - t.restarting,
            self.slowest_503,
            self.slowest_during,
        );
    }
}

/// The `/health` polls that answered neither 200 nor 503 (with a reason)
/// within [`SLOWEST_ANSWER`], and per node how long after the stop it first
/// said `"ready": false` while PostgreSQL was away.
fn judge_health(
    health: &[Call],
    t: &Timeline,
    nodes: usize,
) -> (Vec<String>, Vec<Option<Duration>>) {
    let mut wrong = Vec::new();
    let mut first_not_ready: Vec<Option<Duration>> = vec![None; nodes];
    for h in health {
        let what = format!(
            "/health of node {} at {} ({})",
            h.node,
            t.rel(h.sent),
            t.phase(h.sent)
        );
        if h.took > SLOWEST_ANSWER {
            wrong.push(format!("{what} took {:?}", h.took));
        }
        match h.answer.status() {
            Some(200) | Some(503) => {}
            _ => wrong.push(format!("{what}: {:?}", h.answer)),
        }
        let body = h.answer.body();
        let not_ready = h.answer.status() == Some(503) && body["ready"] == Value::Bool(false);
        if h.answer.status() == Some(503) && !body["reason"].is_string() {
            wrong.push(format!("{what}: 503 without a \"reason\": {body}"));
        }
        if not_ready && h.sent >= t.stopped && h.sent < t.restarting {
            let since = h.sent - t.stopped;
            let first = &mut first_not_ready[h.node];
            *first = Some(first.map_or(since, |f| f.min(since)));
        }
    }
    (wrong, first_not_ready)
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

/// What some endpoints still miss: `(path and count, a sample of ids)`.
type Missing = Vec<(String, Vec<String>)>;

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

/// The nodes that exited or were restarted (`pids` as they started).
fn node_failures(apps: &mut [TestApp], pids: &[u32]) -> Vec<String> {
    let mut failures = Vec::new();
    for (n, app) in apps.iter_mut().enumerate() {
        if !app.is_running() {
            failures.push(format!(
                "node {n} exited during the outage\n{}",
                app.log_tail(60)
            ));
        } else if app.pid() != pids[n] {
            failures.push(format!("node {n} was restarted"));
        }
    }
    failures
}

fn first_20(v: &[String]) -> String {
    v[..v.len().min(20)].join("\n    ")
}

/// The wrong, badly formed or slow answers to pushes and to `/health`.
fn answer_failures(answers: &PushAnswers, health_wrong: &[String]) -> Vec<String> {
    let mut failures = Vec::new();
    if !answers.wrong.is_empty() {
        failures.push(format!(
            "pushes must answer 202 or 503, nothing else; {} did not (first 20):\n    {}",
            answers.wrong.len(),
            first_20(&answers.wrong)
        ));
    }
    if !answers.bad_503.is_empty() {
        failures.push(format!(
            "every 503 carries Retry-After and a JSON {{error, message}}; {} did not (first 20):\n    {}",
            answers.bad_503.len(),
            first_20(&answers.bad_503)
        ));
    }
    if !answers.slow.is_empty() {
        failures.push(format!(
            "pushes during the outage must be answered within {SLOWEST_ANSWER:?}; {} were not \
             (first 20):\n    {}",
            answers.slow.len(),
            first_20(&answers.slow)
        ));
    }
    if !health_wrong.is_empty() {
        failures.push(format!(
            "/health must answer 200 or 503 (with a reason) within {SLOWEST_ANSWER:?}:\n    {}",
            first_20(health_wrong)
        ));
    }
    failures
}

/// What the nodes said and did about the outage and the return.
struct Recovery {
    first_not_ready: Vec<Option<Duration>>,
    ready_again: Vec<Option<Duration>>,
    delivered: Result<Duration, Missing>,
    accepted: usize,
}

/// Not ready while away, ready again, every accepted event delivered, and a
/// push after the return accepted.
fn recovery_failures(r: &Recovery, seen: &Observed) -> Vec<String> {
    let mut failures = Vec::new();
    if !r.first_not_ready.iter().all(Option::is_some) {
        failures.push(format!(
            "/health must say \"ready\": false while the database is down; per node, first seen \
             after the stop: {:?}",
            r.first_not_ready
        ));
    }
    if r.ready_again.iter().any(Option::is_none) {
        failures.push(format!(
            "/health was not ready on every node {DELIVERED_WITHIN:?} after the database's return"
        ));
    }
    if let Err(missing) = &r.delivered {
        failures.push(format!(
            "{DELIVERED_WITHIN:?} after PostgreSQL's return, of {} events answered 202 some never \
             arrived: {missing:?}",
            r.accepted
        ));
    }
    if !seen
        .calls
        .iter()
        .any(|c| seen.t.phase(c.sent) == "after" && c.answer.status() == Some(202))
    {
        failures.push("no push after the database's return was accepted".to_string());
    }
    failures
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
