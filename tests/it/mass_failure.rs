//! A tenant's worst day harms nobody else: 2,000 endpoints fail at the same
//! moment with an event pending for each, and the node's threads and memory
//! stay within a fixed budget while it pauses and probes them all. Another
//! tenant's API latency meanwhile is printed, not asserted (a debug build on
//! a shared machine; BENCHMARKS.md has the figures).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::helpers::*;

const ENDPOINTS: usize = 2000;
const MARKETPLACE: i64 = 9300;
const SECRET: &str = "mass-failure-secret";
/// Threads the node may have at any moment, whatever fails.
const THREAD_BUDGET: u64 = 64;
/// Memory the node may grow by (VmRSS over its level before the failure).
const RSS_BUDGET_KB: u64 = 100 * 1024;

/// VmRSS (kB) and thread count of a process.
fn rss_and_threads(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("Threads:")?))
}

/// A server that pauses an endpoint after one failure, with [`ENDPOINTS`]
/// subscriptions of one token (paths `/m0`, `/m1`, … of `receiver`).
async fn subscribe_every_endpoint(receiver: &Receiver) -> TestApp {
    let app = TestApp::spawn_with(&[
        "--max-subscriptions-per-token",
        "5000",
        "--pause-after-failures",
        "1",
        "--probe-interval",
        "2s",
        "--probe-max-interval",
        "10s",
        "--retry-schedule",
        "1s",
    ])
    .await;
    let token = app.token(MARKETPLACE, 1).await;
    let started = Instant::now();
    futures_util::stream::iter(0..ENDPOINTS)
        .for_each_concurrent(16, |i| {
            let (app, token, url) = (&app, &token, receiver.url_at(&format!("/m{i}")));
            async move {
                app.subscribe_ok(token, REVISION_STATUS_UPDATED, &url, SECRET)
                    .await;
            }
        })
        .await;
    eprintln!("{ENDPOINTS} subscriptions made in {:?}", started.elapsed());
    app
}

/// What the node used, and another tenant's latency, while it paused every
/// endpoint.
struct Sampled {
    /// Peak `(VmRSS kB, threads)`, starting from the level before.
    peak: (u64, u64),
    /// `bystander`'s GET /v1/subscription, one per sample, sorted.
    bystander_ms: Vec<f64>,
}

/// Samples every 100 ms (the node's VmRSS and threads, and a list call by
/// `bystander`, asserted 200) until every endpoint is paused and 3 s more.
async fn sample_until_all_paused(app: &TestApp, bystander: &str, before: (u64, u64)) -> Sampled {
    let pid = app.pid();
    let mut peak = before;
    let mut bystander_ms: Vec<f64> = Vec::new();
    let mut paused_at: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (rss, threads) = rss_and_threads(pid).expect("read /proc");
        peak = (peak.0.max(rss), peak.1.max(threads));
        let asked = Instant::now();
        let (status, _) = app.list_subscriptions(bystander).await;
        bystander_ms.push(asked.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "another tenant's list");
        if paused_at.is_none() {
            let paused = app.scrape().await.sum("hookrelay_endpoint_paused", &[]);
            if paused as usize >= ENDPOINTS {
                paused_at = Some(Instant::now());
            }
        }
        if paused_at.is_some_and(|at| at.elapsed() > Duration::from_secs(3)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every endpoint was paused within 90 s\n{}",
            app.log_tail(30)
        );
        sleep(Duration::from_millis(100)).await;
    }
    bystander_ms.sort_by(f64::total_cmp);
    Sampled { peak, bystander_ms }
}

fn report(before: (u64, u64), sampled: &Sampled) {
    let (rss_before, threads_before) = before;
    let Sampled { peak, bystander_ms } = sampled;
    let at = |q: f64| bystander_ms[((bystander_ms.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "mass failure of {ENDPOINTS} endpoints: threads {threads_before} -> peak {}, VmRSS {} MiB -> peak {} MiB; another tenant's GET /v1/subscription meanwhile ({} calls): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        peak.1,
        rss_before / 1024,
        peak.0 / 1024,
        bystander_ms.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

#[actix_rt::test]
async fn two_thousand_endpoints_failing_at_once_keep_threads_and_memory_within_budget() {
    let receiver = Receiver::start().await;
    let app = subscribe_every_endpoint(&receiver).await;
    let bystander = app.token(MARKETPLACE + 1, 1).await;
    let before = rss_and_threads(app.pid()).expect("read /proc");
    let rss_before = before.0;

    // Every endpoint goes down at once, with one event pending for each.
    receiver.set_status(503);
    let pushed = app
        .push_event_ok(&event(REVISION_STATUS_UPDATED, MARKETPLACE, 1))
        .await;
    assert_eq!(pushed["deliveries"], ENDPOINTS as u64, "{pushed}");

    let sampled = sample_until_all_paused(&app, &bystander, before).await;
    report(before, &sampled);
    let peak = sampled.peak;
    assert!(
        peak.1 <= THREAD_BUDGET,
        "threads peaked at {} (budget {THREAD_BUDGET})",
        peak.1
    );
    assert!(
        peak.0 <= rss_before + RSS_BUDGET_KB,
        "VmRSS grew by {} MiB (budget {} MiB)",
        (peak.0 - rss_before) / 1024,
        RSS_BUDGET_KB / 1024
    );

    // They come back: the held deliveries all arrive.
    receiver.set_status(200);
    let paths: HashSet<String> = (0..ENDPOINTS).map(|i| format!("/m{i}")).collect();
    wait_until(
        Duration::from_secs(60),
        "every endpoint got its event",
        || {
            let got: HashSet<String> = receiver
                .deliveries()
                .into_iter()
                .filter(|d| d.context_object_id() == Some(1))
                .map(|d| d.path)
                .collect();
            paths.is_subset(&got)
        },
    )
    .await;
}
