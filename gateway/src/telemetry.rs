//! What sparkgate tells operators about itself: its Prometheus metrics (the `sparkgate_`
//! prefix). Components get handles on the series they feed; the admin port encodes them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverStateLabels {
    pub tenant: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub tenant: String,
    pub decision: String,
}

/// sparkgate's metrics, registered under the `sparkgate_` prefix; components get handles.
pub struct Metrics {
    pub registry: Registry,
    pub sessions: Gauge,
    pub operations: Gauge,
    pub drivers: Family<DriverStateLabels, Gauge>,
    pub queue_waiting: Family<TenantLabel, Gauge>,
    pub queue_wait_seconds: Family<TenantLabel, Histogram>,
    pub launches: Family<TenantLabel, Counter>,
    pub launch_failures: Family<TenantLabel, Counter>,
    pub scale_decisions: Family<DecisionLabels, Counter>,
    pub running_operations: Family<TenantLabel, Gauge>,
    pub backend_connections: Family<DriverAddressLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverAddressLabel {
    pub driver: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sparkgate");
        let m = Self {
            sessions: Gauge::default(),
            operations: Gauge::default(),
            drivers: Family::default(),
            queue_waiting: Family::default(),
            queue_wait_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0])
            }),
            launches: Family::default(),
            launch_failures: Family::default(),
            scale_decisions: Family::default(),
            running_operations: Family::default(),
            backend_connections: Family::default(),
            registry: Registry::default(),
        };
        registry.register("sessions", "Open client sessions", m.sessions.clone());
        registry.register(
            "operations",
            "Operations sparkgate tracks",
            m.operations.clone(),
        );
        registry.register("drivers", "Drivers per tenant and state", m.drivers.clone());
        registry.register(
            "queue_waiting",
            "Sessions waiting for a driver",
            m.queue_waiting.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "How long sessions waited for a driver",
            m.queue_wait_seconds.clone(),
        );
        registry.register("driver_launches", "Drivers launched", m.launches.clone());
        registry.register(
            "driver_launch_failures",
            "Drivers that failed to start or died",
            m.launch_failures.clone(),
        );
        registry.register(
            "running_operations",
            "Operations running on a tenant's ready drivers (the autoscaler's load)",
            m.running_operations.clone(),
        );
        registry.register(
            "backend_connections",
            "Open connections to each driver (bounded by backend.max_connections_per_driver)",
            m.backend_connections.clone(),
        );
        registry.register(
            "scale_decisions",
            "Autoscaler decisions that changed a pool",
            m.scale_decisions.clone(),
        );
        Self { registry, ..m }
    }
}
