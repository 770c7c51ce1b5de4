//! A real `DriverPool` and autoscaler driving the in-process `FakeLauncher`: cold start from
//! zero, scale-up on operations (and on statements queued for admission), scale-down after the
//! idle TTL, a killed driver replaced, other replicas' load counted.
//! Durations are compressed; every wait polls against a deadline.
#![allow(clippy::disallowed_methods)] // tests may spawn freely: nothing outlives them

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sparkgate::launcher::DriverSpec;
use sparkgate::pool::autoscale::ScalingPolicy;
use sparkgate::pool::{DriverPool, DriverState, PoolLimits, PoolMetrics};
use sparkgate::testing::FakeLauncher;
use tokio_util::sync::CancellationToken;

/// Long enough for any of these tests on a loaded machine; each normally takes well under 1 s.
const DEADLINE: Duration = Duration::from_secs(3);

fn spec() -> DriverSpec {
    DriverSpec {
        tenant: "t".into(),
        driver_memory: "1g".into(),
        spark_conf: Default::default(),
        hive_conf: Default::default(),
    }
}

struct Running {
    pool: Arc<DriverPool>,
    launcher: Arc<FakeLauncher>,
    metrics: PoolMetrics,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn limits() -> PoolLimits {
    PoolLimits {
        max_sessions_per_driver: 10,
        max_waiting: 100,
        wait_timeout: DEADLINE,
        drain_grace: Duration::from_secs(1),
        reconcile_every: Duration::from_millis(20),
    }
}

fn start(policy: ScalingPolicy, cold_start: Duration) -> Running {
    let launcher = Arc::new(FakeLauncher::new().cold_start(cold_start));
    let metrics = PoolMetrics::default();
    let pool = DriverPool::new(
        spec(),
        policy,
        limits(),
        launcher.clone(),
        metrics.clone(),
        Arc::new(AtomicBool::new(true)),
    );
    let stop = CancellationToken::new();
    tokio::spawn(pool.clone().run(stop.clone()));
    Running {
        pool,
        launcher,
        metrics,
        stop,
    }
}

fn policy(min_drivers: u32) -> ScalingPolicy {
    ScalingPolicy {
        min_drivers,
        max_drivers: 4,
        target_operations_per_driver: 2,
        scale_up_after: Duration::from_millis(40),
        idle_ttl: Duration::from_millis(200),
        max_concurrent_launches: 2,
    }
}

fn ready(pool: &DriverPool) -> Vec<String> {
    pool.drivers()
        .into_iter()
        .filter(|d| d.state == DriverState::Ready)
        .map(|d| d.id)
        .collect()
}

/// Polls `check` every 10 ms until it holds; panics with `what` after [`DEADLINE`].
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn cold_start_from_zero_waits_then_leases_a_serving_driver() {
    let cold = Duration::from_millis(150);
    let r = start(policy(0), cold);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(r.pool.drivers().is_empty(), "no driver without load");

    let waited = AtomicBool::new(false);
    let asked = Instant::now();
    let lease = r
        .pool
        .acquire(|| waited.store(true, Ordering::Relaxed))
        .await
        .expect("a lease after the cold start");
    assert!(waited.load(Ordering::Relaxed), "the session had to wait");
    assert!(asked.elapsed() >= cold, "not before the driver is ready");
    assert!(
        lease.driver_id.starts_with("t-fake-"),
        "{}",
        lease.driver_id
    );
    assert!(
        sparkgate::launcher::probe(&lease.address, &lease.secret).await,
        "the leased driver serves HS2 at {}",
        lease.address
    );
    assert_eq!(r.launcher.launches(), 1);
}

#[tokio::test]
async fn scales_up_on_operations_then_down_after_idle_ttl() {
    let r = start(policy(1), Duration::from_millis(30));
    eventually("the floor's driver", || ready(&r.pool).len() == 1).await;

    // Three running operations against a target of two per driver: one more driver.
    let leases: Vec<_> = futures::future::join_all((0..3).map(|_| r.pool.acquire(|| {})))
        .await
        .into_iter()
        .map(|l| l.expect("lease"))
        .collect();
    for l in &leases {
        l.operation_started();
    }
    eventually("a second ready driver", || ready(&r.pool).len() == 2).await;
    assert_eq!(r.metrics.launches.get(), 2, "exactly one scale-up launch");

    // Load gone: back to the floor once the extra driver has been idle for the TTL.
    for l in &leases {
        l.operation_ended();
    }
    drop(leases);
    eventually("the pool back at its floor", || {
        r.pool.drivers().len() == 1 && r.launcher.live() == 1
    })
    .await;
    assert_eq!(r.metrics.scale_downs.get(), 1);
    assert_eq!(r.launcher.stops(), 1);
}

#[tokio::test]
async fn statements_queued_for_admission_are_load_and_steer_placement() {
    use sparkgate::session::admission::{AdmissionPolicy, Admit, TenantQueue};
    let r = start(policy(1), Duration::from_millis(30));
    eventually("the floor's driver", || ready(&r.pool).len() == 1).await;
    let queue = TenantQueue::new(
        "t",
        AdmissionPolicy {
            max_running_per_driver: 1,
            max_queued: 10,
            queue_timeout: Duration::from_secs(5),
        },
        r.pool.queued_statements.clone(),
    );
    // One statement runs on the driver; three more of its sessions wait in sparkgate. Running
    // alone (one operation against a target of two) would not scale; with the queue it does.
    let lease = r.pool.acquire(|| {}).await.expect("lease");
    let Ok(Admit::Run(_slot)) = queue.admit("ann", &lease.driver_id) else {
        panic!("the first statement runs at once")
    };
    lease.operation_started();
    let mut waiting = Vec::new();
    for user in ["bob", "cy", "dee"] {
        match queue.admit(user, &lease.driver_id) {
            Ok(Admit::Wait(ticket)) => waiting.push((ticket, lease.statement_queued())),
            other => panic!("expected a wait, got {other:?}"),
        }
    }
    eventually("a second ready driver for the queued work", || {
        ready(&r.pool).len() == 2
    })
    .await;
    // A new session goes to the new driver: the old one is busy with queued statements.
    let next = r.pool.acquire(|| {}).await.expect("lease");
    assert_ne!(next.driver_id, lease.driver_id);
    lease.operation_ended();
}

#[tokio::test]
async fn other_replicas_load_scales_up_and_keeps_their_drivers_from_draining() {
    use sparkgate::pool::replicas::{DriverShare, TenantLoad};
    let r = start(policy(1), Duration::from_millis(30));
    eventually("the floor's driver", || ready(&r.pool).len() == 1).await;
    let first = ready(&r.pool).remove(0);
    // This replica carries one running statement (alone: under the target of two); another
    // replica reports two more on the same driver and a session waiting for one.
    let lease = r.pool.acquire(|| {}).await.expect("lease");
    lease.operation_started();
    let others = |operations, queued| TenantLoad {
        queued,
        drivers: [(
            first.clone(),
            DriverShare {
                sessions: 2,
                operations,
            },
        )]
        .into(),
        draining: Default::default(),
    };
    r.pool.set_others_load(others(2, 1));
    eventually("a second ready driver for the summed load", || {
        ready(&r.pool).len() == 2
    })
    .await;
    let local = r.pool.local_load();
    assert_eq!(
        local.drivers[&first],
        DriverShare {
            sessions: 1,
            operations: 1
        }
    );

    // This replica's work ends; the other replica keeps two idle sessions on the first driver:
    // the second (unused anywhere) is drained, never the first.
    lease.operation_ended();
    drop(lease);
    r.pool.set_others_load(others(0, 0));
    eventually("the unused driver drained", || r.launcher.live() == 1).await;
    assert_eq!(ready(&r.pool), vec![first.clone()]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ready(&r.pool),
        vec![first],
        "a driver other replicas use stays"
    );
}

/// A follower: a pool of the same launcher (the drivers it lists), no decisions of its own, not
/// yet running its reconcile loop.
fn follower_of(leader: &Running, policy: ScalingPolicy) -> Arc<DriverPool> {
    DriverPool::new(
        spec(),
        policy,
        limits(),
        leader.launcher.clone(),
        PoolMetrics::default(),
        Arc::new(AtomicBool::new(false)),
    )
}

#[tokio::test]
async fn a_driver_the_leader_drains_takes_no_new_sessions_on_a_follower() {
    use sparkgate::pool::replicas::TenantLoad;
    let leader = start(policy(2), Duration::from_millis(30));
    eventually("two drivers", || ready(&leader.pool).len() == 2).await;
    let follower = follower_of(&leader, policy(2));
    let stop = CancellationToken::new();
    tokio::spawn(follower.clone().run(stop.clone()));
    eventually("the follower adopts both", || ready(&follower).len() == 2).await;
    let drained = ready(&follower).remove(0);
    follower.set_others_load(TenantLoad {
        draining: [drained.clone()].into(),
        ..TenantLoad::default()
    });
    eventually("the driver marked draining", || {
        follower
            .drivers()
            .iter()
            .any(|d| d.id == drained && d.state == DriverState::Draining)
    })
    .await;
    for _ in 0..4 {
        let lease = follower.acquire(|| {}).await.expect("lease");
        assert_ne!(lease.driver_id, drained);
    }
    // Kept (not stopped, not adopted again as Ready) until the leader stops it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(leader.launcher.stops(), 0, "a follower stops nothing");
    assert!(follower
        .drivers()
        .iter()
        .any(|d| d.id == drained && d.state == DriverState::Draining));
    stop.cancel();
}

#[tokio::test]
async fn a_sealed_handle_finds_its_driver_on_a_replica_that_sees_it_starting_or_not_yet() {
    let leader = start(policy(1), Duration::from_millis(500));
    eventually("the leader's driver launched", || {
        leader.launcher.live() == 1
    })
    .await;
    // This replica lists the driver later than the leader did: still Starting here when the
    // leader's session on it hands its sealed handle over.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let follower = follower_of(&leader, policy(1));
    follower.adopt().await;
    let lease = leader.pool.acquire(|| {}).await.expect("a lease");
    assert!(follower
        .drivers()
        .iter()
        .any(|d| d.id == lease.driver_id && d.state == DriverState::Starting));
    let taken_in = follower
        .driver_for_sealed(&lease.driver_id, &lease.address)
        .await
        .expect("a Starting driver named by id is found");
    assert!(taken_in.secret == lease.secret, "the driver's own password");
    assert_eq!(taken_in.address, lease.address);
    let sessions_here = || {
        follower
            .drivers()
            .iter()
            .find(|d| d.id == lease.driver_id)
            .map(|d| d.sessions)
    };
    assert_eq!(sessions_here(), Some(1), "the session counts as load here");
    drop(taken_in);
    assert_eq!(sessions_here(), Some(0));

    // A replica that has not listed the driver yet waits for its reconcile loop.
    let late = follower_of(&leader, policy(1));
    let stop = CancellationToken::new();
    let running = late.clone();
    let run_stop = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        running.run(run_stop).await;
    });
    assert!(late
        .driver_for_sealed(&lease.driver_id, &lease.address)
        .await
        .is_some());
    // Neither another address for a Ready driver nor an unknown driver is taken.
    eventually("the late replica sees it ready", || ready(&late).len() == 1).await;
    assert!(late
        .driver_for_sealed(&lease.driver_id, "127.0.0.1:1")
        .await
        .is_none());
    assert!(late
        .driver_for_sealed("t-fake-99", &lease.address)
        .await
        .is_none());
    stop.cancel();
}

#[tokio::test]
async fn a_killed_driver_fails_and_is_replaced() {
    let r = start(policy(1), Duration::from_millis(30));
    eventually("the floor's driver", || ready(&r.pool).len() == 1).await;
    let first = ready(&r.pool).remove(0);

    assert!(r.launcher.kill(&first));
    eventually("a replacement driver", || {
        let ready = ready(&r.pool);
        ready.len() == 1 && ready[0] != first
    })
    .await;
    assert!(r.pool.drivers().iter().all(|d| d.id != first));
    assert_eq!(r.metrics.launch_failures.get(), 1, "the death is counted");
    assert_eq!(r.launcher.launches(), 2);
    eventually("the dead driver stopped", || r.launcher.live() == 1).await;

    let lease = r.pool.acquire(|| {}).await.expect("lease");
    assert_ne!(lease.driver_id, first);
}
