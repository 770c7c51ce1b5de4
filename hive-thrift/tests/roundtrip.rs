//! Every TCLIService request and response survives encode → decode unchanged, through the same
//! message functions the gateway uses. Values are non-trivial: handles, maps, columnar row sets
//! with null bitmaps, error statuses, and enum values this code does not know.

use std::collections::BTreeMap;

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{
    success_status, validate_lengths, Hs2Request, Hs2Response, MessageHeader,
};
use thrift::OrderedFloat;

fn id(seed: u8) -> t::THandleIdentifier {
    t::THandleIdentifier {
        guid: (0..16).map(|i| seed.wrapping_add(i)).collect(),
        secret: (0..16)
            .map(|i| seed.wrapping_mul(3).wrapping_add(i))
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
    ])
}

fn error_status() -> t::TStatus {
    t::TStatus {
        status_code: t::TStatusCode::ERROR_STATUS,
        info_messages: Some(vec!["*org.apache.spark.SparkException:boom:12:3".into()]),
        sql_state: Some("42P01".into()),
        error_code: Some(0),
        error_message: Some("[TABLE_OR_VIEW_NOT_FOUND] The table `x` cannot be found.".into()),
    }
}

fn ok() -> t::TStatus {
    success_status()
}

fn row_set() -> t::TRowSet {
    t::TRowSet {
        start_row_offset: 1000,
        rows: vec![t::TRow {
            col_vals: vec![
                t::TColumnValue::I32Val(t::TI32Value { value: Some(7) }),
                t::TColumnValue::StringVal(t::TStringValue { value: None }),
            ],
        }],
        columns: Some(vec![
            t::TColumn::BoolVal(t::TBoolColumn {
                values: vec![true, false, true],
                nulls: vec![0b010],
            }),
            t::TColumn::ByteVal(t::TByteColumn {
                values: vec![-1, 0, 1],
                nulls: vec![0],
            }),
            t::TColumn::I16Val(t::TI16Column {
                values: vec![i16::MIN, 0, i16::MAX],
                nulls: vec![0],
            }),
            t::TColumn::I32Val(t::TI32Column {
                values: vec![i32::MIN, 0, i32::MAX],
                nulls: vec![0],
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
                nulls: vec![0],
            }),
        ]),
        binary_columns: Some(vec![9, 8, 7]),
        column_count: Some(8),
    }
}

fn schema() -> t::TTableSchema {
    let qualifiers = t::TTypeQualifiers {
        qualifiers: BTreeMap::from([
            ("precision".into(), t::TTypeQualifierValue::I32Value(10)),
            ("scale".into(), t::TTypeQualifierValue::I32Value(2)),
        ]),
    };
    t::TTableSchema {
        columns: vec![
            t::TColumnDesc {
                column_name: "price".into(),
                type_desc: t::TTypeDesc {
                    types: vec![t::TTypeEntry::PrimitiveEntry(t::TPrimitiveTypeEntry {
                        type_: t::TTypeId::DECIMAL_TYPE,
                        type_qualifiers: Some(qualifiers),
                    })],
                },
                position: 1,
                comment: Some("in euros".into()),
            },
            t::TColumnDesc {
                column_name: "tags".into(),
                type_desc: t::TTypeDesc {
                    types: vec![
                        t::TTypeEntry::ArrayEntry(t::TArrayTypeEntry { object_type_ptr: 1 }),
                        t::TTypeEntry::MapEntry(t::TMapTypeEntry {
                            key_type_ptr: 2,
                            value_type_ptr: 2,
                        }),
                        t::TTypeEntry::StructEntry(t::TStructTypeEntry {
                            name_to_type_ptr: BTreeMap::from([("a".into(), 3)]),
                        }),
                        t::TTypeEntry::UnionEntry(t::TUnionTypeEntry {
                            name_to_type_ptr: BTreeMap::from([("b".into(), 4)]),
                        }),
                        t::TTypeEntry::UserDefinedTypeEntry(t::TUserDefinedTypeEntry {
                            type_class_name: "com.example.Geo".into(),
                        }),
                        // A type id this code does not know: must pass through unchanged.
                        t::TTypeEntry::PrimitiveEntry(t::TPrimitiveTypeEntry {
                            type_: t::TTypeId(1234),
                            type_qualifiers: None,
                        }),
                    ],
                },
                position: 2,
                comment: None,
            },
        ],
    }
}

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
            schema_name: None,
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
            progress_update_response: Some(t::TProgressUpdateResp {
                header_names: vec!["STAGE".into(), "STATUS".into()],
                rows: vec![vec!["1".into(), "RUNNING".into()]],
                progressed_percentage: OrderedFloat(0.5),
                status: t::TJobExecutionStatus::IN_PROGRESS,
                footer_summary: "1/2".into(),
                start_time: 42,
            }),
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
            status: ok(),
            query_id: "q-123".into(),
        }),
        R::SetClientInfo(t::TSetClientInfoResp { status: ok() }),
    ]
}

#[test]
fn every_request_round_trips() {
    let all = requests();
    assert_eq!(all.len(), 23, "one sample per TCLIService method");
    for (seqid, request) in all.into_iter().enumerate() {
        let mut msg = Vec::new();
        request.encode_call(seqid as i32, &mut msg);
        validate_lengths(&msg).unwrap();
        let header = MessageHeader::parse(&msg).unwrap();
        assert_eq!(header.name, request.method());
        assert_eq!(header.seqid, seqid as i32);
        let decoded = Hs2Request::decode(&header.name, &msg[header.body_offset..])
            .unwrap()
            .expect("known method");
        assert_eq!(decoded, request, "{}", request.method());
    }
}

#[test]
fn every_response_round_trips() {
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
fn unknown_enum_values_pass_through() {
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
