//! LDAP authentication against a real OpenLDAP server (Debian slapd), started by
//! `integration/ldap_server.py` on a loopback port. If slapd is missing the test fails: the
//! test suite installs it (`integration/setup.sh`).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sparkgate_auth::config::{GroupSource, LdapConfig};
use sparkgate_auth::{AuthConfig, AuthError, AuthService, Credential, MethodConfig};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Slapd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // SIGTERM lets the helper stop slapd, whose process group it owns.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        // Belt and braces: slapd's own pid file.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("slapd.pid")) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }
}

fn start_slapd() -> Slapd {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integration/ldap_server.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs integration/ldap_server.py");
    let mut out = child.stdout.take().unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 256];
    while !seen.contains("LDAP ready") {
        use std::io::Read;
        assert!(Instant::now() < deadline, "slapd did not start: {seen}");
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "ldap_server.py exited before slapd was ready (is slapd installed?)"
        );
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Slapd { child, port, dir }
}

fn base_config(port: u16) -> LdapConfig {
    LdapConfig {
        url: format!("ldap://127.0.0.1:{port}"),
        starttls: false,
        ca_file: None,
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(2),
        user_dn_pattern: None,
        bind_dn: None,
        bind_password_file: None,
        user_search_base: None,
        user_search_filter: "(uid={user})".into(),
        group_source: GroupSource::MemberOf,
        group_search_base: None,
        group_search_filter: "(member={dn})".into(),
        group_name_attribute: "cn".into(),
    }
}

fn service(config: LdapConfig) -> AuthService {
    AuthService::from_config(&AuthConfig {
        methods: vec![MethodConfig::Ldap(config)],
        max_failures: 1000,
        ..AuthConfig::default()
    })
    .unwrap()
}

async fn login(auth: &AuthService, user: &str, password: &str) -> Result<Vec<String>, AuthError> {
    let mut groups = auth
        .authenticate(&Credential::Password { user, password }, LOCALHOST)
        .await?
        .groups;
    groups.sort();
    Ok(groups)
}

fn reader_password_file(slapd: &Slapd) -> PathBuf {
    slapd.dir.path().join("reader.pw")
}

#[tokio::test]
async fn ldap_against_real_slapd() {
    let slapd = start_slapd();

    // Simple bind with a DN pattern; groups from memberOf read as the user.
    let simple = service(LdapConfig {
        user_dn_pattern: Some("uid={user},ou=people,dc=example,dc=org".into()),
        ..base_config(slapd.port)
    });
    assert_eq!(
        login(&simple, "alice", "alice-pw").await,
        Ok(vec!["admins".into(), "analysts".into()])
    );
    assert_eq!(login(&simple, "carol", "carol-pw").await, Ok(vec![]));
    assert_eq!(
        login(&simple, "alice", "wrong").await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        login(&simple, "nobody", "x").await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        login(&simple, "alice", "").await,
        Err(AuthError::Rejected),
        "no unauthenticated bind"
    );
    // Injection through the user name does not reach another entry.
    assert_eq!(
        login(&simple, "alice,ou=people", "alice-pw").await,
        Err(AuthError::Rejected)
    );

    // Search-then-bind with a service account; groups from memberOf.
    let search = LdapConfig {
        bind_dn: Some("cn=reader,dc=example,dc=org".into()),
        bind_password_file: Some(reader_password_file(&slapd)),
        user_search_base: Some("ou=people,dc=example,dc=org".into()),
        ..base_config(slapd.port)
    };
    let by_member_of = service(search.clone());
    assert_eq!(
        login(&by_member_of, "bob", "bob-pw").await,
        Ok(vec!["engineers".into()])
    );
    assert_eq!(
        login(&by_member_of, "bob", "alice-pw").await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        login(&by_member_of, "*", "x").await,
        Err(AuthError::Rejected),
        "filter is escaped"
    );

    // Groups by searching group entries.
    let by_search = service(LdapConfig {
        group_source: GroupSource::Search,
        group_search_base: Some("ou=groups,dc=example,dc=org".into()),
        ..search
    });
    assert_eq!(
        login(&by_search, "alice", "alice-pw").await,
        Ok(vec!["admins".into(), "analysts".into()])
    );

    // The server goes away: a quick, clear "unavailable", not a hang or a rejection.
    let port = slapd.port;
    drop(slapd);
    let started = Instant::now();
    let down = service(LdapConfig {
        user_dn_pattern: Some("uid={user},ou=people,dc=example,dc=org".into()),
        ..base_config(port)
    });
    let result = login(&down, "alice", "alice-pw").await;
    assert!(
        matches!(result, Err(AuthError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}
