//! The session table's gauges, read at each scrape.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
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

/// Per tenant: statements waiting in the admission queue; the audit log's records written and
/// dropped.
pub struct AdmissionGauges(Arc<super::CallHandler>);

impl std::fmt::Debug for AdmissionGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionGauges")
    }
}

impl AdmissionGauges {
    pub fn register(registry: &mut Registry, handler: Arc<super::CallHandler>) {
        registry.register_collector(Box::new(Self(handler)));
    }
}

impl Collector for AdmissionGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut queued = encoder.encode_descriptor(
            "statements_queued",
            "Statements waiting in the tenant's admission queue",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, queue) in &self.0.admission {
            let labels = [("tenant", tenant.as_str())];
            ConstGauge::new(i64::from(queue.queued())).encode(queued.encode_family(&labels)?)?;
        }
        let audit = &self.0.recorders.audit;
        for (name, help, value) in [
            (
                "audit_records_written",
                "Audit records written",
                &*audit.written,
            ),
            (
                "audit_records_dropped",
                "Audit records dropped (audit.buffer full)",
                &audit.dropped,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(std::sync::atomic::Ordering::Relaxed)).encode(metric)?;
        }
        Ok(())
    }
}
