#![allow(clippy::disallowed_methods)] // tests may spawn freely: nothing outlives them

use std::time::Duration;

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::testing::{FakeSts, Fault};

use super::*;

fn links(max_connections: usize) -> BackendLinks {
    BackendLinks::new(BackendConfig {
        max_connections_per_driver: max_connections,
        call_timeout: Duration::from_millis(500),
        execute_timeout: Duration::from_secs(30),
        ..BackendConfig::default()
    })
}

fn open_req() -> Hs2Request {
    Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("alice".into()),
        password: None,
        configuration: None,
    })
}

async fn open(links: &BackendLinks, addr: &str) -> t::TSessionHandle {
    let request = open_req();
    let (reply, _) = links.call(addr, &request).await.unwrap();
    match Hs2Response::decode_for(&request, &reply).unwrap() {
        Hs2Response::OpenSession(r) => r.session_handle.unwrap(),
        other => panic!("{other:?}"),
    }
}

fn info(session: &t::TSessionHandle) -> Hs2Request {
    Hs2Request::GetInfo(t::TGetInfoReq {
        session_handle: session.clone(),
        info_type: t::TGetInfoType::CLI_SERVER_NAME,
    })
}

fn open_count(links: &BackendLinks, addr: &str) -> usize {
    links
        .open_connections()
        .into_iter()
        .find(|(a, _)| a == addr)
        .map_or(0, |(_, n)| n)
}

#[tokio::test]
async fn sessions_share_one_connection_when_calls_do_not_overlap() {
    let sts = FakeSts::new().start().await;
    let addr = sts.addr.to_string();
    let links = links(4);
    for _ in 0..5 {
        let session = open(&links, &addr).await;
        links.call(&addr, &info(&session)).await.unwrap();
    }
    assert_eq!(open_count(&links, &addr), 1);
}

#[tokio::test]
async fn a_dropped_call_discards_its_connection_and_reports_its_session() {
    let sts = FakeSts::new().fault("GetInfo", Fault::Hang).start().await;
    let addr = sts.addr.to_string();
    let links = links(1);
    let session = open(&links, &addr).await;
    assert_eq!(open_count(&links, &addr), 1);
    // The client went away (or shutdown cut the call) while the driver had not answered.
    let request = info(&session);
    let cut = tokio::time::timeout(Duration::from_millis(100), links.call(&addr, &request));
    assert!(cut.await.is_err(), "the call was still waiting");
    assert_eq!(
        open_count(&links, &addr),
        0,
        "the half-used connection is counted closed"
    );
    let lost = links.take_lost_sessions();
    assert_eq!(lost, vec![(addr.clone(), session.session_id.guid.clone())]);
    // The pool goes on: the next call gets a new connection.
    let session = open(&links, &addr).await;
    assert_eq!(open_count(&links, &addr), 1);
    drop(session);
}

#[tokio::test]
async fn a_full_pool_refuses_within_the_call_deadline() {
    let sts = FakeSts::new()
        .fault("ExecuteStatement", Fault::Hang)
        .start()
        .await;
    let addr = sts.addr.to_string();
    let links = std::sync::Arc::new(links(1));
    let session = open(&links, &addr).await;
    // A synchronous statement holds the only connection (its deadline is execute_timeout).
    let busy = {
        let links = links.clone();
        let addr = addr.clone();
        let request = Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
            session_handle: session.clone(),
            statement: "select 1".into(),
            conf_overlay: None,
            run_async: Some(false),
            query_timeout: None,
        });
        tokio::spawn(async move { links.call(&addr, &request).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = links.call(&addr, &info(&session)).await;
    assert!(
        matches!(second, Err(GatewayError::BackendBusy { max: 1, .. })),
        "{second:?}"
    );
    busy.abort();
    let _ = busy.await;
    assert_eq!(
        open_count(&links, &addr),
        0,
        "the aborted call's connection is counted closed"
    );
}
