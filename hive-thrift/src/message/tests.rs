use super::*;

fn sample_request() -> Hs2Request {
    Hs2Request::CloseSession(t::TCloseSessionReq {
        session_handle: t::TSessionHandle {
            session_id: t::THandleIdentifier {
                guid: vec![1; 16],
                secret: vec![2; 16],
            },
        },
    })
}

#[test]
fn call_round_trips_through_header_and_typed_request() {
    let request = sample_request();
    let mut msg = Vec::new();
    request.encode_call(77, &mut msg);
    validate_lengths(&msg).unwrap();
    let header = MessageHeader::parse(&msg).unwrap();
    assert_eq!(header.name, "CloseSession");
    assert_eq!(header.kind, MessageKind::Call);
    assert_eq!(header.seqid, 77);
    let decoded = Hs2Request::decode(&header.name, &msg[header.body_offset..]).unwrap();
    assert_eq!(decoded, Some(request));
}

#[test]
fn unknown_method_decodes_to_none() {
    let mut msg = Vec::new();
    sample_request().encode_call(1, &mut msg);
    let header = MessageHeader::parse(&msg).unwrap();
    assert_eq!(
        Hs2Request::decode("GetLog", &msg[header.body_offset..]).unwrap(),
        None
    );
}

#[test]
fn reply_header_locates_its_seqid() {
    let mut msg = Vec::new();
    encode_reply(
        "CloseSession",
        5,
        &t::TCloseSessionResp {
            status: success_status(),
        },
        &mut msg,
    );
    // Pass-through replies are re-framed with the client's seqid written at seqid_offset.
    let header = MessageHeader::parse(&msg).unwrap();
    let at = header.seqid_offset;
    assert_eq!(&msg[at..at + 4], &5i32.to_be_bytes());
    msg[at..at + 4].copy_from_slice(&9000i32.to_be_bytes());
    let again = MessageHeader::parse(&msg).unwrap();
    assert_eq!(again.seqid, 9000);
    assert_eq!(again.kind, MessageKind::Reply);
    let resp: t::TCloseSessionResp = decode_reply(&msg).unwrap();
    assert_eq!(resp.status, success_status());
}

#[test]
fn application_exception_is_decoded_as_error() {
    let mut msg = Vec::new();
    encode_application_exception(
        "GetLog",
        3,
        UNKNOWN_METHOD,
        "Invalid method name: 'GetLog'",
        &mut msg,
    );
    let header = MessageHeader::parse(&msg).unwrap();
    assert_eq!(header.kind, MessageKind::Exception);
    let err = decode_reply::<t::TCloseSessionResp>(&msg).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Invalid method name: 'GetLog'"), "{text}");
    assert!(text.contains("UnknownMethod"), "{text}");
}

#[test]
fn truncated_or_lying_messages_fail_validation() {
    let mut msg = Vec::new();
    sample_request().encode_call(1, &mut msg);
    assert!(validate_lengths(&msg[..msg.len() - 1]).is_err());
    // Claim a 1 GiB guid inside a small message: refused before the runtime allocates.
    // The secret's length field: before 16 secret bytes and the four closing STOPs.
    let at = msg.len() - 4 - 16 - 4;
    msg[at..at + 4].copy_from_slice(&(1i32 << 30).to_be_bytes());
    assert!(validate_lengths(&msg).is_err());
}

#[test]
fn header_parse_rejects_garbage() {
    assert!(MessageHeader::parse(b"").is_err());
    assert!(MessageHeader::parse(&[0x80, 0x01, 0, 1, 0, 0, 0, 200]).is_err());
    assert!(MessageHeader::parse(&[0x80, 0x02, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
}

fn id(n: u8) -> t::THandleIdentifier {
    t::THandleIdentifier {
        guid: vec![n; 16],
        secret: vec![n; 16],
    }
}

fn operation(n: u8) -> t::TOperationHandle {
    t::TOperationHandle {
        operation_id: id(n),
        operation_type: t::TOperationType::EXECUTE_STATEMENT,
        has_result_set: true,
        modified_row_count: None,
    }
}

/// One call of each kind the table knows: none, session, starts, operation.
fn calls() -> Vec<Hs2Request> {
    let session = t::TSessionHandle { session_id: id(1) };
    vec![
        Hs2Request::OpenSession(t::TOpenSessionReq {
            client_protocol: t::TProtocolVersion(NEWEST_PROTOCOL.0 + 3),
            username: None,
            password: None,
            configuration: None,
        }),
        Hs2Request::GetInfo(t::TGetInfoReq {
            session_handle: session.clone(),
            info_type: t::TGetInfoType::CLI_SERVER_NAME,
        }),
        Hs2Request::ExecuteStatement(t::TExecuteStatementReq {
            session_handle: session.clone(),
            statement: "select 1".into(),
            conf_overlay: None,
            run_async: Some(true),
            query_timeout: None,
        }),
        Hs2Request::GetTables(t::TGetTablesReq {
            session_handle: session,
            catalog_name: None,
            schema_name: None,
            table_name: None,
            table_types: None,
        }),
        Hs2Request::FetchResults(t::TFetchResultsReq {
            operation_handle: operation(2),
            orientation: t::TFetchOrientation::FETCH_NEXT,
            max_rows: 10,
            fetch_type: None,
        }),
        Hs2Request::GetQueryId(t::TGetQueryIdReq {
            operation_handle: operation(3),
        }),
    ]
}

#[test]
fn the_table_says_which_handle_each_call_names() {
    let mut calls = calls();
    let named: Vec<(&str, bool, bool, bool)> = calls
        .iter_mut()
        .map(|c| {
            let session = c.session_handle_mut().is_some();
            let operation = c.operation_handle_mut().is_some();
            (c.method(), session, operation, c.starts_operation())
        })
        .collect();
    assert_eq!(
        named,
        [
            ("OpenSession", false, false, false),
            ("GetInfo", true, false, false),
            ("ExecuteStatement", true, false, true),
            ("GetTables", true, false, true),
            ("FetchResults", false, true, false),
            ("GetQueryId", false, true, false),
        ]
    );
    // The accessors reach the handle itself: a swap shows in the encoded call.
    let mut fetch = calls.remove(4);
    *fetch.operation_handle_mut().unwrap() = operation(9);
    let Hs2Request::FetchResults(req) = &fetch else {
        panic!("not a fetch");
    };
    assert_eq!(req.operation_handle.operation_id.guid, vec![9; 16]);
}

#[test]
fn error_replies_have_the_calls_type_and_decode_as_its_reply() {
    let status = t::TStatus {
        status_code: t::TStatusCode::ERROR_STATUS,
        error_message: Some("no".into()),
        ..success_status()
    };
    for call in calls() {
        let reply = Hs2Response::error_for(&call, status.clone());
        assert_eq!(reply.method(), call.method());
        let mut bytes = Vec::new();
        reply.encode_reply(5, &mut bytes);
        let decoded = Hs2Response::decode_for(&call, &bytes).unwrap();
        assert_eq!(decoded, reply, "{}", call.method());
        if !matches!(call, Hs2Request::GetQueryId(_)) {
            assert_eq!(decoded.status(), &status, "{}", call.method());
        }
        if let Hs2Response::OpenSession(open) = &decoded {
            assert_eq!(open.server_protocol_version, NEWEST_PROTOCOL);
        }
    }
}

#[test]
fn operation_starting_replies_expose_their_new_operation() {
    let mut reply = Hs2Response::ExecuteStatement(t::TExecuteStatementResp {
        status: success_status(),
        operation_handle: Some(operation(4)),
    });
    assert!(reply.new_operation_mut().unwrap().is_some());
    let mut close = Hs2Response::CloseSession(t::TCloseSessionResp {
        status: success_status(),
    });
    assert!(close.new_operation_mut().is_none());
}

/// Found by the `message` fuzz target: replies (from drivers) reached the Thrift runtime without
/// `validate_lengths`, which allocates what a length claims: a negative string length panicked
/// (capacity overflow), a list count of 2^31 aborted the process (allocation failure).
#[test]
fn replies_with_lying_lengths_are_errors_not_allocations() {
    let reply = |status: t::TStatus| {
        let mut msg = Vec::new();
        encode_reply(
            "CloseSession",
            1,
            &t::TCloseSessionResp { status },
            &mut msg,
        );
        msg
    };
    let find = |msg: &[u8], needle: &[u8]| {
        msg.windows(needle.len())
            .position(|w| w == needle)
            .expect("needle in message")
    };

    let mut msg = reply(t::TStatus {
        error_message: Some("boom".into()),
        ..success_status()
    });
    let at = find(&msg, b"boom") - 4;
    msg[at..at + 4].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(decode_reply::<t::TCloseSessionResp>(&msg).is_err());

    let mut msg = reply(t::TStatus {
        info_messages: Some(vec!["note".into()]),
        ..success_status()
    });
    // The list header: element type STRING, then the count, then the element's length.
    let at = find(&msg, b"note") - 4 - 4;
    assert_eq!(msg[at - 1], 11);
    msg[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(decode_reply::<t::TCloseSessionResp>(&msg).is_err());
    let request = Hs2Request::CloseSession(t::TCloseSessionReq {
        session_handle: t::TSessionHandle {
            session_id: t::THandleIdentifier {
                guid: vec![1; 16],
                secret: vec![2; 16],
            },
        },
    });
    assert!(Hs2Response::decode_for(&request, &msg).is_err());
    assert!(Hs2Response::decode("CloseSession", &msg).is_err());
}

/// Found by the `message` fuzz target: the generated code reads a field by its id whatever wire
/// type it carries, so a call that passes `validate_lengths` (it sees an i32) still handed the
/// runtime an unchecked length (it reads a binary): -1 panicked, 2^31-1 allocated 2 GiB.
#[test]
fn a_field_of_the_wrong_wire_type_cannot_claim_a_length() {
    for claimed in [-1i32, i32::MAX] {
        let mut msg = Vec::new();
        sample_request().encode_call(1, &mut msg);
        // The guid: field 1, binary, 16 bytes of 1. Make it field 1, i32, `claimed`.
        let mut guid = vec![11, 0, 1, 0, 0, 0, 16];
        guid.extend_from_slice(&[1; 16]);
        let at = msg.windows(guid.len()).position(|w| w == guid).unwrap();
        let mut field = vec![8, 0, 1];
        field.extend_from_slice(&claimed.to_be_bytes());
        msg.splice(at..at + guid.len(), field);
        validate_lengths(&msg).unwrap();
        let header = MessageHeader::parse(&msg).unwrap();
        let err = Hs2Request::decode(&header.name, &msg[header.body_offset..]).unwrap_err();
        assert!(matches!(err, DecodeError::Thrift(_)), "{err}");
    }
}

/// Found by the `message` fuzz target: the Thrift compiler's union decoding panicked
/// (`expect` on `None`) on a union holding one field it does not know; `scripts/regen.sh` now
/// makes that a protocol error.
#[test]
fn a_union_with_only_an_unknown_field_is_an_error() {
    let mut msg = Vec::new();
    encode_reply(
        "GetInfo",
        1,
        &t::TGetInfoResp {
            status: success_status(),
            info_value: t::TGetInfoValue::StringValue("Spark SQL".into()),
        },
        &mut msg,
    );
    // The union's one field: id 1 (stringValue), binary. Give it an id no variant has.
    let mut field = vec![11, 0, 1, 0, 0, 0, 9];
    field.extend_from_slice(b"Spark SQL");
    let at = msg.windows(field.len()).position(|w| w == field).unwrap();
    msg[at + 1..at + 3].copy_from_slice(&99i16.to_be_bytes());
    let err = decode_reply::<t::TGetInfoResp>(&msg).unwrap_err();
    assert!(matches!(err, DecodeError::Thrift(_)), "{err}");
}
