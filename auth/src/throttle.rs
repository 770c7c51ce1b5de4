//! Throttling of failed attempts: after `max_failures` failures within `failure_window` for a
//! user, or (separately) from a client address, attempts are refused for `lockout`. A success
//! resets the user's count (not the address's: one good account must not launder guesses).
//!
//! An attempt is counted when it starts ([`Throttle::begin`]), not when its check ends: failures
//! in the window plus attempts still being checked never exceed `max_failures`, so a burst of
//! concurrent guesses cannot all be checked before the first failure is recorded.

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
    /// Attempts begun and not yet decided.
    in_flight: u32,
}

/// How soon to retry when the attempts already being checked use up the allowance: their
/// checks take milliseconds to a second (argon2, an LDAP bind).
const RETRY_IN_FLIGHT: Duration = Duration::from_secs(1);

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

    /// Counts an attempt in, unless the key is locked out or the attempts in flight and the
    /// failures in the window already reach the limit; then, how long to wait.
    fn reserve(&self, key: &K, now: Instant, limits: &Limits) -> Result<(), Duration>
    where
        K: Clone,
    {
        let mut records = self.records.lock().expect("throttle lock");
        if records.len() > PRUNE_ABOVE {
            records.retain(|_, r| {
                r.in_flight > 0
                    || r.locked_until.is_some_and(|u| u > now)
                    || r.failures
                        .last()
                        .is_some_and(|t| now.saturating_duration_since(*t) < limits.window)
            });
        }
        let record = records.entry(key.clone()).or_default();
        if let Some(until) = record.locked_until.filter(|u| *u > now) {
            return Err(until - now);
        }
        record
            .failures
            .retain(|t| now.saturating_duration_since(*t) < limits.window);
        if record.failures.len() + record.in_flight as usize >= limits.max_failures as usize {
            return Err(RETRY_IN_FLIGHT);
        }
        record.in_flight += 1;
        Ok(())
    }

    /// Ends an attempt [`Tracker::reserve`] counted in.
    fn release(&self, key: &K, outcome: Outcome, now: Instant, limits: &Limits) {
        let mut records = self.records.lock().expect("throttle lock");
        let Some(record) = records.get_mut(key) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Failed => {
                record.failures.push(now);
                if record.failures.len() >= limits.max_failures as usize {
                    record.locked_until = Some(now + limits.lockout);
                    record.failures.clear();
                }
            }
            Outcome::Cleared => {
                record.failures.clear();
                record.locked_until = None;
            }
            Outcome::Undecided => {}
        }
        if record.in_flight == 0 && record.failures.is_empty() && record.locked_until.is_none() {
            records.remove(key);
        }
    }
}

/// How an attempt ended, for one tracker.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Counts as a failure.
    Failed,
    /// A success: the user's count starts over.
    Cleared,
    /// Neither (a success seen by the address tracker, a service outage, a cancelled check).
    Undecided,
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

    /// Counts an attempt of `user` from `client` in, or refuses it (locked out, or as many
    /// attempts in flight as failures allowed). The attempt ends when the returned guard says
    /// how it went, or is dropped (undecided: it counts neither way).
    pub(crate) fn begin(&self, user: &str, client: IpAddr) -> Result<Attempt<'_>, AuthError> {
        self.begin_at(user, client, Instant::now())
    }

    fn begin_at(&self, user: &str, client: IpAddr, now: Instant) -> Result<Attempt<'_>, AuthError> {
        let user = (self.enabled() && !user.is_empty()).then(|| user_key(user));
        if !self.enabled() {
            return Ok(Attempt {
                throttle: self,
                user: None,
                client: None,
            });
        }
        if let Some(user) = &user {
            self.users
                .reserve(user, now, &self.limits)
                .map_err(|retry_after| AuthError::Throttled { retry_after })?;
        }
        if let Err(retry_after) = self.addresses.reserve(&client, now, &self.limits) {
            if let Some(user) = &user {
                self.users
                    .release(user, Outcome::Undecided, now, &self.limits);
            }
            return Err(AuthError::Throttled { retry_after });
        }
        Ok(Attempt {
            throttle: self,
            user,
            client: Some(client),
        })
    }
}

/// An attempt counted in by [`Throttle::begin`].
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    throttle: &'a Throttle,
    /// The user and address it is counted against (`None`: throttling is off, or it is
    /// already decided).
    user: Option<String>,
    client: Option<IpAddr>,
}

impl Attempt<'_> {
    /// A rejected credential: counts against the user and the address.
    pub(crate) fn failed(self) {
        self.end(Outcome::Failed, Outcome::Failed, Instant::now());
    }

    /// A success: the user's count starts over (the address's does not).
    pub(crate) fn succeeded(self) {
        self.end(Outcome::Cleared, Outcome::Undecided, Instant::now());
    }

    #[cfg(test)]
    fn failed_at(self, now: Instant) {
        self.end(Outcome::Failed, Outcome::Failed, now);
    }

    fn end(mut self, for_user: Outcome, for_address: Outcome, now: Instant) {
        self.release(for_user, for_address, now);
    }

    fn release(&mut self, for_user: Outcome, for_address: Outcome, now: Instant) {
        let limits = &self.throttle.limits;
        if let Some(user) = self.user.take() {
            self.throttle.users.release(&user, for_user, now, limits);
        }
        if let Some(client) = self.client.take() {
            self.throttle
                .addresses
                .release(&client, for_address, now, limits);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.release(Outcome::Undecided, Outcome::Undecided, Instant::now());
    }
}

#[cfg(test)]
mod tests;
