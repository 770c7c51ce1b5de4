//! What each tenant used: driver-seconds (Starting and Ready apart), statements, rows and bytes
//! fetched, time queued. Kept per minute (per hour once older than `usage.minute_detail`), served
//! by the admin API for any time range, exposed as Prometheus counters, and saved to
//! `usage.file` so a restart keeps the totals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// `[usage]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Where the figures are saved (every `save_every`, and at shutdown) and read back at start.
    /// Unset: kept in memory only, lost with the process.
    pub file: Option<PathBuf>,
    /// Default 30 s.
    #[serde(with = "humantime_serde")]
    pub save_every: Duration,
    /// Figures older than this are kept per hour instead of per minute. Default 48 h.
    #[serde(with = "humantime_serde")]
    pub minute_detail: Duration,
    /// Figures older than this are dropped. Default 400 days.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            file: None,
            save_every: Duration::from_secs(30),
            minute_detail: Duration::from_secs(48 * 3600),
            retention: Duration::from_secs(400 * 86_400),
        }
    }
}

/// One tenant's figures over some time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Figures {
    pub driver_seconds_starting: f64,
    pub driver_seconds_ready: f64,
    pub statements: u64,
    pub statements_failed: u64,
    pub cache_hits: u64,
    pub rows_fetched: u64,
    pub bytes_fetched: u64,
    pub queue_wait_seconds: f64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.driver_seconds_starting += other.driver_seconds_starting;
        self.driver_seconds_ready += other.driver_seconds_ready;
        self.statements += other.statements;
        self.statements_failed += other.statements_failed;
        self.cache_hits += other.cache_hits;
        self.rows_fetched += other.rows_fetched;
        self.bytes_fetched += other.bytes_fetched;
        self.queue_wait_seconds += other.queue_wait_seconds;
    }
}

/// One statement's share.
#[derive(Debug, Clone, Default)]
pub struct StatementUse {
    pub failed: bool,
    pub cache_hit: bool,
    pub rows: u64,
    pub bytes: u64,
    pub queue_wait: Duration,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Bucket {
    /// Seconds it spans from its key: 60 or 3600.
    width: u32,
    #[serde(flatten)]
    figures: Figures,
}

/// What is saved.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    /// Per tenant, buckets by their start (seconds since the epoch).
    buckets: BTreeMap<String, BTreeMap<u64, Bucket>>,
    /// Per tenant, everything ever counted (the Prometheus counters).
    totals: BTreeMap<String, Figures>,
}

/// The usage book of one sparkgate.
#[derive(Debug)]
pub struct Usage {
    config: UsageConfig,
    book: Mutex<Book>,
}

/// The answer of `GET /api/v1/usage`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The range covered, seconds since the epoch (`since` rounded down to its bucket).
    pub since: u64,
    pub until: u64,
    pub tenants: BTreeMap<String, Figures>,
}

fn now_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

impl Usage {
    /// Reads the saved figures back, if any. An unreadable file is set aside (`.unreadable`)
    /// and counting starts over, with a warning.
    pub fn load(config: UsageConfig) -> Self {
        let book = config
            .file
            .as_deref()
            .and_then(read_book)
            .unwrap_or_default();
        Self {
            config,
            book: Mutex::new(book),
        }
    }

    /// Adds to the tenant's figures of the minute `at` falls in.
    fn count(&self, tenant: &str, at: SystemTime, add: impl Fn(&mut Figures)) {
        let minute = now_secs(at) / 60 * 60;
        let mut book = self.book.lock().expect("usage");
        let bucket = book
            .buckets
            .entry(tenant.to_owned())
            .or_default()
            .entry(minute)
            .or_insert_with(|| Bucket {
                width: 60,
                figures: Figures::default(),
            });
        add(&mut bucket.figures);
        add(book.totals.entry(tenant.to_owned()).or_default());
    }

    /// A statement of `tenant` ended.
    pub fn statement(&self, tenant: &str, used: &StatementUse) {
        self.count(tenant, SystemTime::now(), |f| {
            f.statements += 1;
            f.statements_failed += u64::from(used.failed);
            f.cache_hits += u64::from(used.cache_hit);
            f.rows_fetched += used.rows;
            f.bytes_fetched += used.bytes;
            f.queue_wait_seconds += used.queue_wait.as_secs_f64();
        });
    }

    /// `starting` and `ready` drivers of `tenant` existed for `elapsed` up to `at`.
    pub fn drivers(
        &self,
        tenant: &str,
        starting: u32,
        ready: u32,
        elapsed: Duration,
        at: SystemTime,
    ) {
        if starting == 0 && ready == 0 {
            return;
        }
        let secs = elapsed.as_secs_f64();
        self.count(tenant, at, |f| {
            f.driver_seconds_starting += f64::from(starting) * secs;
            f.driver_seconds_ready += f64::from(ready) * secs;
        });
    }

    /// Every tenant's figures ever counted.
    pub fn totals(&self) -> BTreeMap<String, Figures> {
        self.book.lock().expect("usage").totals.clone()
    }

    /// Figures of the buckets starting in `[since, until)` (seconds since the epoch).
    pub fn report(&self, since: u64, until: u64) -> Report {
        let book = self.book.lock().expect("usage");
        let mut tenants = BTreeMap::new();
        let mut first = until;
        // A bucket that began before `since` but reaches past it counts too.
        let from = since.saturating_sub(3599);
        for (tenant, buckets) in &book.buckets {
            let sum: &mut Figures = tenants.entry(tenant.clone()).or_default();
            if from >= until {
                continue;
            }
            for (start, bucket) in buckets.range(from..until) {
                if start + u64::from(bucket.width) > since {
                    first = first.min(*start);
                    sum.add(&bucket.figures);
                }
            }
        }
        Report {
            since: first.min(since),
            until,
            tenants,
        }
    }

    /// Rolls old minutes into hours, drops what is past retention, and writes the file (atomic:
    /// a temporary file renamed over it).
    pub fn save(&self) -> std::io::Result<()> {
        let now = now_secs(SystemTime::now());
        let detail_cut = now.saturating_sub(self.config.minute_detail.as_secs());
        let keep_cut = now.saturating_sub(self.config.retention.as_secs());
        let text = {
            let mut book = self.book.lock().expect("usage");
            for buckets in book.buckets.values_mut() {
                let old: Vec<u64> = buckets
                    .range(..detail_cut)
                    .filter(|(_, b)| b.width == 60)
                    .map(|(k, _)| *k)
                    .collect();
                for start in old {
                    let minute = buckets.remove(&start).expect("listed");
                    let hour = buckets
                        .entry(start / 3600 * 3600)
                        .or_insert_with(|| Bucket {
                            width: 3600,
                            figures: Figures::default(),
                        });
                    hour.width = 3600;
                    hour.figures.add(&minute.figures);
                }
                buckets.retain(|start, _| *start >= keep_cut);
            }
            serde_json::to_vec(&*book).map_err(std::io::Error::other)?
        };
        let Some(path) = &self.config.file else {
            return Ok(());
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

fn read_book(path: &Path) -> Option<Book> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the usage file; counting starts over");
            return None;
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(book) => Some(book),
        Err(e) => {
            let aside = path.with_extension("unreadable");
            tracing::warn!(path = %path.display(), error = %e, aside = %aside.display(), "usage file unreadable; set aside, counting starts over");
            let _ = std::fs::rename(path, aside);
            None
        }
    }
}

/// Parses an API time bound: seconds since the epoch, or RFC 3339 (`2026-12-07T10:00:00Z`).
pub fn parse_time(text: &str) -> Option<u64> {
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    humantime_serde::re::humantime::parse_rfc3339_weak(text)
        .ok()
        .map(now_secs)
}

pub mod metrics;

#[cfg(test)]
mod tests;
