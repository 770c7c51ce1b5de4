//! The result cache's figures, read at each scrape.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::ResultCache;

#[derive(Debug)]
pub struct CacheMetrics(Arc<ResultCache>);

impl CacheMetrics {
    pub fn register(registry: &mut Registry, cache: Arc<ResultCache>) {
        registry.register_collector(Box::new(Self(cache)));
    }
}

impl Collector for CacheMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0.counters;
        for (name, help, value) in [
            (
                "cache_hits",
                "Statements answered from the result cache",
                &c.hits,
            ),
            (
                "cache_misses",
                "Cacheable statements run on a driver",
                &c.misses,
            ),
            ("cache_stored", "Results stored in the cache", &c.stored),
            (
                "cache_too_large",
                "Results over cache.max_result_bytes, not stored",
                &c.too_large,
            ),
            (
                "cache_evictions",
                "Results evicted for room (cache.max_bytes)",
                &c.evictions,
            ),
            (
                "cache_invalidations",
                "Writes and admin calls that dropped results",
                &c.invalidations,
            ),
            (
                "cache_coalesced_waits",
                "Statements that waited for an identical one to fill the cache",
                &c.coalesced,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value.load(Ordering::Relaxed)).encode(metric)?;
        }
        let (entries, bytes) = self.0.usage();
        for (name, help, value) in [
            ("cache_entries", "Results in the cache", entries),
            (
                "cache_bytes",
                "Memory the cached results take (Arrow buffers and keys)",
                bytes,
            ),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value as i64).encode(metric)?;
        }
        Ok(())
    }
}
