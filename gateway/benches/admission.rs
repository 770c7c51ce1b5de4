//! Admission control and the audit log, measured.
//!
//! 1. A mixed trace of users with bursts, replayed through the real `DriverPool`, autoscaler and
//!    admission queue (`TenantQueue`), with `FakeLauncher` drivers behind a cold start, in
//!    compressed time; once without admission (every statement straight onto its driver) and once
//!    with `max_running_per_driver` = the drivers' cores. A driver shares its cores between the
//!    statements on it (processor sharing), so a driver given 40 statements runs each 10x slower.
//!    Figures: per-user-class p50/p95 wait and latency, driver-side concurrency, driver-seconds.
//! 2. The cost of an audit line per statement: a small statement's calls (execute, status, fetch,
//!    close) through an in-process sparkgate in front of the fake Spark Thrift Server, with the
//!    audit log off and on (alternating rounds, same process), and the cost of one record alone.
//!
//! `cargo bench -p sparkgate --bench admission`. Prints figures and ratios; asserts nothing.
#![allow(clippy::disallowed_methods)] // benches may spawn freely: nothing outlives them

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::sasl::PlainCredentials;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sparkgate::app::Gateway;
use sparkgate::audit::{AuditConfig, AuditLog, Record};
use sparkgate::config::Config;
use sparkgate::launcher::DriverSpec;
use sparkgate::pool::autoscale::ScalingPolicy;
use sparkgate::pool::{DriverPool, PoolLimits, PoolMetrics};
use sparkgate::session::admission::{AdmissionPolicy, Admit, TenantQueue};
use sparkgate::testing::{FakeLauncher, FakeSts};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const COLD_START: Duration = Duration::from_millis(400);
const CORES_PER_DRIVER: u32 = 4;
const TICK: Duration = Duration::from_millis(5);
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const LENGTH: Duration = Duration::from_secs(6);

#[derive(Clone, Copy)]
struct Statement {
    user: &'static str,
    at: Duration,
    work: Duration,
}

/// Two users fire bursts of 40 statements (300 ms of work each) at 0.5 s and 3 s; four users
/// send one short statement (100 ms) every ~400 ms throughout.
fn trace() -> Vec<Statement> {
    let mut rng = StdRng::seed_from_u64(14);
    let mut out = Vec::new();
    for (user, at) in [
        ("burst-a", 500),
        ("burst-b", 600),
        ("burst-a", 3000),
        ("burst-b", 3100),
    ] {
        for _ in 0..40 {
            out.push(Statement {
                user,
                at: Duration::from_millis(at),
                work: Duration::from_millis(300),
            });
        }
    }
    for user in ["steady-1", "steady-2", "steady-3", "steady-4"] {
        let mut at = rng.gen_range(0..400u64);
        while at < LENGTH.as_millis() as u64 {
            out.push(Statement {
                user,
                at: Duration::from_millis(at),
                work: Duration::from_millis(100),
            });
            at += rng.gen_range(300..500u64);
        }
    }
    out
}

struct Done {
    user: &'static str,
    wait: Duration,
    latency: Duration,
}

struct Outcome {
    done: Vec<Done>,
    /// Statements running on one driver, sampled per driver.
    concurrency: Vec<u32>,
    driver_seconds: f64,
    peak_drivers: u32,
}

async fn replay(max_running_per_driver: u32) -> Outcome {
    let policy = ScalingPolicy {
        min_drivers: 1,
        max_drivers: 4,
        target_operations_per_driver: CORES_PER_DRIVER,
        scale_up_after: Duration::from_millis(300),
        idle_ttl: Duration::from_millis(1500),
        max_concurrent_launches: 2,
    };
    let pool = DriverPool::new(
        DriverSpec {
            tenant: "bench".into(),
            driver_memory: "1g".into(),
            spark_conf: Default::default(),
            hive_conf: Default::default(),
        },
        policy,
        PoolLimits {
            max_sessions_per_driver: 1000,
            max_waiting: 100_000,
            wait_timeout: Duration::from_secs(30),
            drain_grace: Duration::from_secs(10),
            reconcile_every: Duration::from_millis(50),
        },
        Arc::new(FakeLauncher::new().cold_start(COLD_START)),
        PoolMetrics::default(),
        Arc::new(AtomicBool::new(true)),
    );
    let queue = TenantQueue::new(
        "bench",
        AdmissionPolicy {
            max_running_per_driver,
            max_queued: 100_000,
            queue_timeout: Duration::from_secs(60),
        },
        pool.queued_statements.clone(),
    );
    let stop = CancellationToken::new();
    let reconciling = tokio::spawn(pool.clone().run(stop.clone()));
    while !pool
        .drivers()
        .iter()
        .any(|d| d.state == sparkgate::pool::DriverState::Ready)
    {
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    // Statements running on each driver (what its cores are shared by).
    let running: Arc<Mutex<HashMap<String, Arc<AtomicU32>>>> = Arc::default();
    let finished = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (pool, running, finished) = (pool.clone(), running.clone(), finished.clone());
        tokio::spawn(async move {
            let mut concurrency = Vec::new();
            let mut driver_seconds = 0.0;
            let mut peak = 0;
            let hard_stop = Instant::now() + LENGTH + Duration::from_secs(60);
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            while !finished.load(Ordering::Relaxed) && Instant::now() < hard_stop {
                tick.tick().await;
                let drivers = pool.drivers().len() as u32;
                peak = peak.max(drivers);
                driver_seconds += f64::from(drivers) * SAMPLE_EVERY.as_secs_f64();
                for n in running.lock().unwrap().values() {
                    let n = n.load(Ordering::Relaxed);
                    if n > 0 {
                        concurrency.push(n);
                    }
                }
            }
            (concurrency, driver_seconds, peak)
        })
    };
    let t0 = tokio::time::Instant::now();
    let mut statements = JoinSet::new();
    for s in trace() {
        let (pool, queue, running) = (pool.clone(), queue.clone(), running.clone());
        statements.spawn(async move {
            tokio::time::sleep_until(t0 + s.at).await;
            let asked = Instant::now();
            // A session per statement, as BI tools open a connection per query.
            let lease = pool
                .acquire(|| {})
                .await
                .expect("a driver within the wait timeout");
            let slot = match queue
                .admit(s.user, &lease.driver_id)
                .expect("queue has room")
            {
                Admit::Run(slot) => slot,
                Admit::Wait(mut ticket) => {
                    let _mark = lease.statement_queued();
                    ticket.granted().await
                }
            };
            let wait = asked.elapsed();
            let on_driver = running
                .lock()
                .unwrap()
                .entry(lease.driver_id.clone())
                .or_default()
                .clone();
            on_driver.fetch_add(1, Ordering::Relaxed);
            lease.operation_started();
            let mut left = s.work.as_secs_f64();
            while left > 0.0 {
                tokio::time::sleep(TICK).await;
                let sharing = f64::from(on_driver.load(Ordering::Relaxed).max(1));
                left -= TICK.as_secs_f64() * (f64::from(CORES_PER_DRIVER) / sharing).min(1.0);
            }
            on_driver.fetch_sub(1, Ordering::Relaxed);
            lease.operation_ended();
            drop(slot);
            Done {
                user: s.user,
                wait,
                latency: asked.elapsed(),
            }
        });
    }
    let mut done = Vec::new();
    while let Some(d) = statements.join_next().await {
        done.push(d.expect("statement"));
    }
    finished.store(true, Ordering::Relaxed);
    let (concurrency, driver_seconds, peak_drivers) = sampler.await.expect("sampler");
    stop.cancel();
    let _ = reconciling.await;
    pool.stop_all().await;
    Outcome {
        done,
        concurrency,
        driver_seconds,
        peak_drivers,
    }
}

fn pct<T: Copy + Ord + Default>(values: &mut [T], p: f64) -> T {
    if values.is_empty() {
        return T::default();
    }
    values.sort();
    values[((values.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(label: &str, outcome: &mut Outcome) {
    println!("  {label}:");
    for class in ["burst", "steady"] {
        let mut waits: Vec<Duration> = outcome
            .done
            .iter()
            .filter(|d| d.user.starts_with(class))
            .map(|d| d.wait)
            .collect();
        let mut latencies: Vec<Duration> = outcome
            .done
            .iter()
            .filter(|d| d.user.starts_with(class))
            .map(|d| d.latency)
            .collect();
        println!(
            "    {class:<6} users ({} statements): wait p50 {:.0} ms p95 {:.0} ms | latency p50 {:.0} ms p95 {:.0} ms",
            waits.len(),
            ms(pct(&mut waits, 0.5)),
            ms(pct(&mut waits, 0.95)),
            ms(pct(&mut latencies, 0.5)),
            ms(pct(&mut latencies, 0.95)),
        );
    }
    for user in [
        "steady-1", "steady-2", "steady-3", "steady-4", "burst-a", "burst-b",
    ] {
        let mut latencies: Vec<Duration> = outcome
            .done
            .iter()
            .filter(|d| d.user == user)
            .map(|d| d.latency)
            .collect();
        print!("    {user} p95 {:.0} ms;", ms(pct(&mut latencies, 0.95)));
    }
    println!();
    let max = outcome.concurrency.iter().copied().max().unwrap_or(0);
    println!(
        "    statements on one driver: p95 {} max {} (cores {CORES_PER_DRIVER}) | drivers peak {} | driver-seconds {:.1}",
        pct(&mut outcome.concurrency, 0.95),
        max,
        outcome.peak_drivers,
        outcome.driver_seconds,
    );
}

// --- the audit log's cost ------------------------------------------------------------------

async fn connect(addr: &str) -> Hs2Connection {
    let auth = ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: "bench".into(),
        password: "x".into(),
    });
    Hs2Connection::connect(addr, &auth, 64 << 20, Duration::from_secs(30))
        .await
        .expect("connect")
}

/// One small statement's calls (execute, status, fetch, close) `n` times on one session;
/// the time of each whole statement.
async fn small_statements(
    conn: &mut Hs2Connection,
    session: &t::TSessionHandle,
    n: usize,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let execute = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
            session_handle: session.clone(),
            statement: "select 1".into(),
            conf_overlay: None,
            run_async: Some(true),
            query_timeout: None,
        });
        let Hs2Response::ExecuteStatement(r) = conn.call(&execute).await.unwrap() else {
            panic!("execute")
        };
        let op = r.operation_handle.expect("operation");
        let status = Hs2Request::GetOperationStatus(t::TGetOperationStatusReq {
            operation_handle: op.clone(),
            get_progress_update: None,
        });
        conn.call(&status).await.unwrap();
        let fetch = Hs2Request::FetchResults(t::TFetchResultsReq {
            operation_handle: op.clone(),
            orientation: t::TFetchOrientation::FETCH_NEXT,
            max_rows: 100,
            fetch_type: None,
        });
        conn.call(&fetch).await.unwrap();
        let close = Hs2Request::CloseOperation(t::TCloseOperationReq {
            operation_handle: op,
        });
        conn.call(&close).await.unwrap();
        out.push(t0.elapsed());
    }
    out
}

async fn gateway(backend: &str, audit: Option<&std::path::Path>) -> Gateway {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.backend.address = backend.to_owned();
    config.audit.file = audit.map(|p| p.to_path_buf());
    Gateway::start(config).await.expect("gateway")
}

async fn open(addr: &str) -> (Hs2Connection, t::TSessionHandle) {
    let mut conn = connect(addr).await;
    let req = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("bench".into()),
        password: None,
        configuration: None,
    });
    let Hs2Response::OpenSession(r) = conn.call(&req).await.unwrap() else {
        panic!("open")
    };
    (conn, r.session_handle.expect("session"))
}

async fn audit_cost() {
    let dir = std::env::temp_dir().join(format!("sparkgate-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fake = FakeSts::new().start().await;
    let backend = fake.addr.to_string();
    let off = gateway(&backend, None).await;
    let on = gateway(&backend, Some(&dir.join("audit.log"))).await;
    let (mut c_off, s_off) = open(&off.local_addr.to_string()).await;
    let (mut c_on, s_on) = open(&on.local_addr.to_string()).await;
    small_statements(&mut c_off, &s_off, 300).await;
    small_statements(&mut c_on, &s_on, 300).await;
    let (mut t_off, mut t_on) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        t_off.extend(small_statements(&mut c_off, &s_off, 300).await);
        t_on.extend(small_statements(&mut c_on, &s_on, 300).await);
    }
    let (p50_off, p50_on) = (pct(&mut t_off, 0.5), pct(&mut t_on, 0.5));
    let (p95_off, p95_on) = (pct(&mut t_off, 0.95), pct(&mut t_on, 0.95));
    let lines = std::fs::read_to_string(dir.join("audit.log")).map_or(0, |t| t.lines().count());
    println!(
        "  small statement (execute, status, fetch, close), {} each: audit off p50 {:.1} us p95 {:.1} us | on p50 {:.1} us p95 {:.1} us | added p50 {:+.1} us (target < 5 us), ratio {:.3}; {lines} lines written",
        t_off.len(),
        ms(p50_off) * 1000.0,
        ms(p95_off) * 1000.0,
        ms(p50_on) * 1000.0,
        ms(p95_on) * 1000.0,
        (p50_on.as_secs_f64() - p50_off.as_secs_f64()) * 1e6,
        p50_on.as_secs_f64() / p50_off.as_secs_f64(),
    );
    // One record handed to the writer, alone (what a call pays for its line).
    let log = AuditLog::start(&AuditConfig {
        file: Some(dir.join("micro.log")),
        ..AuditConfig::default()
    })
    .expect("audit log");
    let n = 20_000;
    let mut each = Vec::with_capacity(n);
    for i in 0..n {
        let record = Record {
            event: "statement",
            user: Some("bench".into()),
            tenant: Some("default".into()),
            statement: Some(format!("SELECT {i} FROM t WHERE x = 'y'")),
            state: Some("finished".into()),
            ..Record::default()
        };
        let t0 = Instant::now();
        log.record(record);
        each.push(t0.elapsed());
    }
    log.close(Duration::from_secs(10));
    println!(
        "  one record handed to the writer thread: p50 {:.2} us p95 {:.2} us ({} dropped of {n})",
        ms(pct(&mut each, 0.5)) * 1000.0,
        ms(pct(&mut each, 0.95)) * 1000.0,
        log.dropped.load(Ordering::Relaxed),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "admission trace: 2 burst users x 2 bursts x 40 statements (300 ms work), 4 steady users (100 ms every ~400 ms), {} s; drivers of {CORES_PER_DRIVER} cores, elastic 1..4",
            LENGTH.as_secs()
        );
        let mut without = replay(0).await;
        let mut with = replay(CORES_PER_DRIVER).await;
        report("without admission (max_running_per_driver = 0)", &mut without);
        report(
            &format!("with admission (max_running_per_driver = {CORES_PER_DRIVER})"),
            &mut with,
        );
        let steady_p95 = |o: &mut Outcome| {
            let mut l: Vec<Duration> = o
                .done
                .iter()
                .filter(|d| d.user.starts_with("steady"))
                .map(|d| d.latency)
                .collect();
            pct(&mut l, 0.95)
        };
        let (a, b) = (steady_p95(&mut without), steady_p95(&mut with));
        println!(
            "  steady users' p95 latency: {:.0} ms without vs {:.0} ms with admission ({:.1}x)",
            ms(a),
            ms(b),
            a.as_secs_f64() / b.as_secs_f64().max(1e-9)
        );
        println!("audit log cost:");
        audit_cost().await;
    });
}
