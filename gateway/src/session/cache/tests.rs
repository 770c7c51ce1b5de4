use super::*;

fn key(tenant: &str, statement: &str) -> CacheKey {
    CacheKey {
        tenant: tenant.into(),
        scope: "alice".into(),
        database: "default".into(),
        settings: Vec::new(),
        shape: "V8/Jdbc".into(),
        statement: statement.into(),
    }
}

fn result(tables: &[&str]) -> Arc<CachedResult> {
    let mut rows = Rows::new();
    rows.push(&t::TRowSet {
        start_row_offset: 0,
        rows: Vec::new(),
        columns: Some(vec![t::TColumn::I32Val(t::TI32Column::new(
            vec![1, 2, 3],
            vec![],
        ))]),
        binary_columns: None,
        column_count: None,
    })
    .unwrap();
    Arc::new(CachedResult {
        schema: t::TTableSchema {
            columns: Vec::new(),
        },
        rows,
        tables: tables.iter().map(|t| t.to_string()).collect(),
        created: Instant::now(),
        ttl: Duration::from_secs(60),
    })
}

const OWNER: crate::session::Owner = crate::session::Owner::Connection(1);
const OTHER: crate::session::Owner = crate::session::Owner::Connection(2);

fn lead(cache: &Arc<ResultCache>, key: &CacheKey) -> FlightGuard {
    match cache.lookup(key, &OWNER).unwrap() {
        Lookup::Lead(guard) => guard,
        _ => panic!("expected to lead"),
    }
}

#[tokio::test]
async fn the_first_leads_the_others_wait_then_hit() {
    let cache = ResultCache::new(CacheConfig::default());
    let k = key("t1", "SELECT 1");
    let guard = lead(&cache, &k);
    let Lookup::Wait(mut done) = cache.lookup(&k, &OTHER).unwrap() else {
        panic!("an identical statement waits for the first");
    };
    assert!(cache.store_shared(k.clone(), result(&["x"]), cache.generation("t1")));
    drop(guard);
    done.wait_for(|d| *d).await.unwrap();
    assert!(matches!(cache.lookup(&k, &OTHER).unwrap(), Lookup::Hit(_)));
    // The leader giving up wakes the waiters too; the next one leads.
    let k2 = key("t1", "SELECT 2");
    let guard = lead(&cache, &k2);
    let Lookup::Wait(mut done) = cache.lookup(&k2, &OTHER).unwrap() else {
        panic!("waits")
    };
    drop(guard);
    done.wait_for(|d| *d).await.unwrap();
    let _again = lead(&cache, &k2);
    // The leader's own connection does not wait for itself.
    assert!(cache.lookup(&k2, &OWNER).is_none());
}

#[test]
fn writes_drop_what_read_their_tables_in_their_tenant_only() {
    let cache = ResultCache::new(CacheConfig::default());
    for (tenant, statement, tables) in [
        ("a", "q1", &["sales"][..]),
        ("a", "q2", &["items"][..]),
        ("b", "q1", &["sales"][..]),
    ] {
        let k = key(tenant, statement);
        let _guard = lead(&cache, &k);
        assert!(cache.store_shared(k, result(tables), cache.generation(tenant)));
    }
    cache.invalidate("a", Some(&["SALES".to_string()]));
    assert!(cache.entries.get(&key("a", "q1")).is_none());
    assert!(cache.entries.get(&key("a", "q2")).is_some());
    assert!(cache.entries.get(&key("b", "q1")).is_some());
    cache.invalidate("a", None);
    assert!(cache.entries.get(&key("a", "q2")).is_none());
    assert!(cache.entries.get(&key("b", "q1")).is_some());
}

#[test]
fn a_result_read_across_a_write_is_not_stored() {
    let cache = ResultCache::new(CacheConfig::default());
    let k = key("a", "q");
    let before = cache.generation("a");
    cache.invalidate("a", Some(&["other".to_string()]));
    assert!(!cache.store_shared(k.clone(), result(&["t"]), before));
    assert!(cache.store_shared(k, result(&["t"]), cache.generation("a")));
}

#[test]
fn results_over_the_limit_are_not_stored_and_the_budget_evicts() {
    let small = ResultCache::new(CacheConfig {
        max_result_bytes: 8,
        ..CacheConfig::default()
    });
    assert!(!small.store_shared(key("a", "q"), result(&[]), 0));
    assert_eq!(small.counters.too_large.load(Ordering::Relaxed), 1);
    let one_entry = result(&[]).weight(&key("a", "q0")) as u64;
    let tight = ResultCache::new(CacheConfig {
        max_bytes: one_entry * 3,
        ..CacheConfig::default()
    });
    for i in 0..20 {
        tight.store_shared(key("a", &format!("q{i}")), result(&[]), 0);
    }
    let (entries, bytes) = tight.usage();
    assert!(
        entries <= 3 && bytes <= one_entry * 3,
        "{entries} entries, {bytes} bytes"
    );
}
