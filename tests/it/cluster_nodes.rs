//! The nodes of a cluster-consistency test: several `hookrelay serve` on one
//! fresh PostgreSQL database ([`Nodes`], started by `nodes!`, which skips
//! the test without `HOOKRELAY_TEST_POSTGRES_URL`), who owns which
//! endpoint, and what a receiver got on each of its paths.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// The `--lease-ttl` every node gets.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(3);

/// Some nodes on one fresh database.
pub(crate) struct Nodes {
    /// `None` once stopped or killed.
    pub(crate) apps: Vec<Option<TestApp>>,
    pub(crate) names: Vec<String>,
    /// Declared last: dropped after the nodes are stopped.
    db: Arc<PostgresDb>,
}

macro_rules! nodes {
    ($names:expr) => {
        match $crate::cluster_nodes::Nodes::start($names).await {
            Some(n) => n,
            None => {
                eprintln!(
                    "skipped: {} is not set (cluster consistency tests need PostgreSQL)",
                    $crate::helpers::POSTGRES_ENV
                );
                return;
            }
        }
    };
}
pub(crate) use nodes;

impl Nodes {
    pub(crate) async fn start(names: &[&str]) -> Option<Nodes> {
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
    pub(crate) async fn join(&mut self, name: &str) {
        let app = TestApp::spawn_cluster_node(&self.db, name, &[]).await;
        let (status, health) = app.health().await;
        assert_eq!(status, 200, "{name}: /health {health}");
        assert_eq!(health["node"], name, "{name}: /health {health}");
        self.apps.push(Some(app));
        self.names.push(name.to_string());
    }

    pub(crate) fn node(&self, i: usize) -> &TestApp {
        self.apps[i]
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.names[i]))
    }

    /// Pushes markers (contextObjectId from `*marker` on) to each running
    /// node until it routes `n` subscriptions of `marketplace`.
    pub(crate) async fn wait_until_every_node_routes(
        &self,
        marketplace: i64,
        n: usize,
        marker: &mut i64,
    ) {
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
pub(crate) async fn owners(via: &TestApp, urls: &[String]) -> Vec<Option<String>> {
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
pub(crate) async fn wait_for_owners(
    via: &TestApp,
    urls: &[String],
    live: &[&str],
) -> HashMap<String, usize> {
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
pub(crate) async fn wait_for_expected(
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
