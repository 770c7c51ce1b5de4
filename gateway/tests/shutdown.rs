//! The one bounded shutdown path, on the real binary: SIGTERM while a synchronous query runs
//! and sessions sit on a driver that never answers CloseSession.
#![allow(clippy::disallowed_methods)] // tests may spawn freely: nothing outlives them

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::sasl::PlainCredentials;
use sparkgate::testing::{FakeSts, Fault};

/// server.shutdown_grace in the test's config.
const GRACE: Duration = Duration::from_secs(1);
/// server.shutdown_close_timeout in the test's config.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connect(port: u16) -> Hs2Connection {
    let auth = ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: "alice".into(),
        password: "pw".into(),
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Hs2Connection::connect(
            &format!("127.0.0.1:{port}"),
            &auth,
            1 << 20,
            Duration::from_secs(2),
        )
        .await
        {
            Ok(conn) => return conn,
            Err(e) if Instant::now() > deadline => panic!("sparkgate did not listen: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn open(conn: &mut Hs2Connection) -> t::TSessionHandle {
    let req = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("alice".into()),
        password: None,
        configuration: None,
    });
    match conn.call(&req).await.unwrap() {
        Hs2Response::OpenSession(r) => r.session_handle.expect("a session"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sigterm_with_a_long_query_and_a_stuck_driver_exits_within_the_bound() {
    let sts = FakeSts::new()
        .fault("ExecuteStatement", Fault::Latency(Duration::from_secs(600)))
        .fault("CloseSession", Fault::Hang)
        .start()
        .await;
    let dir = std::env::temp_dir().join(format!("sparkgate-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let config = dir.join("sparkgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\nshutdown_grace = \"{}s\"\n\
             shutdown_close_timeout = \"{}s\"\n\n[backend]\naddress = \"{}\"\n",
            GRACE.as_secs(),
            CLOSE_TIMEOUT.as_secs(),
            sts.addr,
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("sparkgate.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sparkgate"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();

    // Five sessions on one connection, and a synchronous query on another.
    let mut idle = connect(port).await;
    for _ in 0..5 {
        open(&mut idle).await;
    }
    let mut busy = connect(port).await;
    let session = open(&mut busy).await;
    let query = tokio::spawn(async move {
        let req = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
            session_handle: session,
            statement: "select sleep(600)".into(),
            conf_overlay: None,
            run_async: Some(false),
            query_timeout: None,
        });
        busy.call(&req).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!query.is_finished(), "the query is still running");

    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("sparkgate did not exit within 60 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(dir.join("sparkgate.log")).unwrap();
    // The documented bound, without pools or a Lease: the grace period, then the close timeout
    // twice (cut connections close their sessions all at once, then leftovers), then tasks.
    let bound = GRACE + CLOSE_TIMEOUT * 2 + Duration::from_secs(5);
    println!("[shutdown] SIGTERM to exit: {took:.1?} (bound {bound:?})");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(took < bound, "took {took:?}, bound {bound:?}\n{log}");
    assert!(
        took >= GRACE,
        "connections got their grace period: {took:?}"
    );
    assert!(log.contains("shutdown complete"), "{log}");

    // The cut query's client got an answer or a closed connection, not a hang.
    let outcome = tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .expect("the query's client was not left hanging")
        .unwrap();
    if let Ok(reply) = outcome {
        assert_eq!(reply.status().status_code, t::TStatusCode::ERROR_STATUS);
    }
    // Nothing of sparkgate's is left on the driver.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sts.stats.open_connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sts.stats.open_connections.load(Ordering::Relaxed), 0);
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}
