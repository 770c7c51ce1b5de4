//! What a session has set that can change a statement's result, and the cache key it makes.

use std::collections::{BTreeMap, BTreeSet};

use super::rules::Meaning;

/// The setting that turns the cache off for a session (`SET sparkgate.cache=false`, or the
/// OpenSession configuration).
pub const BYPASS_KEY: &str = "sparkgate.cache";

/// Everything a cached result depends on besides the data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub tenant: String,
    /// The user, or empty when the tenant shares results among its users (`cache_scope`).
    pub scope: String,
    pub database: String,
    /// The session's settings (OpenSession configuration, then `SET`s), sorted.
    pub settings: Vec<(String, String)>,
    /// The result shape the client gets: its protocol version and client family.
    pub shape: String,
    /// The statement as the parser prints it.
    pub statement: String,
}

impl CacheKey {
    /// Roughly what the key holds in memory (weighed with its entry).
    pub fn memory_bytes(&self) -> usize {
        let settings: usize = self.settings.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.tenant.len()
            + self.scope.len()
            + self.database.len()
            + settings
            + self.shape.len()
            + self.statement.len()
            + std::mem::size_of::<Self>()
    }
}

/// A session's state as the cache tracks it.
#[derive(Debug, Clone, Default)]
pub struct SessionCacheState {
    database: String,
    settings: BTreeMap<String, String>,
    temp_views: BTreeSet<String>,
    shape: String,
    /// `ADD JAR`, temporary functions, unreadable session statements: nothing is cached.
    opaque: bool,
    /// State-changing statements started whose outcome is not known yet: nothing is cached.
    pending: usize,
    bypass: bool,
    /// Any statement changed session state (the session cannot be reused by another client).
    changed: bool,
}

impl SessionCacheState {
    /// A session opened with `configuration` (after sparkgate's own additions).
    pub fn new<'a>(
        configuration: impl IntoIterator<Item = (&'a String, &'a String)>,
        shape: String,
    ) -> Self {
        let mut state = Self {
            database: "default".into(),
            shape,
            ..Self::default()
        };
        for (key, value) in configuration {
            let key = key.to_ascii_lowercase();
            if key == "use:database" {
                state.database = value.to_ascii_lowercase();
                continue;
            }
            let bare = key
                .strip_prefix("set:hiveconf:")
                .or_else(|| key.strip_prefix("set:hivevar:"))
                .unwrap_or(&key);
            if bare == BYPASS_KEY {
                state.bypass = value.trim().eq_ignore_ascii_case("false");
            }
            state.settings.insert(key.clone(), value.clone());
        }
        state
    }

    /// The key for a read of `tables`, or `None` when this session's result must not be cached.
    pub fn key(
        &self,
        tenant: &str,
        scope: &str,
        statement: &str,
        tables: &[String],
    ) -> Option<CacheKey> {
        if self.bypass || self.opaque || self.pending > 0 {
            return None;
        }
        if tables.iter().any(|t| self.temp_views.contains(t)) {
            return None;
        }
        Some(CacheKey {
            tenant: tenant.to_owned(),
            scope: scope.to_owned(),
            database: self.database.clone(),
            settings: self
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            shape: self.shape.clone(),
            statement: statement.to_owned(),
        })
    }

    /// A state-changing statement started: nothing is cached until its outcome is known.
    pub fn begin_change(&mut self) {
        self.pending += 1;
        self.changed = true;
    }

    /// Its outcome: applied when it finished, forgotten when it failed.
    pub fn end_change(&mut self, meaning: &Meaning, finished: bool) {
        self.pending = self.pending.saturating_sub(1);
        if !finished {
            return;
        }
        match meaning {
            Meaning::Use(database) => self.database = database.clone(),
            Meaning::Set { key, value } => {
                if key == BYPASS_KEY {
                    self.bypass = value.eq_ignore_ascii_case("false");
                }
                self.settings.insert(key.clone(), value.clone());
            }
            // Spark's RESET puts back the settings the session started with only in part:
            // nothing is cached in the session from now on.
            Meaning::Reset | Meaning::SessionCode => self.opaque = true,
            Meaning::TempView(name) => {
                self.temp_views.insert(name.clone());
            }
            _ => {}
        }
    }

    /// The session's current database, as far as sparkgate knows.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A statement that may have changed session state the cache does not track (a write,
    /// something unreadable): the session cannot be reused by another client.
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Whether a statement changed the session (it cannot go to the idle stock).
    pub fn changed(&self) -> bool {
        self.changed
    }
}
