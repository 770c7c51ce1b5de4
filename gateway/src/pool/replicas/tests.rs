use super::*;

fn report(at_ms: u64, tenant: &str, queued: u32, drivers: &[(&str, u32, u32)]) -> String {
    let load = TenantLoad {
        queued,
        drivers: drivers
            .iter()
            .map(|(id, sessions, operations)| {
                let share = DriverShare {
                    sessions: *sessions,
                    operations: *operations,
                };
                ((*id).to_owned(), share)
            })
            .collect(),
        draining: BTreeSet::new(),
    };
    serde_json::to_string(&LoadReport {
        at_ms,
        tenants: BTreeMap::from([(tenant.to_owned(), load)]),
    })
    .unwrap()
}

#[test]
fn fresh_reports_of_others_are_summed_per_tenant_and_driver() {
    let now = 1_000_000;
    let annotations = BTreeMap::from([
        (report_key("a"), report(now - 500, "t", 2, &[("d1", 1, 1)])),
        (
            report_key("b"),
            report(now - 100, "t", 1, &[("d1", 2, 3), ("d2", 1, 0)]),
        ),
        // Its own report is not counted twice (the pool counts its own load itself).
        (report_key("me"), report(now, "t", 50, &[("d1", 50, 50)])),
        (
            "other.example.com/note".to_owned(),
            "not a report".to_owned(),
        ),
    ]);
    let (sum, counted, stale) = sum_reports(
        &annotations,
        &report_key("me"),
        now,
        Duration::from_secs(15),
    );
    let t = &sum["t"];
    assert_eq!(t.queued, 3);
    assert_eq!(
        t.on_driver("d1"),
        DriverShare {
            sessions: 3,
            operations: 4
        }
    );
    assert_eq!(
        t.on_driver("d2"),
        DriverShare {
            sessions: 1,
            operations: 0
        }
    );
    assert_eq!(t.on_driver("d3"), DriverShare::default());
    assert_eq!(counted, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    assert!(stale.is_empty());
}

#[test]
fn stale_and_unreadable_reports_are_left_out_and_marked_for_removal() {
    let now = 1_000_000;
    let annotations = BTreeMap::from([
        (
            report_key("gone"),
            report(now - 16_000, "t", 7, &[("d1", 1, 1)]),
        ),
        (report_key("garbled"), "{not json".to_owned()),
        (report_key("live"), report(now - 1_000, "t", 1, &[])),
        // A report from the future (clock skew) still counts.
        (report_key("ahead"), report(now + 2_000, "u", 1, &[])),
    ]);
    let (sum, counted, mut stale) = sum_reports(
        &annotations,
        &report_key("me"),
        now,
        Duration::from_secs(15),
    );
    assert_eq!(sum["t"].queued, 1);
    assert_eq!(sum["u"].queued, 1);
    assert_eq!(
        counted,
        BTreeSet::from(["ahead".to_owned(), "live".to_owned()])
    );
    stale.sort();
    assert_eq!(stale, vec![report_key("garbled"), report_key("gone")]);
}

#[test]
fn draining_drivers_are_shared() {
    let mut a = TenantLoad::default();
    a.draining.insert("d1".into());
    let mut b = TenantLoad::default();
    b.draining.insert("d2".into());
    a.add(&b);
    assert_eq!(
        a.draining,
        BTreeSet::from(["d1".to_owned(), "d2".to_owned()])
    );
    // An empty set is left out of the published form.
    let json = serde_json::to_string(&TenantLoad::default()).unwrap();
    assert!(!json.contains("draining"), "{json}");
}

#[test]
fn report_keys_are_valid_annotation_keys_for_any_identity() {
    assert_eq!(
        report_key("sparkgate-7d9f-x2"),
        "load.sparkgate.io/sparkgate-7d9f-x2"
    );
    let long = "x".repeat(200);
    for identity in [
        "host name-42",
        "-lead",
        "ünïcode",
        "",
        &long,
        "a/b",
        "trailing-",
    ] {
        let key = report_key(identity);
        let name = key.strip_prefix(KEY_PREFIX).unwrap();
        assert!(
            !name.is_empty() && name.len() <= 63,
            "{identity:?} -> {key}"
        );
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
            "{identity:?} -> {key}"
        );
        assert!(
            name.as_bytes()[0].is_ascii_alphanumeric(),
            "{identity:?} -> {key}"
        );
        assert!(
            name.as_bytes()[name.len() - 1].is_ascii_alphanumeric(),
            "{key}"
        );
    }
    // Different identities that sanitize alike keep different keys.
    assert_ne!(report_key("a b"), report_key("a_b "));
}
