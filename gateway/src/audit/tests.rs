use super::*;

fn redacted(sql: &str) -> String {
    render_statement(sql, StatementText::Redacted).0.unwrap()
}

fn full(sql: &str) -> String {
    render_statement(sql, StatementText::Full).0.unwrap()
}

#[test]
fn redaction_replaces_literals_and_comments() {
    assert_eq!(
        redacted("SELECT name FROM t WHERE id = 42 AND city = 'Paris' -- note"),
        "SELECT name FROM t WHERE id = ? AND city = ?  "
    );
    assert_eq!(redacted("SELECT \"quoted\", 1.5e3"), "SELECT ?, ?");
    assert!(redacted("SELECT 'unterminated").contains("cannot read"));
}

#[test]
fn secrets_are_masked_in_every_mode() {
    let set = "SET spark.hadoop.fs.s3a.secret.key=AKIAsecretvalue";
    assert_eq!(full(set), "SET spark.hadoop.fs.s3a.secret.key='*****'");
    assert_eq!(redacted(set), "SET spark.hadoop.fs.s3a.secret.key=?");
    assert_eq!(
        full("SET spark.sql.shuffle.partitions=4"),
        "SET spark.sql.shuffle.partitions=4"
    );
    let options =
        "CREATE TABLE j USING jdbc OPTIONS (url 'jdbc:x', user 'u', password 'hunter2-pw')";
    let text = full(options);
    assert!(!text.contains("hunter2-pw"), "{text}");
    assert!(text.contains("'jdbc:x'"), "{text}");
    let quoted = "CREATE TABLE j USING jdbc OPTIONS ('password' = 'hunter2-pw')";
    assert!(!full(quoted).contains("hunter2-pw"), "{}", full(quoted));
    let (text, hash) = render_statement(options, StatementText::Hash);
    assert!(text.is_none());
    assert_eq!(hash.len(), 64);
}

#[test]
fn a_huge_statement_is_kept_cut_and_hashed_whole() {
    let sql = format!("SELECT '{}'", "é".repeat(100_000));
    let record = with_statement(Record::default(), &sql);
    let kept = record.statement.unwrap();
    assert!(kept.len() < 70_000 && kept.ends_with(&format!("({} bytes in all)", sql.len())));
    assert_eq!(record.statement_sha256.unwrap(), render::sha256_hex(&sql));
}

#[test]
fn names_from_clients_are_cut() {
    assert_eq!(truncated("bob"), "bob");
    let long = "x".repeat(500);
    assert_eq!(truncated(&long).chars().count(), 65);
}

#[test]
fn lines_go_to_the_file_and_rotate_by_size() {
    let dir = std::env::temp_dir().join(format!("sparkgate-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("audit.log");
    let config = AuditConfig {
        file: Some(file.clone()),
        max_file_bytes: 2_000,
        keep_files: 2,
        ..AuditConfig::default()
    };
    let log = AuditLog::start(&config).unwrap();
    for i in 0..40 {
        log.record(Record {
            event: "statement",
            user: Some("ann".into()),
            statement: Some(format!("SELECT {i} FROM t WHERE pw = 'x'")),
            state: Some("finished".into()),
            rows_fetched: Some(i),
            ..Record::default()
        });
    }
    log.close(Duration::from_secs(5));
    let current = std::fs::read_to_string(&file).unwrap();
    let line: serde_json::Value = serde_json::from_str(current.lines().last().unwrap()).unwrap();
    assert_eq!(line["event"], "statement");
    assert_eq!(line["user"], "ann");
    assert_eq!(line["statement"], "SELECT ? FROM t WHERE pw = ?");
    assert_eq!(line["rows_fetched"], 39);
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    assert!(line.get("error").is_none(), "empty fields are left out");
    let rotated = std::fs::read_dir(&dir).unwrap().count() - 1;
    assert_eq!(rotated, 2, "rotated files beyond keep_files are deleted");
    assert_eq!(log.written.load(Ordering::Relaxed), 40);
    std::fs::remove_dir_all(&dir).unwrap();
}
