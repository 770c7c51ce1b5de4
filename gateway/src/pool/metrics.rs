//! The pools' metrics: counters and the wait histogram each pool feeds through
//! [`PoolMetrics`], and gauges read from the pools at each scrape ([`PoolGauges`]), so they are
//! never stale and no handler has to compute them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{DriverPool, DriverState};

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

/// A pool's handles on the series it feeds.
#[derive(Clone, Default)]
pub struct PoolMetrics {
    pub launches: Counter,
    pub launch_failures: Counter,
    pub scale_ups: Counter,
    pub scale_downs: Counter,
    pub wait_seconds: Option<Histogram>,
}

/// The pools' counter families, registered once; each pool gets its tenant's handles.
pub struct PoolFamilies {
    launches: Family<TenantLabel, Counter>,
    launch_failures: Family<TenantLabel, Counter>,
    scale_decisions: Family<DecisionLabels, Counter>,
    wait_seconds: Family<TenantLabel, Histogram>,
}

impl PoolFamilies {
    pub fn register(registry: &mut Registry) -> Self {
        let families = Self {
            launches: Family::default(),
            launch_failures: Family::default(),
            scale_decisions: Family::default(),
            wait_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0])
            }),
        };
        registry.register(
            "queue_wait_seconds",
            "How long sessions waited for a driver",
            families.wait_seconds.clone(),
        );
        registry.register(
            "driver_launches",
            "Drivers launched",
            families.launches.clone(),
        );
        registry.register(
            "driver_launch_failures",
            "Drivers that failed to start or died (static tenants: servers that refused connections)",
            families.launch_failures.clone(),
        );
        registry.register(
            "scale_decisions",
            "Autoscaler decisions that changed a pool",
            families.scale_decisions.clone(),
        );
        families
    }

    /// The handles of `tenant`'s pool.
    pub fn for_tenant(&self, tenant: &str) -> PoolMetrics {
        let label = TenantLabel {
            tenant: tenant.to_owned(),
        };
        let decision = |d: &str| DecisionLabels {
            tenant: tenant.to_owned(),
            decision: d.into(),
        };
        // One statement each: a Family's get_or_create guard must be gone before the next
        // call on the same Family, which may need its write lock.
        let launches = self.launches.get_or_create(&label).clone();
        let launch_failures = self.launch_failures.get_or_create(&label).clone();
        let scale_ups = self
            .scale_decisions
            .get_or_create(&decision("scale_up"))
            .clone();
        let scale_downs = self
            .scale_decisions
            .get_or_create(&decision("scale_down"))
            .clone();
        let wait_seconds = self.wait_seconds.get_or_create(&label).clone();
        PoolMetrics {
            launches,
            launch_failures,
            scale_ups,
            scale_downs,
            wait_seconds: Some(wait_seconds),
        }
    }
}

/// The pools' state, read at each scrape: drivers per tenant and state, sessions waiting, and
/// operations running on ready drivers (the autoscaler's load).
#[derive(Debug)]
pub struct PoolGauges {
    pools: Vec<(String, Arc<DriverPool>)>,
}

impl PoolGauges {
    pub fn register<'a>(
        registry: &mut Registry,
        pools: impl IntoIterator<Item = (&'a String, &'a Arc<DriverPool>)>,
    ) {
        let mut pools: Vec<_> = pools
            .into_iter()
            .map(|(tenant, pool)| (tenant.clone(), pool.clone()))
            .collect();
        pools.sort_by(|a, b| a.0.cmp(&b.0));
        registry.register_collector(Box::new(Self { pools }));
    }
}

impl Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let views: Vec<_> = self
            .pools
            .iter()
            .map(|(tenant, pool)| (tenant, pool, pool.drivers()))
            .collect();
        let mut drivers = encoder.encode_descriptor(
            "drivers",
            "Drivers per tenant and state",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, _, views) in &views {
            for state in DriverState::ALL {
                let n = views.iter().filter(|d| d.state == state).count();
                let labels = DriverStateLabels {
                    tenant: (*tenant).clone(),
                    state: state.as_str().into(),
                };
                ConstGauge::new(n as i64).encode(drivers.encode_family(&labels)?)?;
            }
        }
        let mut waiting = encoder.encode_descriptor(
            "queue_waiting",
            "Sessions waiting for a driver",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, pool, _) in &views {
            let labels = TenantLabel {
                tenant: (*tenant).clone(),
            };
            let n = i64::from(pool.waiting.load(Ordering::Relaxed));
            ConstGauge::new(n).encode(waiting.encode_family(&labels)?)?;
        }
        let mut running = encoder.encode_descriptor(
            "running_operations",
            "Operations running on a tenant's ready drivers (the autoscaler's load)",
            None,
            MetricType::Gauge,
        )?;
        for (tenant, _, views) in &views {
            let labels = TenantLabel {
                tenant: (*tenant).clone(),
            };
            let n: u32 = views
                .iter()
                .filter(|d| d.state == DriverState::Ready)
                .map(|d| d.running_operations)
                .sum();
            ConstGauge::new(i64::from(n)).encode(running.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
