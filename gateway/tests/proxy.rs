//! Wire tests of the gateway against the in-process fake Spark Thrift Server.
//! (End-to-end tests with a real Spark Thrift Server and real clients live in `integration/`.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{self, Hs2Request, Hs2Response, MessageKind};
use hive_thrift::sasl::PlainCredentials;
use sparkgate::app::Gateway;
use sparkgate::config::{Config, FrontendTransport};
use sparkgate::session::FETCH_SIZE_KEY;
use sparkgate::testing::{FakeSts, RunningFakeSts};

const MAX: usize = 64 << 20;

fn plain(user: &str) -> ClientAuth {
    ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: user.into(),
        password: "pw".into(),
    })
}

async fn gateway_for(backend: &str, transport: FrontendTransport) -> Gateway {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.transport = transport;
    config.backend.address = backend.to_owned();
    config.backend.connect_timeout = Duration::from_secs(2);
    Gateway::start(config).await.unwrap()
}

async fn setup(rows: u64) -> (RunningFakeSts, Gateway, Hs2Connection) {
    let sts = FakeSts::new().rows(rows).start().await;
    let gw = gateway_for(&sts.addr.to_string(), FrontendTransport::Sasl).await;
    let conn = connect(&gw, plain("alice")).await;
    (sts, gw, conn)
}

async fn connect(gw: &Gateway, auth: ClientAuth) -> Hs2Connection {
    Hs2Connection::connect(
        &gw.local_addr.to_string(),
        &auth,
        MAX,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

fn open_req(version: t::TProtocolVersion) -> Hs2Request {
    Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: version,
        username: Some("alice".into()),
        password: None,
        configuration: None,
    })
}

async fn open(conn: &mut Hs2Connection) -> t::TOpenSessionResp {
    match conn
        .call(&open_req(
            t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        ))
        .await
        .unwrap()
    {
        Hs2Response::OpenSession(r) => r,
        other => panic!("{other:?}"),
    }
}

async fn execute(conn: &mut Hs2Connection, session: &t::TSessionHandle) -> t::TOperationHandle {
    let req = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
        session_handle: session.clone(),
        statement: "select 1".into(),
        conf_overlay: None,
        run_async: Some(true),
        query_timeout: None,
    });
    match conn.call(&req).await.unwrap() {
        Hs2Response::ExecuteStatement(r) => r.operation_handle.expect("operation handle"),
        other => panic!("{other:?}"),
    }
}

fn status_req(op: &t::TOperationHandle) -> Hs2Request {
    Hs2Request::GetOperationStatus(t::TGetOperationStatusReq {
        operation_handle: op.clone(),
        get_progress_update: None,
    })
}

fn fetch_req(op: &t::TOperationHandle, max_rows: i64) -> Hs2Request {
    Hs2Request::FetchResults(t::TFetchResultsReq {
        operation_handle: op.clone(),
        orientation: t::TFetchOrientation::FETCH_NEXT,
        max_rows,
        fetch_type: None,
    })
}

/// Fetches until an empty batch; returns the `id` column of each batch.
async fn fetch_all(
    conn: &mut Hs2Connection,
    op: &t::TOperationHandle,
    max_rows: i64,
) -> Vec<Vec<i64>> {
    let mut batches = Vec::new();
    loop {
        let Hs2Response::FetchResults(resp) = conn.call(&fetch_req(op, max_rows)).await.unwrap()
        else {
            panic!("not a FetchResults reply")
        };
        let columns = resp.results.unwrap().columns.unwrap();
        let t::TColumn::I64Val(ids) = &columns[0] else {
            panic!("id column is not bigint")
        };
        if ids.values.is_empty() {
            return batches;
        }
        batches.push(ids.values.clone());
    }
}

fn is_error(status: &t::TStatus) -> bool {
    status.status_code == t::TStatusCode::ERROR_STATUS
}

#[tokio::test]
async fn open_session_mints_handles_and_offers_fetch_size() {
    let (sts, _gw, mut conn) = setup(10).await;
    let resp = open(&mut conn).await;
    assert_eq!(resp.status.status_code, t::TStatusCode::SUCCESS_STATUS);
    assert_eq!(
        resp.server_protocol_version,
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        "min(client V10, backend V10)"
    );
    assert_eq!(
        resp.configuration
            .unwrap()
            .get(FETCH_SIZE_KEY)
            .map(String::as_str),
        Some("10000")
    );
    assert_eq!(sts.stats.open_sessions.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn protocol_version_is_what_the_client_asked_when_lower() {
    let (_sts, _gw, mut conn) = setup(10).await;
    let v6 = t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6;
    let Hs2Response::OpenSession(resp) = conn.call(&open_req(v6)).await.unwrap() else {
        panic!()
    };
    assert_eq!(resp.server_protocol_version, v6, "PyHive insists on V6");
}

#[tokio::test]
async fn finished_operation_status_is_answered_by_the_gateway() {
    let (sts, _gw, mut conn) = setup(10).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    let op = execute(&mut conn, &session).await;
    for _ in 0..100 {
        let Hs2Response::GetOperationStatus(resp) = conn.call(&status_req(&op)).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(
            resp.operation_state,
            Some(t::TOperationState::FINISHED_STATE)
        );
    }
    assert_eq!(
        sts.stats.status_calls.load(Ordering::Relaxed),
        1,
        "only the first poll reaches the driver"
    );
}

#[tokio::test]
async fn fetch_results_pass_through_all_rows() {
    let (_sts, _gw, mut conn) = setup(25_000).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    let op = execute(&mut conn, &session).await;
    let ids: Vec<i64> = fetch_all(&mut conn, &op, 10_000).await.concat();
    let (rows, sum) = (ids.len(), ids.iter().sum::<i64>());
    assert_eq!(rows, 25_000);
    assert_eq!(sum, (0..25_000i64).sum::<i64>());
}

#[tokio::test]
async fn legacy_get_log_is_unknown_method() {
    let (_sts, _gw, mut conn) = setup(10).await;
    let mut call = Vec::new();
    // GetLog's args are {1: TGetLogReq}; any struct body will do, the method is what matters.
    message::encode_reply(
        "GetLog",
        42,
        &t::TCloseSessionResp {
            status: message::success_status(),
        },
        &mut call,
    );
    call[3] = MessageKind::Call as u8;
    let (reply, header) = conn.call_encoded(&call).await.unwrap();
    assert_eq!(header.kind, MessageKind::Exception);
    let err = message::decode_reply::<t::TCloseSessionResp>(&reply).unwrap_err();
    assert!(err.to_string().contains("UnknownMethod"), "{err}");
    // The connection is still usable afterwards.
    open(&mut conn).await;
}

#[tokio::test]
async fn handles_from_another_connection_are_refused() {
    let (_sts, gw, mut alice) = setup(10).await;
    let session = open(&mut alice).await.session_handle.unwrap();
    let op = execute(&mut alice, &session).await;
    let mut mallory = connect(&gw, plain("mallory")).await;
    open(&mut mallory).await;
    let resp = mallory.call(&fetch_req(&op, 10)).await.unwrap();
    assert!(is_error(resp.status()), "{resp:?}");
    assert!(resp
        .status()
        .error_message
        .as_deref()
        .unwrap()
        .contains("Invalid operation handle"));
    let close = Hs2Request::CloseSession(t::TCloseSessionReq {
        session_handle: session.clone(),
    });
    assert!(is_error(mallory.call(&close).await.unwrap().status()));
    // The owner still has both.
    assert!(!is_error(
        alice.call(&fetch_req(&op, 10)).await.unwrap().status()
    ));
    assert!(!is_error(alice.call(&close).await.unwrap().status()));
}

#[tokio::test]
async fn disconnect_closes_backend_sessions() {
    let (sts, _gw, mut conn) = setup(10).await;
    open(&mut conn).await;
    open(&mut conn).await;
    drop(conn);
    for _ in 0..100 {
        if sts.stats.closed_sessions.load(Ordering::Relaxed) == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend sessions were not closed after the client left");
}

#[tokio::test]
async fn unreachable_backend_gives_an_actionable_error() {
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = gateway_for(&closed_port.to_string(), FrontendTransport::Sasl).await;
    let mut conn = connect(&gw, plain("alice")).await;
    let resp = open(&mut conn).await;
    assert!(is_error(&resp.status));
    let text = resp.status.error_message.unwrap();
    assert!(
        text.contains("cannot reach the Spark Thrift Server"),
        "{text}"
    );
    assert!(text.contains(&closed_port.to_string()), "{text}");
    assert_eq!(resp.status.sql_state.as_deref(), Some("08001"));
}

#[tokio::test]
async fn backend_dying_mid_session_gives_errors_not_hangs() {
    let (sts, _gw, mut conn) = setup(10).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    drop(sts);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let req = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
        session_handle: session,
        statement: "select 1".into(),
        conf_overlay: None,
        run_async: Some(true),
        query_timeout: None,
    });
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.call(&req))
        .await
        .unwrap()
        .unwrap();
    assert!(is_error(resp.status()), "{resp:?}");
    let text = resp.status().error_message.clone().unwrap();
    // Its only backend is gone: the session cannot move to another driver, and ends.
    assert!(
        text.contains("was lost and the session could not move to another driver")
            && text.contains("cannot reach the Spark Thrift Server")
            && text.contains("open a new one"),
        "{text}"
    );
    // Later calls on the ended session are refused, at once.
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.call(&req))
        .await
        .unwrap()
        .unwrap();
    let text = resp.status().error_message.clone().unwrap();
    assert!(text.contains("Invalid session handle"), "{text}");
}

#[tokio::test]
async fn nosasl_frontend_to_sasl_backend() {
    let sts = FakeSts::new().rows(5).start().await;
    let gw = gateway_for(&sts.addr.to_string(), FrontendTransport::Nosasl).await;
    let mut conn = connect(&gw, ClientAuth::NoSasl).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    let op = execute(&mut conn, &session).await;
    let Hs2Response::FetchResults(resp) = conn.call(&fetch_req(&op, 100)).await.unwrap() else {
        panic!()
    };
    assert_eq!(resp.has_more_rows, Some(false));
}

#[tokio::test]
async fn too_many_sessions_is_a_clear_error() {
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.max_sessions_per_connection = 2;
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let mut conn = connect(&gw, plain("a")).await;
    open(&mut conn).await;
    open(&mut conn).await;
    let third = open(&mut conn).await;
    assert!(third
        .status
        .error_message
        .unwrap()
        .contains("max_sessions_per_connection"));
}

#[tokio::test]
async fn too_many_open_operations_is_a_clear_error_until_one_is_closed() {
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.max_operations_per_session = 3;
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let mut conn = connect(&gw, plain("a")).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(execute(&mut conn, &session).await);
    }
    let statement = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
        session_handle: session.clone(),
        statement: "select 1".into(),
        conf_overlay: None,
        run_async: Some(true),
        query_timeout: None,
    });
    let refused = conn.call(&statement).await.unwrap();
    assert!(is_error(refused.status()), "{refused:?}");
    let text = refused.status().error_message.clone().unwrap();
    assert!(text.contains("max_operations_per_session"), "{text}");
    // Metadata calls are operations too.
    let tables = Hs2Request::GetSchemas(t::TGetSchemasReq {
        session_handle: session.clone(),
        catalog_name: None,
        schema_name: None,
    });
    assert!(is_error(conn.call(&tables).await.unwrap().status()));
    let close = Hs2Request::CloseOperation(t::TCloseOperationReq {
        operation_handle: held.pop().unwrap(),
    });
    assert!(!is_error(conn.call(&close).await.unwrap().status()));
    execute(&mut conn, &session).await;
}

#[tokio::test]
async fn idle_sessions_are_closed_on_the_backend() {
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.idle_session_timeout = Duration::from_millis(300);
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let mut conn = connect(&gw, plain("a")).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    for _ in 0..100 {
        if sts.stats.closed_sessions.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        sts.stats.closed_sessions.load(Ordering::Relaxed),
        1,
        "idle session closed"
    );
    let req = Hs2Request::GetInfo(t::TGetInfoReq {
        session_handle: session,
        info_type: t::TGetInfoType::CLI_DBMS_NAME,
    });
    let resp = conn.call(&req).await.unwrap();
    assert!(
        is_error(resp.status()),
        "the expired session is refused: {resp:?}"
    );
}

#[tokio::test]
async fn shutdown_closes_backend_sessions_after_the_grace_period() {
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace = Duration::from_millis(200);
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let addr = gw.local_addr.to_string();
    let mut conn = connect(&gw, plain("a")).await;
    open(&mut conn).await;
    tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("shutdown ends");
    assert_eq!(sts.stats.closed_sessions.load(Ordering::Relaxed), 1);
    // The client's connection is closed, and no new one is accepted.
    assert!(conn
        .call(&open_req(
            t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10
        ))
        .await
        .is_err());
    assert!(
        Hs2Connection::connect(&addr, &plain("b"), MAX, Duration::from_secs(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn oversized_fetch_requests_are_lowered_to_the_limit() {
    let sts = FakeSts::new().rows(50).start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.max_fetch_rows = 20;
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let mut conn = connect(&gw, plain("a")).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    let op = execute(&mut conn, &session).await;
    let batches: Vec<usize> = fetch_all(&mut conn, &op, i64::MAX)
        .await
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(
        batches,
        vec![20, 20, 10],
        "every row arrives, in batches of at most the limit"
    );
}

#[tokio::test]
async fn unsafe_auth_setups_are_refused_at_startup() {
    let dir = std::env::temp_dir().join(format!("sparkgate-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.toml");
    sparkgate_auth::users_file::set_user(&users, "alice", "pw", &[]).unwrap();

    // NOSASL carries no password: it needs the `none` method.
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.server.transport = FrontendTransport::Nosasl;
    config.auth.methods = vec![sparkgate_auth::MethodConfig::UsersFile(
        sparkgate_auth::config::UsersFileConfig {
            path: users.clone(),
        },
    )];
    let err = Gateway::start(config).await.err().expect("refused");
    assert!(err.to_string().contains("nosasl"), "{err}");

    std::fs::remove_dir_all(dir).unwrap();
}

/// Each component's series are on the admin port, read when scraped: the session table's,
/// the static tenant's pool (its one server, ready), and the connection to that server.
#[tokio::test]
async fn metrics_come_from_each_component_at_scrape_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.admin.bind = Some("127.0.0.1:0".parse().unwrap());
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let admin = gw.admin_addr.unwrap();
    let scrape = || async move {
        let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    };
    let before = scrape().await;
    assert!(before.contains("sparkgate_sessions 0"), "{before}");
    assert!(
        before.contains(r#"sparkgate_drivers{tenant="default",state="ready"} 1"#),
        "{before}"
    );
    assert!(
        before.contains(r#"sparkgate_queue_waiting{tenant="default"} 0"#),
        "{before}"
    );
    assert!(
        before.contains(r#"sparkgate_driver_launches_total{tenant="default"} 0"#),
        "{before}"
    );
    let mut conn = connect(&gw, plain("alice")).await;
    let session = open(&mut conn).await.session_handle.unwrap();
    execute(&mut conn, &session).await;
    let after = scrape().await;
    assert!(after.contains("sparkgate_sessions 1"), "{after}");
    assert!(after.contains("sparkgate_operations 1"), "{after}");
    let link = format!(
        r#"sparkgate_backend_connections{{driver="{}"}} 1"#,
        sts.addr
    );
    assert!(after.contains(&link), "{after}");
    assert!(
        after.contains(r#"sparkgate_queue_wait_seconds_count{tenant="default"} 0"#),
        "{after}"
    );
}

/// `server.max_connections` holds for the process: with the binary listener's connections
/// using every slot, an HTTP client waits until one is given back.
#[tokio::test]
async fn max_connections_is_one_limit_over_both_listeners() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.http.bind = Some("127.0.0.1:0".parse().unwrap());
    config.server.max_connections = 2;
    config.backend.address = sts.addr.to_string();
    let gw = Gateway::start(config).await.unwrap();
    let first = connect(&gw, plain("a")).await;
    let _second = connect(&gw, plain("b")).await;
    let http = gw.http_addr.unwrap();
    let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
    stream
        .write_all(b"POST /cliservice HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut answer)).await;
    assert!(
        waited.is_err(),
        "served past the limit: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("served once a slot is free")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}
