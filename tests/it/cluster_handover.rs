//! Hand-over without a stall: under a steady stream of pushes, no endpoint
//! goes silent for long when a node joins, leaves (SIGTERM) or dies
//! (kill -9), every accepted event arrives, and duplicates come only from
//! the kill.
//!
//! PostgreSQL only: the test creates one database on the server named by
//! `HOOKRELAY_TEST_POSTGRES_URL` and shares it between its nodes; without
//! that variable it passes as skipped.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::cluster_nodes::{
    LEASE_TTL, Nodes, arrivals_by_path, nodes, wait_for_expected, wait_for_owners,
};
use crate::helpers::*;

const SECRET: &str = "consistency-secret";

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

const MARKETPLACE: i64 = 9700;

/// What the stream saw of one push.
struct Pushed {
    id: i64,
    node: usize,
    sent: Instant,
    status: Option<u16>,
    problem: Option<String>,
}

/// The stream: one push every [`STREAM_EVERY`], round robin over `live`
/// (node index, push URL), until `stop`; `current` is the node a push is
/// waiting on.
struct Stream {
    live: RefCell<Vec<(usize, String)>>,
    current: Cell<Option<usize>>,
    stop: Cell<bool>,
    pushed: RefCell<Vec<Pushed>>,
}

impl Stream {
    /// A stream over every running node of `c`.
    fn over(c: &Nodes) -> Stream {
        let live = (0..c.apps.len())
            .map(|i| (i, c.node(i).internal("/internal/v1/events")))
            .collect();
        Stream {
            live: RefCell::new(live),
            current: Cell::new(None),
            stop: Cell::new(false),
            pushed: RefCell::new(Vec::new()),
        }
    }

    /// Pushes until `stop`, recording each push.
    async fn run(&self) {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(20))
            .finish();
        let mut id = 0i64;
        let mut next = Instant::now();
        while !self.stop.get() {
            id += 1;
            let (node, url) = {
                let l = self.live.borrow();
                l[id as usize % l.len()].clone()
            };
            self.current.set(Some(node));
            let sent = Instant::now();
            let (status, problem) = push(&client, &url, id).await;
            self.current.set(None);
            self.pushed.borrow_mut().push(Pushed {
                id,
                node,
                sent,
                status,
                problem,
            });
            next += STREAM_EVERY;
            sleep(next.saturating_duration_since(Instant::now())).await;
        }
    }

    /// Adds node `node` of `c` to the stream.
    fn add(&self, c: &Nodes, node: usize) {
        self.live
            .borrow_mut()
            .push((node, c.node(node).internal("/internal/v1/events")));
    }

    /// Takes `node` out of the stream and waits until no push awaits it.
    async fn take_out(&self, node: usize) {
        self.live.borrow_mut().retain(|(n, _)| *n != node);
        wait_until(
            SOON,
            "the stream's push to the leaving node answered",
            || self.current.get() != Some(node),
        )
        .await;
    }
}

/// One push of event `id` to `url`: its status, and a problem unless it
/// answered 202 or 503.
async fn push(client: &awc::Client, url: &str, id: i64) -> (Option<u16>, Option<String>) {
    let ev = event(REVISION_STATUS_UPDATED, MARKETPLACE, id);
    match client.post(url).send_json(&ev).await {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let body = res.body().await.unwrap_or_default();
            let problem = (status != 202 && status != 503)
                .then(|| format!("{status} {}", String::from_utf8_lossy(&body)));
            (Some(status), problem)
        }
        Err(e) => (None, Some(format!("no answer: {e}"))),
    }
}

/// Subscribes [`STREAM_ENDPOINTS`] paths of `receiver` and waits until both
/// nodes own some and route to all; answers the paths and their URLs.
async fn subscribe_stream_endpoints(c: &Nodes, receiver: &Receiver) -> (Vec<String>, Vec<String>) {
    let token = c.node(0).token(MARKETPLACE, 1).await;
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
    c.wait_until_every_node_routes(MARKETPLACE, STREAM_ENDPOINTS, &mut marker)
        .await;
    (paths, urls)
}

/// When each phase began, and when the kill was.
struct Phases {
    starts: Vec<(&'static str, Instant)>,
    killed: Instant,
}

/// While `stream` runs: [`SETTLED_STREAM`] on two nodes, then st-c joins,
/// st-b leaves (SIGTERM), st-c is killed (-9), each change followed by
/// [`SETTLED_STREAM`] once the endpoints have their new owners; then stops
/// the stream. Answers the phases, and the stopped nodes (kept until the end
/// of the test for their logs).
async fn change_the_cluster(
    c: &mut Nodes,
    stream: &Stream,
    urls: &[String],
) -> (Phases, [TestApp; 2]) {
    let mut starts = vec![("steady, 2 nodes", Instant::now())];
    sleep(SETTLED_STREAM).await;

    starts.push(("st-c joins", Instant::now()));
    c.join("st-c").await;
    stream.add(c, 2);
    let per = wait_for_owners(c.node(0), urls, &["st-a", "st-b", "st-c"]).await;
    eprintln!("endpoints per node after st-c joined: {per:?}");
    sleep(SETTLED_STREAM).await;

    starts.push(("st-b leaves (SIGTERM)", Instant::now()));
    stream.take_out(1).await;
    let mut b = c.apps[1].take().expect("st-b running");
    let status = b.sigterm(Duration::from_secs(20)).await;
    assert!(
        status.is_some(),
        "st-b did not exit within 20 s of SIGTERM\n{}",
        b.log_tail(40)
    );
    let per = wait_for_owners(c.node(0), urls, &["st-a", "st-c"]).await;
    eprintln!("endpoints per node after st-b left: {per:?}");
    sleep(SETTLED_STREAM).await;

    stream.take_out(2).await;
    let killed = Instant::now();
    starts.push(("st-c killed (-9)", killed));
    let mut victim = c.apps[2].take().expect("st-c running");
    victim.kill9();
    let per = wait_for_owners(c.node(0), urls, &["st-a"]).await;
    eprintln!(
        "endpoints per node {:?} after st-c was killed: {per:?}",
        killed.elapsed()
    );
    sleep(SETTLED_STREAM).await;
    stream.stop.set(true);
    (Phases { starts, killed }, [b, victim])
}

/// The pushes answered neither 202 nor 503, naming the node.
fn wrong_answers(pushed: &[Pushed], names: &[String]) -> Vec<String> {
    pushed
        .iter()
        .filter_map(|p| {
            p.problem
                .as_ref()
                .map(|e| format!("event {} via {}: {e}", p.id, names[p.node]))
        })
        .collect()
}

/// The ids of the pushes answered 202.
fn accepted_ids(pushed: &[Pushed]) -> HashSet<i64> {
    pushed
        .iter()
        .filter(|p| p.status == Some(202))
        .map(|p| p.id)
        .collect()
}

fn report_stream(pushed: &[Pushed], accepted: &HashSet<i64>, wrong: &[String]) {
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
}

/// Per phase, every endpoint's longest silence, shortest first (a gap
/// counts in the phase its end falls in: the change that caused it came
/// before).
fn silences_per_phase<'a>(
    phases: &Phases,
    arrivals: &HashMap<String, Vec<(i64, Instant)>>,
    paths: &'a [String],
) -> Vec<Vec<(Duration, &'a str)>> {
    let phase_of = |at: Instant| {
        phases
            .starts
            .iter()
            .rposition(|(_, start)| *start <= at)
            .unwrap_or(0)
    };
    let mut silence: Vec<Vec<(Duration, &str)>> = vec![Vec::new(); phases.starts.len()];
    for p in paths {
        let mut longest = vec![Duration::ZERO; phases.starts.len()];
        for w in arrivals.get(p).map_or(&[][..], Vec::as_slice).windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            let ph = phase_of(b);
            longest[ph] = longest[ph].max(b - a);
        }
        for (ph, l) in longest.into_iter().enumerate() {
            silence[ph].push((l, p.as_str()));
        }
    }
    for s in &mut silence {
        s.sort();
    }
    silence
}

/// The phases in which some endpoint was silent longer than allowed
/// ([`KILL_SILENCE`] around the kill, [`HANDOVER_SILENCE`] otherwise).
fn silence_problems(phases: &Phases, silence: &[Vec<(Duration, &str)>]) -> Vec<String> {
    let mut problems = Vec::new();
    for ((name, _), s) in phases.starts.iter().zip(silence) {
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
    problems
}

/// The paths that got an event twice though its first arrival was not
/// around the kill (from 2 s before to 250 ms after).
fn duplicates_outside_the_kill(
    arrivals: &HashMap<String, Vec<(i64, Instant)>>,
    paths: &[String],
    killed: Instant,
) -> Vec<String> {
    let (before, after) = (Duration::from_secs(2), Duration::from_millis(250));
    let mut problems = Vec::new();
    let mut kill_dups = 0;
    for p in paths {
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
    problems
}

#[actix_rt::test]
async fn under_a_steady_stream_no_endpoint_goes_silent_for_long_when_a_node_joins_leaves_or_is_killed()
 {
    let mut c = nodes!(&["st-a", "st-b"]);
    let receiver = Receiver::start().await;
    let (paths, urls) = subscribe_stream_endpoints(&c, &receiver).await;

    let stream = Stream::over(&c);
    let ((), (phases, _stopped)) =
        futures_util::future::join(stream.run(), change_the_cluster(&mut c, &stream, &urls)).await;
    let stream_end = Instant::now();
    let pushed = stream.pushed.into_inner();

    // Every accepted event arrives everywhere.
    let wrong = wrong_answers(&pushed, &c.names);
    let accepted = accepted_ids(&pushed);
    report_stream(&pushed, &accepted, &wrong);
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

    // Silences per phase, and duplicates only from the kill.
    let arrivals = arrivals_by_path(&receiver, |i| i < 1_000_000);
    let silence = silences_per_phase(&phases, &arrivals, &paths);
    problems.extend(silence_problems(&phases, &silence));
    problems.extend(duplicates_outside_the_kill(
        &arrivals,
        &paths,
        phases.killed,
    ));
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
