//! The last hour in memory, per minute: each endpoint's attempts by
//! outcome, latency percentiles and queue depth, and the node's events in
//! and deliveries out, for the web UI's charts.
//!
//! Nothing on the hot path changes: once a minute (at the minute) a sampler
//! reads the cumulative values of the Prometheus series this node already
//! keeps and stores what moved since its last reading. Only minutes in which
//! something happened are stored (an idle endpoint has no series here); an
//! endpoint's series goes once its last hour is empty, which is also how the
//! series of an endpoint whose actor is gone ends. The node keeps one dense
//! ring of minutes. The current minute is read live: the series' values now
//! less the last sample.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use prometheus::core::Collector;
use prometheus::proto::Metric;

use super::METRICS;
use super::families::DURATION_BUCKETS;

/// The outcomes of an attempt, in the order of `Minute::attempts`.
pub const OUTCOMES: [&str; 5] = [
    "success",
    "http_error",
    "timeout",
    "connect_error",
    "refused",
];

/// Minutes in the hour shown, the current one included; a ring keeps as
/// many closed minutes.
const MINUTES: usize = 60;

/// Buckets of the duration histogram, `+Inf` (the count) last.
const BUCKETS: usize = DURATION_BUCKETS.len() + 1;

/// One minute of one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Minute {
    pub start: DateTime<Utc>,
    /// Attempts by outcome, in the order of `OUTCOMES`.
    pub attempts: [u64; 5],
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The gauge at the end of the minute (now, for the current minute).
    pub queue_depth: u64,
}

/// One minute of the whole node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeMinute {
    pub start: DateTime<Utc>,
    /// Events ingested.
    pub events_in: u64,
    /// Deliveries that succeeded.
    pub delivered: u64,
    /// Deliveries given up (dead).
    pub dead: u64,
    pub attempts: [u64; 5],
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub queue_depth: u64,
}

/// The last hour of one endpoint on this node, oldest first, 60 entries
/// (missing minutes are zero), the last one being the current, partial
/// minute (live values minus the last sample).
pub fn endpoint_hour(endpoint_id: i64) -> Vec<Minute> {
    // Without an actor here the endpoint has no series (they go together),
    // so there is nothing live to read.
    let (counts, queue) = match queue_depth_of(endpoint_id) {
        Some(queue) => {
            let live = live_snapshot();
            (
                live.endpoints
                    .get(&endpoint_id)
                    .copied()
                    .unwrap_or_default(),
                queue,
            )
        }
        None => (Counts::default(), 0),
    };
    lock().endpoint_hour(endpoint_id, Utc::now(), &counts, queue)
}

/// The last hour of each of `ids`, as `endpoint_hour` gives it, reading
/// the series once for all of them (a page of endpoints).
pub fn endpoint_hours(ids: &[i64]) -> HashMap<i64, Vec<Minute>> {
    let snapshot = live_snapshot();
    let live = &snapshot.endpoints;
    let queues: Vec<u64> = ids
        .iter()
        .map(|&id| queue_depth_of(id).unwrap_or(0))
        .collect();
    let now = Utc::now();
    let recent = lock();
    ids.iter()
        .zip(queues)
        .map(|(&id, queue)| {
            let counts = live.get(&id).copied().unwrap_or_default();
            (id, recent.endpoint_hour(id, now, &counts, queue))
        })
        .collect()
}

/// The same for the whole node (all endpoints summed; events ingested;
/// deliveries finished).
pub fn node_hour() -> Vec<NodeMinute> {
    let snapshot = live_snapshot();
    lock().node_hour(Utc::now(), &snapshot)
}

/// How long one reading of the live series serves the current minute: a
/// reading walks every series (about 40 ms at 10,000 busy endpoints), so
/// pages and viewers refreshing together share one.
const LIVE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

static LIVE: Mutex<Option<(std::time::Instant, Arc<Snapshot>)>> = Mutex::new(None);

/// A reading of the series at most `LIVE_FOR` old.
fn live_snapshot() -> Arc<Snapshot> {
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((read, snapshot)) = live.as_ref()
        && read.elapsed() < LIVE_FOR
    {
        return snapshot.clone();
    }
    let snapshot = Arc::new(read_snapshot());
    *live = Some((std::time::Instant::now(), snapshot.clone()));
    snapshot
}

/// Starts the sampler on the current actix/tokio runtime (called once by
/// the server at start). A second call while one runs does nothing; when
/// its runtime stops, the next call starts another.
pub fn spawn_sampler() {
    if SAMPLER_RUNS.swap(true, Ordering::SeqCst) {
        return;
    }
    actix_rt::spawn(async {
        let _runs = SamplerRuns;
        loop {
            tokio::time::sleep(until_next_minute(Utc::now())).await;
            let at = nearest_minute(Utc::now());
            let sampled = tokio::task::spawn_blocking(move || {
                let snapshot = read_snapshot();
                lock().sample(at, &snapshot);
            })
            .await;
            if let Err(e) = sampled {
                log::error!("the recent-metrics sampler failed: {e}");
            }
        }
    });
}

static SAMPLER_RUNS: AtomicBool = AtomicBool::new(false);

/// Held by the sampler task; dropped with it (its runtime stopped).
struct SamplerRuns;

impl Drop for SamplerRuns {
    fn drop(&mut self) {
        SAMPLER_RUNS.store(false, Ordering::SeqCst);
    }
}

static RECENT: LazyLock<Mutex<Recent>> = LazyLock::new(|| Mutex::new(Recent::default()));

fn lock() -> std::sync::MutexGuard<'static, Recent> {
    RECENT.lock().unwrap_or_else(|p| p.into_inner())
}

fn one_minute() -> TimeDelta {
    TimeDelta::minutes(1)
}

/// The start of the minute `t` is in.
fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(one_minute()).unwrap_or(t)
}

/// The minute boundary nearest to `t` (the sampler wakes at one, give or
/// take the timer's and the clock's slack).
fn nearest_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_round(one_minute()).unwrap_or(t)
}

fn until_next_minute(now: DateTime<Utc>) -> std::time::Duration {
    let next = minute_of(now) + one_minute();
    (next - now).to_std().unwrap_or_default()
}

/// Cumulative counts of one endpoint's series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    attempts: [u64; 5],
    /// The duration histogram's cumulative buckets, `+Inf` last.
    buckets: [u64; BUCKETS],
    delivered: u64,
    dead: u64,
}

/// How much a counter grew; one that went down was dropped and started
/// again (its endpoint's actor restarted), so all of its value is new.
fn growth(now: u64, before: u64) -> u64 {
    now.checked_sub(before).unwrap_or(now)
}

impl Counts {
    /// What happened between `before` and `self`.
    fn since(&self, before: &Counts) -> Counts {
        let total = BUCKETS - 1;
        let buckets = if self.buckets[total] < before.buckets[total] {
            self.buckets
        } else {
            std::array::from_fn(|i| self.buckets[i].saturating_sub(before.buckets[i]))
        };
        Counts {
            attempts: std::array::from_fn(|i| growth(self.attempts[i], before.attempts[i])),
            buckets,
            delivered: growth(self.delivered, before.delivered),
            dead: growth(self.dead, before.dead),
        }
    }

    fn add(&mut self, other: &Counts) {
        for (a, b) in self.attempts.iter_mut().zip(other.attempts) {
            *a += b;
        }
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.delivered += other.delivered;
        self.dead += other.dead;
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    fn percentile_ms(&self, q: f64) -> Option<f64> {
        histogram_quantile(q, &DURATION_BUCKETS, &self.buckets).map(|s| s * 1000.0)
    }

    fn minute(&self, start: DateTime<Utc>, queue_depth: u64) -> Minute {
        Minute {
            start,
            attempts: self.attempts,
            p50_ms: self.percentile_ms(0.5),
            p99_ms: self.percentile_ms(0.99),
            queue_depth,
        }
    }

    fn node_minute(&self, start: DateTime<Utc>, events_in: u64, queue_depth: u64) -> NodeMinute {
        NodeMinute {
            start,
            events_in,
            delivered: self.delivered,
            dead: self.dead,
            attempts: self.attempts,
            p50_ms: self.percentile_ms(0.5),
            p99_ms: self.percentile_ms(0.99),
            queue_depth,
        }
    }
}

/// The q-quantile (0 ≤ q ≤ 1) of a histogram the way Prometheus's
/// `histogram_quantile` computes it: find the bucket the rank falls in and
/// interpolate linearly within it (the first bucket starts at 0; a rank in
/// the `+Inf` bucket gives the highest finite bound). `cumulative` holds one
/// count per bound and the total (`+Inf`) last. None without observations.
pub fn histogram_quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || cumulative.len() != bounds.len() + 1 {
        return None;
    }
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank)?;
    if i == bounds.len() {
        return bounds.last().copied();
    }
    let (start, below) = match i {
        0 if bounds[0] <= 0.0 => return Some(bounds[0]),
        0 => (0.0, 0),
        _ => (bounds[i - 1], cumulative[i - 1]),
    };
    let in_bucket = cumulative[i] - below;
    if in_bucket == 0 {
        return Some(start);
    }
    Some(start + (bounds[i] - start) * ((rank - below as f64) / in_bucket as f64))
}

/// One reading of the node's series.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    /// Every endpoint with a series, by id.
    endpoints: HashMap<i64, Counts>,
    /// Events ingested, all types.
    events_in: u64,
    /// Queue depths of the running endpoints whose queue is not empty.
    queues: HashMap<i64, u64>,
}

/// The closed minutes kept, and the last sample.
#[derive(Debug, Default)]
struct Recent {
    /// When the last sample was taken (a minute boundary).
    last: Option<DateTime<Utc>>,
    /// The counts read at the last sample, of every endpoint with a series.
    baseline: HashMap<i64, Counts>,
    events_in: u64,
    /// Minutes in which something happened, per endpoint, oldest first.
    endpoints: HashMap<i64, VecDeque<Minute>>,
    /// Every closed minute of the node, oldest first.
    node: VecDeque<NodeMinute>,
}

/// Drops from the front of a ring what is older than `MINUTES` closed
/// minutes before `now` (the start of the current minute).
fn trim<T>(ring: &mut VecDeque<T>, now: DateTime<Utc>, start: impl Fn(&T) -> DateTime<Utc>) {
    let oldest = now - one_minute() * MINUTES as i32;
    while ring.front().is_some_and(|m| start(m) < oldest) || ring.len() > MINUTES {
        ring.pop_front();
    }
}

impl Recent {
    /// Closes the minute ending at `at` with what moved since the last
    /// sample. A sample not later than the last one is ignored.
    fn sample(&mut self, at: DateTime<Utc>, snapshot: &Snapshot) {
        if self.last.is_some_and(|last| at <= last) {
            return;
        }
        let start = at - one_minute();
        let mut node = Counts::default();
        for (id, now) in &snapshot.endpoints {
            let moved = now.since(&self.baseline.get(id).copied().unwrap_or_default());
            node.add(&moved);
            let queue = snapshot.queues.get(id).copied().unwrap_or(0);
            if !moved.is_zero() || queue > 0 {
                let ring = self.endpoints.entry(*id).or_default();
                ring.push_back(moved.minute(start, queue));
            }
        }
        for (id, &queue) in &snapshot.queues {
            if queue > 0 && !snapshot.endpoints.contains_key(id) {
                let ring = self.endpoints.entry(*id).or_default();
                ring.push_back(Counts::default().minute(start, queue));
            }
        }
        let events_in = growth(snapshot.events_in, self.events_in);
        let queue = snapshot.queues.values().sum();
        self.node
            .push_back(node.node_minute(start, events_in, queue));
        trim(&mut self.node, at, |m| m.start);
        self.endpoints.retain(|_, ring| {
            trim(ring, at, |m| m.start);
            !ring.is_empty()
        });
        self.baseline.clone_from(&snapshot.endpoints);
        self.events_in = snapshot.events_in;
        self.last = Some(at);
    }

    /// The starts of the hour's minutes at `now`, oldest first.
    fn hour_starts(now: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> {
        let current = minute_of(now);
        (0..MINUTES)
            .rev()
            .map(move |ago| current - one_minute() * ago as i32)
    }

    /// The hour of one endpoint: its closed minutes, zero where none is
    /// kept, and the current minute from `live` (its counts now) and
    /// `queue` (its gauge now).
    fn endpoint_hour(&self, id: i64, now: DateTime<Utc>, live: &Counts, queue: u64) -> Vec<Minute> {
        let ring = self.endpoints.get(&id);
        let mut hour: Vec<Minute> = Recent::hour_starts(now)
            .map(|start| {
                ring.and_then(|r| r.iter().find(|m| m.start == start))
                    .cloned()
                    .unwrap_or_else(|| Counts::default().minute(start, 0))
            })
            .collect();
        if let Some(current) = hour.last_mut() {
            let base = self.baseline.get(&id).copied().unwrap_or_default();
            *current = live.since(&base).minute(current.start, queue);
        }
        hour
    }

    /// The hour of the node; the current minute from `live`.
    fn node_hour(&self, now: DateTime<Utc>, live: &Snapshot) -> Vec<NodeMinute> {
        let mut hour: Vec<NodeMinute> = Recent::hour_starts(now)
            .map(|start| {
                self.node
                    .iter()
                    .find(|m| m.start == start)
                    .cloned()
                    .unwrap_or_else(|| Counts::default().node_minute(start, 0, 0))
            })
            .collect();
        if let Some(current) = hour.last_mut() {
            let mut moved = Counts::default();
            for (id, now) in &live.endpoints {
                moved.add(&now.since(&self.baseline.get(id).copied().unwrap_or_default()));
            }
            let events_in = growth(live.events_in, self.events_in);
            let queue = live.queues.values().sum();
            *current = moved.node_minute(current.start, events_in, queue);
        }
        hour
    }
}

/// A label's value in one series.
fn label<'a>(metric: &'a Metric, name: &str) -> Option<&'a str> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// The endpoint id a series is labelled with.
fn endpoint_of(metric: &Metric) -> Option<i64> {
    label(metric, "endpoint")?.parse().ok()
}

/// The series of every endpoint, and the events ingested, read from the
/// registry's collectors (no series is created).
fn read_counts() -> Snapshot {
    let mut snapshot = Snapshot::default();
    let endpoints = &mut snapshot.endpoints;
    for family in METRICS.attempts.collect() {
        for m in family.get_metric() {
            let Some(id) = endpoint_of(m) else {
                continue;
            };
            let outcome = label(m, "outcome").and_then(|o| OUTCOMES.iter().position(|&x| x == o));
            if let Some(i) = outcome {
                endpoints.entry(id).or_default().attempts[i] = m.get_counter().get_value() as u64;
            }
        }
    }
    for family in METRICS.deliveries.collect() {
        for m in family.get_metric() {
            let Some(id) = endpoint_of(m) else {
                continue;
            };
            let value = m.get_counter().get_value() as u64;
            match label(m, "outcome") {
                Some("succeeded") => endpoints.entry(id).or_default().delivered = value,
                Some("dead") => endpoints.entry(id).or_default().dead = value,
                _ => {}
            }
        }
    }
    for family in METRICS.duration.collect() {
        for m in family.get_metric() {
            let Some(id) = endpoint_of(m) else {
                continue;
            };
            let h = m.get_histogram();
            let counts = endpoints.entry(id).or_default();
            for (slot, bucket) in counts.buckets.iter_mut().zip(h.get_bucket()) {
                *slot = bucket.cumulative_count();
            }
            counts.buckets[BUCKETS - 1] = h.get_sample_count();
        }
    }
    snapshot.events_in = METRICS
        .events_ingested
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum();
    snapshot
}

/// Everything the sampler reads: the series and the queue gauges.
fn read_snapshot() -> Snapshot {
    let mut snapshot = read_counts();
    let table = METRICS
        .endpoint_gauges
        .endpoints
        .read()
        .unwrap_or_else(|p| p.into_inner());
    snapshot.queues = table
        .iter()
        .map(|(id, g)| (*id, g.queue_depth.load(Ordering::Relaxed).max(0) as u64))
        .filter(|(_, depth)| *depth > 0)
        .collect();
    snapshot
}

/// One running endpoint's queue depth now; None when it has no actor here.
fn queue_depth_of(endpoint_id: i64) -> Option<u64> {
    METRICS
        .endpoint_gauges
        .endpoints
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&endpoint_id)
        .map(|g| g.queue_depth.load(Ordering::Relaxed).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        // 1_800_000_000 is a whole minute.
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    fn counts(success: u64, timeout: u64) -> Counts {
        let mut c = Counts::default();
        c.attempts[0] = success;
        c.attempts[2] = timeout;
        // Every success took 20 ms (bucket 0.025), every timeout 10 s.
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            c.buckets[i] = if *bound >= 0.025 { success } else { 0 }
                + if *bound >= 10.0 { timeout } else { 0 };
        }
        c.buckets[BUCKETS - 1] = success + timeout;
        c.delivered = success;
        c
    }

    fn snapshot(endpoints: &[(i64, Counts)], events_in: u64) -> Snapshot {
        Snapshot {
            endpoints: endpoints.iter().copied().collect(),
            events_in,
            queues: HashMap::new(),
        }
    }

    #[test]
    fn quantile_interpolates_within_the_bucket_like_prometheus() {
        let bounds = [0.1, 0.2, 0.4];
        // 10 in (0, 0.1], 10 in (0.1, 0.2], none above.
        let cumulative = [10, 20, 20, 20];
        assert_eq!(histogram_quantile(0.5, &bounds, &cumulative), Some(0.1));
        let p75 = histogram_quantile(0.75, &bounds, &cumulative).unwrap();
        assert!((p75 - 0.15).abs() < 1e-9, "{p75}");
        let p25 = histogram_quantile(0.25, &bounds, &cumulative).unwrap();
        assert!((p25 - 0.05).abs() < 1e-9, "{p25}");
    }

    #[test]
    fn quantile_in_the_infinite_bucket_is_the_highest_bound() {
        assert_eq!(histogram_quantile(0.99, &[0.1, 0.2], &[0, 0, 5]), Some(0.2));
    }

    #[test]
    fn quantile_of_nothing_or_of_a_bad_q_is_none() {
        assert_eq!(histogram_quantile(0.5, &[0.1], &[0, 0]), None);
        assert_eq!(histogram_quantile(1.5, &[0.1], &[1, 1]), None);
        assert_eq!(histogram_quantile(0.5, &[0.1], &[1]), None);
    }

    #[test]
    fn a_minute_holds_what_moved_since_the_last_sample() {
        let mut recent = Recent::default();
        recent.sample(at(0), &snapshot(&[(7, counts(10, 0))], 100));
        recent.sample(at(1), &snapshot(&[(7, counts(15, 2))], 130));
        let hour = recent.endpoint_hour(7, at(1) + TimeDelta::seconds(5), &counts(16, 2), 3);
        assert_eq!(hour.len(), MINUTES);
        let closed = &hour[MINUTES - 2];
        assert_eq!(closed.start, at(0));
        assert_eq!(closed.attempts, [5, 0, 2, 0, 0]);
        assert!(closed.p50_ms.unwrap() <= 25.0);
        assert!(closed.p99_ms.unwrap() > 5_000.0);
        let current = &hour[MINUTES - 1];
        assert_eq!(current.start, at(1));
        assert_eq!(current.attempts, [1, 0, 0, 0, 0]);
        assert_eq!(current.queue_depth, 3);
        let node = recent.node_hour(at(1), &snapshot(&[(7, counts(15, 2))], 131));
        assert_eq!(node[MINUTES - 2].events_in, 30);
        assert_eq!(node[MINUTES - 2].delivered, 5);
        assert_eq!(node[MINUTES - 1].events_in, 1);
    }

    #[test]
    fn a_counter_that_restarted_counts_from_zero() {
        let mut recent = Recent::default();
        recent.sample(at(0), &snapshot(&[(7, counts(10, 4))], 0));
        recent.sample(at(1), &snapshot(&[(7, counts(3, 0))], 0));
        let hour = recent.endpoint_hour(7, at(1), &counts(3, 0), 0);
        assert_eq!(hour[MINUTES - 2].attempts, [3, 0, 0, 0, 0]);
        assert_eq!(hour[MINUTES - 2].p99_ms.map(|p| p <= 25.0), Some(true));
    }

    #[test]
    fn the_ring_stays_at_sixty_minutes() {
        let mut recent = Recent::default();
        for minute in 0..200 {
            let c = counts(minute as u64 + 1, 0);
            recent.sample(at(minute), &snapshot(&[(7, c)], minute as u64));
        }
        assert_eq!(recent.node.len(), MINUTES);
        assert_eq!(recent.endpoints[&7].len(), MINUTES);
        assert_eq!(recent.node.front().unwrap().start, at(199 - 60));
        let hour = recent.node_hour(at(199), &Snapshot::default());
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(hour[0].start, at(199 - 59));
        assert_eq!(hour[MINUTES - 2].attempts[0], 1);
    }

    #[test]
    fn an_idle_endpoint_stores_nothing() {
        let mut recent = Recent::default();
        let idle: Vec<(i64, Counts)> = (0..10_000).map(|id| (id, counts(5, 0))).collect();
        recent.sample(at(0), &snapshot(&idle, 0));
        for id in 0..10_000 {
            assert!(
                recent.endpoints.contains_key(&id),
                "first sample: moved from zero"
            );
        }
        for minute in 1..=MINUTES as i64 {
            recent.sample(at(minute), &snapshot(&idle, 0));
        }
        assert!(recent.endpoints.is_empty(), "an hour idle: nothing kept");
        recent.sample(
            at(61),
            &snapshot(&[(1, counts(5, 0)), (2, counts(6, 0))], 0),
        );
        assert_eq!(recent.endpoints.len(), 1);
        let hour = recent.endpoint_hour(1, at(61), &counts(5, 0), 0);
        assert!(
            hour.iter()
                .all(|m| m.attempts == [0; 5] && m.p99_ms.is_none())
        );
    }

    #[test]
    fn a_queue_that_waits_is_kept_while_nothing_moves() {
        let mut recent = Recent::default();
        let mut s = snapshot(&[], 0);
        s.queues.insert(9, 40);
        recent.sample(at(0), &s);
        recent.sample(at(1), &s);
        let hour = recent.endpoint_hour(9, at(1), &Counts::default(), 41);
        assert_eq!(hour[MINUTES - 2].queue_depth, 40);
        assert_eq!(hour[MINUTES - 1].queue_depth, 41);
        assert_eq!(recent.node_hour(at(1), &s)[MINUTES - 2].queue_depth, 40);
    }

    #[test]
    fn a_sample_not_later_than_the_last_is_ignored() {
        let mut recent = Recent::default();
        recent.sample(at(1), &snapshot(&[(7, counts(1, 0))], 0));
        recent.sample(at(1), &snapshot(&[(7, counts(9, 0))], 0));
        recent.sample(at(0), &snapshot(&[(7, counts(9, 0))], 0));
        assert_eq!(recent.node.len(), 1);
        assert_eq!(recent.baseline[&7], counts(1, 0));
    }

    #[test]
    fn the_sampler_wakes_at_the_next_minute() {
        let t = at(3) + TimeDelta::seconds(45);
        assert_eq!(until_next_minute(t), std::time::Duration::from_secs(15));
        assert_eq!(nearest_minute(at(3) - TimeDelta::milliseconds(3)), at(3));
        assert_eq!(nearest_minute(at(3) + TimeDelta::milliseconds(3)), at(3));
    }

    #[test]
    fn reading_the_live_series_creates_none() {
        let id = 9_100_000_001;
        let endpoint = crate::metrics::EndpointMetrics::new(id);
        endpoint.attempt(crate::metrics::AttemptOutcome::Timeout, 10.0);
        endpoint.attempt(crate::metrics::AttemptOutcome::Success, 0.02);
        endpoint.succeeded();
        endpoint.gauges(7, 0, 0, true, false);
        *LIVE.lock().unwrap() = None;
        let hour = endpoint_hour(id);
        assert_eq!(hour.len(), MINUTES);
        let current = hour.last().unwrap();
        assert_eq!(current.attempts, [1, 0, 1, 0, 0]);
        assert_eq!(current.queue_depth, 7);
        assert!(current.p99_ms.unwrap() > 5_000.0);
        let idle = 9_100_000_002;
        assert!(endpoint_hour(idle).iter().all(|m| m.attempts == [0; 5]));
        assert!(!METRICS.render().contains(&format!("endpoint=\"{idle}\"")));
        let node = node_hour();
        assert!(node.last().unwrap().attempts[2] >= 1);
        endpoint.remove();
    }
}
