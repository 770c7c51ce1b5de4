use super::*;

fn read_tables(sql: &str) -> Vec<String> {
    match classify(sql) {
        Meaning::Read { tables, .. } => tables,
        other => panic!("{sql:?} should be a cacheable read, is {other:?}"),
    }
}

fn uncacheable(sql: &str) {
    assert!(
        matches!(classify(sql), Meaning::Uncacheable(_)),
        "{sql:?} must not be cached, is {:?}",
        classify(sql)
    );
}

#[test]
fn plain_reads_are_cacheable_with_the_tables_they_read() {
    assert_eq!(read_tables("SELECT 1"), Vec::<String>::new());
    assert_eq!(
        read_tables("select a, count(*) from Sales group by a"),
        ["sales"]
    );
    assert_eq!(
        read_tables("WITH x AS (SELECT * FROM db.`Orders`) SELECT * FROM x JOIN items ON true"),
        ["items", "orders", "x"]
    );
    assert_eq!(
        read_tables("VALUES (1, 'a'), (2, 'b')"),
        Vec::<String>::new()
    );
    assert_eq!(
        read_tables("SELECT * FROM (SELECT id FROM t1 UNION ALL SELECT id FROM t2) u"),
        ["t1", "t2"]
    );
    assert_eq!(
        read_tables("SELECT id FROM t WHERE id IN (SELECT id FROM other)"),
        ["other", "t"]
    );
}

#[test]
fn superset_chart_queries_are_cacheable() {
    // What Superset 6.1's Hive engine sends for a weekly time grain and a bar chart.
    let weekly = "SELECT date_format(date_sub(`ts`, CAST(7-from_unixtime(unix_timestamp(`ts`),'u') as int)), 'yyyy-MM-dd 00:00:00') AS `ts`, count(*) AS `count`\nFROM `default`.`sg_events`\nGROUP BY date_format(date_sub(`ts`, CAST(7-from_unixtime(unix_timestamp(`ts`),'u') as int)), 'yyyy-MM-dd 00:00:00')\nORDER BY `count` DESC\nLIMIT 10000";
    assert_eq!(read_tables(weekly), ["sg_events"]);
    let bars = "SELECT `region` AS `region`, sum(`amount`) AS `SUM(amount)` FROM `default`.`sg_sales` GROUP BY `region` ORDER BY `SUM(amount)` DESC LIMIT 100";
    assert_eq!(read_tables(bars), ["sg_sales"]);
}

#[test]
fn whitespace_and_comments_do_not_change_the_normalized_text() {
    let a = classify("SELECT a FROM t WHERE b = 1");
    let b = classify("select   a\n from t -- note\n where b = 1");
    let (Meaning::Read { normalized: a, .. }, Meaning::Read { normalized: b, .. }) = (a, b) else {
        panic!("both are reads");
    };
    assert_eq!(a.to_lowercase(), b.to_lowercase());
    let Meaning::Read { normalized: c, .. } = classify("SELECT a FROM t WHERE b = 2") else {
        panic!("a read");
    };
    assert_ne!(a, c, "a different literal is a different query");
}

#[test]
fn volatile_functions_are_never_cached() {
    for sql in [
        "SELECT rand()",
        "SELECT RAND(42) FROM t",
        "SELECT uuid()",
        "SELECT now()",
        "SELECT current_timestamp()",
        "SELECT current_timestamp",
        "SELECT current_date",
        "SELECT * FROM t WHERE d > current_date() - 7",
        "SELECT current_user()",
        "SELECT input_file_name() FROM t",
        "SELECT monotonically_increasing_id() FROM t",
        "SELECT unix_timestamp()",
        "SELECT spark_partition_id() FROM t",
        "SELECT * FROM (SELECT shuffle(array(1, 2, 3)) AS s) x",
        "SELECT reflect('java.util.UUID', 'randomUUID')",
        "SELECT db.my_udf(a) FROM t",
    ] {
        uncacheable(sql);
    }
    // With an argument it is a conversion, not "now".
    assert_eq!(read_tables("SELECT unix_timestamp(ts) FROM t"), ["t"]);
}

#[test]
fn samples_global_temp_views_and_several_statements_are_not_cached() {
    uncacheable("SELECT * FROM t TABLESAMPLE (10 PERCENT)");
    uncacheable("SELECT * FROM global_temp.v");
    uncacheable("SELECT 1; SELECT 2");
    uncacheable("SHOW TABLES");
    uncacheable("DESCRIBE t");
    uncacheable("EXPLAIN SELECT 1");
    uncacheable("SET spark.sql.shuffle.partitions");
    uncacheable("SELECT * FROM t WHERE x IN (SELECT x FROM u"); // can't parse: don't cache
    uncacheable("");
}

#[test]
fn session_state_is_read() {
    assert_eq!(classify("USE sales"), Meaning::Use("sales".into()));
    assert_eq!(classify("use `Sales`;"), Meaning::Use("sales".into()));
    assert_eq!(
        classify("SET spark.sql.session.timeZone=America/New_York"),
        Meaning::Set {
            key: "spark.sql.session.timezone".into(),
            value: "America/New_York".into()
        }
    );
    assert_eq!(
        classify("set spark.sql.ansi.enabled = false"),
        Meaning::Set {
            key: "spark.sql.ansi.enabled".into(),
            value: "false".into()
        }
    );
    assert_eq!(classify("RESET"), Meaning::Reset);
    assert_eq!(
        classify("CREATE TEMPORARY VIEW tv AS SELECT 1"),
        Meaning::TempView("tv".into())
    );
    assert_eq!(
        classify("CREATE OR REPLACE TEMP VIEW `Tv` AS SELECT * FROM t"),
        Meaning::TempView("tv".into())
    );
    assert_eq!(
        classify("CACHE TABLE c AS SELECT * FROM t"),
        Meaning::TempView("c".into())
    );
    assert_eq!(
        classify("CREATE TEMPORARY VIEW p USING parquet OPTIONS (path '/x')"),
        Meaning::SessionCode
    );
    assert_eq!(classify("ADD JAR /tmp/x.jar"), Meaning::SessionCode);
    assert_eq!(
        classify("CREATE TEMPORARY FUNCTION f AS 'com.x.F'"),
        Meaning::SessionCode
    );
    assert!(classify("USE x").changes_session());
    assert!(!classify("SELECT 1").changes_session());
}

#[test]
fn writes_name_the_tables_they_touch() {
    let write = |sql: &str| match classify(sql) {
        Meaning::Write(tables) => tables,
        other => panic!("{sql:?} should be a write, is {other:?}"),
    };
    assert_eq!(
        write("INSERT INTO sales VALUES (1)"),
        Some(vec!["sales".into()])
    );
    assert_eq!(
        write("INSERT OVERWRITE TABLE db.Sales SELECT * FROM staging"),
        Some(vec!["sales".into(), "staging".into()])
    );
    assert_eq!(
        write("DROP TABLE IF EXISTS db.sales"),
        Some(vec!["sales".into()])
    );
    assert_eq!(write("CREATE TABLE n (a INT)"), Some(vec!["n".into()]));
    assert_eq!(
        write("ALTER TABLE sales ADD COLUMN b INT"),
        Some(vec!["sales".into()])
    );
    assert_eq!(write("REFRESH TABLE db.sales"), Some(vec!["sales".into()]));
    assert_eq!(write("TRUNCATE TABLE sales"), Some(vec!["sales".into()]));
    assert_eq!(write("MSCK REPAIR TABLE sales"), Some(vec!["sales".into()]));
    assert_eq!(
        write("DELETE FROM sales WHERE a = 1"),
        Some(vec!["sales".into()])
    );
    // Syntax sparkgate cannot read: every result of the tenant is stale.
    assert_eq!(write("OPTIMIZE sales ZORDER BY (a)"), None);
    assert_eq!(write("REFRESH"), None);
}
