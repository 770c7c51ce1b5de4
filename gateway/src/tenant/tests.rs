use super::*;

fn tenant(name: &str, groups: &[&str], users: &[&str]) -> TenantConfig {
    TenantConfig::new_static(
        name,
        groups.iter().map(|s| s.to_string()).collect(),
        users.iter().map(|s| s.to_string()).collect(),
        vec![format!("{name}:10000")],
    )
}

fn who(user: &str, groups: &[&str]) -> Principal {
    Principal {
        user: user.into(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
    }
}

/// Principals × requests × expected outcome.
#[test]
fn decision_table() {
    let tenants = vec![
        tenant("analytics", &["analysts"], &["carol"]),
        tenant("engineering", &["engineers", "analysts"], &[]),
        tenant("sandbox", &[], &["*"]),
    ];
    let ok = |name: &str| Ok(name.to_owned());
    let cases: Vec<(Principal, Option<&str>, Result<String, TenantError>)> = vec![
        // first admitting tenant in config order
        (who("alice", &["analysts"]), None, ok("analytics")),
        (who("bob", &["engineers"]), None, ok("engineering")),
        (who("carol", &[]), None, ok("analytics")),
        (who("dave", &[]), None, ok("sandbox")),
        // asking for one of one's own tenants
        (
            who("alice", &["analysts"]),
            Some("engineering"),
            ok("engineering"),
        ),
        (who("alice", &["analysts"]), Some("sandbox"), ok("sandbox")),
        (who("alice", &["analysts"]), Some(""), ok("analytics")),
        // asking for a foreign or unknown tenant
        (
            who("bob", &["engineers"]),
            Some("analytics"),
            Err(TenantError::NotAdmitted {
                user: "bob".into(),
                tenant: "analytics".into(),
            }),
        ),
        (
            who("dave", &[]),
            Some("engineering"),
            Err(TenantError::NotAdmitted {
                user: "dave".into(),
                tenant: "engineering".into(),
            }),
        ),
        (
            who("alice", &["analysts"]),
            Some("nope"),
            Err(TenantError::Unknown {
                tenant: "nope".into(),
            }),
        ),
        // group names are exact, not prefixes
        (
            who("eve", &["analysts-readonly"]),
            Some("analytics"),
            Err(TenantError::NotAdmitted {
                user: "eve".into(),
                tenant: "analytics".into(),
            }),
        ),
    ];
    for (principal, requested, expected) in cases {
        let got = decide(&tenants, &principal, requested).map(|t| t.name.clone());
        assert_eq!(got, expected, "{principal:?} asking {requested:?}");
    }
}

#[test]
fn a_user_in_no_tenant_is_refused() {
    let tenants = vec![tenant("analytics", &["analysts"], &[])];
    assert_eq!(
        decide(&tenants, &who("mallory", &["others"]), None),
        Err(TenantError::NoTenant {
            user: "mallory".into()
        })
    );
}
