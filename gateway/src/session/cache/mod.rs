//! The result cache: results of read-only statements, kept as Arrow arrays under one byte
//! budget, keyed by everything that can change them, dropped when their tenant writes a table
//! they read, when their TTL ends, or on the admin API's word; identical statements arriving
//! together run once (single flight).
//!
//! * [`rules`]: what a statement means to the cache (sqlparser).
//! * [`key`]: what a session has set, and the key it makes.
//! * [`rowset`]: rows as Arrow arrays ⇄ the driver's `TRowSet`s.
//! * [`serve`]: the call handler's side: hits, fills, fetches from an entry.

pub mod key;
pub mod metrics;
pub mod rowset;
pub mod rules;
pub mod serve;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_thrift::generated::tcliservice as t;
use moka::notification::RemovalCause;
use serde::Deserialize;

pub use key::{CacheKey, SessionCacheState};
use rowset::Rows;

/// `[cache]`: the gateway-wide budget. Each tenant's TTL and scope are its own (`cache_ttl`,
/// `cache_scope`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// The TTL of tenants that set no `cache_ttl` (e.g. the one tenant of `--backend`).
    /// Default `"0s"`: not cached.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Memory for every cached result together (Arrow buffers and keys); 0 turns the cache
    /// off. Default 256 MiB.
    pub max_bytes: u64,
    /// A larger result is not cached (and is streamed from the driver as without a cache).
    /// Default 16 MiB.
    pub max_result_bytes: u64,
    /// How long an identical statement waits for the one already running (then runs itself).
    /// Default 2 minutes.
    #[serde(with = "humantime_serde")]
    pub coalesce_wait: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::ZERO,
            max_bytes: 256 << 20,
            max_result_bytes: 16 << 20,
            coalesce_wait: Duration::from_secs(120),
        }
    }
}

/// Per tenant: who shares a cached result.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Each user has their own results (default: users of a tenant may have different rights).
    #[default]
    User,
    /// Every user of the tenant shares them (they all have the same data rights).
    Tenant,
}

/// One cached result.
#[derive(Debug)]
pub struct CachedResult {
    pub schema: t::TTableSchema,
    pub rows: Rows,
    /// The tables it read (bare, lower case): a write to one of them drops it.
    pub tables: Vec<String>,
    pub created: Instant,
    pub ttl: Duration,
}

impl CachedResult {
    fn weight(&self, key: &CacheKey) -> u32 {
        let bytes = self.rows.memory_bytes() + key.memory_bytes() + 256;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Arc<CachedResult>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedResult>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stored: AtomicU64,
    pub too_large: AtomicU64,
    pub evictions: AtomicU64,
    pub invalidations: AtomicU64,
    pub coalesced: AtomicU64,
}

/// A statement being run to fill the cache: identical ones wait for it.
#[derive(Debug)]
pub struct Flight {
    done: tokio::sync::watch::Sender<bool>,
    /// Whose statement it is: a binary connection's calls come one at a time, so another
    /// statement of the same connection waiting for it would stop its own client's next call.
    leader: crate::session::Owner,
}

/// Held by the statement filling an entry; its drop (stored, given up, or gone) wakes the
/// statements waiting for it.
#[derive(Debug)]
pub struct FlightGuard {
    cache: Arc<ResultCache>,
    key: CacheKey,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self.cache.flights.lock().expect("flights");
        if flights
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.key);
        }
        drop(flights);
        self.flight.done.send_replace(true);
    }
}

/// What a cacheable statement finds.
pub enum Lookup {
    Hit(Arc<CachedResult>),
    /// Nobody is running it: the caller does, and fills the entry (the guard makes identical
    /// statements wait for it).
    Lead(FlightGuard),
    /// An identical statement is running: wait on this, then look again.
    Wait(tokio::sync::watch::Receiver<bool>),
}

pub struct ResultCache {
    entries: moka::sync::Cache<CacheKey, Arc<CachedResult>>,
    flights: Mutex<HashMap<CacheKey, Arc<Flight>>>,
    /// Bumped by every write of a tenant: a result read before a write ends is not stored.
    generations: Mutex<HashMap<String, u64>>,
    pub config: CacheConfig,
    pub counters: Arc<CacheCounters>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("entries", &self.entries.entry_count())
            .field("config", &self.config)
            .finish()
    }
}

impl ResultCache {
    pub fn new(config: CacheConfig) -> Arc<Self> {
        let counters = Arc::new(CacheCounters::default());
        let evictions = counters.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &CacheKey, value: &Arc<CachedResult>| value.weight(key))
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        Arc::new(Self {
            entries,
            flights: Mutex::default(),
            generations: Mutex::default(),
            config,
            counters,
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.max_bytes > 0
    }

    /// Looks `key` up: a live entry, or the flight to wait for, or the lead of a new flight.
    /// `None`: `owner` itself is filling it (it runs the statement again, uncached).
    pub fn lookup(
        self: &Arc<Self>,
        key: &CacheKey,
        owner: &crate::session::Owner,
    ) -> Option<Lookup> {
        if let Some(hit) = self.entries.get(key) {
            return Some(Lookup::Hit(hit));
        }
        let mut flights = self.flights.lock().expect("flights");
        if let Some(flight) = flights.get(key) {
            if &flight.leader == owner {
                return None;
            }
            return Some(Lookup::Wait(flight.done.subscribe()));
        }
        // Stored between the look above and this lock: a hit after all.
        if let Some(hit) = self.entries.get(key) {
            return Some(Lookup::Hit(hit));
        }
        let flight = Arc::new(Flight {
            done: tokio::sync::watch::channel(false).0,
            leader: owner.clone(),
        });
        flights.insert(key.clone(), flight.clone());
        Some(Lookup::Lead(FlightGuard {
            cache: self.clone(),
            key: key.clone(),
            flight,
        }))
    }

    /// The tenant's write generation now (taken when a statement that may fill starts).
    pub fn generation(&self, tenant: &str) -> u64 {
        *self
            .generations
            .lock()
            .expect("generations")
            .get(tenant)
            .unwrap_or(&0)
    }

    /// Stores a filled result, unless a write of its tenant came after `generation`, or it is
    /// larger than `max_result_bytes`. Whether it was stored.
    pub fn store_shared(&self, key: CacheKey, result: Arc<CachedResult>, generation: u64) -> bool {
        if result.rows.memory_bytes() as u64 > self.config.max_result_bytes {
            self.counters.too_large.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Checked and inserted under the lock a write takes to bump the generation.
        let generations = self.generations.lock().expect("generations");
        if *generations.get(&key.tenant).unwrap_or(&0) != generation {
            return false;
        }
        self.entries.insert(key, result);
        drop(generations);
        self.counters.stored.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drops `tenant`'s results that read any of `tables` (every result of the tenant for
    /// `None`), and makes results being read now unstorable.
    pub fn invalidate(&self, tenant: &str, tables: Option<&[String]>) {
        let mut generations = self.generations.lock().expect("generations");
        *generations.entry(tenant.to_owned()).or_default() += 1;
        drop(generations);
        let tenant = tenant.to_owned();
        let tables: Option<Vec<String>> =
            tables.map(|t| t.iter().map(|n| n.to_ascii_lowercase()).collect());
        let matched = move |key: &CacheKey, value: &Arc<CachedResult>| {
            key.tenant == tenant
                && tables
                    .as_ref()
                    .is_none_or(|tables| value.tables.iter().any(|t| tables.contains(t)))
        };
        if self.entries.invalidate_entries_if(matched).is_err() {
            // Only without `support_invalidation_closures`, which the builder sets.
            self.entries.invalidate_all();
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Live entries and their weight (metrics, tests).
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

#[cfg(test)]
mod tests;
