//! Admission control: per tenant, at most `max_running_per_driver` statements run at once on one
//! driver; the others wait here, in sparkgate, not on the driver.
//!
//! A session stays on its driver for life, so a statement waits for a place on its own session's
//! driver. Who goes next when a place frees: first come, first served within one user, round
//! robin across users (the user served last goes to the back), so one user's hundred queued
//! statements do not starve another user's one. The queue is bounded (`max_queued` per tenant)
//! and so is each wait (`queue_timeout`, enforced by the caller).
//!
//! A [`Slot`] is one running statement's place; it is given back once (explicitly, or when
//! dropped), and giving it back hands it to the next waiter at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

pub use crate::error::AdmissionError;

/// A tenant's admission limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionPolicy {
    /// Statements running at once on one driver; 0: no limit.
    pub max_running_per_driver: u32,
    /// Statements of the tenant waiting at once; a statement past it is refused.
    pub max_queued: u32,
    /// How long a statement may wait before it is refused.
    pub queue_timeout: Duration,
}

/// Whether a statement only sets session state (`USE`, `SET key=value`, `RESET`): it runs no
/// Spark job, so it never waits for a place (a PyHive connection's `USE default` must not wait
/// behind the tenant's long queries). `SET VAR` may run a query: not exempt.
pub fn sets_session_state(sql: &str) -> bool {
    let mut words = strip_leading_comments(sql)
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    match first.to_ascii_lowercase().as_str() {
        "use" | "reset" => true,
        "set" => !matches!(second.to_ascii_lowercase().as_str(), "var" | "variable"),
        _ => false,
    }
}

pub(super) fn strip_leading_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            return sql;
        }
    }
}

/// One tenant's queue.
#[derive(Debug)]
pub struct TenantQueue {
    tenant: String,
    policy: AdmissionPolicy,
    state: Mutex<QueueState>,
    /// Statements waiting, shared with the tenant's pool: queued work is load for the
    /// autoscaler.
    queued_gauge: Arc<AtomicU32>,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Statements holding a place, per driver.
    running: HashMap<String, u32>,
    /// Users with waiting statements, in the order they are served.
    rotation: VecDeque<String>,
    /// Each user's waiting statements, oldest first.
    waiting: HashMap<String, VecDeque<Waiter>>,
    queued: u32,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    driver: String,
    grant: oneshot::Sender<Slot>,
}

/// What [`TenantQueue::admit`] decided.
#[derive(Debug)]
pub enum Admit {
    /// A place now.
    Run(Slot),
    /// Wait for one with this ticket.
    Wait(Ticket),
}

/// A running statement's place on its driver.
#[derive(Debug)]
pub struct Slot {
    queue: Option<Arc<TenantQueue>>,
    driver: String,
    released: AtomicBool,
}

/// A waiting statement's place in the queue; dropped, it leaves the queue.
#[derive(Debug)]
pub struct Ticket {
    queue: Arc<TenantQueue>,
    id: u64,
    user: String,
    driver: String,
    grant: Option<oneshot::Receiver<Slot>>,
}

impl TenantQueue {
    pub fn new(tenant: &str, policy: AdmissionPolicy, queued_gauge: Arc<AtomicU32>) -> Arc<Self> {
        Arc::new(Self {
            tenant: tenant.to_owned(),
            policy,
            state: Mutex::default(),
            queued_gauge,
        })
    }

    pub fn policy(&self) -> &AdmissionPolicy {
        &self.policy
    }

    /// Statements waiting now.
    pub fn queued(&self) -> u32 {
        self.state.lock().expect("admission").queued
    }

    /// Statements holding a place on `driver` now.
    pub fn running_on(&self, driver: &str) -> u32 {
        let state = self.state.lock().expect("admission");
        state.running.get(driver).copied().unwrap_or(0)
    }

    /// Drivers that statements wait for.
    pub fn awaited_drivers(&self) -> Vec<String> {
        let state = self.state.lock().expect("admission");
        let mut drivers: Vec<String> = state
            .waiting
            .values()
            .flatten()
            .map(|w| w.driver.clone())
            .collect();
        drivers.sort();
        drivers.dedup();
        drivers
    }

    /// A place on `driver` for a statement of `user`: at once if the driver has room and
    /// nobody waits for it, else a ticket in the queue, or an error if the queue is full.
    pub fn admit(self: &Arc<Self>, user: &str, driver: &str) -> Result<Admit, AdmissionError> {
        let limit = self.policy.max_running_per_driver;
        let mut state = self.state.lock().expect("admission");
        let running = state.running.get(driver).copied().unwrap_or(0);
        let anyone_waiting = state
            .waiting
            .values()
            .any(|w| w.iter().any(|w| w.driver == driver));
        if limit == 0 || (running < limit && !anyone_waiting) {
            *state.running.entry(driver.to_owned()).or_default() += 1;
            return Ok(Admit::Run(Slot::held(self.clone(), driver)));
        }
        if state.queued >= self.policy.max_queued {
            return Err(AdmissionError::QueueFull {
                tenant: self.tenant.clone(),
                max: self.policy.max_queued,
            });
        }
        let id = state.next_id;
        state.next_id += 1;
        let (grant, receiver) = oneshot::channel();
        let user_queue = state.waiting.entry(user.to_owned()).or_default();
        if user_queue.is_empty() {
            state.rotation.push_back(user.to_owned());
        }
        state
            .waiting
            .get_mut(user)
            .expect("just added")
            .push_back(Waiter {
                id,
                driver: driver.to_owned(),
                grant,
            });
        state.queued += 1;
        self.queued_gauge.store(state.queued, Ordering::Relaxed);
        Ok(Admit::Wait(Ticket {
            queue: self.clone(),
            id,
            user: user.to_owned(),
            driver: driver.to_owned(),
            grant: Some(receiver),
        }))
    }

    /// The error a statement gets when it waited `queue_timeout` in vain.
    pub fn timeout_error(&self) -> AdmissionError {
        AdmissionError::Timeout {
            tenant: self.tenant.clone(),
            secs: self.policy.queue_timeout.as_secs(),
            running: self.policy.max_running_per_driver,
        }
    }

    /// A place on `driver` was given back: hand it to the next waiter for that driver.
    fn release(self: &Arc<Self>, driver: &str) {
        let next = {
            let mut state = self.state.lock().expect("admission");
            let running = state.running.entry(driver.to_owned()).or_default();
            *running = running.saturating_sub(1);
            if *running == 0 {
                state.running.remove(driver);
            }
            let next = state.next_for(driver);
            if next.is_some() {
                *state.running.entry(driver.to_owned()).or_default() += 1;
                self.queued_gauge.store(state.queued, Ordering::Relaxed);
            }
            next
        };
        if let Some(waiter) = next {
            // A waiter gone meanwhile (its ticket being dropped) gives the place straight back.
            let _ = waiter.grant.send(Slot::held(self.clone(), driver));
        }
    }

    fn leave(&self, user: &str, id: u64) {
        let mut state = self.state.lock().expect("admission");
        let Some(queue) = state.waiting.get_mut(user) else {
            return;
        };
        let before = queue.len();
        queue.retain(|w| w.id != id);
        let removed = before != queue.len();
        if queue.is_empty() {
            state.waiting.remove(user);
            state.rotation.retain(|u| u != user);
        }
        if removed {
            state.queued -= 1;
            self.queued_gauge.store(state.queued, Ordering::Relaxed);
        }
    }

    /// The statements ahead of ticket `id` (of `user`, for `driver`) in serving order, and how
    /// many wait for that driver in all; `None` once it left the queue.
    fn place_of(&self, user: &str, id: u64, driver: &str) -> Option<(usize, usize)> {
        let state = self.state.lock().expect("admission");
        let mut lanes: Vec<VecDeque<u64>> = state
            .rotation
            .iter()
            .map(|u| {
                state.waiting[u]
                    .iter()
                    .filter(|w| w.driver == driver)
                    .map(|w| w.id)
                    .collect()
            })
            .collect();
        let total = lanes.iter().map(VecDeque::len).sum();
        state.waiting.get(user)?.iter().find(|w| w.id == id)?;
        let mut ahead = 0;
        // Round robin, as `next_for` serves them.
        while lanes.iter().any(|l| !l.is_empty()) {
            for lane in lanes.iter_mut() {
                if let Some(next) = lane.pop_front() {
                    if next == id {
                        return Some((ahead, total));
                    }
                    ahead += 1;
                }
            }
        }
        None
    }
}

impl QueueState {
    /// The next waiter for `driver`: the oldest of the first user in the rotation that has
    /// one; that user then goes to the back.
    fn next_for(&mut self, driver: &str) -> Option<Waiter> {
        let turn = self.rotation.iter().position(|user| {
            self.waiting
                .get(user)
                .is_some_and(|q| q.iter().any(|w| w.driver == driver))
        })?;
        let user = self.rotation.remove(turn).expect("position is in range");
        let queue = self
            .waiting
            .get_mut(&user)
            .expect("rotation lists waiting users");
        let at = queue
            .iter()
            .position(|w| w.driver == driver)
            .expect("checked above");
        let waiter = queue.remove(at).expect("position is in range");
        if queue.is_empty() {
            self.waiting.remove(&user);
        } else {
            self.rotation.push_back(user);
        }
        self.queued -= 1;
        Some(waiter)
    }
}

impl Slot {
    fn held(queue: Arc<TenantQueue>, driver: &str) -> Self {
        Self {
            queue: Some(queue),
            driver: driver.to_owned(),
            released: AtomicBool::new(false),
        }
    }

    /// Gives the place back (once; later calls and the drop do nothing).
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            if let Some(queue) = &self.queue {
                queue.release(&self.driver);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

impl Ticket {
    /// Waits for a place (cancel-safe: the ticket keeps its turn until dropped).
    pub async fn granted(&mut self) -> Slot {
        let receiver = self.grant.as_mut().expect("granted is awaited once");
        match receiver.await {
            Ok(slot) => {
                self.grant = None;
                slot
            }
            // The queue drops a waiter's sender only by serving it, so this does not happen;
            // should it, the caller's deadline ends the wait.
            Err(_) => std::future::pending().await,
        }
    }

    /// How many statements will run on the driver before this one, and how many wait for it
    /// in all; `None` once it has its place.
    pub fn place(&self) -> Option<(usize, usize)> {
        self.queue.place_of(&self.user, self.id, &self.driver)
    }

    pub fn queue(&self) -> &Arc<TenantQueue> {
        &self.queue
    }

    /// Reads the ticket's place while the ticket itself is being awaited.
    pub fn place_reader(&self) -> PlaceReader {
        PlaceReader {
            queue: self.queue.clone(),
            id: self.id,
            user: self.user.clone(),
            driver: self.driver.clone(),
        }
    }
}

/// See [`Ticket::place_reader`].
#[derive(Debug, Clone)]
pub struct PlaceReader {
    queue: Arc<TenantQueue>,
    id: u64,
    user: String,
    driver: String,
}

impl PlaceReader {
    /// As [`Ticket::place`].
    pub fn place(&self) -> Option<(usize, usize)> {
        self.queue.place_of(&self.user, self.id, &self.driver)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.queue.leave(&self.user, self.id);
        if let Some(mut receiver) = self.grant.take() {
            // Granted between the last look and the drop: give the place back.
            receiver.close();
            if let Ok(slot) = receiver.try_recv() {
                slot.release();
            }
        }
    }
}

#[cfg(test)]
mod tests;
