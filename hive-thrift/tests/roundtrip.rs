//! Wire tests for the generated TCLIService types.
//!
//! * Every request and response struct survives Thrift binary encode → decode unchanged, and
//!   re-encodes to the same bytes (`roundtrip!`). A check against the IDL keeps "every" honest.
//! * Enum values this code does not know (newer servers, newer clients) pass through.
//! * The field ids and wire types of the structs that matter most are pinned independently of
//!   the IDL, so an edit that would break interop with Spark, Hive JDBC or PyHive fails here.
//! * The same samples go through the gateway's message functions (`Hs2Request`/`Hs2Response`).

use std::any::type_name;
use std::collections::{BTreeMap, BTreeSet};

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{
    success_status, validate_lengths, Hs2Request, Hs2Response, MessageHeader,
};
use thrift::protocol::{
    TBinaryInputProtocol, TBinaryOutputProtocol, TInputProtocol, TSerializable, TType,
};
use thrift::OrderedFloat;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode<T: TSerializable>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prot = TBinaryOutputProtocol::new(&mut out, true);
    value
        .write_to_out_protocol(&mut prot)
        .expect("encoding into memory cannot fail");
    out
}

/// Decodes a `T` (the type of `_like`) and checks that it used every byte.
fn decode_like<T: TSerializable>(_like: &T, bytes: &[u8]) -> T {
    let mut rest = bytes;
    let mut prot = TBinaryInputProtocol::new(&mut rest, true);
    let value = T::read_from_in_protocol(&mut prot)
        .unwrap_or_else(|e| panic!("decoding {}: {e}", type_name::<T>()));
    assert!(
        rest.is_empty(),
        "{}: {} bytes left over",
        type_name::<T>(),
        rest.len()
    );
    value
}

/// The type's name without its module path, e.g. `TOpenSessionReq`.
fn short_name<T>(_: &T) -> &'static str {
    type_name::<T>().rsplit("::").next().unwrap()
}

/// Encodes, decodes, compares, re-encodes and compares bytes. Evaluates to the type's short
/// name and the encoding, for the coverage and layout checks.
macro_rules! roundtrip {
    ($value:expr) => {{
        let value = $value;
        let bytes = encode(&value);
        let decoded = decode_like(&value, &bytes);
        assert_eq!(
            decoded,
            value,
            "{} changed in a round trip",
            short_name(&value)
        );
        assert_eq!(
            encode(&decoded),
            bytes,
            "{} re-encodes differently",
            short_name(&value)
        );
        (short_name(&value), bytes)
    }};
}

/// Skips one value. Unlike `TInputProtocol::skip`, which reads strings as UTF-8 and so fails on
/// binary fields, this reads them as bytes.
fn skip(prot: &mut dyn TInputProtocol, ttype: TType) {
    match ttype {
        TType::String => drop(prot.read_bytes().unwrap()),
        TType::Struct => {
            prot.read_struct_begin().unwrap();
            loop {
                let field = prot.read_field_begin().unwrap();
                if field.field_type == TType::Stop {
                    break;
                }
                skip(prot, field.field_type);
                prot.read_field_end().unwrap();
            }
            prot.read_struct_end().unwrap();
        }
        TType::List => {
            let list = prot.read_list_begin().unwrap();
            for _ in 0..list.size {
                skip(prot, list.element_type);
            }
            prot.read_list_end().unwrap();
        }
        TType::Map => {
            let map = prot.read_map_begin().unwrap();
            for _ in 0..map.size {
                skip(prot, map.key_type.unwrap());
                skip(prot, map.value_type.unwrap());
            }
            prot.read_map_end().unwrap();
        }
        other => prot.skip(other).unwrap(),
    }
}

/// (field id, wire type) pairs.
type Layout = Vec<(i16, TType)>;

/// The top-level fields of an encoded struct, in wire order.
fn layout(bytes: &[u8]) -> Layout {
    let mut rest = bytes;
    let mut prot = TBinaryInputProtocol::new(&mut rest, true);
    prot.read_struct_begin().unwrap();
    let mut fields = Vec::new();
    loop {
        let field = prot.read_field_begin().unwrap();
        if field.field_type == TType::Stop {
            break;
        }
        fields.push((field.id.unwrap(), field.field_type));
        skip(&mut prot, field.field_type);
        prot.read_field_end().unwrap();
    }
    prot.read_struct_end().unwrap();
    assert!(rest.is_empty());
    fields
}

// ---------------------------------------------------------------------------------------------
// Sample values
// ---------------------------------------------------------------------------------------------

/// A handle id with a 16-byte guid and a 16-byte secret.
fn id(seed: u8) -> t::THandleIdentifier {
    t::THandleIdentifier {
        guid: (0..16).map(|i| seed.wrapping_add(i)).collect(),
        secret: (0..16)
            .map(|i| seed.wrapping_mul(31).wrapping_add(i))
            .collect(),
    }
}

fn session() -> t::TSessionHandle {
    t::TSessionHandle { session_id: id(1) }
}

fn operation() -> t::TOperationHandle {
    t::TOperationHandle {
        operation_id: id(2),
        operation_type: t::TOperationType::GET_COLUMNS,
        has_result_set: true,
        modified_row_count: Some(OrderedFloat(12.0)),
    }
}

fn conf() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("spark.sql.shuffle.partitions".into(), "8".into()),
        ("use:database".into(), "default".into()),
        ("set:hivevar:day".into(), "2024-01-01".into()),
        (
            "hive.server2.thrift.resultset.default.fetch.size".into(),
            "1000".into(),
        ),
    ])
}

fn error_status() -> t::TStatus {
    t::TStatus {
        status_code: t::TStatusCode::ERROR_STATUS,
        info_messages: Some(vec![
            "*org.apache.hive.service.cli.HiveSQLException:boom:12:11".into(),
            "org.apache.spark.sql.hive.thriftserver.SparkExecuteStatementOperation:run:1:0".into(),
        ]),
        sql_state: Some("42P01".into()),
        error_code: Some(10001),
        error_message: Some("[TABLE_OR_VIEW_NOT_FOUND] The table `x` cannot be found.".into()),
    }
}

fn ok() -> t::TStatus {
    success_status()
}

/// A columnar (V6+) row set: three rows, one column of each kind, some NULLs.
fn row_set() -> t::TRowSet {
    t::TRowSet {
        start_row_offset: 1000,
        // Row-wise data (V1..V5) may sit next to columns in a sample, not in practice.
        rows: vec![t::TRow {
            col_vals: vec![
                t::TColumnValue::BoolVal(t::TBoolValue { value: Some(true) }),
                t::TColumnValue::ByteVal(t::TByteValue { value: Some(-7) }),
                t::TColumnValue::I16Val(t::TI16Value { value: None }),
                t::TColumnValue::I32Val(t::TI32Value { value: Some(7) }),
                t::TColumnValue::I64Val(t::TI64Value { value: Some(-1) }),
                t::TColumnValue::DoubleVal(t::TDoubleValue {
                    value: Some(OrderedFloat(2.5)),
                }),
                t::TColumnValue::StringVal(t::TStringValue { value: None }),
            ],
        }],
        columns: Some(vec![
            t::TColumn::BoolVal(t::TBoolColumn {
                values: vec![true, false, true],
                nulls: vec![0b010],
            }),
            t::TColumn::ByteVal(t::TByteColumn {
                values: vec![i8::MIN, 0, i8::MAX],
                nulls: vec![],
            }),
            t::TColumn::I16Val(t::TI16Column {
                values: vec![i16::MIN, 0, i16::MAX],
                nulls: vec![0],
            }),
            t::TColumn::I32Val(t::TI32Column {
                values: vec![i32::MIN, 0, i32::MAX],
                nulls: vec![0b001],
            }),
            t::TColumn::I64Val(t::TI64Column {
                values: vec![i64::MIN, 0, i64::MAX],
                nulls: vec![0b100],
            }),
            t::TColumn::DoubleVal(t::TDoubleColumn {
                values: vec![OrderedFloat(-0.5), OrderedFloat(0.0), OrderedFloat(1e300)],
                nulls: vec![0],
            }),
            t::TColumn::StringVal(t::TStringColumn {
                values: vec!["héllo".into(), String::new(), "x".repeat(300)],
                nulls: vec![0b010],
            }),
            t::TColumn::BinaryVal(t::TBinaryColumn {
                values: vec![vec![0, 255], vec![], vec![1; 40]],
                nulls: vec![0b110],
            }),
        ]),
        binary_columns: Some(vec![9, 8, 7]),
        column_count: Some(8),
    }
}

/// A schema using every type entry kind, qualifiers, and a type id this code does not know.
fn schema() -> t::TTableSchema {
    let decimal = t::TTypeQualifiers {
        qualifiers: BTreeMap::from([
            ("precision".into(), t::TTypeQualifierValue::I32Value(10)),
            ("scale".into(), t::TTypeQualifierValue::I32Value(2)),
        ]),
    };
    let varchar = t::TTypeQualifiers {
        qualifiers: BTreeMap::from([(
            "characterMaximumLength".into(),
            t::TTypeQualifierValue::StringValue("255".into()),
        )]),
    };
    let primitive = |type_, type_qualifiers| {
        t::TTypeEntry::PrimitiveEntry(t::TPrimitiveTypeEntry {
            type_,
            type_qualifiers,
        })
    };
    let column = |column_name: &str, position, types, comment: Option<&str>| t::TColumnDesc {
        column_name: column_name.into(),
        type_desc: t::TTypeDesc { types },
        position,
        comment: comment.map(Into::into),
    };
    t::TTableSchema {
        columns: vec![
            column(
                "price",
                1,
                vec![primitive(t::TTypeId::DECIMAL_TYPE, Some(decimal))],
                Some("in euros"),
            ),
            column(
                "name",
                2,
                vec![primitive(t::TTypeId::VARCHAR_TYPE, Some(varchar))],
                None,
            ),
            column(
                "nested",
                3,
                vec![
                    t::TTypeEntry::ArrayEntry(t::TArrayTypeEntry { object_type_ptr: 1 }),
                    t::TTypeEntry::MapEntry(t::TMapTypeEntry {
                        key_type_ptr: 2,
                        value_type_ptr: 3,
                    }),
                    primitive(t::TTypeId::STRING_TYPE, None),
                    t::TTypeEntry::StructEntry(t::TStructTypeEntry {
                        name_to_type_ptr: BTreeMap::from([("a".into(), 4), ("b".into(), 5)]),
                    }),
                    t::TTypeEntry::UnionEntry(t::TUnionTypeEntry {
                        name_to_type_ptr: BTreeMap::from([("i".into(), 6)]),
                    }),
                    t::TTypeEntry::UserDefinedTypeEntry(t::TUserDefinedTypeEntry {
                        type_class_name: "com.example.Geo".into(),
                    }),
                    primitive(t::TTypeId::TIMESTAMPLOCALTZ_TYPE, None),
                ],
                None,
            ),
            column(
                "future",
                4,
                vec![primitive(t::TTypeId(1234), None)],
                Some("a type from a newer server"),
            ),
        ],
    }
}

fn progress() -> t::TProgressUpdateResp {
    t::TProgressUpdateResp {
        header_names: vec!["STAGES".into(), "STATUS".into(), "TOTAL".into()],
        rows: vec![
            vec!["Stage-1".into(), "RUNNING".into(), "8".into()],
            vec!["Stage-2".into(), "PENDING".into(), "2".into()],
        ],
        progressed_percentage: OrderedFloat(0.5),
        status: t::TJobExecutionStatus::IN_PROGRESS,
        footer_summary: "ELAPSED TIME: 3.2 s".into(),
        start_time: 1_700_000_000_000,
    }
}

// ---------------------------------------------------------------------------------------------
// Struct round trips
// ---------------------------------------------------------------------------------------------

/// Round-trips one sample of every request struct; returns names and encodings.
fn round_trip_requests() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        roundtrip!(t::TOpenSessionReq {
            client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V11,
            username: Some("alice".into()),
            password: Some("pässword".into()),
            configuration: Some(conf()),
        }),
        roundtrip!(t::TCloseSessionReq {
            session_handle: session(),
        }),
        roundtrip!(t::TSetClientInfoReq {
            session_handle: session(),
            configuration: Some(BTreeMap::from([(
                "ApplicationName".into(),
                "superset".into(),
            )])),
        }),
        roundtrip!(t::TGetInfoReq {
            session_handle: session(),
            info_type: t::TGetInfoType::CLI_ODBC_KEYWORDS,
        }),
        roundtrip!(t::TExecuteStatementReq {
            session_handle: session(),
            statement: "select 'ünïcode', 1".into(),
            conf_overlay: Some(conf()),
            run_async: Some(true),
            query_timeout: Some(30),
        }),
        roundtrip!(t::TGetTypeInfoReq {
            session_handle: session(),
        }),
        roundtrip!(t::TGetCatalogsReq {
            session_handle: session(),
        }),
        roundtrip!(t::TGetSchemasReq {
            session_handle: session(),
            catalog_name: Some("spark_catalog".into()),
            schema_name: Some("def%".into()),
        }),
        roundtrip!(t::TGetTablesReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("default".into()),
            table_name: Some("%".into()),
            table_types: Some(vec!["TABLE".into(), "VIEW".into()]),
        }),
        roundtrip!(t::TGetTableTypesReq {
            session_handle: session(),
        }),
        roundtrip!(t::TGetColumnsReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("default".into()),
            table_name: Some("t\\_1".into()),
            column_name: Some("%".into()),
        }),
        roundtrip!(t::TGetFunctionsReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("default".into()),
            function_name: "upper".into(),
        }),
        roundtrip!(t::TGetPrimaryKeysReq {
            session_handle: session(),
            catalog_name: Some("c".into()),
            schema_name: Some("s".into()),
            table_name: Some("t".into()),
        }),
        roundtrip!(t::TGetCrossReferenceReq {
            session_handle: session(),
            parent_catalog_name: Some("a".into()),
            parent_schema_name: Some("b".into()),
            parent_table_name: Some("c".into()),
            foreign_catalog_name: Some("d".into()),
            foreign_schema_name: Some("e".into()),
            foreign_table_name: Some("f".into()),
        }),
        roundtrip!(t::TGetOperationStatusReq {
            operation_handle: operation(),
            get_progress_update: Some(true),
        }),
        roundtrip!(t::TCancelOperationReq {
            operation_handle: operation(),
        }),
        roundtrip!(t::TCloseOperationReq {
            operation_handle: operation(),
        }),
        roundtrip!(t::TGetResultSetMetadataReq {
            operation_handle: operation(),
        }),
        roundtrip!(t::TFetchResultsReq {
            operation_handle: operation(),
            orientation: t::TFetchOrientation::FETCH_FIRST,
            max_rows: 10_000,
            fetch_type: Some(1),
        }),
        roundtrip!(t::TGetQueryIdReq {
            operation_handle: operation(),
        }),
        roundtrip!(t::TGetDelegationTokenReq {
            session_handle: session(),
            owner: "alice".into(),
            renewer: "hive".into(),
        }),
        roundtrip!(t::TCancelDelegationTokenReq {
            session_handle: session(),
            delegation_token: "tok-1".into(),
        }),
        roundtrip!(t::TRenewDelegationTokenReq {
            session_handle: session(),
            delegation_token: "tok-2".into(),
        }),
    ]
}

/// Round-trips one or more samples of every response struct; returns names and encodings
/// (the first sample of each struct comes first).
fn round_trip_responses() -> Vec<(&'static str, Vec<u8>)> {
    let op = || Some(operation());
    vec![
        roundtrip!(t::TOpenSessionResp {
            status: ok(),
            server_protocol_version: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6,
            session_handle: Some(session()),
            configuration: Some(conf()),
        }),
        roundtrip!(t::TOpenSessionResp {
            status: error_status(),
            server_protocol_version: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V1,
            session_handle: None,
            configuration: None,
        }),
        roundtrip!(t::TCloseSessionResp {
            status: error_status(),
        }),
        roundtrip!(t::TSetClientInfoResp { status: ok() }),
        roundtrip!(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::StringValue("Spark SQL".into()),
        }),
        roundtrip!(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::SmallIntValue(-2),
        }),
        roundtrip!(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::IntegerBitmask(0b1011),
        }),
        roundtrip!(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::IntegerFlag(1),
        }),
        roundtrip!(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::BinaryValue(7),
        }),
        roundtrip!(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::LenValue(1 << 40),
        }),
        roundtrip!(t::TExecuteStatementResp {
            status: ok(),
            operation_handle: Some(t::TOperationHandle {
                operation_id: id(9),
                operation_type: t::TOperationType::EXECUTE_STATEMENT,
                has_result_set: false,
                modified_row_count: None,
            }),
        }),
        roundtrip!(t::TExecuteStatementResp {
            status: error_status(),
            operation_handle: None,
        }),
        roundtrip!(t::TGetTypeInfoResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetCatalogsResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetSchemasResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetTablesResp {
            status: error_status(),
            operation_handle: None,
        }),
        roundtrip!(t::TGetTableTypesResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetColumnsResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetFunctionsResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetPrimaryKeysResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetCrossReferenceResp {
            status: ok(),
            operation_handle: op(),
        }),
        roundtrip!(t::TGetOperationStatusResp {
            status: ok(),
            operation_state: Some(t::TOperationState::ERROR_STATE),
            sql_state: Some("42000".into()),
            error_code: Some(17),
            error_message: Some("failed".into()),
            task_status: Some("[]".into()),
            operation_started: Some(1_700_000_000_000),
            operation_completed: Some(1_700_000_000_500),
            has_result_set: Some(false),
            progress_update_response: Some(progress()),
            num_modified_rows: Some(3),
        }),
        roundtrip!(t::TGetOperationStatusResp {
            status: ok(),
            operation_state: Some(t::TOperationState::RUNNING_STATE),
            sql_state: None,
            error_code: None,
            error_message: None,
            task_status: None,
            operation_started: None,
            operation_completed: None,
            has_result_set: None,
            progress_update_response: None,
            num_modified_rows: None,
        }),
        roundtrip!(t::TCancelOperationResp { status: ok() }),
        roundtrip!(t::TCloseOperationResp {
            status: t::TStatus {
                status_code: t::TStatusCode::INVALID_HANDLE_STATUS,
                info_messages: None,
                sql_state: Some("HY000".into()),
                error_code: None,
                error_message: Some("Invalid OperationHandle".into()),
            },
        }),
        roundtrip!(t::TGetResultSetMetadataResp {
            status: ok(),
            schema: Some(schema()),
        }),
        roundtrip!(t::TFetchResultsResp {
            status: ok(),
            has_more_rows: Some(true),
            results: Some(row_set()),
        }),
        roundtrip!(t::TFetchResultsResp {
            status: t::TStatus {
                status_code: t::TStatusCode::SUCCESS_WITH_INFO_STATUS,
                info_messages: Some(vec!["a warning".into()]),
                sql_state: None,
                error_code: None,
                error_message: None,
            },
            has_more_rows: Some(false),
            results: Some(t::TRowSet {
                start_row_offset: 0,
                rows: vec![],
                columns: Some(vec![]),
                binary_columns: None,
                column_count: None,
            }),
        }),
        roundtrip!(t::TGetQueryIdResp {
            query_id: "hive_20240101000000_0b0e7a2c-77f4-4f51-8c0e-6c9ab2d1f3e4".into(),
        }),
        roundtrip!(t::TGetDelegationTokenResp {
            status: ok(),
            delegation_token: Some("tok".into()),
        }),
        roundtrip!(t::TCancelDelegationTokenResp {
            status: error_status(),
        }),
        roundtrip!(t::TRenewDelegationTokenResp { status: ok() }),
    ]
}

/// The names of the IDL's request and response structs.
fn idl_messages() -> BTreeSet<&'static str> {
    include_str!("../thrift/TCLIService.thrift")
        .lines()
        .filter_map(|line| line.strip_prefix("struct "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|name| name.ends_with("Req") || name.ends_with("Resp"))
        .filter(|&name| name != "TProgressUpdateResp") // a part of TGetOperationStatusResp
        .collect()
}

#[test]
fn every_request_struct_round_trips() {
    let covered: BTreeSet<_> = round_trip_requests()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let expected: BTreeSet<_> = idl_messages()
        .into_iter()
        .filter(|name| name.ends_with("Req"))
        .collect();
    assert_eq!(expected.len(), 23, "one request per TCLIService method");
    assert_eq!(covered, expected);
}

#[test]
fn every_response_struct_round_trips() {
    let covered: BTreeSet<_> = round_trip_responses()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let expected: BTreeSet<_> = idl_messages()
        .into_iter()
        .filter(|name| name.ends_with("Resp"))
        .collect();
    assert_eq!(expected.len(), 23, "one response per TCLIService method");
    assert_eq!(covered, expected);
}

#[test]
fn parts_round_trip() {
    roundtrip!(row_set());
    roundtrip!(schema());
    roundtrip!(progress());
    roundtrip!(error_status());
    roundtrip!(operation());
}

// ---------------------------------------------------------------------------------------------
// Unknown enum values
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_enum_values_survive_decode_and_encode() {
    // Enums are newtypes over i32: any value decodes, and is written back unchanged.
    let request = t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion(99),
        username: None,
        password: None,
        configuration: None,
    };
    roundtrip!(request.clone());
    let decoded = decode_like(&request, &encode(&request));
    assert_eq!(decoded.client_protocol.0, 99);

    roundtrip!(t::TPrimitiveTypeEntry {
        type_: t::TTypeId(1234),
        type_qualifiers: None,
    });
    roundtrip!(t::TStatus {
        status_code: t::TStatusCode(42),
        info_messages: None,
        sql_state: None,
        error_code: None,
        error_message: None,
    });
    roundtrip!(t::TGetInfoReq {
        session_handle: session(),
        info_type: t::TGetInfoType(424_242),
    });
    roundtrip!(t::TOperationHandle {
        operation_id: id(3),
        operation_type: t::TOperationType(9),
        has_result_set: true,
        modified_row_count: None,
    });
    roundtrip!(t::TFetchResultsReq {
        operation_handle: operation(),
        orientation: t::TFetchOrientation(-1),
        max_rows: 1,
        fetch_type: Some(2),
    });
    let mut status = progress();
    status.status = t::TJobExecutionStatus(5);
    roundtrip!(t::TGetOperationStatusResp {
        status: ok(),
        operation_state: Some(t::TOperationState(77)),
        sql_state: None,
        error_code: None,
        error_message: None,
        task_status: None,
        operation_started: None,
        operation_completed: None,
        has_result_set: None,
        progress_update_response: Some(status),
        num_modified_rows: None,
    });
}

#[test]
fn unknown_type_id_from_hand_written_bytes() {
    // TPrimitiveTypeEntry { 1: i32 type = 1234 }, as a peer would send it.
    let bytes = [
        8, // field type: i32
        0, 1, // field id: 1
        0, 0, 0x04, 0xd2, // 1234
        0,    // stop
    ];
    let entry = decode_like(
        &t::TPrimitiveTypeEntry {
            type_: t::TTypeId::INT_TYPE,
            type_qualifiers: None,
        },
        &bytes,
    );
    assert_eq!(entry.type_, t::TTypeId(1234));
    assert_eq!(encode(&entry), bytes);
}

#[test]
fn unknown_fields_are_skipped_but_binary_ones_must_be_utf8() {
    // A TCloseSessionResp from a newer peer with an extra field 99.
    let with_extra = |value: &[u8]| {
        let mut bytes = encode(&t::TCloseSessionResp { status: ok() });
        bytes.pop(); // the stop byte
        bytes.extend([11, 0, 99]); // field type string/binary, id 99
        bytes.extend(u32::try_from(value.len()).unwrap().to_be_bytes());
        bytes.extend(value);
        bytes.push(0);
        bytes
    };
    let like = t::TCloseSessionResp { status: ok() };
    let mut rest = &with_extra(b"text")[..];
    let decoded = t::TCloseSessionResp::read_from_in_protocol(&mut TBinaryInputProtocol::new(
        &mut rest, true,
    ));
    assert_eq!(decoded.unwrap(), like, "unknown fields are dropped");

    // thrift 0.17 skips unknown string/binary fields by reading them as UTF-8 strings, so
    // non-UTF-8 bytes in a field this IDL does not know fail the whole decode.
    let mut rest = &with_extra(&[0xff, 0xfe])[..];
    let decoded = t::TCloseSessionResp::read_from_in_protocol(&mut TBinaryInputProtocol::new(
        &mut rest, true,
    ));
    assert!(decoded.is_err(), "{decoded:?}");
}

// ---------------------------------------------------------------------------------------------
// Wire layout, pinned independently of the IDL
// ---------------------------------------------------------------------------------------------

#[test]
fn field_ids_and_wire_types_match_hive() {
    use TType::{Bool, Double, List, Map, Struct, I16, I32, I64};
    // `binary` travels as a string.
    const BIN: TType = TType::String;
    const STR: TType = TType::String;

    let mut request = first_samples(round_trip_requests());
    let mut response = first_samples(round_trip_responses());
    let cases: Vec<(&str, Vec<u8>, Layout)> = vec![
        (
            "THandleIdentifier",
            encode(&id(1)),
            vec![(1, BIN), (2, BIN)],
        ),
        (
            "TOperationHandle",
            encode(&operation()),
            vec![(1, Struct), (2, I32), (3, Bool), (4, Double)],
        ),
        (
            "TStatus",
            encode(&error_status()),
            vec![(1, I32), (2, List), (3, STR), (4, I32), (5, STR)],
        ),
        (
            "TRowSet",
            encode(&row_set()),
            vec![(1, I64), (2, List), (3, List), (4, BIN), (5, I32)],
        ),
        (
            "TColumnDesc",
            encode(&schema().columns[0]),
            vec![(1, STR), (2, Struct), (3, I32), (4, STR)],
        ),
        (
            "TProgressUpdateResp",
            encode(&progress()),
            vec![
                (1, List),
                (2, List),
                (3, Double),
                (4, I32),
                (5, STR),
                (6, I64),
            ],
        ),
        (
            "TOpenSessionReq",
            request.remove("TOpenSessionReq").unwrap(),
            vec![(1, I32), (2, STR), (3, STR), (4, Map)],
        ),
        (
            "TOpenSessionResp",
            response.remove("TOpenSessionResp").unwrap(),
            vec![(1, Struct), (2, I32), (3, Struct), (4, Map)],
        ),
        (
            "TExecuteStatementReq",
            request.remove("TExecuteStatementReq").unwrap(),
            vec![(1, Struct), (2, STR), (3, Map), (4, Bool), (5, I64)],
        ),
        (
            "TGetInfoReq",
            request.remove("TGetInfoReq").unwrap(),
            vec![(1, Struct), (2, I32)],
        ),
        (
            "TGetTablesReq",
            request.remove("TGetTablesReq").unwrap(),
            vec![(1, Struct), (3, STR), (4, STR), (5, List)],
        ),
        (
            "TGetFunctionsReq",
            request.remove("TGetFunctionsReq").unwrap(),
            vec![(1, Struct), (3, STR), (4, STR)],
        ),
        (
            "TGetOperationStatusReq",
            request.remove("TGetOperationStatusReq").unwrap(),
            vec![(1, Struct), (2, Bool)],
        ),
        (
            "TGetOperationStatusResp",
            response.remove("TGetOperationStatusResp").unwrap(),
            vec![
                (1, Struct),
                (2, I32),
                (3, STR),
                (4, I32),
                (5, STR),
                (6, STR),
                (7, I64),
                (8, I64),
                (9, Bool),
                (10, Struct),
                (11, I64),
            ],
        ),
        (
            "TGetResultSetMetadataResp",
            response.remove("TGetResultSetMetadataResp").unwrap(),
            vec![(1, Struct), (2, Struct)],
        ),
        (
            "TFetchResultsReq",
            request.remove("TFetchResultsReq").unwrap(),
            vec![(1, Struct), (2, I32), (3, I64), (4, I16)],
        ),
        (
            "TFetchResultsResp",
            response.remove("TFetchResultsResp").unwrap(),
            vec![(1, Struct), (2, Bool), (3, Struct)],
        ),
        (
            "TGetDelegationTokenReq",
            request.remove("TGetDelegationTokenReq").unwrap(),
            vec![(1, Struct), (2, STR), (3, STR)],
        ),
        (
            "TGetQueryIdResp",
            response.remove("TGetQueryIdResp").unwrap(),
            vec![(1, STR)],
        ),
        (
            "TSetClientInfoReq",
            request.remove("TSetClientInfoReq").unwrap(),
            vec![(1, Struct), (2, Map)],
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(layout(&bytes), expected, "{name}");
    }
}

#[test]
fn union_variants_use_hive_field_ids() {
    let column_ids: Vec<i16> = row_set()
        .columns
        .unwrap()
        .iter()
        .map(|column| layout(&encode(column))[0].0)
        .collect();
    assert_eq!(column_ids, [1, 2, 3, 4, 5, 6, 7, 8], "TColumn");

    let value_ids: Vec<i16> = row_set().rows[0]
        .col_vals
        .iter()
        .map(|value| layout(&encode(value))[0].0)
        .collect();
    assert_eq!(value_ids, [1, 2, 3, 4, 5, 6, 7], "TColumnValue");

    let entry_ids: Vec<i16> = schema().columns[2]
        .type_desc
        .types
        .iter()
        .map(|entry| layout(&encode(entry))[0].0)
        .collect();
    assert_eq!(entry_ids, [2, 3, 1, 4, 5, 6, 1], "TTypeEntry");

    let info = [
        t::TGetInfoValue::StringValue(String::new()),
        t::TGetInfoValue::SmallIntValue(0),
        t::TGetInfoValue::IntegerBitmask(0),
        t::TGetInfoValue::IntegerFlag(0),
        t::TGetInfoValue::BinaryValue(0),
        t::TGetInfoValue::LenValue(0),
    ];
    let info_layout: Vec<(i16, TType)> = info.iter().map(|v| layout(&encode(v))[0]).collect();
    assert_eq!(
        info_layout,
        [
            (1, TType::String),
            (2, TType::I16),
            (3, TType::I32),
            (4, TType::I32),
            (5, TType::I32),
            (6, TType::I64)
        ],
        "TGetInfoValue"
    );

    let qualifier_layout: Vec<(i16, TType)> = [
        t::TTypeQualifierValue::I32Value(1),
        t::TTypeQualifierValue::StringValue("1".into()),
    ]
    .iter()
    .map(|v| layout(&encode(v))[0])
    .collect();
    assert_eq!(qualifier_layout, [(1, TType::I32), (2, TType::String)]);
}

#[test]
fn column_values_are_lists_of_the_right_element_type() {
    // TINYINT columns are list<i8>, not binary; BINARY columns are list<binary>.
    let expected = [
        TType::Bool,
        TType::I08,
        TType::I16,
        TType::I32,
        TType::I64,
        TType::Double,
        TType::String,
        TType::String,
    ];
    for (column, element) in row_set().columns.unwrap().iter().zip(expected) {
        let union = encode(column);
        let mut rest = &union[..];
        let mut prot = TBinaryInputProtocol::new(&mut rest, true);
        prot.read_struct_begin().unwrap();
        prot.read_field_begin().unwrap(); // the union's variant
        prot.read_struct_begin().unwrap();
        let values = prot.read_field_begin().unwrap();
        assert_eq!((values.id, values.field_type), (Some(1), TType::List));
        assert_eq!(prot.read_list_begin().unwrap().element_type, element);
    }
}

/// The first encoded sample of each struct, by name.
fn first_samples(samples: Vec<(&'static str, Vec<u8>)>) -> BTreeMap<&'static str, Vec<u8>> {
    let mut first = BTreeMap::new();
    for (name, bytes) in samples {
        first.entry(name).or_insert(bytes);
    }
    first
}

// ---------------------------------------------------------------------------------------------
// Through the gateway's message functions
// ---------------------------------------------------------------------------------------------

fn requests() -> Vec<Hs2Request> {
    use Hs2Request as R;
    vec![
        R::OpenSession(t::TOpenSessionReq {
            client_protocol: t::TProtocolVersion(99),
            username: Some("alice".into()),
            password: Some("secret".into()),
            configuration: Some(conf()),
        }),
        R::CloseSession(t::TCloseSessionReq {
            session_handle: session(),
        }),
        R::GetInfo(t::TGetInfoReq {
            session_handle: session(),
            info_type: t::TGetInfoType::CLI_DBMS_VER,
        }),
        R::ExecuteStatement(t::TExecuteStatementReq {
            session_handle: session(),
            statement: "select 'ünïcode', 1".into(),
            conf_overlay: Some(conf()),
            run_async: Some(true),
            query_timeout: Some(30),
        }),
        R::GetTypeInfo(t::TGetTypeInfoReq {
            session_handle: session(),
        }),
        R::GetCatalogs(t::TGetCatalogsReq {
            session_handle: session(),
        }),
        R::GetSchemas(t::TGetSchemasReq {
            session_handle: session(),
            catalog_name: Some("spark_catalog".into()),
            schema_name: Some("def%".into()),
        }),
        R::GetTables(t::TGetTablesReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("default".into()),
            table_name: Some("%".into()),
            table_types: Some(vec!["TABLE".into(), "VIEW".into()]),
        }),
        R::GetTableTypes(t::TGetTableTypesReq {
            session_handle: session(),
        }),
        R::GetColumns(t::TGetColumnsReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("default".into()),
            table_name: Some("t".into()),
            column_name: Some("%".into()),
        }),
        R::GetFunctions(t::TGetFunctionsReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("default".into()),
            function_name: "upper".into(),
        }),
        R::GetPrimaryKeys(t::TGetPrimaryKeysReq {
            session_handle: session(),
            catalog_name: None,
            schema_name: Some("s".into()),
            table_name: Some("t".into()),
        }),
        R::GetCrossReference(t::TGetCrossReferenceReq {
            session_handle: session(),
            parent_catalog_name: Some("a".into()),
            parent_schema_name: Some("b".into()),
            parent_table_name: Some("c".into()),
            foreign_catalog_name: Some("d".into()),
            foreign_schema_name: Some("e".into()),
            foreign_table_name: Some("f".into()),
        }),
        R::GetOperationStatus(t::TGetOperationStatusReq {
            operation_handle: operation(),
            get_progress_update: Some(true),
        }),
        R::CancelOperation(t::TCancelOperationReq {
            operation_handle: operation(),
        }),
        R::CloseOperation(t::TCloseOperationReq {
            operation_handle: operation(),
        }),
        R::GetResultSetMetadata(t::TGetResultSetMetadataReq {
            operation_handle: operation(),
        }),
        R::FetchResults(t::TFetchResultsReq {
            operation_handle: operation(),
            orientation: t::TFetchOrientation::FETCH_FIRST,
            max_rows: 10_000,
            fetch_type: Some(1),
        }),
        R::GetDelegationToken(t::TGetDelegationTokenReq {
            session_handle: session(),
            owner: "alice".into(),
            renewer: "hive".into(),
        }),
        R::CancelDelegationToken(t::TCancelDelegationTokenReq {
            session_handle: session(),
            delegation_token: "tok".into(),
        }),
        R::RenewDelegationToken(t::TRenewDelegationTokenReq {
            session_handle: session(),
            delegation_token: "tok".into(),
        }),
        R::GetQueryId(t::TGetQueryIdReq {
            operation_handle: operation(),
        }),
        R::SetClientInfo(t::TSetClientInfoReq {
            session_handle: session(),
            configuration: Some(BTreeMap::from([(
                "ApplicationName".into(),
                "superset".into(),
            )])),
        }),
    ]
}

fn responses() -> Vec<Hs2Response> {
    use Hs2Response as R;
    let op = || Some(operation());
    vec![
        R::OpenSession(t::TOpenSessionResp {
            status: ok(),
            server_protocol_version: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6,
            session_handle: Some(session()),
            configuration: Some(conf()),
        }),
        R::CloseSession(t::TCloseSessionResp {
            status: error_status(),
        }),
        R::GetInfo(t::TGetInfoResp {
            status: ok(),
            info_value: t::TGetInfoValue::StringValue("Spark SQL".into()),
        }),
        R::ExecuteStatement(t::TExecuteStatementResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetTypeInfo(t::TGetTypeInfoResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetCatalogs(t::TGetCatalogsResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetSchemas(t::TGetSchemasResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetTables(t::TGetTablesResp {
            status: error_status(),
            operation_handle: None,
        }),
        R::GetTableTypes(t::TGetTableTypesResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetColumns(t::TGetColumnsResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetFunctions(t::TGetFunctionsResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetPrimaryKeys(t::TGetPrimaryKeysResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetCrossReference(t::TGetCrossReferenceResp {
            status: ok(),
            operation_handle: op(),
        }),
        R::GetOperationStatus(t::TGetOperationStatusResp {
            status: ok(),
            operation_state: Some(t::TOperationState::ERROR_STATE),
            sql_state: Some("42000".into()),
            error_code: Some(17),
            error_message: Some("failed".into()),
            task_status: Some("[]".into()),
            operation_started: Some(1_700_000_000_000),
            operation_completed: Some(1_700_000_000_500),
            has_result_set: Some(false),
            progress_update_response: Some(progress()),
            num_modified_rows: Some(3),
        }),
        R::CancelOperation(t::TCancelOperationResp { status: ok() }),
        R::CloseOperation(t::TCloseOperationResp { status: ok() }),
        R::GetResultSetMetadata(t::TGetResultSetMetadataResp {
            status: ok(),
            schema: Some(schema()),
        }),
        R::FetchResults(t::TFetchResultsResp {
            status: ok(),
            has_more_rows: Some(true),
            results: Some(row_set()),
        }),
        R::GetDelegationToken(t::TGetDelegationTokenResp {
            status: ok(),
            delegation_token: Some("tok".into()),
        }),
        R::CancelDelegationToken(t::TCancelDelegationTokenResp { status: ok() }),
        R::RenewDelegationToken(t::TRenewDelegationTokenResp { status: ok() }),
        R::GetQueryId(t::TGetQueryIdResp {
            query_id: "q-123".into(),
        }),
        R::SetClientInfo(t::TSetClientInfoResp { status: ok() }),
    ]
}

#[test]
fn every_request_round_trips_as_a_call_message() {
    let all = requests();
    assert_eq!(all.len(), 23, "one sample per TCLIService method");
    for (seqid, request) in all.into_iter().enumerate() {
        let seqid = i32::try_from(seqid).unwrap();
        let mut msg = Vec::new();
        request.encode_call(seqid, &mut msg);
        validate_lengths(&msg).unwrap();
        let header = MessageHeader::parse(&msg).unwrap();
        assert_eq!(header.name, request.method());
        assert_eq!(header.seqid, seqid);
        let decoded = Hs2Request::decode(&header.name, &msg[header.body_offset..])
            .unwrap()
            .expect("known method");
        assert_eq!(decoded, request, "{}", request.method());
    }
}

#[test]
fn every_response_round_trips_as_a_reply_message() {
    let requests = requests();
    let responses = responses();
    assert_eq!(responses.len(), requests.len());
    for (request, response) in requests.iter().zip(responses) {
        assert_eq!(
            request.method(),
            response.method(),
            "samples are in method order"
        );
        let mut msg = Vec::new();
        response.encode_reply(7, &mut msg);
        validate_lengths(&msg).unwrap();
        let decoded = Hs2Response::decode_for(request, &msg).unwrap();
        assert_eq!(decoded, response, "{}", response.method());
    }
}

#[test]
fn unknown_protocol_version_passes_through_a_call_message() {
    let request = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion(99),
        username: None,
        password: None,
        configuration: None,
    });
    let mut msg = Vec::new();
    request.encode_call(1, &mut msg);
    let header = MessageHeader::parse(&msg).unwrap();
    let Some(Hs2Request::OpenSession(decoded)) =
        Hs2Request::decode(&header.name, &msg[header.body_offset..]).unwrap()
    else {
        panic!("decoded as another method")
    };
    assert_eq!(decoded.client_protocol.0, 99);
    let mut again = Vec::new();
    Hs2Request::OpenSession(decoded).encode_call(1, &mut again);
    assert_eq!(again, msg, "re-encoding is byte-identical");
}
