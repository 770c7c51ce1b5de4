//! Without a server: DN parsing, config checks, and dead or silent servers. The real-server
//! tests are in `tests/ldap.rs`.

use std::time::{Duration, Instant};

use super::*;

fn config() -> LdapConfig {
    LdapConfig {
        url: "ldap://127.0.0.1:23999".into(),
        starttls: false,
        ca_file: None,
        connect_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_millis(300),
        user_dn_pattern: Some("uid={user},ou=people,dc=example,dc=org".into()),
        bind_dn: None,
        bind_password_file: None,
        user_search_base: None,
        user_search_filter: "(uid={user})".into(),
        group_source: GroupSource::MemberOf,
        group_search_base: None,
        group_search_filter: "(member={dn})".into(),
        group_name_attribute: "cn".into(),
        user_name_attribute: "uid".into(),
    }
}

#[test]
fn rdn_values() {
    let v = |dn: &str| rdn_value(dn, "cn");
    assert_eq!(
        v("cn=analysts,ou=groups,dc=example,dc=org").as_deref(),
        Some("analysts")
    );
    assert_eq!(v("CN = Admins , ou=groups").as_deref(), Some("Admins"));
    assert_eq!(
        v(r"cn=sales\, emea,ou=groups").as_deref(),
        Some("sales, emea")
    );
    assert_eq!(v(r"cn=caf\C3\A9,ou=groups").as_deref(), Some("café"));
    assert_eq!(v("cn=a+uid=b,ou=groups").as_deref(), Some("a"));
    assert_eq!(v("ou=analysts,dc=example"), None, "another attribute");
    assert_eq!(v("cn=,dc=example"), None);
    assert_eq!(v("garbage"), None);
}

#[test]
fn incomplete_or_contradictory_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "reader-pw\n").unwrap();
    let search = LdapConfig {
        user_dn_pattern: None,
        bind_dn: Some("cn=reader,dc=example,dc=org".into()),
        bind_password_file: Some(pw.clone()),
        user_search_base: Some("ou=people,dc=example,dc=org".into()),
        ..config()
    };
    assert!(LdapAuthenticator::new(&config()).is_ok());
    let ok = LdapAuthenticator::new(&search).unwrap();
    assert_eq!(
        ok.bind_password.as_deref(),
        Some("reader-pw"),
        "newline trimmed"
    );
    let cases = [
        (
            LdapConfig {
                url: "http://x".into(),
                ..config()
            },
            "must start with ldap://",
        ),
        (
            LdapConfig {
                url: "ldaps://x".into(),
                starttls: true,
                ..config()
            },
            "ldaps:// is TLS already",
        ),
        (
            LdapConfig {
                user_dn_pattern: None,
                ..config()
            },
            "set user_dn_pattern",
        ),
        (
            LdapConfig {
                user_dn_pattern: Some("uid=x,dc=org".into()),
                ..config()
            },
            "needs {user}",
        ),
        (
            LdapConfig {
                user_dn_pattern: config().user_dn_pattern,
                ..search.clone()
            },
            "not both",
        ),
        (
            LdapConfig {
                bind_password_file: None,
                ..search.clone()
            },
            "needs bind_dn",
        ),
        (
            LdapConfig {
                bind_password_file: Some(dir.path().join("nope")),
                ..search.clone()
            },
            "cannot read LDAP bind password file",
        ),
        (
            LdapConfig {
                group_source: GroupSource::Search,
                ..search.clone()
            },
            "needs group_search_base",
        ),
        (
            LdapConfig {
                ca_file: Some(pw.clone()),
                ..config()
            },
            "connection is plain",
        ),
        (
            LdapConfig {
                ca_file: Some(pw.clone()),
                starttls: true,
                ..config()
            },
            "holds no PEM certificate",
        ),
    ];
    for (config, expected) in cases {
        let err = LdapAuthenticator::new(&config).err().expect(expected);
        assert!(matches!(err, AuthError::Config(_)), "{err}");
        assert!(
            err.to_string().contains(expected),
            "{err} (expected {expected:?})"
        );
    }
}

fn login<'a>(user: &'a str, password: &'a str) -> Credential<'a> {
    Credential::Password { user, password }
}

#[tokio::test]
async fn empty_passwords_and_users_never_reach_the_server() {
    // Nothing listens on the configured port: an attempt would be Unavailable.
    let ldap = LdapAuthenticator::new(&config()).unwrap();
    assert_eq!(
        ldap.authenticate(&login("alice", "")).await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        ldap.authenticate(&login("", "pw")).await,
        Err(AuthError::MissingUser)
    );
    assert!(!ldap.accepts(&Credential::Bearer { token: "a.b.c" }));
    assert!(!ldap.accepts(&Credential::Anonymous { user: "alice" }));
}

/// A loopback listener in the project's test port range (each test its own part of it, so one
/// test cannot pick up a port another just closed on purpose).
fn listener(ports: std::ops::Range<u16>) -> std::net::TcpListener {
    ports
        .clone()
        .find_map(|port| std::net::TcpListener::bind(("127.0.0.1", port)).ok())
        .unwrap_or_else(|| panic!("no free port in {ports:?}"))
}

#[tokio::test]
async fn a_closed_port_is_unavailable_at_once() {
    let port = listener(23800..23850).local_addr().unwrap().port(); // closed again when dropped
    let ldap = LdapAuthenticator::new(&LdapConfig {
        url: format!("ldap://127.0.0.1:{port}"),
        ..config()
    })
    .unwrap();
    let started = Instant::now();
    let result = ldap.authenticate(&login("alice", "pw")).await;
    assert_eq!(
        result,
        Err(AuthError::Unavailable("LDAP connect failed".into()))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_server_that_never_answers_is_unavailable_within_the_timeouts() {
    // Accepts connections (the kernel does, from the backlog) but never says a word.
    let silent = listener(23850..23900);
    let port = silent.local_addr().unwrap().port();
    let ldap = LdapAuthenticator::new(&LdapConfig {
        url: format!("ldap://127.0.0.1:{port}"),
        ..config()
    })
    .unwrap();
    let started = Instant::now();
    let result = ldap.authenticate(&login("alice", "pw")).await;
    assert!(
        matches!(result, Err(AuthError::Unavailable(_))),
        "{result:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(silent);
}
