//! Gateway overhead: the same client work direct to a backend and through sparkgate, in one run.
//!
//! `cargo bench -p sparkgate --bench proxy` uses the in-process fake Spark Thrift Server, so the
//! gateway's own cost is what shows. `-- --real HOST:PORT` adds the same runs against a real
//! Spark Thrift Server (SASL, auth NONE). Prints figures and ratios; asserts nothing.

use std::time::{Duration, Instant};

use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::sasl::PlainCredentials;
use sparkgate::app::Gateway;
use sparkgate::config::Config;
use sparkgate::testing::FakeSts;

const MAX_MESSAGE: usize = 512 << 20;

struct Args {
    real: Option<String>,
    small_iterations: usize,
    large_rows: u64,
    fetch_size: i64,
    polls: usize,
    large_rounds: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        real: None,
        small_iterations: 2000,
        large_rows: 1_000_000,
        fetch_size: 10_000,
        polls: 20_000,
        large_rounds: 7,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--real" => args.real = it.next(),
            "--small" => {
                args.small_iterations = it.next().and_then(|v| v.parse().ok()).expect("--small N")
            }
            "--rows" => args.large_rows = it.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "--rounds" => {
                args.large_rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N")
            }
            "--polls" => args.polls = it.next().and_then(|v| v.parse().ok()).expect("--polls N"),
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    args
}

async fn connect(addr: &str) -> Hs2Connection {
    let auth = ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: "bench".into(),
        password: "x".into(),
    });
    Hs2Connection::connect(addr, &auth, MAX_MESSAGE, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

async fn open(conn: &mut Hs2Connection) -> t::TSessionHandle {
    let req = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("bench".into()),
        password: None,
        configuration: None,
    });
    match conn.call(&req).await.unwrap() {
        Hs2Response::OpenSession(r) => r.session_handle.expect("session"),
        other => panic!("{other:?}"),
    }
}

async fn execute(
    conn: &mut Hs2Connection,
    session: &t::TSessionHandle,
    sql: &str,
) -> t::TOperationHandle {
    let req = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
        session_handle: session.clone(),
        statement: sql.into(),
        conf_overlay: None,
        run_async: Some(false),
        query_timeout: None,
    });
    match conn.call(&req).await.unwrap() {
        Hs2Response::ExecuteStatement(r) => r
            .operation_handle
            .unwrap_or_else(|| panic!("no operation: {:?}", r.status)),
        other => panic!("{other:?}"),
    }
}

async fn wait_finished(conn: &mut Hs2Connection, op: &t::TOperationHandle) {
    loop {
        let req = status(op);
        if let Hs2Response::GetOperationStatus(r) = conn.call(&req).await.unwrap() {
            match r.operation_state {
                Some(t::TOperationState::FINISHED_STATE) => return,
                Some(t::TOperationState::RUNNING_STATE)
                | Some(t::TOperationState::PENDING_STATE)
                | Some(t::TOperationState::INITIALIZED_STATE) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                other => panic!("operation ended {other:?}: {:?}", r.status),
            }
        }
    }
}

fn status(op: &t::TOperationHandle) -> Hs2Request {
    Hs2Request::GetOperationStatus(t::TGetOperationStatusReq {
        operation_handle: op.clone(),
        get_progress_update: None,
    })
}

fn fetch(op: &t::TOperationHandle, rows: i64) -> Hs2Request {
    Hs2Request::FetchResults(t::TFetchResultsReq {
        operation_handle: op.clone(),
        orientation: t::TFetchOrientation::FETCH_NEXT,
        max_rows: rows,
        fetch_type: None,
    })
}

fn close(op: &t::TOperationHandle) -> Hs2Request {
    Hs2Request::CloseOperation(t::TCloseOperationReq {
        operation_handle: op.clone(),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Per-call latencies of a small statement: execute, status, fetch, close.
async fn small_statement(addr: &str, sql: &str, iterations: usize) -> Vec<Duration> {
    let mut conn = connect(addr).await;
    let session = open(&mut conn).await;
    let mut calls = Vec::with_capacity(iterations * 4);
    for i in 0..iterations + iterations / 10 {
        let warm = i < iterations / 10;
        let t0 = Instant::now();
        let op = execute(&mut conn, &session, sql).await;
        let t1 = Instant::now();
        conn.call(&status(&op)).await.unwrap();
        let t2 = Instant::now();
        conn.call(&fetch(&op, 100)).await.unwrap();
        let t3 = Instant::now();
        conn.call(&close(&op)).await.unwrap();
        let t4 = Instant::now();
        if !warm {
            calls.extend([t1 - t0, t2 - t1, t3 - t2, t4 - t3]);
        }
    }
    calls.sort();
    calls
}

/// Rows and bytes of one large result, fetched to the end.
async fn large_fetch(addr: &str, sql: &str, fetch_size: i64) -> (Duration, u64, u64) {
    let mut conn = connect(addr).await;
    let session = open(&mut conn).await;
    let started = Instant::now();
    let op = execute(&mut conn, &session, sql).await;
    wait_finished(&mut conn, &op).await;
    let (mut rows, mut bytes) = (0u64, 0u64);
    loop {
        let (reply, _) = conn.call_raw(&fetch(&op, fetch_size)).await.unwrap();
        bytes += reply.len() as u64;
        let resp = Hs2Response::decode_for(&fetch(&op, fetch_size), &reply).unwrap();
        let Hs2Response::FetchResults(resp) = resp else {
            unreachable!()
        };
        let n = resp
            .results
            .and_then(|r| r.columns)
            .and_then(|c| c.into_iter().next())
            .map(|c| column_len(&c))
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        rows += n as u64;
    }
    conn.call(&close(&op)).await.unwrap();
    (started.elapsed(), rows, bytes)
}

fn column_len(c: &t::TColumn) -> usize {
    match c {
        t::TColumn::BoolVal(v) => v.values.len(),
        t::TColumn::ByteVal(v) => v.values.len(),
        t::TColumn::I16Val(v) => v.values.len(),
        t::TColumn::I32Val(v) => v.values.len(),
        t::TColumn::I64Val(v) => v.values.len(),
        t::TColumn::DoubleVal(v) => v.values.len(),
        t::TColumn::StringVal(v) => v.values.len(),
        t::TColumn::BinaryVal(v) => v.values.len(),
    }
}

/// Status polls of a finished operation, as the Hive JDBC driver sends one per row.
async fn status_polls(addr: &str, sql: &str, polls: usize) -> Duration {
    let mut conn = connect(addr).await;
    let session = open(&mut conn).await;
    let op = execute(&mut conn, &session, sql).await;
    wait_finished(&mut conn, &op).await;
    let started = Instant::now();
    for _ in 0..polls {
        conn.call(&status(&op)).await.unwrap();
    }
    let elapsed = started.elapsed();
    conn.call(&close(&op)).await.unwrap();
    elapsed
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn compare(
    label: &str,
    direct: &str,
    gateway: &str,
    args: &Args,
    small_sql: &str,
    large_sql: &str,
) {
    println!("\n== {label} ==");
    let d = small_statement(direct, small_sql, args.small_iterations).await;
    let g = small_statement(gateway, small_sql, args.small_iterations).await;
    let (d50, d99, g50, g99) = (
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        percentile(&g, 0.5),
        percentile(&g, 0.99),
    );
    println!(
        "small statement, per call ({} calls): direct p50 {:.1} us p99 {:.1} us | sparkgate p50 {:.1} us p99 {:.1} us | added p50 {:.1} us, p99 {:.1} us",
        d.len(),
        us(d50),
        us(d99),
        us(g50),
        us(g99),
        us(g50) - us(d50),
        us(g99) - us(d99),
    );
    // Alternate the order so neither side always runs on a warmer machine; report the best
    // and the median of several runs, as the machine is shared and noisy.
    let (mut direct_times, mut gateway_times) = (Vec::new(), Vec::new());
    let (mut rows, mut bytes, mut gateway_rows) = (0, 0, 0);
    for round in 0..args.large_rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for through_gateway in order {
            let addr = if through_gateway { gateway } else { direct };
            let (elapsed, n, b) = large_fetch(addr, large_sql, args.fetch_size).await;
            if through_gateway {
                gateway_times.push(elapsed);
                gateway_rows = n;
            } else {
                direct_times.push(elapsed);
                (rows, bytes) = (n, b);
            }
        }
    }
    assert_eq!(rows, gateway_rows, "same rows through the gateway");
    direct_times.sort();
    gateway_times.sort();
    let (dt, gt) = (direct_times[0], gateway_times[0]);
    let (dm, gm) = (
        direct_times[direct_times.len() / 2],
        gateway_times[gateway_times.len() / 2],
    );
    let mb = bytes as f64 / 1e6;
    println!(
        "large fetch ({rows} rows, {mb:.1} MB, fetch size {}, best of {}): direct {:.3} s ({:.0} MB/s) | sparkgate {:.3} s ({:.0} MB/s) | added {:+.1}% (medians {:.3} s vs {:.3} s: {:+.1}%)",
        args.fetch_size,
        args.large_rounds,
        dt.as_secs_f64(),
        mb / dt.as_secs_f64(),
        gt.as_secs_f64(),
        mb / gt.as_secs_f64(),
        (gt.as_secs_f64() / dt.as_secs_f64() - 1.0) * 100.0,
        dm.as_secs_f64(),
        gm.as_secs_f64(),
        (gm.as_secs_f64() / dm.as_secs_f64() - 1.0) * 100.0,
    );
    let dp = status_polls(direct, small_sql, args.polls).await;
    let gp = status_polls(gateway, small_sql, args.polls).await;
    println!(
        "status polls of a finished operation ({} polls): direct {:.1} us/poll | sparkgate {:.1} us/poll | ratio direct/sparkgate {:.2}x",
        args.polls,
        us(dp) / args.polls as f64,
        us(gp) / args.polls as f64,
        dp.as_secs_f64() / gp.as_secs_f64(),
    );
}

async fn gateway_to(backend: &str) -> Gateway {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.backend.address = backend.to_owned();
    Gateway::start(config).await.unwrap()
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "sparkgate proxy bench: {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let fake = FakeSts::new().rows(args.large_rows).start().await;
        let gw = gateway_to(&fake.addr.to_string()).await;
        compare(
            "in-process fake Spark Thrift Server (the gateway's own cost)",
            &fake.addr.to_string(),
            &gw.local_addr.to_string(),
            &args,
            "select 1",
            "select * from big",
        )
        .await;
        if let Some(real) = args.real.clone() {
            let gw = gateway_to(&real).await;
            let small = Args {
                small_iterations: args.small_iterations / 10,
                polls: args.polls / 4,
                ..args
            };
            let large_sql = format!(
                "select id, cast(id * 7 as string) as s from range({})",
                small.large_rows
            );
            compare(
                &format!("real Spark Thrift Server at {real}"),
                &real,
                &gw.local_addr.to_string(),
                &small,
                "select 1",
                &large_sql,
            )
            .await;
        }
    });
}
