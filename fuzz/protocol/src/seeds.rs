//! The seed corpus of the protocol targets: real calls, replies and SASL exchanges, built with
//! hive-thrift's own encoders. `cargo run --no-default-features --example gen_seeds` (in this
//! directory) writes them to `seeds/<target>/`.

use std::collections::BTreeMap;

use bytes::BytesMut;
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{
    encode_application_exception, success_status, Hs2Request, Hs2Response, MessageHeader,
    UNKNOWN_METHOD,
};
use hive_thrift::sasl::{encode_negotiation, PlainCredentials, SaslServer, SaslStatus};
use thrift::OrderedFloat;

/// One seed file: its name and bytes.
pub type Seed = (&'static str, Vec<u8>);
/// The same with a name made at run time.
pub type NamedSeed = (String, Vec<u8>);

fn handle(byte: u8) -> t::THandleIdentifier {
    t::THandleIdentifier {
        guid: vec![byte; 16],
        secret: vec![byte ^ 0xff; 16],
    }
}

fn session() -> t::TSessionHandle {
    t::TSessionHandle {
        session_id: handle(1),
    }
}

fn operation() -> t::TOperationHandle {
    t::TOperationHandle {
        operation_id: handle(2),
        operation_type: t::TOperationType::EXECUTE_STATEMENT,
        has_result_set: true,
        modified_row_count: None,
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn primitive(type_: t::TTypeId) -> t::TTypeDesc {
    t::TTypeDesc {
        types: vec![t::TTypeEntry::PrimitiveEntry(t::TPrimitiveTypeEntry {
            type_,
            type_qualifiers: None,
        })],
    }
}

fn column(name: &str, type_: t::TTypeId, position: i32) -> t::TColumnDesc {
    t::TColumnDesc {
        column_name: name.into(),
        type_desc: primitive(type_),
        position,
        comment: None,
    }
}

/// Calls as clients send them (beeline, PyHive), one per method that carries real content.
pub fn calls() -> Vec<(&'static str, Hs2Request)> {
    vec![
        (
            "open_session",
            Hs2Request::OpenSession(t::TOpenSessionReq {
                client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
                username: Some("alice".into()),
                password: Some("secret".into()),
                configuration: Some(map(&[
                    ("use:database", "default"),
                    (
                        "set:hiveconf:hive.server2.thrift.resultset.default.fetch.size",
                        "1000",
                    ),
                    ("sparkgate.tenant", "analytics"),
                ])),
            }),
        ),
        (
            "execute_statement",
            Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
                session_handle: session(),
                statement: "SELECT id, name, score, ok FROM t WHERE id < 10".into(),
                conf_overlay: Some(map(&[("spark.sql.shuffle.partitions", "4")])),
                run_async: Some(true),
                query_timeout: Some(0),
            }),
        ),
        (
            "get_operation_status",
            Hs2Request::GetOperationStatus(t::TGetOperationStatusReq {
                operation_handle: operation(),
                get_progress_update: Some(false),
            }),
        ),
        (
            "fetch_results",
            Hs2Request::FetchResults(t::TFetchResultsReq {
                operation_handle: operation(),
                orientation: t::TFetchOrientation::FETCH_NEXT,
                max_rows: 1000,
                fetch_type: Some(0),
            }),
        ),
        (
            "get_info",
            Hs2Request::GetInfo(t::TGetInfoReq {
                session_handle: session(),
                info_type: t::TGetInfoType::CLI_DBMS_NAME,
            }),
        ),
        (
            "get_tables",
            Hs2Request::GetTables(t::TGetTablesReq {
                session_handle: session(),
                catalog_name: None,
                schema_name: Some("default".into()),
                table_name: Some("%".into()),
                table_types: Some(vec!["TABLE".into(), "VIEW".into()]),
            }),
        ),
        (
            "close_operation",
            Hs2Request::CloseOperation(t::TCloseOperationReq {
                operation_handle: operation(),
            }),
        ),
        (
            "close_session",
            Hs2Request::CloseSession(t::TCloseSessionReq {
                session_handle: session(),
            }),
        ),
    ]
}

/// Replies as a Spark Thrift Server sends them.
pub fn replies() -> Vec<(&'static str, Hs2Response)> {
    let ok = success_status;
    vec![
        (
            "open_session",
            Hs2Response::OpenSession(t::TOpenSessionResp {
                status: ok(),
                server_protocol_version: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
                session_handle: Some(session()),
                configuration: Some(map(&[("use:database", "default")])),
            }),
        ),
        (
            "execute_statement",
            Hs2Response::ExecuteStatement(t::TExecuteStatementResp {
                status: ok(),
                operation_handle: Some(operation()),
            }),
        ),
        (
            "execute_statement_error",
            Hs2Response::ExecuteStatement(t::TExecuteStatementResp {
                status: t::TStatus {
                    status_code: t::TStatusCode::ERROR_STATUS,
                    info_messages: Some(vec!["*org.apache.spark.sql.AnalysisException:0:0".into()]),
                    sql_state: Some("42P01".into()),
                    error_code: Some(0),
                    error_message: Some("[TABLE_OR_VIEW_NOT_FOUND] t".into()),
                },
                operation_handle: None,
            }),
        ),
        (
            "get_operation_status",
            Hs2Response::GetOperationStatus(t::TGetOperationStatusResp {
                status: ok(),
                operation_state: Some(t::TOperationState::FINISHED_STATE),
                sql_state: None,
                error_code: None,
                error_message: None,
                task_status: None,
                operation_started: Some(1_750_000_000_000),
                operation_completed: Some(1_750_000_000_250),
                has_result_set: Some(true),
                progress_update_response: None,
                num_modified_rows: None,
            }),
        ),
        (
            "get_result_set_metadata",
            Hs2Response::GetResultSetMetadata(t::TGetResultSetMetadataResp {
                status: ok(),
                schema: Some(t::TTableSchema {
                    columns: vec![
                        column("id", t::TTypeId::INT_TYPE, 1),
                        column("name", t::TTypeId::STRING_TYPE, 2),
                        column("score", t::TTypeId::DOUBLE_TYPE, 3),
                        column("ok", t::TTypeId::BOOLEAN_TYPE, 4),
                    ],
                }),
            }),
        ),
        (
            "fetch_results",
            Hs2Response::FetchResults(t::TFetchResultsResp {
                status: ok(),
                has_more_rows: Some(false),
                results: Some(t::TRowSet {
                    start_row_offset: 0,
                    rows: vec![],
                    columns: Some(vec![
                        t::TColumn::I32Val(t::TI32Column {
                            values: vec![1, 2, 3],
                            nulls: vec![],
                        }),
                        t::TColumn::StringVal(t::TStringColumn {
                            values: vec!["a".into(), "".into(), "c".into()],
                            nulls: vec![0b010],
                        }),
                        t::TColumn::DoubleVal(t::TDoubleColumn {
                            values: vec![
                                OrderedFloat(0.5),
                                OrderedFloat(-1.0),
                                OrderedFloat(1e300),
                            ],
                            nulls: vec![],
                        }),
                        t::TColumn::BoolVal(t::TBoolColumn {
                            values: vec![true, false, true],
                            nulls: vec![],
                        }),
                    ]),
                    binary_columns: None,
                    column_count: Some(4),
                }),
            }),
        ),
        (
            "get_info",
            Hs2Response::GetInfo(t::TGetInfoResp {
                status: ok(),
                info_value: t::TGetInfoValue::StringValue("Spark SQL".into()),
            }),
        ),
        (
            "close_session",
            Hs2Response::CloseSession(t::TCloseSessionResp { status: ok() }),
        ),
    ]
}

/// Every call and reply as an unframed binary-protocol message, plus an application exception
/// and a call in the old non-strict header form.
pub fn messages() -> Vec<NamedSeed> {
    let mut out = Vec::new();
    for (seqid, (name, call)) in (1..).zip(calls()) {
        let mut msg = Vec::new();
        call.encode_call(seqid, &mut msg);
        out.push((format!("call_{name}"), msg));
    }
    for (seqid, (name, reply)) in (1..).zip(replies()) {
        let mut msg = Vec::new();
        reply.encode_reply(seqid, &mut msg);
        out.push((format!("reply_{name}"), msg));
    }
    let mut exception = Vec::new();
    encode_application_exception(
        "GetLog",
        9,
        UNKNOWN_METHOD,
        "Invalid method name: 'GetLog'",
        &mut exception,
    );
    out.push(("exception_get_log".into(), exception));
    // Old form: name length, name, message type, seqid, then the same body.
    let (_, close) = calls().pop().expect("close_session is last");
    let mut strict = Vec::new();
    close.encode_call(3, &mut strict);
    let header = MessageHeader::parse(&strict).expect("own encoding");
    let mut old = Vec::new();
    old.extend_from_slice(&(header.name.len() as u32).to_be_bytes());
    old.extend_from_slice(header.name.as_bytes());
    old.push(1); // call
    old.extend_from_slice(&3i32.to_be_bytes());
    old.extend_from_slice(&strict[header.body_offset..]);
    out.push(("call_close_session_non_strict".into(), old));
    out
}

fn framed(messages: &[&[u8]]) -> Vec<u8> {
    let codec = MessageCodec::new(Framing::Sasl, usize::MAX);
    let mut out = BytesMut::new();
    for m in messages {
        codec.encode_message(m, &mut out).expect("no limit");
    }
    out.to_vec()
}

/// SASL transport streams: what clients send (negotiation, then frames) and what servers answer.
pub fn sasl() -> Vec<Seed> {
    let creds = PlainCredentials {
        authzid: String::new(),
        user: "alice".into(),
        password: "secret".into(),
    };
    let messages = messages();
    let find = |n: &str| {
        messages
            .iter()
            .find(|(name, _)| name == n)
            .unwrap()
            .1
            .clone()
    };
    let mut client = BytesMut::new();
    encode_negotiation(SaslStatus::Start, b"PLAIN", &mut client);
    encode_negotiation(SaslStatus::Complete, &creds.encode(), &mut client);
    let mut with_calls = client.to_vec();
    with_calls.extend(framed(&[
        &find("call_open_session"),
        &find("call_execute_statement"),
    ]));

    let mut ok_status = BytesMut::new();
    encode_negotiation(SaslStatus::Start, b"PLAIN", &mut ok_status);
    let bob = PlainCredentials {
        authzid: "admin".into(),
        user: "bob".into(),
        password: "hunter2".into(),
    };
    encode_negotiation(SaslStatus::Ok, &bob.encode(), &mut ok_status);

    let mut gssapi = BytesMut::new();
    encode_negotiation(SaslStatus::Start, b"GSSAPI", &mut gssapi);

    let mut accept = BytesMut::new();
    SaslServer::accept(&mut accept);
    let mut refuse = BytesMut::new();
    SaslServer::refuse("authentication failed for user alice", &mut refuse);

    vec![
        ("client_plain_then_calls", with_calls),
        ("client_plain_ok_status", ok_status.to_vec()),
        ("client_gssapi", gssapi.to_vec()),
        ("plain_payload", creds.encode()),
        ("server_accept", accept.to_vec()),
        ("server_refuse", refuse.to_vec()),
    ]
}

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<NamedSeed>)> {
    let sasl = sasl().into_iter().map(|(n, b)| (n.to_owned(), b)).collect();
    vec![
        ("scan", messages()),
        ("message", messages()),
        ("sasl", sasl),
    ]
}
