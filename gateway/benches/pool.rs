//! Elastic scaling: load traces replayed through the real `DriverPool` and autoscaler, with
//! `FakeLauncher` drivers (in-process fake Spark Thrift Servers behind a cold start), in
//! compressed time. Each trace runs against an elastic pool (scale to zero, and a floor of one)
//! and, at the same time, against a fixed pool sized for the trace's peak; the figures are queue
//! waits, reaction time, peak drivers, driver-seconds (what a cluster bills) and scale decisions.
//!
//! `cargo bench -p sparkgate --bench pool [-- --trace NAME] [--max-concurrent-launches N]`.
//! Prints figures and ratios; asserts nothing.
//!
//! A virtual query: `acquire` (its wait is the queue wait), `operation_started`, hold for the
//! query's duration, `operation_ended`, drop the lease. Arrivals are a Poisson process whose rate
//! follows the trace's target concurrency (rate = concurrency / mean duration), from a seeded RNG,
//! so every run replays the same queries.
#![allow(clippy::disallowed_methods)] // tests may spawn freely: nothing outlives them

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparkgate::launcher::DriverSpec;
use sparkgate::pool::autoscale::ScalingPolicy;
use sparkgate::pool::{DriverPool, DriverState, PoolLimits, PoolMetrics};
use sparkgate::testing::FakeLauncher;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const COLD_START: Duration = Duration::from_millis(400);
const RECONCILE_EVERY: Duration = Duration::from_millis(50);
const SCALE_UP_AFTER: Duration = Duration::from_millis(300);
const IDLE_TTL: Duration = Duration::from_millis(1500);
const OPS_PER_DRIVER: u32 = 4;
const SESSIONS_PER_DRIVER: u32 = 4;
const MAX_DRIVERS: u32 = 8;
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// No virtual query waits longer than this (the pool's wait timeout); it then counts as failed.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    only: Option<String>,
    max_concurrent_launches: u32,
}

fn parse_args() -> Args {
    let mut args = Args {
        only: None,
        max_concurrent_launches: ScalingPolicy::default().max_concurrent_launches,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--trace" => args.only = it.next(),
            "--max-concurrent-launches" => {
                args.max_concurrent_launches = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--max-concurrent-launches N")
            }
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    args
}

/// A load shape: target concurrency over (compressed) time.
struct Trace {
    name: &'static str,
    what: &'static str,
    /// Wall time replayed, idle tail included.
    length: Duration,
    /// Mean query duration; each is uniform in [0.5, 1.5] × this.
    mean_query: Duration,
    /// Target concurrent queries at `t` seconds.
    concurrency: fn(f64) -> f64,
    seed: u64,
}

fn traces() -> Vec<Trace> {
    vec![
        Trace {
            name: "step",
            what: "idle 2 s, 24 concurrent for 6 s, idle 6 s",
            length: Duration::from_secs(14),
            mean_query: Duration::from_secs(1),
            concurrency: |t| if (2.0..8.0).contains(&t) { 24.0 } else { 0.0 },
            seed: 1,
        },
        Trace {
            name: "spike",
            what: "3 concurrent, a 0.8 s burst to 20 at 4 s",
            length: Duration::from_secs(12),
            mean_query: Duration::from_millis(500),
            concurrency: |t| if (4.0..4.8).contains(&t) { 20.0 } else { 3.0 },
            seed: 2,
        },
        Trace {
            name: "ramp",
            what: "0 to 24 concurrent over 12 s, then idle 4 s",
            length: Duration::from_secs(16),
            mean_query: Duration::from_secs(1),
            concurrency: |t| if t < 12.0 { 2.0 * t } else { 0.0 },
            seed: 3,
        },
        Trace {
            name: "diurnal",
            what: "two 8 s 'days', 2 to 24 concurrent (sine)",
            length: Duration::from_secs(16),
            mean_query: Duration::from_secs(1),
            concurrency: |t| 13.0 - 11.0 * (2.0 * std::f64::consts::PI * t / 8.0).cos(),
            seed: 4,
        },
        Trace {
            name: "flapping",
            what: "toggling 2 / 7 concurrent every 1 s around one driver's target (4)",
            length: Duration::from_secs(12),
            mean_query: Duration::from_millis(250),
            concurrency: |t| {
                if (t as u64).is_multiple_of(2) {
                    7.0
                } else {
                    2.0
                }
            },
            seed: 5,
        },
    ]
}

/// One virtual query: when it arrives (from the trace start) and how long it runs.
#[derive(Clone, Copy)]
struct Query {
    at: Duration,
    hold: Duration,
}

/// Poisson arrivals at rate concurrency(t) / mean duration, by thinning.
fn queries(trace: &Trace) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(trace.seed);
    let mean = trace.mean_query.as_secs_f64();
    let end = trace.length.as_secs_f64();
    let peak_rate = (0..=(end * 100.0) as u64)
        .map(|i| (trace.concurrency)(i as f64 / 100.0))
        .fold(0.0, f64::max)
        / mean;
    let mut out = Vec::new();
    let mut t = 0.0;
    loop {
        t += -(1.0 - rng.gen::<f64>()).ln() / peak_rate;
        if t >= end {
            return out;
        }
        let accept = rng.gen::<f64>() < (trace.concurrency)(t) / mean / peak_rate;
        let hold = mean * rng.gen_range(0.5..1.5);
        if accept {
            out.push(Query {
                at: Duration::from_secs_f64(t),
                hold: Duration::from_secs_f64(hold),
            });
        }
    }
}

/// The most queries running at once if none ever waited.
fn peak_concurrency(queries: &[Query]) -> u32 {
    let mut events: Vec<(Duration, i32)> = queries
        .iter()
        .flat_map(|q| [(q.at, 1), (q.at + q.hold, -1)])
        .collect();
    events.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    peak as u32
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    /// Virtual queries arrived and not finished (waiting or running).
    demand: u32,
    ready: u32,
    /// Drivers in any state (what is billed).
    drivers: u32,
}

struct Outcome {
    label: String,
    waits: Vec<Duration>,
    failed: usize,
    samples: Vec<Sample>,
    launches: u64,
    scale_ups: u64,
    scale_downs: u64,
}

fn spec() -> DriverSpec {
    DriverSpec {
        tenant: "bench".into(),
        driver_memory: "1g".into(),
        spark_conf: Default::default(),
        hive_conf: Default::default(),
    }
}

/// Replays `queries` through a fresh pool with `policy`; a fixed pool (min = max) is warmed up
/// to its size first, as an always-on pool would be.
async fn replay(
    label: String,
    policy: ScalingPolicy,
    queries: &[Query],
    length: Duration,
) -> Outcome {
    let launcher = Arc::new(FakeLauncher::new().cold_start(COLD_START));
    let metrics = PoolMetrics::default();
    let fixed = policy.min_drivers == policy.max_drivers;
    let warm = policy.min_drivers as usize;
    let pool = DriverPool::new(
        spec(),
        policy,
        PoolLimits {
            max_sessions_per_driver: SESSIONS_PER_DRIVER,
            max_waiting: 100_000,
            wait_timeout: WAIT_TIMEOUT,
            drain_grace: Duration::from_secs(10),
            reconcile_every: RECONCILE_EVERY,
        },
        launcher.clone(),
        metrics.clone(),
        Arc::new(AtomicBool::new(true)),
    );
    let stop = CancellationToken::new();
    let reconciling = tokio::spawn(pool.clone().run(stop.clone()));
    if fixed {
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&pool, Some(DriverState::Ready)) < warm as u32 {
            assert!(
                Instant::now() < deadline,
                "{label}: fixed pool never warmed up"
            );
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    let demand = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = tokio::time::Instant::now();
    let sampler = {
        let (pool, demand, done) = (pool.clone(), demand.clone(), done.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            // Bounded: the trace, then at most the longest possible wait and query.
            let hard_stop = t0 + length + WAIT_TIMEOUT + Duration::from_secs(10);
            loop {
                let now = tick.tick().await;
                if (now >= t0 + length && done.load(Ordering::Relaxed)) || now >= hard_stop {
                    return samples;
                }
                samples.push(Sample {
                    at: now - t0,
                    demand: demand.load(Ordering::Relaxed),
                    ready: count(&pool, Some(DriverState::Ready)),
                    drivers: count(&pool, None),
                });
            }
        })
    };
    let mut running = JoinSet::new();
    for q in queries.iter().copied() {
        let (pool, demand) = (pool.clone(), demand.clone());
        running.spawn(async move {
            tokio::time::sleep_until(t0 + q.at).await;
            demand.fetch_add(1, Ordering::Relaxed);
            let asked = Instant::now();
            let lease = pool.acquire(|| {}).await;
            let waited = asked.elapsed();
            if let Ok(lease) = &lease {
                lease.operation_started();
                tokio::time::sleep(q.hold).await;
                lease.operation_ended();
            }
            drop(lease);
            demand.fetch_sub(1, Ordering::Relaxed);
            waited
        });
    }
    let mut waits = Vec::with_capacity(queries.len());
    let mut failed = 0;
    while let Some(result) = running.join_next().await {
        match result {
            Ok(w) if w < WAIT_TIMEOUT => waits.push(w),
            _ => failed += 1,
        }
    }
    done.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    stop.cancel();
    let _ = reconciling.await;
    pool.stop_all().await;
    waits.sort();
    Outcome {
        label,
        waits,
        failed,
        samples,
        launches: metrics.launches.get(),
        scale_ups: metrics.scale_ups.get(),
        scale_downs: metrics.scale_downs.get(),
    }
}

fn count(pool: &DriverPool, state: Option<DriverState>) -> u32 {
    pool.drivers()
        .iter()
        .filter(|d| state.is_none_or(|s| d.state == s))
        .count() as u32
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn driver_seconds(samples: &[Sample]) -> f64 {
    samples
        .windows(2)
        .map(|w| w[0].drivers as f64 * (w[1].at - w[0].at).as_secs_f64())
        .sum()
}

/// Drivers needed for `demand` concurrent queries.
fn needed(demand: u32) -> u32 {
    demand.div_ceil(OPS_PER_DRIVER).min(MAX_DRIVERS)
}

/// Under-capacity episodes (demand above what ready drivers carry, below the pool's maximum),
/// as seen by the sampler: for each, how long until ready drivers covered the demand again, and
/// whether it ended by drivers becoming ready (a reaction) or by the load going away first.
struct Reaction {
    /// Durations of episodes that ended with more ready drivers.
    scaled: Vec<Duration>,
    /// Episodes that ended because load dropped before capacity came.
    outlasted: usize,
    /// Time under capacity, all episodes.
    total: Duration,
}

fn reaction(samples: &[Sample]) -> Reaction {
    let mut r = Reaction {
        scaled: Vec::new(),
        outlasted: 0,
        total: Duration::ZERO,
    };
    let mut open: Option<(Duration, u32)> = None;
    for s in samples {
        let short = s.demand > s.ready * OPS_PER_DRIVER && s.ready < MAX_DRIVERS;
        match (open, short) {
            (None, true) => open = Some((s.at, s.ready)),
            (Some((start, ready_then)), false) => {
                if s.ready > ready_then {
                    r.scaled.push(s.at - start);
                } else {
                    r.outlasted += 1;
                }
                r.total += s.at - start;
                open = None;
            }
            _ => {}
        }
    }
    r.scaled.sort();
    r
}

fn report(o: &Outcome, fixed_ds: Option<f64>) -> f64 {
    let ds = driver_seconds(&o.samples);
    let peak = o.samples.iter().map(|s| s.drivers).max().unwrap_or(0);
    let r = reaction(&o.samples);
    let reaction = match (r.scaled.last(), r.scaled.is_empty()) {
        (Some(max), false) => format!(
            "{:>3} ep, p50 {:>5.0} max {:>5.0} ms",
            r.scaled.len(),
            ms(percentile(&r.scaled, 0.5)),
            ms(*max)
        ),
        _ => format!("{:>3} ep {:>22}", 0, ""),
    };
    let saving = fixed_ds.map_or_else(
        || "     -".to_owned(),
        |f| format!("{:>5.1}%", (1.0 - ds / f) * 100.0),
    );
    println!(
        "  {:<14} wait p50 {:>6.1} p95 {:>6.1} max {:>6.1} ms{} | reaction {reaction} (+{} outlasted), under capacity {:>5.2} s | peak {peak} drivers | {ds:>6.1} driver-s | saving {saving} | launches {} (scale-ups {}, downs {})",
        o.label,
        ms(percentile(&o.waits, 0.5)),
        ms(percentile(&o.waits, 0.95)),
        ms(o.waits.last().copied().unwrap_or_default()),
        if o.failed > 0 { format!(" ({} FAILED)", o.failed) } else { String::new() },
        r.outlasted,
        r.total.as_secs_f64(),
        o.launches,
        o.scale_ups,
        o.scale_downs,
    );
    ds
}

fn elastic(min_drivers: u32, launches: u32) -> ScalingPolicy {
    ScalingPolicy {
        min_drivers,
        max_drivers: MAX_DRIVERS,
        target_operations_per_driver: OPS_PER_DRIVER,
        scale_up_after: SCALE_UP_AFTER,
        idle_ttl: IDLE_TTL,
        max_concurrent_launches: launches,
    }
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "sparkgate pool bench: real DriverPool + autoscaler, FakeLauncher drivers; cold start {} ms, reconcile every {} ms, scale_up_after {} ms, idle_ttl {} ms, target {OPS_PER_DRIVER} operations and at most {SESSIONS_PER_DRIVER} sessions per driver, max {MAX_DRIVERS} drivers, max_concurrent_launches {}; drivers sampled every {} ms",
        COLD_START.as_millis(),
        RECONCILE_EVERY.as_millis(),
        SCALE_UP_AFTER.as_millis(),
        IDLE_TTL.as_millis(),
        args.max_concurrent_launches,
        SAMPLE_EVERY.as_millis(),
    );
    println!("reaction: under-capacity episodes (demand > ready drivers x {OPS_PER_DRIVER}) that ended with more drivers ready: time until they covered the demand; 'outlasted': episodes the load left before capacity came; saving: driver-seconds against the fixed pool");
    let started = Instant::now();
    for trace in traces() {
        if args.only.as_deref().is_some_and(|n| n != trace.name) {
            continue;
        }
        let queries = queries(&trace);
        let peak = peak_concurrency(&queries);
        let size = needed(peak).max(1);
        println!(
            "\n== {}: {} ({} queries, mean {} ms, peak {peak} concurrent: fixed pool of {size}) ==",
            trace.name,
            trace.what,
            queries.len(),
            trace.mean_query.as_millis(),
        );
        let fixed = ScalingPolicy {
            min_drivers: size,
            max_drivers: size,
            max_concurrent_launches: size,
            ..elastic(size, size)
        };
        let (scale_to_zero, floor_one, fixed) = runtime.block_on(async {
            tokio::join!(
                replay(
                    "elastic min=0".into(),
                    elastic(0, args.max_concurrent_launches),
                    &queries,
                    trace.length
                ),
                replay(
                    "elastic min=1".into(),
                    elastic(1, args.max_concurrent_launches),
                    &queries,
                    trace.length
                ),
                replay(format!("fixed {size}"), fixed, &queries, trace.length),
            )
        });
        let fixed_ds = report(&fixed, None);
        report(&scale_to_zero, Some(fixed_ds));
        report(&floor_one, Some(fixed_ds));
    }
    println!(
        "\npool bench done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
