//! Connection limits: for the whole process (every listener together), per authenticated user
//! and per client address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts held connections per key; a guard gives its slot back when dropped.
#[derive(Debug)]
struct Counter<K> {
    max: usize,
    held: Mutex<HashMap<K, usize>>,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(max: usize) -> Self {
        Self {
            max,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn try_take(&self, key: &K) -> bool {
        let mut held = self.held.lock().expect("limits");
        let n = held.entry(key.clone()).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, key: &K) {
        let mut held = self.held.lock().expect("limits");
        if let Some(n) = held.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                held.remove(key);
            }
        }
    }
}

/// Connection limits: `server.max_connections` over all listeners (binary and HTTP),
/// `server.max_connections_per_user`, `server.max_connections_per_address`.
#[derive(Debug)]
pub struct ConnectionLimits {
    connections: Arc<tokio::sync::Semaphore>,
    users: Counter<String>,
    addresses: Counter<IpAddr>,
}

/// A held connection slot; released on drop.
pub struct LimitGuard {
    release: Box<dyn FnOnce() + Send>,
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        let release = std::mem::replace(&mut self.release, Box::new(|| {}));
        release();
    }
}

impl ConnectionLimits {
    pub fn new(max_connections: usize, max_per_user: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            connections: Arc::new(tokio::sync::Semaphore::new(max_connections)),
            users: Counter::new(max_per_user),
            addresses: Counter::new(max_per_address),
        })
    }

    /// A slot for one more connection on any listener; waits while all are held (the next
    /// clients wait in the kernel's accept queue meanwhile).
    ///
    /// # Cancel safety
    /// Cancel-safe: a slot is either returned or not taken.
    pub async fn connection_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.connections
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// A slot for one more connection of `user`, or `None` at the limit.
    pub fn admit_user(self: &Arc<Self>, user: &str) -> Option<LimitGuard> {
        let key = user.to_owned();
        if !self.users.try_take(&key) {
            return None;
        }
        let limits = self.clone();
        Some(LimitGuard {
            release: Box::new(move || limits.users.give_back(&key)),
        })
    }

    /// A slot for one more connection from `address`, or `None` at the limit.
    pub fn admit_address(self: &Arc<Self>, address: IpAddr) -> Option<LimitGuard> {
        if !self.addresses.try_take(&address) {
            return None;
        }
        let limits = self.clone();
        Some(LimitGuard {
            release: Box::new(move || limits.addresses.give_back(&address)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_and_given_back() {
        let limits = ConnectionLimits::new(10, 2, 1);
        let a = limits.admit_user("alice").unwrap();
        let _b = limits.admit_user("alice").unwrap();
        assert!(
            limits.admit_user("alice").is_none(),
            "third connection of alice refused"
        );
        assert!(
            limits.admit_user("bob").is_some(),
            "other users are not affected"
        );
        drop(a);
        assert!(
            limits.admit_user("alice").is_some(),
            "a closed connection frees its slot"
        );
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let held = limits.admit_address(ip).unwrap();
        assert!(limits.admit_address(ip).is_none());
        drop(held);
        assert!(limits.admit_address(ip).is_some());
    }
}
