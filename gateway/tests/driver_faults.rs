//! Wire tests of the gateway against a fake driver that misbehaves the ways real drivers do:
//! error statuses, cut connections, calls never answered, slow answers.
#![allow(clippy::disallowed_methods)] // tests may spawn freely: nothing outlives them

use std::time::{Duration, Instant};

use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::sasl::PlainCredentials;
use sparkgate::app::Gateway;
use sparkgate::config::Config;
use sparkgate::testing::{FakeSts, Fault, RunningFakeSts};

async fn gateway(sts: &RunningFakeSts, call_timeout: Duration) -> Gateway {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.backend.address = sts.addr.to_string();
    config.backend.connect_timeout = Duration::from_secs(2);
    config.backend.call_timeout = call_timeout;
    Gateway::start(config).await.unwrap()
}

async fn client(gw: &Gateway) -> Hs2Connection {
    let auth = ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: "alice".into(),
        password: "pw".into(),
    });
    Hs2Connection::connect(
        &gw.local_addr.to_string(),
        &auth,
        64 << 20,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
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

fn execute(session: &t::TSessionHandle) -> Hs2Request {
    Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
        session_handle: session.clone(),
        statement: "select 1".into(),
        conf_overlay: None,
        run_async: Some(true),
        query_timeout: None,
    })
}

fn info(session: &t::TSessionHandle) -> Hs2Request {
    Hs2Request::GetInfo(t::TGetInfoReq {
        session_handle: session.clone(),
        info_type: t::TGetInfoType::CLI_SERVER_NAME,
    })
}

fn error_text(response: &Hs2Response) -> String {
    let status = response.status();
    assert_eq!(
        status.status_code,
        t::TStatusCode::ERROR_STATUS,
        "{response:?}"
    );
    status.error_message.clone().unwrap_or_default()
}

/// Within a bound, whatever the driver does: the client is never left hanging.
async fn call(conn: &mut Hs2Connection, request: &Hs2Request) -> Hs2Response {
    tokio::time::timeout(Duration::from_secs(10), conn.call(request))
        .await
        .expect("the gateway answered in time")
        .expect("a reply")
}

#[tokio::test]
async fn a_driver_error_status_reaches_the_client_as_sent() {
    let sts = FakeSts::new()
        .fault(
            "ExecuteStatement",
            Fault::Error("Table or view not found: nope".into()),
        )
        .start()
        .await;
    let gw = gateway(&sts, Duration::from_secs(5)).await;
    let mut conn = client(&gw).await;
    let session = open(&mut conn).await;
    let response = call(&mut conn, &execute(&session)).await;
    assert_eq!(error_text(&response), "Table or view not found: nope");
    // An error status is an answer, not a broken driver: the session goes on.
    let response = call(&mut conn, &info(&session)).await;
    assert_eq!(
        response.status().status_code,
        t::TStatusCode::SUCCESS_STATUS
    );
}

#[tokio::test]
async fn a_cut_connection_reopens_the_session_with_a_clear_message() {
    let sts = FakeSts::new()
        .fault("ExecuteStatement", Fault::Cut)
        .start()
        .await;
    let gw = gateway(&sts, Duration::from_secs(5)).await;
    let mut conn = client(&gw).await;
    let session = open(&mut conn).await;
    // The session is opened again on the driver (its state replayed): the call says so...
    let text = error_text(&call(&mut conn, &execute(&session)).await);
    assert!(
        text.contains("connection to the driver at") && text.contains("retry it"),
        "{text}"
    );
    // ...and the session's next call works.
    let response = call(&mut conn, &info(&session)).await;
    assert_eq!(
        response.status().status_code,
        t::TStatusCode::SUCCESS_STATUS
    );
    // A new session works (on a new driver connection).
    let session = open(&mut conn).await;
    let response = call(&mut conn, &info(&session)).await;
    assert_eq!(
        response.status().status_code,
        t::TStatusCode::SUCCESS_STATUS
    );
}

#[tokio::test]
async fn a_call_the_driver_never_answers_ends_at_the_call_timeout() {
    let sts = FakeSts::new().fault("GetInfo", Fault::Hang).start().await;
    let gw = gateway(&sts, Duration::from_millis(300)).await;
    let mut conn = client(&gw).await;
    let session = open(&mut conn).await;
    let started = Instant::now();
    let text = error_text(&call(&mut conn, &info(&session)).await);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(
        text.contains("did not answer") || text.contains("timed out") || text.contains("within"),
        "{text}"
    );
}

/// A driver silent on OpenSession holds a new session for `backend.session_call_timeout`, not
/// for the (much longer) `call_timeout`.
#[tokio::test]
async fn open_session_to_a_silent_driver_ends_at_its_own_deadline() {
    let sts = FakeSts::new()
        .fault("OpenSession", Fault::Hang)
        .start()
        .await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.backend.address = sts.addr.to_string();
    config.backend.call_timeout = Duration::from_secs(300);
    config.backend.session_call_timeout = Duration::from_millis(400);
    let gw = Gateway::start(config).await.unwrap();
    let mut conn = client(&gw).await;
    let request = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("alice".into()),
        password: None,
        configuration: None,
    });
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(20), conn.call(&request))
        .await
        .expect("answered before call_timeout")
        .unwrap();
    let took = started.elapsed();
    let text = error_text(&response);
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(text.contains("session_call_timeout"), "{text}");
}

#[tokio::test]
async fn a_slow_call_does_not_hold_up_other_sessions_on_the_driver() {
    let sts = FakeSts::new()
        .fault("ExecuteStatement", Fault::Latency(Duration::from_secs(3)))
        .start()
        .await;
    let gw = gateway(&sts, Duration::from_secs(5)).await;
    let mut slow = client(&gw).await;
    let mut quick = client(&gw).await;
    let slow_session = open(&mut slow).await;
    let quick_session = open(&mut quick).await;
    let slow_call = tokio::spawn(async move {
        let response = call(&mut slow, &execute(&slow_session)).await;
        (response, slow)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = call(&mut quick, &info(&quick_session)).await;
    assert_eq!(
        response.status().status_code,
        t::TStatusCode::SUCCESS_STATUS
    );
    assert!(
        !slow_call.is_finished(),
        "GetInfo was answered only after another session's slow call"
    );
    let (response, _slow) = slow_call.await.unwrap();
    assert_eq!(
        response.status().status_code,
        t::TStatusCode::SUCCESS_STATUS
    );
}
