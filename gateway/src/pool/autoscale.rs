//! How many drivers a tenant's pool should have: a pure function of observed load and time, so
//! it can be tested against simulated traces (step, spike, slow ramp, diurnal, flapping).
//!
//! * Scale up when load (running + queued operations, plus sessions waiting for a driver) has
//!   stayed above `target_operations_per_driver × ready-or-starting drivers` for
//!   `scale_up_after`, by as many drivers as the excess needs, at most `max_concurrent_launches`
//!   starting at once, never above `max_drivers`.
//! * Scale down one driver at a time, never below `min_drivers`: a driver idle (no sessions)
//!   for `idle_ttl`, or, when load has stayed low enough for one driver fewer to carry it at
//!   target for `idle_ttl`, the least busy one. A drained driver takes no new sessions and
//!   stops once its sessions end (or after `pools.drain_grace`). The second rule matters
//!   because placement spreads sessions over drivers, so under steady light load no driver is
//!   ever idle.
//! * `min_drivers = 0` lets an idle tenant scale to zero; the next session then waits for a
//!   cold start.

use std::time::Duration;

use serde::Deserialize;

/// Scaling parameters of one tenant.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScalingPolicy {
    /// Drivers kept even when idle (0: scale to zero).
    pub min_drivers: u32,
    /// Drivers never exceeded.
    pub max_drivers: u32,
    /// Concurrent operations one driver is meant to carry.
    pub target_operations_per_driver: u32,
    /// Load must stay above capacity this long before a scale-up (absorbs short spikes).
    #[serde(with = "humantime_serde")]
    pub scale_up_after: Duration,
    /// A driver without sessions and operations for this long is drained.
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// Drivers starting at once, at most.
    pub max_concurrent_launches: u32,
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        Self {
            min_drivers: 1,
            max_drivers: 4,
            target_operations_per_driver: 4,
            scale_up_after: Duration::from_secs(5),
            idle_ttl: Duration::from_secs(600),
            max_concurrent_launches: 2,
        }
    }
}

/// What the pool looks like now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Drivers starting.
    pub starting: u32,
    /// Drivers ready to take sessions.
    pub ready: u32,
    /// Operations running on the pool's drivers.
    pub running_operations: u32,
    /// Sessions waiting for a driver, and operations queued.
    pub queued: u32,
    /// How long load has been above capacity without a break (zero when it is not).
    pub overloaded_for: Duration,
    /// How long one driver fewer could have carried the load without a break.
    pub underloaded_for: Duration,
    /// For each ready driver without sessions, how long it has been idle.
    pub idle_drivers: Vec<Duration>,
}

/// The decision for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Hold,
    /// Start this many drivers.
    Launch(u32),
    /// Drain one idle driver (the longest idle).
    DrainOne,
}

/// Whether load exceeds what the ready and starting drivers are meant to carry. The pool tracks
/// how long this has held to fill [`Observed::overloaded_for`].
pub fn overloaded(observed: &Observed, policy: &ScalingPolicy) -> bool {
    let load = observed.running_operations + observed.queued;
    let capacity =
        (observed.ready + observed.starting) * policy.target_operations_per_driver.max(1);
    load > capacity || (observed.queued > 0 && observed.ready + observed.starting == 0)
}

/// Whether one ready driver fewer could carry the load at target (the pool tracks how long
/// this has held to fill [`Observed::underloaded_for`]).
pub fn underloaded(observed: &Observed, policy: &ScalingPolicy) -> bool {
    let load = observed.running_operations + observed.queued;
    observed.queued == 0
        && observed.ready > 0
        && load <= (observed.ready - 1) * policy.target_operations_per_driver.max(1)
}

/// The scaling decision for one tenant.
pub fn decide(observed: &Observed, policy: &ScalingPolicy) -> Decision {
    let existing = observed.ready + observed.starting;
    let per_driver = policy.target_operations_per_driver.max(1);
    let load = observed.running_operations + observed.queued;
    let launch_room = policy
        .max_concurrent_launches
        .saturating_sub(observed.starting)
        .min(policy.max_drivers.saturating_sub(existing));

    // Below the floor: start drivers regardless of load.
    if existing < policy.min_drivers {
        let n = (policy.min_drivers - existing).min(launch_room);
        return if n > 0 {
            Decision::Launch(n)
        } else {
            Decision::Hold
        };
    }
    // A waiting session with no driver at all is a cold start: no reason to wait.
    let cold_start = existing == 0 && observed.queued > 0;
    if cold_start
        || (overloaded(observed, policy) && observed.overloaded_for >= policy.scale_up_after)
    {
        let wanted = load.div_ceil(per_driver).max(1);
        let n = wanted.saturating_sub(existing).max(1).min(launch_room);
        return if n > 0 {
            Decision::Launch(n)
        } else {
            Decision::Hold
        };
    }
    // Scale down: only when nothing queues, only above the floor, one at a time, and only a
    // driver idle for the whole TTL.
    if observed.queued == 0 && observed.starting == 0 && observed.ready > policy.min_drivers {
        let longest_idle = observed
            .idle_drivers
            .iter()
            .max()
            .copied()
            .unwrap_or_default();
        if longest_idle >= policy.idle_ttl || observed.underloaded_for >= policy.idle_ttl {
            return Decision::DrainOne;
        }
    }
    Decision::Hold
}

#[cfg(test)]
mod tests;
