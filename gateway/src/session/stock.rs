//! Driver sessions kept for reuse: a client session that changed no session state goes, on
//! CloseSession, to a small stock per (user, tenant, configuration, client shape) for
//! `server.session_reuse_ttl`; the next OpenSession of the same key takes it and is answered
//! without a driver round trip. The stock is closed on its drivers when it expires, when its
//! driver fails, and at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hive_thrift::generated::tcliservice as t;

use super::table::Session;

/// What makes two OpenSessions interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StockKey {
    pub user: String,
    pub tenant: String,
    pub configuration: BTreeMap<String, String>,
    pub client_protocol: i32,
    pub family: &'static str,
}

/// A driver session between two clients.
#[derive(Debug)]
pub struct Stocked {
    pub session: Session,
    /// The driver's OpenSession answer (handle left out), given to the next client.
    pub opened: t::TOpenSessionResp,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct SessionStock {
    idle: Mutex<HashMap<StockKey, Vec<Stocked>>>,
}

impl SessionStock {
    /// Keeps `session` unless the stock holds `max` already; gives it back then.
    pub fn put(
        &self,
        key: StockKey,
        session: Session,
        opened: t::TOpenSessionResp,
        max: usize,
    ) -> Option<Session> {
        let mut idle = self.idle.lock().expect("stock");
        if idle.values().map(Vec::len).sum::<usize>() >= max {
            return Some(session);
        }
        idle.entry(key).or_default().push(Stocked {
            session,
            opened,
            since: Instant::now(),
        });
        None
    }

    /// The most recently stocked session for `key` younger than `ttl`, whose driver is fine.
    pub fn take(&self, key: &StockKey, ttl: Duration) -> Option<Stocked> {
        let mut idle = self.idle.lock().expect("stock");
        let sessions = idle.get_mut(key)?;
        // Expired ones, and those on a failed driver, are left for housekeeping to close.
        let usable = |s: &Stocked| {
            s.since.elapsed() < ttl
                && s.session
                    .lease
                    .as_ref()
                    .is_none_or(|l| l.driver_failure().is_none())
        };
        let at = sessions.iter().rposition(usable)?;
        let taken = sessions.remove(at);
        if sessions.is_empty() {
            idle.remove(key);
        }
        Some(taken)
    }

    /// Sessions older than `ttl` (all of them for `Duration::ZERO`), removed, for closing.
    pub fn take_expired(&self, ttl: Duration) -> Vec<Session> {
        let mut idle = self.idle.lock().expect("stock");
        let mut expired = Vec::new();
        for sessions in idle.values_mut() {
            let (old, young): (Vec<Stocked>, Vec<Stocked>) = sessions.drain(..).partition(|s| {
                ttl.is_zero()
                    || s.since.elapsed() >= ttl
                    || s.session
                        .lease
                        .as_ref()
                        .is_some_and(|l| l.driver_failure().is_some())
            });
            *sessions = young;
            expired.extend(old.into_iter().map(|s| s.session));
        }
        idle.retain(|_, sessions| !sessions.is_empty());
        expired
    }
}
