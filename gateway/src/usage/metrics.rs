//! The usage figures as Prometheus counters, per tenant, read at each scrape. They continue
//! across restarts when `usage.file` is set (the book is read back).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Figures, Usage};

#[derive(Debug)]
pub struct UsageMetrics(Arc<Usage>);

impl UsageMetrics {
    pub fn register(registry: &mut Registry, usage: Arc<Usage>) {
        registry.register_collector(Box::new(Self(usage)));
    }
}

type Read = fn(&Figures) -> f64;

const COUNTERS: [(&str, &str, Read); 8] = [
    (
        "usage_driver_seconds_starting",
        "Seconds the tenant's drivers spent starting",
        |f| f.driver_seconds_starting,
    ),
    (
        "usage_driver_seconds_ready",
        "Seconds the tenant's drivers were ready",
        |f| f.driver_seconds_ready,
    ),
    (
        "usage_statements",
        "Statements of the tenant that ended",
        |f| f.statements as f64,
    ),
    (
        "usage_statements_failed",
        "Statements of the tenant that failed or were refused",
        |f| f.statements_failed as f64,
    ),
    (
        "usage_cache_hits",
        "Statements of the tenant answered from the result cache",
        |f| f.cache_hits as f64,
    ),
    (
        "usage_rows_fetched",
        "Result rows the tenant's clients fetched",
        |f| f.rows_fetched as f64,
    ),
    (
        "usage_bytes_fetched",
        "Result bytes the tenant's clients fetched",
        |f| f.bytes_fetched as f64,
    ),
    (
        "usage_queue_wait_seconds",
        "Seconds the tenant's statements waited in its queue",
        |f| f.queue_wait_seconds,
    ),
];

impl Collector for UsageMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.0.totals();
        for (name, help, read) in COUNTERS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (tenant, figures) in &totals {
                let labels = [("tenant", tenant.as_str())];
                ConstCounter::new(read(figures)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
