//! The per-endpoint gauges: plain atomics in a table, turned into metric
//! families only when `/metrics` is scraped.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus::Registry;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

/// The gauges of one endpoint: plain atomics in a table that is read at
/// scrape time (a `prometheus` series per gauge would cost about 400 bytes
/// each; at 100,000 endpoints that matters).
#[derive(Default)]
pub struct EndpointGauges {
    pub(super) queue_depth: AtomicI64,
    pub(super) in_flight: AtomicI64,
    pub(super) consecutive_failures: AtomicI64,
    pub(super) up: AtomicI64,
    pub(super) paused: AtomicI64,
    pub(super) concurrency: AtomicI64,
    pub(super) operator_paused: AtomicI64,
}

/// The gauge families read from the table, with their help texts.
const GAUGES: [(&str, &str); 7] = [
    (
        "hookrelay_endpoint_queue_depth",
        "Deliveries held in memory for the endpoint and not in flight (a backlog in the database is not counted).",
    ),
    (
        "hookrelay_endpoint_in_flight",
        "Requests in flight to the endpoint.",
    ),
    (
        "hookrelay_endpoint_consecutive_failures",
        "Failed delivery attempts in a row.",
    ),
    (
        "hookrelay_endpoint_up",
        "1 when the endpoint is healthy, 0 when failing, paused or dead.",
    ),
    (
        "hookrelay_endpoint_paused",
        "1 while deliveries to the endpoint are held and it is being probed.",
    ),
    (
        "hookrelay_endpoint_concurrency",
        "Requests the endpoint's concurrency window lets be in flight at once.",
    ),
    (
        "hookrelay_endpoint_operator_paused",
        "1 while an operator holds the endpoint's deliveries.",
    ),
];

impl EndpointGauges {
    fn values(&self) -> [i64; 7] {
        [
            self.queue_depth.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.consecutive_failures.load(Ordering::Relaxed),
            self.up.load(Ordering::Relaxed),
            self.paused.load(Ordering::Relaxed),
            self.concurrency.load(Ordering::Relaxed),
            self.operator_paused.load(Ordering::Relaxed),
        ]
    }
}

/// Every running endpoint's gauges, by endpoint id.
pub(super) struct GaugeTable {
    descs: Vec<Desc>,
    pub(super) endpoints: RwLock<BTreeMap<i64, Arc<EndpointGauges>>>,
}

impl GaugeTable {
    pub(super) fn new() -> GaugeTable {
        let descs = GAUGES
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec!["endpoint".into()],
                    HashMap::new(),
                )
                .expect("valid metric")
            })
            .collect();
        GaugeTable {
            descs,
            endpoints: RwLock::new(BTreeMap::new()),
        }
    }
}

pub(super) struct TableCollector(Arc<GaugeTable>);

impl Collector for TableCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let endpoints = self.0.endpoints.read().unwrap_or_else(|p| p.into_inner());
        let mut families: Vec<MetricFamily> = GAUGES
            .iter()
            .map(|(name, help)| {
                let mut f = MetricFamily::default();
                f.set_name(name.to_string());
                f.set_help(help.to_string());
                f.set_field_type(MetricType::GAUGE);
                f
            })
            .collect();
        for (id, gauges) in endpoints.iter() {
            let label = id.to_string();
            for (family, value) in families.iter_mut().zip(gauges.values()) {
                let mut pair = LabelPair::default();
                pair.set_name("endpoint".into());
                pair.set_value(label.clone());
                let mut gauge = proto::Gauge::default();
                gauge.set_value(value as f64);
                let mut metric = proto::Metric::default();
                metric.set_label(vec![pair]);
                metric.set_gauge(gauge);
                family.mut_metric().push(metric);
            }
        }
        // A family without series is left out, like the built-in vectors do.
        families.retain(|f| !f.get_metric().is_empty());
        families
    }
}

/// The table of per-endpoint gauges, read when scraped.
pub(super) fn endpoint_gauges(r: &Registry) -> Arc<GaugeTable> {
    let table = Arc::new(GaugeTable::new());
    r.register(Box::new(TableCollector(table.clone())))
        .expect("registered once");
    table
}
