//! The session table's gauges, read at each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::table::SessionTable;

/// Open client sessions and the operations sparkgate tracks.
#[derive(Debug)]
pub struct SessionGauges(Arc<SessionTable>);

impl SessionGauges {
    pub fn register(registry: &mut Registry, table: Arc<SessionTable>) {
        registry.register_collector(Box::new(Self(table)));
    }
}

impl Collector for SessionGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in [
            ("sessions", "Open client sessions", self.0.session_count()),
            (
                "operations",
                "Operations sparkgate tracks",
                self.0.operation_count(),
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value as i64).encode(metric)?;
        }
        Ok(())
    }
}
