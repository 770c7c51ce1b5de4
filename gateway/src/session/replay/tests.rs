use super::*;

fn open_request() -> t::TOpenSessionReq {
    t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("ann".into()),
        password: None,
        configuration: Some([("use:database".to_owned(), "sales".to_owned())].into()),
    }
}

fn replayed(log: &ReplayLog) -> Vec<String> {
    log.statements()
        .expect("within limits")
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn statements_that_shape_a_session_are_recognised() {
    for sql in [
        "USE sales",
        "  use `sales`;",
        "SET spark.sql.shuffle.partitions=4",
        "set",
        "RESET spark.sql.ansi.enabled",
        "-- pick the schema\nUSE sales",
        "/* note */ CREATE TEMPORARY VIEW v AS SELECT 1",
        "create or replace temp view v as select 1",
        "CREATE TEMPORARY FUNCTION f AS 'com.example.F'",
        "CREATE TEMPORARY TABLE t USING parquet OPTIONS (path '/tmp/x')",
        "DECLARE VARIABLE x INT DEFAULT 1",
        "DROP TEMPORARY FUNCTION f",
        "DROP TEMPORARY VARIABLE x",
        "ADD JAR /tmp/udf.jar",
        "add file s3://bucket/lookup.csv",
    ] {
        assert_eq!(shapes_session(sql), Some(Shapes::Keep), "{sql}");
    }
    for sql in [
        "SELECT 1",
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE GLOBAL TEMPORARY VIEW g AS SELECT 1",
        "INSERT INTO t VALUES (1)",
        "CACHE TABLE t",
        "-- USE sales\nSELECT 1",
        "",
        "adder",
    ] {
        assert_eq!(shapes_session(sql), None, "{sql}");
    }
    assert_eq!(
        shapes_session("DROP VIEW IF EXISTS `V`"),
        Some(Shapes::DropsView("v".into()))
    );
    assert_eq!(
        shapes_session("drop view v2"),
        Some(Shapes::DropsView("v2".into()))
    );
}

#[test]
fn the_log_keeps_state_statements_in_order_and_forgets_dropped_temp_views() {
    let mut log = ReplayLog::new(open_request());
    for sql in [
        "USE sales",
        "SELECT 1",
        "SET spark.sql.shuffle.partitions=4",
        "CREATE TEMPORARY VIEW v AS SELECT 1",
        "CREATE OR REPLACE TEMP VIEW w AS SELECT 2",
        "DROP VIEW v",
        // A permanent view's drop is not replayed (it would drop it again elsewhere).
        "DROP VIEW IF EXISTS reports.monthly",
        "INSERT INTO t VALUES (1)",
    ] {
        log.remember(sql);
    }
    assert_eq!(
        replayed(&log),
        [
            "USE sales",
            "SET spark.sql.shuffle.partitions=4",
            "CREATE OR REPLACE TEMP VIEW w AS SELECT 2",
        ]
    );
    assert_eq!(
        log.opened_with.configuration.as_ref().unwrap()["use:database"],
        "sales"
    );
}

#[test]
fn a_log_past_its_bounds_refuses_to_replay() {
    let mut log = ReplayLog::new(open_request());
    for i in 0..MAX_STATEMENTS {
        log.remember(&format!("SET k{i}=v"));
    }
    assert_eq!(replayed(&log).len(), MAX_STATEMENTS);
    log.remember("SET one=too many");
    let err = log.statements().unwrap_err();
    assert!(err.contains("1000 statements"), "{err}");

    let mut big = ReplayLog::new(open_request());
    let huge = format!("SET k='{}'", "x".repeat(MAX_BYTES));
    big.remember(&huge);
    assert!(big.statements().is_err());
}

#[test]
fn statements_in_errors_are_redacted_and_cut() {
    let text = clip_sql("SET spark.hadoop.fs.s3a.secret.key=hunter2-secret");
    assert!(!text.contains("hunter2"), "{text}");
    let text = clip_sql(&format!("SELECT '{}'", "a".repeat(500)));
    assert!(text.chars().count() <= 123, "{text}");
}
