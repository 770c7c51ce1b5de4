use super::*;

fn open_req(protocol: t::TProtocolVersion, keys: &[(&str, &str)]) -> t::TOpenSessionReq {
    t::TOpenSessionReq {
        client_protocol: protocol,
        username: Some("u".into()),
        password: None,
        configuration: Some(
            keys.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
    }
}

#[test]
fn hive_jdbc_is_told_by_its_use_and_set_keys() {
    let jdbc = [
        ("use:database", "default"),
        (
            "set:hiveconf:hive.server2.thrift.resultset.default.fetch.size",
            "1000",
        ),
    ];
    let mut req = open_req(t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10, &jdbc);
    assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Jdbc));
    // An old JDBC driver asking for V6 still sends use:database.
    let mut req = open_req(
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6,
        &jdbc[..1],
    );
    assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Jdbc));
}

#[test]
fn pyhive_and_impyla_are_python() {
    for protocol in [
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6,
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V7,
    ] {
        let mut req = open_req(protocol, &[]);
        assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Python));
        // Superset's impersonation key is a plain configuration key.
        let mut req = open_req(protocol, &[("hive.server2.proxy.user", "bob")]);
        assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Python));
    }
    let mut req = open_req(t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10, &[]);
    assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Jdbc));
}

#[test]
fn a_client_may_name_its_family_and_the_key_goes_no_further() {
    let mut req = open_req(
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V6,
        &[("sparkgate.client", "jdbc")],
    );
    assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Jdbc));
    assert!(req.configuration.unwrap().is_empty());
    let mut req = open_req(
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        &[("set:hiveconf:sparkgate.client", "Python")],
    );
    assert_eq!(ClientFamily::of(&mut req), Ok(ClientFamily::Python));
    let mut req = open_req(
        t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        &[("sparkgate.client", "odbc")],
    );
    assert!(ClientFamily::of(&mut req).unwrap_err().contains("odbc"));
}

#[test]
fn show_tables_and_views_are_recognised_through_case_comments_and_space() {
    for sql in [
        "SHOW TABLES",
        "show tables in `db`",
        "  /* x */ Show\n Views IN db LIKE 'a*'",
        "-- c\nSHOW TABLES FROM db",
    ] {
        assert_eq!(name_column_for_python(sql), Some(1), "{sql}");
    }
    for sql in [
        "SHOW TABLE EXTENDED IN db LIKE 'x'",
        "SHOW SCHEMAS",
        "SELECT 'SHOW TABLES'",
        "`SHOW` TABLES",
        "DESCRIBE t",
        "",
    ] {
        assert_eq!(name_column_for_python(sql), None, "{sql}");
    }
}

fn string_column(values: &[&str]) -> t::TColumn {
    t::TColumn::StringVal(t::TStringColumn {
        values: values.iter().map(|v| v.to_string()).collect(),
        nulls: vec![0],
    })
}

#[test]
fn keeping_the_name_column_of_columnar_and_row_results() {
    let mut rows = t::TRowSet {
        start_row_offset: 0,
        rows: vec![],
        columns: Some(vec![
            string_column(&["db", "db"]),
            string_column(&["t1", "v1"]),
            t::TColumn::BoolVal(t::TBoolColumn {
                values: vec![false, false],
                nulls: vec![0],
            }),
        ]),
        binary_columns: None,
        column_count: Some(3),
    };
    keep_column(&mut rows, 1);
    assert_eq!(rows.columns, Some(vec![string_column(&["t1", "v1"])]));
    assert_eq!(rows.column_count, Some(1));

    let value = |s: &str| {
        t::TColumnValue::StringVal(t::TStringValue {
            value: Some(s.into()),
        })
    };
    let mut rows = t::TRowSet {
        start_row_offset: 0,
        rows: vec![t::TRow {
            col_vals: vec![value("db"), value("t1"), value("false")],
        }],
        columns: None,
        binary_columns: None,
        column_count: None,
    };
    keep_column(&mut rows, 1);
    assert_eq!(rows.rows[0].col_vals, vec![value("t1")]);
}

const SPARK_STATUS_ERROR: &str = "org.apache.hive.service.cli.HiveSQLException: Error running query: [TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found. Verify the spelling and correctness of the schema and catalog.
If you did not qualify the name with a schema, verify the current_schema() output, or qualify the name with the correct schema and catalog.
To tolerate the error on drop use DROP VIEW IF EXISTS or DROP TABLE IF EXISTS. SQLSTATE: 42P01; line 1 pos 14;
'Project [*]
+- 'UnresolvedRelation [nope], [], false

\tat org.apache.spark.sql.hive.thriftserver.HiveThriftServerErrors$.runningQueryError(HiveThriftServerErrors.scala:46)
\tat org.apache.spark.sql.hive.thriftserver.SparkExecuteStatementOperation.execute(SparkExecuteStatementOperation.scala:262)
Caused by: org.apache.spark.sql.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] ...
";

#[test]
fn concise_errors_keep_the_class_and_message_only() {
    let concise = concise_error(SPARK_STATUS_ERROR);
    assert!(
        concise.starts_with("[TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found."),
        "{concise}"
    );
    assert!(
        concise.ends_with("SQLSTATE: 42P01; line 1 pos 14"),
        "{concise}"
    );
    assert!(!concise.contains("\tat "), "{concise}");
    assert!(!concise.contains("Project"), "{concise}");

    let doubled = "[TABLE_OR_VIEW_NOT_FOUND] org.apache.spark.sql.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found. SQLSTATE: 42P01; line 1 pos 14;\n'Project [*]";
    assert_eq!(
        concise_error(doubled),
        "[TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found. SQLSTATE: 42P01; line 1 pos 14"
    );

    let denied = "org.apache.hive.service.cli.HiveSQLException: Error running query: [FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///w/jwt.secret. SQLSTATE: KD001\n\tat x.y(z.java:1)\nCaused by: org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error\n\tat a.b(c.java:2)\nCaused by: java.io.FileNotFoundException: /w/jwt.secret (Permission denied)\n\tat d.e(f.java:3)\n";
    assert_eq!(
        concise_error(denied),
        "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///w/jwt.secret. SQLSTATE: KD001\nCaused by: /w/jwt.secret (Permission denied)"
    );

    let plain = "org.apache.hive.service.cli.HiveSQLException: Error running query: java.lang.IllegalStateException: boom\n\tat x.y(z.java:1)";
    assert_eq!(concise_error(plain), "boom");
    assert_eq!(concise_error("sparkgate: refused"), "sparkgate: refused");
    let long = format!("[X_Y] {}", "é".repeat(2000));
    let cut = concise_error(&long);
    assert!(cut.len() < 1100 && cut.ends_with("(cut by sparkgate)"));
}

#[test]
fn a_status_error_becomes_a_synchronous_reply_text() {
    let text = statement_error_text(SPARK_STATUS_ERROR);
    assert!(text.starts_with("Error running query: [TABLE_OR_VIEW_NOT_FOUND]"));
    assert!(
        text.ends_with("+- 'UnresolvedRelation [nope], [], false"),
        "{text}"
    );
}

#[test]
fn error_detail_auto_is_concise_for_python_only() {
    assert!(ErrorDetail::Auto.concise_for(ClientFamily::Python));
    assert!(!ErrorDetail::Auto.concise_for(ClientFamily::Jdbc));
    assert!(ErrorDetail::Concise.concise_for(ClientFamily::Jdbc));
    assert!(!ErrorDetail::Full.concise_for(ClientFamily::Python));
}
