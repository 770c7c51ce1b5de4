//! Throttling of failed attempts: after `max_failures` failures within `failure_window` for a
//! user, or (separately) from a client address, attempts are refused for `lockout`. A success
//! resets the user's count (not the address's: one good account must not launder guesses).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::AuthError;

#[derive(Debug, Default)]
struct Record {
    /// Failure times within the window, oldest first.
    failures: Vec<Instant>,
    locked_until: Option<Instant>,
}

/// Failure records for one kind of key (user names or addresses).
#[derive(Debug)]
struct Tracker<K> {
    records: Mutex<HashMap<K, Record>>,
}

/// Above this many records, stale ones are dropped so a flood of made-up user names cannot grow
/// the map without bound.
const PRUNE_ABOVE: usize = 100_000;

impl<K: Eq + Hash> Tracker<K> {
    fn new() -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self, key: &K, now: Instant) -> Option<Duration> {
        let records = self.records.lock().expect("throttle lock");
        let until = records.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&self, key: K, now: Instant, limits: &Limits) {
        let mut records = self.records.lock().expect("throttle lock");
        if records.len() > PRUNE_ABOVE {
            records.retain(|_, r| {
                r.locked_until.is_some_and(|u| u > now)
                    || r.failures
                        .last()
                        .is_some_and(|t| now.saturating_duration_since(*t) < limits.window)
            });
        }
        let record = records.entry(key).or_default();
        record
            .failures
            .retain(|t| now.saturating_duration_since(*t) < limits.window);
        record.failures.push(now);
        if record.failures.len() >= limits.max_failures as usize {
            record.locked_until = Some(now + limits.lockout);
            record.failures.clear();
        }
    }

    fn clear(&self, key: &K) {
        self.records.lock().expect("throttle lock").remove(key);
    }
}

#[derive(Debug)]
struct Limits {
    /// Zero turns throttling off.
    max_failures: u32,
    window: Duration,
    lockout: Duration,
}

#[derive(Debug)]
pub(crate) struct Throttle {
    limits: Limits,
    /// Keyed by the lower-cased user name: directories match names case-insensitively, so
    /// `Alice` and `alice` must share one count.
    users: Tracker<String>,
    addresses: Tracker<IpAddr>,
}

fn user_key(user: &str) -> String {
    user.to_lowercase()
}

impl Throttle {
    pub(crate) fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            limits: Limits {
                max_failures,
                window,
                lockout,
            },
            users: Tracker::new(),
            addresses: Tracker::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.limits.max_failures > 0
    }

    pub(crate) fn check(&self, user: &str, client: IpAddr) -> Result<(), AuthError> {
        self.check_at(user, client, Instant::now())
    }

    fn check_at(&self, user: &str, client: IpAddr, now: Instant) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        let by_user = (!user.is_empty())
            .then(|| self.users.locked(&user_key(user), now))
            .flatten();
        match by_user.max(self.addresses.locked(&client, now)) {
            Some(retry_after) => Err(AuthError::Throttled { retry_after }),
            None => Ok(()),
        }
    }

    pub(crate) fn failed(&self, user: &str, client: IpAddr) {
        self.failed_at(user, client, Instant::now())
    }

    fn failed_at(&self, user: &str, client: IpAddr, now: Instant) {
        if !self.enabled() {
            return;
        }
        if !user.is_empty() {
            self.users.fail(user_key(user), now, &self.limits);
        }
        self.addresses.fail(client, now, &self.limits);
    }

    pub(crate) fn succeeded(&self, user: &str) {
        if self.enabled() && !user.is_empty() {
            self.users.clear(&user_key(user));
        }
    }
}

#[cfg(test)]
mod tests;
