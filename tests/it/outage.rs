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

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;
use crate::private_pg::{PrivatePostgres, private_postgres};

const SECRET: &str = "outage-secret";
const LEASE_TTL: Duration = Duration::from_secs(3);
const ENDPOINTS: usize = 4;
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// The stream before the outage and after the return.
const BEFORE: Duration = Duration::from_millis(1500);
const AFTER: Duration = Duration::from_secs(2);
/// One push this often (each its own request, not waiting for the last).
const PUSH_EVERY: Duration = Duration::from_millis(30);
/// Pushes awaiting their answer at most; a tick past this is skipped.
const MAX_OUTSTANDING: usize = 64;
/// The slowest answer allowed to a push during the outage (want ~2 s).
const SLOWEST_ANSWER: Duration = Duration::from_secs(3);
/// The test's own HTTP timeout: no answer by then is a hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Every accepted event is delivered this long after the database's return.
const DELIVERED_WITHIN: Duration = Duration::from_secs(LEASE_TTL.as_secs() + 10);
const HEALTH_EVERY: Duration = Duration::from_millis(200);

/// What one HTTP request got.
#[derive(Clone, Debug)]
enum Answer {
    Status {
        status: u16,
        retry_after: Option<String>,
        body: Value,
    },
    /// Transport error or no answer within [`CLIENT_TIMEOUT`].
    None(String),
}

impl Answer {
    fn status(&self) -> Option<u16> {
        match self {
            Answer::Status { status, .. } => Some(*status),
            Answer::None(_) => None,
        }
    }

    fn body(&self) -> &Value {
        match self {
            Answer::Status { body, .. } => body,
            Answer::None(_) => &Value::Null,
        }
    }
}

/// One request the test made, with when and how long it took.
#[derive(Clone, Debug)]
struct Call {
    /// The event's contextObjectId (pushes), 0 for health polls.
    id: i64,
    node: usize,
    sent: Instant,
    took: Duration,
    answer: Answer,
}

/// When the outage happened.
#[derive(Clone, Copy)]
struct Timeline {
    /// `pg_ctl stop` called.
    down: Instant,
    /// `pg_ctl stop` returned: the server is gone.
    stopped: Instant,
    /// `pg_ctl start` called.
    restarting: Instant,
    /// `pg_ctl start` returned: the server accepts connections again.
    back: Instant,
}

impl Timeline {
    fn phase(&self, at: Instant) -> &'static str {
        if at < self.down {
            "before"
        } else if at < self.back {
            "during"
        } else {
            "after"
        }
    }

    fn rel(&self, at: Instant) -> String {
        if at >= self.down {
            format!("down+{:.2}s", (at - self.down).as_secs_f64())
        } else {
            format!("down-{:.2}s", (self.down - at).as_secs_f64())
        }
    }
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .disable_redirects()
        .finish()
}

/// Sends one request; never panics (a transport error is an answer too).
async fn send(client: &awc::Client, url: &str, body: Option<&Value>) -> (Duration, Answer) {
    let sent = Instant::now();
    let res = match body {
        Some(b) => client.post(url).send_json(b).await,
        None => client.get(url).send().await,
    };
    let answer = match res {
        Err(e) => Answer::None(format!("{e}")),
        Ok(mut r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match r.body().await {
                Ok(bytes) => Answer::Status {
                    status,
                    retry_after,
                    body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    }),
                },
                Err(e) => Answer::None(format!("{status}, then reading the body failed: {e}")),
            }
        }
    };
    (sent.elapsed(), answer)
}

/// Pushes event 1, 2, 3, … every [`PUSH_EVERY`], round robin over
/// `push_urls`, each push its own task, until `stop`; records every answer.
/// Returns how many ticks were skipped because [`MAX_OUTSTANDING`] pushes
/// were still unanswered.
async fn stream(
    push_urls: Vec<String>,
    marketplace: i64,
    stop: Rc<Cell<bool>>,
    calls: Rc<RefCell<Vec<Call>>>,
    outstanding: Rc<Cell<usize>>,
) -> usize {
    let client = client();
    let mut id = 0i64;
    let mut skipped = 0;
    let mut next = Instant::now();
    while !stop.get() {
        if outstanding.get() < MAX_OUTSTANDING {
            id += 1;
            let node = id as usize % push_urls.len();
            let url = push_urls[node].clone();
            let (client, calls, outstanding) = (client.clone(), calls.clone(), outstanding.clone());
            outstanding.set(outstanding.get() + 1);
            actix_rt::spawn(async move {
                let ev = event(REVISION_STATUS_UPDATED, marketplace, id);
                let sent = Instant::now();
                let (took, answer) = send(&client, &url, Some(&ev)).await;
                calls.borrow_mut().push(Call {
                    id,
                    node,
                    sent,
                    took,
                    answer,
                });
                outstanding.set(outstanding.get() - 1);
            });
        } else {
            skipped += 1;
        }
        next += PUSH_EVERY;
        sleep(next.saturating_duration_since(Instant::now())).await;
    }
    skipped
}

/// Polls every node's `/health` every [`HEALTH_EVERY`] until `stop`.
async fn poll_health(health_urls: Vec<String>, stop: Rc<Cell<bool>>) -> Vec<Call> {
    let client = client();
    let mut polls = Vec::new();
    while !stop.get() {
        for (node, url) in health_urls.iter().enumerate() {
            let sent = Instant::now();
            let (took, answer) = send(&client, url, None).await;
            polls.push(Call {
                id: 0,
                node,
                sent,
                took,
                answer,
            });
        }
        sleep(HEALTH_EVERY).await;
    }
    polls
}

/// Runs a blocking `pg_ctl` step off the test's (single) async thread, so
/// that the stream and the clocks keep running meanwhile.
async fn pg_step(pg: &Arc<Mutex<PrivatePostgres>>, step: fn(&mut PrivatePostgres)) {
    let pg = pg.clone();
    actix_rt::task::spawn_blocking(move || step(&mut pg.lock().unwrap()))
        .await
        .expect("pg_ctl step panicked");
}

/// `nodes` hookrelay nodes on one private PostgreSQL, four endpoints, a
/// steady stream of pushes alternating between the nodes; PostgreSQL stops
/// for [`OUTAGE`] and starts again. Checks what the pushes, `/health` and
/// the endpoints saw.
async fn outage_under_a_steady_stream(pg: PrivatePostgres, nodes: usize, marketplace: i64) {
    let pg = Arc::new(Mutex::new(pg));
    let db = pg.lock().unwrap().create_db();
    let mut apps = Vec::new();
    for n in 0..nodes {
        let name = format!("outage-{}", (b'a' + n as u8) as char);
        let app = TestApp::spawn_node(
            &db,
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
    let pids: Vec<u32> = apps.iter().map(TestApp::pid).collect();
    let receiver = Receiver::start().await;
    let paths: Vec<String> = (0..ENDPOINTS).map(|i| format!("/ep{i}")).collect();
    let token = apps[0].token(marketplace, 1).await;
    for p in &paths {
        apps[0]
            .subscribe_ok(&token, REVISION_STATUS_UPDATED, &receiver.url_at(p), SECRET)
            .await;
    }
    // Every node routes to the four subscriptions before the stream starts.
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
    let scenario = async {
        // The scenario's own durations: the stream runs through each.
        sleep(BEFORE).await;
        let down = Instant::now();
        pg_step(&pg, PrivatePostgres::stop).await;
        let stopped = Instant::now();
        sleep(OUTAGE).await;
        let restarting = Instant::now();
        pg_step(&pg, PrivatePostgres::start_again).await;
        let back = Instant::now();
        sleep(AFTER).await;
        stop.set(true);
        Timeline {
            down,
            stopped,
            restarting,
            back,
        }
    };
    let ((skipped, health), t) = futures_util::future::join(
        futures_util::future::join(stream_done, health_done),
        scenario,
    )
    .await;
    wait_until(
        CLIENT_TIMEOUT + Duration::from_secs(5),
        "every push got its answer",
        || outstanding.get() == 0,
    )
    .await;
    let calls = calls.borrow().clone();

    // ---- the pushes' answers ---------------------------------------------
    let mut counts: HashMap<(&str, String), usize> = HashMap::new();
    let mut wrong = Vec::new();
    let mut slow = Vec::new();
    let mut bad_503 = Vec::new();
    let mut slowest_503 = Duration::ZERO;
    let mut slowest_during = Duration::ZERO;
    for c in &calls {
        let phase = t.phase(c.sent);
        let label = c
            .answer
            .status()
            .map_or_else(|| "no answer".to_string(), |s| s.to_string());
        *counts.entry((phase, label)).or_default() += 1;
        let what = format!(
            "event {} via node {} sent at {} ({phase}), answered after {:?}",
            c.id,
            c.node,
            t.rel(c.sent),
            c.took
        );
        match &c.answer {
            Answer::None(e) => wrong.push(format!("{what}: {e}")),
            Answer::Status {
                status: 202, body, ..
            } => {
                if body["eventId"].is_null() {
                    wrong.push(format!("{what}: 202 without an eventId: {body}"));
                }
            }
            Answer::Status {
                status: 503,
                retry_after,
                body,
            } => {
                slowest_503 = slowest_503.max(c.took);
                if retry_after.is_none()
                    || !body["error"].is_string()
                    || !body["message"].is_string()
                {
                    bad_503.push(format!("{what}: Retry-After {retry_after:?}, body {body}"));
                }
            }
            Answer::Status { status, body, .. } => wrong.push(format!("{what}: {status} {body}")),
        }
        if phase == "during" {
            slowest_during = slowest_during.max(c.took);
            if c.took > SLOWEST_ANSWER {
                slow.push(what);
            }
        }
    }
    let mut table: Vec<_> = counts.iter().collect();
    table.sort();
    eprintln!(
        "{nodes} node(s): {} pushes ({skipped} ticks skipped with {MAX_OUTSTANDING} unanswered); \
         PostgreSQL down {:?} (stop took {:?}, start took {:?}); answers by phase: {table:?}; \
         slowest 503 {slowest_503:?}; slowest answer to a push sent during the outage {slowest_during:?}",
        calls.len(),
        t.back - t.down,
        t.stopped - t.down,
        t.back - t.restarting,
    );

    // ---- /health ---------------------------------------------------------
    let mut health_wrong = Vec::new();
    let mut first_not_ready: Vec<Option<Duration>> = vec![None; nodes];
    for h in &health {
        let what = format!(
            "/health of node {} at {} ({})",
            h.node,
            t.rel(h.sent),
            t.phase(h.sent)
        );
        if h.took > SLOWEST_ANSWER {
            health_wrong.push(format!("{what} took {:?}", h.took));
        }
        match h.answer.status() {
            Some(200) | Some(503) => {}
            _ => health_wrong.push(format!("{what}: {:?}", h.answer)),
        }
        let body = h.answer.body();
        let not_ready = h.answer.status() == Some(503) && body["ready"] == Value::Bool(false);
        if h.answer.status() == Some(503) && !body["reason"].is_string() {
            health_wrong.push(format!("{what}: 503 without a \"reason\": {body}"));
        }
        if not_ready && h.sent >= t.stopped && h.sent < t.restarting {
            let since = h.sent - t.stopped;
            let first = &mut first_not_ready[h.node];
            *first = Some(first.map_or(since, |f| f.min(since)));
        }
    }
    eprintln!(
        "/health first answered 503 \"ready\": false this long after PostgreSQL stopped, per node: {first_not_ready:?}"
    );

    // ---- resuming by itself ----------------------------------------------
    let deadline = t.back + DELIVERED_WITHIN;
    // Per node: the first poll after the return that found it ready, as the
    // poller saw it; else asked again now, until the deadline.
    let mut ready_again: Vec<Option<Duration>> = (0..nodes)
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
    let accepted: HashMap<i64, Instant> = calls
        .iter()
        .filter(|c| c.answer.status() == Some(202))
        .map(|c| (c.id, c.sent))
        .collect();
    let ids: HashSet<i64> = accepted.keys().copied().collect();
    // `Ok(time from the return to the last first arrival)`, or what is missing.
    let delivered = loop {
        let firsts = first_arrivals(&receiver);
        let mut missing: Vec<(String, Vec<String>)> = Vec::new();
        let mut last = t.back;
        for p in &paths {
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
            break Ok(last - t.back);
        }
        if Instant::now() > deadline {
            break Err(missing);
        }
        sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "{nodes} node(s): /health ready again this long after PostgreSQL's return, per node: \
         {ready_again:?}; {} accepted \
         events at all {ENDPOINTS} endpoints, the last this long after the return: {:?}",
        ids.len(),
        delivered
            .as_ref()
            .map_err(|m| format!("{} endpoints miss some", m.len()))
    );

    // ---- the verdict, every failed check at once --------------------------
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
    let first_20 = |v: &[String]| v[..v.len().min(20)].join("\n    ");
    if !wrong.is_empty() {
        failures.push(format!(
            "pushes must answer 202 or 503, nothing else; {} did not (first 20):\n    {}",
            wrong.len(),
            first_20(&wrong)
        ));
    }
    if !bad_503.is_empty() {
        failures.push(format!(
            "every 503 carries Retry-After and a JSON {{error, message}}; {} did not (first 20):\n    {}",
            bad_503.len(),
            first_20(&bad_503)
        ));
    }
    if !slow.is_empty() {
        failures.push(format!(
            "pushes during the outage must be answered within {SLOWEST_ANSWER:?}; {} were not \
             (first 20):\n    {}",
            slow.len(),
            first_20(&slow)
        ));
    }
    if !health_wrong.is_empty() {
        failures.push(format!(
            "/health must answer 200 or 503 (with a reason) within {SLOWEST_ANSWER:?}:\n    {}",
            first_20(&health_wrong)
        ));
    }
    if !first_not_ready.iter().all(Option::is_some) {
        failures.push(format!(
            "/health must say \"ready\": false while the database is down; per node, first seen \
             after the stop: {first_not_ready:?}"
        ));
    }
    if ready_again.iter().any(Option::is_none) {
        failures.push(format!(
            "/health was not ready on every node {DELIVERED_WITHIN:?} after the database's return"
        ));
    }
    if let Err(missing) = &delivered {
        failures.push(format!(
            "{DELIVERED_WITHIN:?} after PostgreSQL's return, of {} events answered 202 some never \
             arrived: {missing:?}",
            ids.len()
        ));
    }
    if !calls
        .iter()
        .any(|c| t.phase(c.sent) == "after" && c.answer.status() == Some(202))
    {
        failures.push("no push after the database's return was accepted".to_string());
    }
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
