use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn figures_add_up_per_range_and_survive_a_save() {
    let dir = std::env::temp_dir().join(format!("sparkgate-usage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = UsageConfig {
        file: Some(dir.join("usage.json")),
        ..UsageConfig::default()
    };
    let usage = Usage::load(config.clone());
    let base = now_secs(SystemTime::now()) / 60 * 60 - 600;
    usage.drivers("a", 1, 0, Duration::from_secs(20), at(base + 10));
    usage.drivers("a", 0, 2, Duration::from_secs(30), at(base + 130));
    usage.statement(
        "a",
        &StatementUse {
            rows: 10,
            bytes: 1000,
            queue_wait: Duration::from_millis(1500),
            ..StatementUse::default()
        },
    );
    let all = usage.report(0, u64::MAX).tenants["a"].clone();
    assert_eq!(all.driver_seconds_starting, 20.0);
    assert_eq!(all.driver_seconds_ready, 60.0);
    assert_eq!(all.statements, 1);
    assert_eq!(all.rows_fetched, 10);
    assert_eq!(all.queue_wait_seconds, 1.5);
    // A range that starts after the first minute leaves its figures out.
    let later = usage.report(base + 120, base + 180).tenants["a"].clone();
    // A range that ends before it starts is empty (not a panic).
    assert_eq!(
        usage.report(base + 9_000, base).tenants["a"],
        Figures::default()
    );
    assert_eq!(usage.report(u64::MAX, 0).tenants["a"], Figures::default());
    assert_eq!(later.driver_seconds_starting, 0.0);
    assert_eq!(later.driver_seconds_ready, 60.0);
    usage.save().unwrap();
    let again = Usage::load(config);
    assert_eq!(again.totals(), usage.totals());
    assert_eq!(again.report(0, u64::MAX).tenants["a"], all);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn old_minutes_roll_into_hours_and_an_unreadable_file_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("sparkgate-usage-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("usage.json");
    std::fs::write(&file, b"{not json").unwrap();
    let config = UsageConfig {
        file: Some(file.clone()),
        minute_detail: Duration::from_secs(3600),
        ..UsageConfig::default()
    };
    let usage = Usage::load(config);
    assert!(dir.join("usage.unreadable").exists());
    let old = now_secs(SystemTime::now()) - 5 * 3600;
    usage.drivers("a", 0, 1, Duration::from_secs(60), at(old));
    usage.drivers("a", 0, 1, Duration::from_secs(60), at(old + 60));
    usage.save().unwrap();
    let book = usage.book.lock().unwrap();
    let buckets = &book.buckets["a"];
    assert_eq!(
        buckets.len(),
        buckets.values().filter(|b| b.width == 3600).count().max(1)
    );
    assert_eq!(
        buckets
            .values()
            .map(|b| b.figures.driver_seconds_ready)
            .sum::<f64>(),
        120.0
    );
    drop(book);
    assert_eq!(parse_time("2026-12-07T10:00:00Z"), Some(1_796_637_600));
    assert_eq!(parse_time("1700000000"), Some(1_700_000_000));
    assert_eq!(parse_time("yesterday"), None);
    std::fs::remove_dir_all(&dir).unwrap();
}
