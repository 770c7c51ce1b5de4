//! The driver connections' gauges, read at each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::BackendLinks;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverAddressLabel {
    driver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// Open connections to each driver there are connections to now.
#[derive(Debug)]
pub struct LinkGauges(Arc<BackendLinks>);

impl LinkGauges {
    pub fn register(registry: &mut Registry, links: Arc<BackendLinks>) {
        registry.register_collector(Box::new(Self(links)));
    }
}

impl Collector for LinkGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut metric = encoder.encode_descriptor(
            "backend_connections",
            "Open connections to each driver (bounded by backend.max_connections_per_driver)",
            None,
            MetricType::Gauge,
        )?;
        for (driver, open) in self.0.open_connections() {
            let labels = DriverAddressLabel { driver };
            ConstGauge::new(open as i64).encode(metric.encode_family(&labels)?)?;
        }
        let mut metric = encoder.encode_descriptor(
            "backend_calls",
            "Calls sparkgate sent to drivers, by HS2 method (status polls are GetOperationStatus)",
            None,
            MetricType::Counter,
        )?;
        for (method, calls) in self.0.calls_by_method() {
            let labels = MethodLabel {
                method: method.to_owned(),
            };
            ConstCounter::new(calls).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
