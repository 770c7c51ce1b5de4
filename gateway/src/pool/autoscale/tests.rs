//! The scaling decision against simulated load traces, one simulated second per step.

use super::*;

/// A minimal pool: drivers take `startup` to become ready; demand beyond what ready drivers carry
/// queues; a ready driver with no work accumulates idle time.
struct Sim {
    policy: ScalingPolicy,
    startup: u32,
    /// Seconds left until each starting driver is ready.
    starting: Vec<u32>,
    /// Idle seconds of each ready driver.
    ready_idle: Vec<u32>,
    overloaded_for: u32,
    underloaded_for: u32,
    /// Drivers ready or starting, per second.
    history: Vec<u32>,
    launches: u32,
    drains: u32,
    /// Seconds in which some demand waited.
    queued_seconds: u32,
}

impl Sim {
    fn new(policy: ScalingPolicy, initial_ready: u32) -> Self {
        Self {
            policy,
            startup: 10,
            starting: Vec::new(),
            ready_idle: vec![0; initial_ready as usize],
            overloaded_for: 0,
            underloaded_for: 0,
            history: Vec::new(),
            launches: 0,
            drains: 0,
            queued_seconds: 0,
        }
    }

    fn step(&mut self, demand: u32) {
        // Drivers finishing their start.
        for s in &mut self.starting {
            *s -= 1;
        }
        let done = self.starting.iter().filter(|s| **s == 0).count();
        self.starting.retain(|s| *s > 0);
        self.ready_idle.extend(std::iter::repeat_n(0, done));

        let per = self.policy.target_operations_per_driver;
        let ready = self.ready_idle.len() as u32;
        // Drivers run what they can (a driver takes more than its target, up to twice).
        let running = demand.min(ready * per * 2);
        let queued = demand - running;
        if queued > 0 {
            self.queued_seconds += 1;
        }
        // Work spreads over the fewest drivers; the rest idle.
        let busy = running.div_ceil(per.max(1)).min(ready) as usize;
        for (i, idle) in self.ready_idle.iter_mut().enumerate() {
            *idle = if i < busy { 0 } else { *idle + 1 };
        }
        let mut observed = Observed {
            starting: self.starting.len() as u32,
            ready,
            running_operations: running,
            queued,
            overloaded_for: Duration::ZERO,
            underloaded_for: Duration::ZERO,
            idle_drivers: self
                .ready_idle
                .iter()
                .filter(|i| **i > 0)
                .map(|i| Duration::from_secs(u64::from(*i)))
                .collect(),
        };
        self.overloaded_for = if overloaded(&observed, &self.policy) {
            self.overloaded_for + 1
        } else {
            0
        };
        observed.overloaded_for = Duration::from_secs(u64::from(self.overloaded_for));
        self.underloaded_for = if underloaded(&observed, &self.policy) {
            self.underloaded_for + 1
        } else {
            0
        };
        observed.underloaded_for = Duration::from_secs(u64::from(self.underloaded_for));
        match decide(&observed, &self.policy) {
            Decision::Hold => {}
            Decision::Launch(n) => {
                self.launches += n;
                self.starting
                    .extend(std::iter::repeat_n(self.startup, n as usize));
            }
            Decision::DrainOne => {
                self.drains += 1;
                // Drain the longest idle.
                let (i, _) = self
                    .ready_idle
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, idle)| **idle)
                    .unwrap();
                self.ready_idle.remove(i);
            }
        }
        self.history
            .push((self.starting.len() + self.ready_idle.len()) as u32);
    }

    fn run(&mut self, seconds: u32, demand: impl Fn(u32) -> u32) {
        for t in 0..seconds {
            self.step(demand(t));
        }
    }

    fn max_drivers_seen(&self) -> u32 {
        self.history.iter().copied().max().unwrap_or(0)
    }

    fn at(&self, t: usize) -> u32 {
        self.history[t]
    }
}

fn policy() -> ScalingPolicy {
    ScalingPolicy {
        min_drivers: 1,
        max_drivers: 4,
        target_operations_per_driver: 4,
        scale_up_after: Duration::from_secs(5),
        idle_ttl: Duration::from_secs(60),
        max_concurrent_launches: 2,
    }
}

#[test]
fn step_load_scales_up_quickly_then_back_to_min_after_the_ttl() {
    let mut sim = Sim::new(policy(), 1);
    sim.run(600, |t| if (60..300).contains(&t) { 14 } else { 0 });
    assert_eq!(sim.at(59), 1, "one driver at rest");
    // 14 operations need 4 drivers of 4; reaction within scale_up_after plus a tick.
    let reacted = (60..80).find(|&t| sim.at(t) > 1).expect("scaled up");
    assert!(reacted <= 66, "reacted at {reacted}");
    assert_eq!(sim.max_drivers_seen(), 4, "up to max_drivers, not beyond");
    assert_eq!(sim.at(299), 4);
    // After the load stops: back to min_drivers once the idle TTL has passed, one at a time.
    assert_eq!(sim.at(320), 4, "nothing drained before the TTL");
    assert_eq!(sim.at(599), 1);
    assert_eq!(sim.drains, 3);
}

#[test]
fn a_short_spike_does_not_launch_drivers() {
    let mut sim = Sim::new(policy(), 1);
    sim.run(120, |t| if t == 30 || t == 31 { 40 } else { 2 });
    assert_eq!(sim.launches, 0);
    assert_eq!(sim.max_drivers_seen(), 1);
}

#[test]
fn slow_ramp_adds_drivers_one_need_at_a_time() {
    let mut sim = Sim::new(policy(), 1);
    sim.run(400, |t| (t / 20).min(16));
    assert_eq!(sim.max_drivers_seen(), 4);
    // Never more drivers than the load needs (plus the ones starting to absorb it).
    for (t, drivers) in sim.history.iter().enumerate() {
        let needed = ((t as u32 / 20).min(16)).div_ceil(4).max(1);
        assert!(
            *drivers <= needed + 1,
            "t={t}: {drivers} drivers for {needed} needed"
        );
    }
    assert_eq!(sim.drains, 0, "a rising load never drains");
}

#[test]
fn diurnal_load_follows_the_curve_without_churn() {
    let mut p = policy();
    p.idle_ttl = Duration::from_secs(120);
    let mut sim = Sim::new(p, 1);
    // Two "days" of 1200 s: a sine between 0 and 14 operations.
    let demand = |t: u32| {
        let phase = f64::from(t % 1200) / 1200.0 * std::f64::consts::TAU;
        ((1.0 - phase.cos()) / 2.0 * 14.0).round() as u32
    };
    sim.run(2400, demand);
    assert_eq!(sim.max_drivers_seen(), 4, "peak needs all drivers");
    assert_eq!(sim.at(2399), 1, "night falls back to min_drivers");
    // Each day: at most max_drivers launches and drains.
    assert!(sim.launches <= 2 * 4, "launches {}", sim.launches);
    assert!(sim.drains <= 2 * 4, "drains {}", sim.drains);
}

#[test]
fn flapping_load_neither_scales_up_nor_churns() {
    let mut sim = Sim::new(policy(), 1);
    // 3 s of overload, 3 s of quiet, over and over: never 5 s in a row.
    sim.run(300, |t| if (t / 3) % 2 == 0 { 12 } else { 0 });
    assert_eq!(sim.launches, 0);
    assert_eq!(sim.drains, 0);
}

#[test]
fn scale_to_zero_and_cold_start() {
    let mut p = policy();
    p.min_drivers = 0;
    let mut sim = Sim::new(p, 1);
    sim.run(100, |_| 0);
    assert_eq!(sim.history.last(), Some(&0), "an idle tenant has no driver");
    // A session arrives: a driver is launched at once, not after scale_up_after.
    sim.step(1);
    assert_eq!(sim.history.last(), Some(&1));
}

#[test]
fn launches_respect_the_concurrency_cap_and_the_floor() {
    let p = policy();
    let observed = Observed {
        queued: 100,
        overloaded_for: Duration::from_secs(60),
        ..Observed::default()
    };
    assert_eq!(
        decide(&observed, &p),
        Decision::Launch(1),
        "floor first, capped by launch room"
    );
    let observed = Observed {
        ready: 1,
        starting: 1,
        queued: 100,
        running_operations: 8,
        overloaded_for: Duration::from_secs(60),
        ..Observed::default()
    };
    assert_eq!(
        decide(&observed, &p),
        Decision::Launch(1),
        "one more may start (cap 2)"
    );
    let busy_and_idle = Observed {
        ready: 3,
        idle_drivers: vec![Duration::from_secs(3600)],
        queued: 1,
        ..Observed::default()
    };
    assert_ne!(
        decide(&busy_and_idle, &p),
        Decision::DrainOne,
        "never drain while sessions wait"
    );
}
