//! Throttling of failed attempts, per user and per client address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::AuthError;

#[derive(Debug, Default)]
struct Record {
    failures: Vec<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Tracker<K> {
    records: Mutex<HashMap<K, Record>>,
}

impl<K: Eq + Hash> Tracker<K> {
    fn new() -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self, key: &K, now: Instant) -> Option<Duration> {
        let records = self.records.lock().expect("throttle");
        let until = records.get(key)?.locked_until?;
        (until > now).then(|| until - now)
    }

    fn fail(&self, key: K, now: Instant, max: u32, window: Duration, lockout: Duration) {
        let mut records = self.records.lock().expect("throttle");
        // Forget stale records so the map cannot grow without bound.
        if records.len() > 100_000 {
            records.retain(|_, r| {
                r.locked_until.is_some_and(|u| u > now)
                    || r.failures.last().is_some_and(|t| now - *t < window)
            });
        }
        let record = records.entry(key).or_default();
        record.failures.retain(|t| now - *t < window);
        record.failures.push(now);
        if record.failures.len() as u32 >= max {
            record.locked_until = Some(now + lockout);
            record.failures.clear();
        }
    }

    fn clear(&self, key: &K) {
        self.records.lock().expect("throttle").remove(key);
    }
}

#[derive(Debug)]
pub(crate) struct Throttle {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    users: Tracker<String>,
    addresses: Tracker<IpAddr>,
}

impl Throttle {
    pub(crate) fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            lockout,
            users: Tracker::new(),
            addresses: Tracker::new(),
        }
    }

    pub(crate) fn check(&self, user: &str, client: IpAddr) -> Result<(), AuthError> {
        let now = Instant::now();
        let wait = self
            .users
            .locked(&user.to_owned(), now)
            .max(self.addresses.locked(&client, now));
        match wait {
            Some(retry_after) => Err(AuthError::Throttled { retry_after }),
            None => Ok(()),
        }
    }

    pub(crate) fn failed(&self, user: &str, client: IpAddr) {
        let now = Instant::now();
        if !user.is_empty() {
            self.users.fail(
                user.to_owned(),
                now,
                self.max_failures,
                self.window,
                self.lockout,
            );
        }
        self.addresses
            .fail(client, now, self.max_failures, self.window, self.lockout);
    }

    pub(crate) fn succeeded(&self, user: &str) {
        self.users.clear(&user.to_owned());
    }
}
