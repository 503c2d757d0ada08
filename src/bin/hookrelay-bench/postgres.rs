//! Figure 9: figures 2, 3 and 4 with PostgreSQL as the store, first with
//! one node, then with two nodes (two hookrelay processes on the same
//! database splitting the endpoints by lease, each taking half of the
//! pushes). Each measurement gets its own new database, dropped afterwards.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use crate::figures::{
    Bench, Measured, Pushed, block_on, event_json, push_batches, push_singles, subscribe, with_logs,
};
use crate::instance::{Instance, Setup};
use crate::load;
use crate::seed::ScratchDatabase;

/// `--lease-ttl` of every node: a new node gets its share within seconds.
const LEASE_TTL: &str = "3s";
/// Node names, in start order; subscriptions are made through the first.
const NODE_IDS: [&str; 2] = ["a", "b"];
/// Longest wait for every endpoint to have an owner (and a fair split).
const OWNED_AT_MOST: Duration = Duration::from_secs(30);
/// Longest wait for every node to route the new subscriptions.
const ROUTED_AT_MOST: Duration = Duration::from_secs(30);
/// contextObjectId of the probe events (outside every tracked range).
const PROBE_ID: u64 = 999_999_999;

#[derive(Clone, Copy)]
enum Kind {
    /// Figure 2 or 3: batches, with this fan-out.
    Batch(usize),
    /// Figure 4: single pushes.
    Single,
}

/// The metric ids of (nodes, kind): delivery and ingest.
fn ids(nodes: usize, kind: Kind) -> (&'static str, &'static str) {
    match (nodes, kind) {
        (1, Kind::Batch(1)) => ("pg1_batch1_delivery", "pg1_batch1_ingest"),
        (1, Kind::Batch(_)) => ("pg1_batch10_delivery", "pg1_batch10_ingest"),
        (1, Kind::Single) => ("pg1_single_delivery", "pg1_single_ingest"),
        (_, Kind::Batch(1)) => ("pg2_batch1_delivery", "pg2_batch1_ingest"),
        (_, Kind::Batch(_)) => ("pg2_batch10_delivery", "pg2_batch10_ingest"),
        (_, Kind::Single) => ("pg2_single_delivery", "pg2_single_ingest"),
    }
}

/// GETs the endpoint list from `node`: (endpoint id, owner node) of each.
async fn owners(
    client: &awc::Client,
    node: &Instance,
) -> Result<Vec<(i64, Option<String>)>, String> {
    let url = format!("{}/internal/v1/endpoints?limit=500", node.internal);
    let (status, body) = load::get(client, &url).await?;
    if status != 200 {
        return Err(format!("GET {url} answered {status}"));
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: unexpected answer: {e}"))?;
    Ok(v["endpoints"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["id"].as_i64().unwrap_or(0),
                        e["ownerNode"].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Waits until all `endpoints` endpoints have an owner and, with several
/// nodes, none owns more than its fair share (the lease manager hands
/// surplus endpoints over within a lease round or two). Returns how they
/// are split, and whether the split was fair in time.
fn wait_owned(nodes: &[&Instance], endpoints: usize) -> Result<Value, String> {
    let fair = endpoints.div_ceil(nodes.len());
    block_on(async {
        let client = load::client(1);
        let started = Instant::now();
        loop {
            let list = owners(&client, nodes[0]).await?;
            let mut count: std::collections::BTreeMap<String, usize> = Default::default();
            for (_, owner) in &list {
                if let Some(o) = owner {
                    *count.entry(o.clone()).or_default() += 1;
                }
            }
            let owned: usize = count.values().sum();
            let balanced = count.values().all(|c| *c <= fair);
            let waited = started.elapsed();
            if list.len() == endpoints && owned == endpoints && (balanced || waited > OWNED_AT_MOST)
            {
                return Ok(json!({
                    "owners": count, "fair_split": balanced, "waited_s": waited.as_secs_f64(),
                }));
            }
            if waited > OWNED_AT_MOST {
                return Err(format!(
                    "after {}s only {owned} of {endpoints} endpoints have an owner node ({count:?})",
                    OWNED_AT_MOST.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Pushes a probe event to every node until each routes it to all
/// `fanout` subscriptions (subscriptions made on one node reach the others'
/// routing tables by polling), then waits for the probes' deliveries so
/// they are not counted later. Returns the seconds it took.
pub fn wait_routed(bench: &Bench, nodes: &[&Instance], fanout: usize) -> Result<f64, String> {
    let arrivals = &bench.receiver.arrivals;
    let before = arrivals.count();
    let started = Instant::now();
    let delivered = block_on(async {
        let client = load::client(1);
        let body = Bytes::from(event_json(PROBE_ID));
        let mut delivered = 0u64;
        for node in nodes {
            let url = format!("{}/internal/v1/events", node.internal);
            loop {
                let (status, answer) = load::post(&client, &url, body.clone(), None).await?;
                let routed = serde_json::from_slice::<Value>(&answer)
                    .ok()
                    .and_then(|v| v["deliveries"].as_u64());
                match (status, routed) {
                    (202, Some(n)) => {
                        delivered += n;
                        if n as usize == fanout {
                            break;
                        }
                    }
                    (503, _) => {}
                    _ => {
                        return Err(format!(
                            "POST {url} (probe) answered {status}: {}",
                            String::from_utf8_lossy(&answer)
                        ));
                    }
                }
                if started.elapsed() > ROUTED_AT_MOST {
                    return Err(format!(
                        "node at {} did not route to all {fanout} subscriptions within {}s",
                        node.internal,
                        ROUTED_AT_MOST.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(delivered)
    })?;
    while arrivals.count() < before + delivered {
        if started.elapsed() > ROUTED_AT_MOST * 2 {
            return Err(format!(
                "{} of {delivered} probe deliveries arrived",
                arrivals.count().saturating_sub(before)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One measurement on a new database with `nodes` nodes.
fn measure(bench: &Bench, admin_url: &str, nodes: usize, kind: Kind) -> Result<Pushed, String> {
    let database = ScratchDatabase::create(admin_url)?;
    let mut instances = Vec::with_capacity(nodes);
    for id in NODE_IDS.iter().take(nodes) {
        let setup = Setup {
            database: Some(database.url.clone()),
            args: ["--node-id", id, "--lease-ttl", LEASE_TTL]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        instances.push(Instance::start_with(&bench.launch, &setup)?);
    }
    let refs: Vec<&Instance> = instances.iter().collect();
    let fanout = match kind {
        Kind::Batch(f) => f,
        Kind::Single => 1,
    };
    subscribe(refs[0], bench.receiver.port, fanout).map_err(|e| with_logs(&refs, e))?;
    let owners = wait_owned(&refs, fanout).map_err(|e| with_logs(&refs, e))?;
    let routed = wait_routed(bench, &refs, fanout).map_err(|e| with_logs(&refs, e))?;
    let mut pushed = match kind {
        Kind::Batch(f) => {
            let events = if f == 1 {
                bench.sizes.batch_events
            } else {
                bench.sizes.batch_fanout10_events
            };
            push_batches(bench, &refs, f, events, Some(&database.name))?
        }
        Kind::Single => push_singles(bench, &refs, Some(&database.name))?,
    };
    pushed.detail["endpoint_owners"] = owners;
    pushed.detail["routing_wait_s"] = json!(routed);
    Ok(pushed)
}

/// Figure 9: figures 2, 3 and 4 on PostgreSQL with one node, then two.
pub fn postgres(bench: &Bench, admin_url: &str) -> Result<Measured, String> {
    let mut values = Vec::new();
    let mut detail = serde_json::Map::new();
    for nodes in [1, 2] {
        for kind in [Kind::Batch(1), Kind::Batch(10), Kind::Single] {
            let (delivery, ingest) = ids(nodes, kind);
            let pushed =
                measure(bench, admin_url, nodes, kind).map_err(|e| format!("{delivery}: {e}"))?;
            values.push((delivery, pushed.delivery));
            values.push((ingest, pushed.ingest));
            detail.insert(
                delivery.trim_end_matches("_delivery").to_string(),
                pushed.detail,
            );
        }
    }
    Ok(Measured {
        values,
        detail: Value::Object(detail),
    })
}
