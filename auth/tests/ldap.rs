//! LDAP authentication against a real OpenLDAP server (Debian slapd), started per test by
//! `integration/ldap_server.py` on loopback ports in 23000-23799. slapd is required: if it is
//! missing these tests fail (`integration/setup.sh` installs it); they never skip.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sparkgate_auth::config::{GroupSource, LdapConfig};
use sparkgate_auth::{AuthConfig, AuthError, AuthService, Credential, MethodConfig};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PEOPLE: &str = "ou=people,dc=example,dc=org";

/// slapd run by the Python helper, stopped on drop.
struct Slapd {
    helper: Child,
    port: u16,
    ldaps_port: u16,
    dir: tempfile::TempDir,
}

impl Slapd {
    fn pid(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.pid"))
            .expect("slapd.pid")
            .trim()
            .to_owned()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} slapd");
    }

    fn reader_password_file(&self) -> PathBuf {
        self.dir.path().join("reader.pw")
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // In case a test stopped it.
        let pid = std::fs::read_to_string(self.dir.path().join("slapd.pid")).ok();
        if let Some(pid) = &pid {
            let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
        }
        // SIGTERM makes the helper stop slapd (whose process group it owns) and exit.
        let _ = Command::new("kill")
            .arg(self.helper.id().to_string())
            .status();
        let _ = self.helper.wait();
    }
}

fn slapd_installed() -> bool {
    Path::new("/usr/sbin/slapd").exists()
        || Command::new("sh")
            .args(["-c", "command -v slapd"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// A port free right now in `ports` (each test has its own range, so tests running in
/// parallel do not pick the same one).
fn free_port(ports: std::ops::Range<u16>, not: u16) -> u16 {
    ports
        .clone()
        .filter(|p| *p != not)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .unwrap_or_else(|| panic!("no free port in {ports:?}"))
}

fn start_slapd(ports: std::ops::Range<u16>) -> Slapd {
    assert!(
        slapd_installed(),
        "slapd is not installed; the LDAP tests need a real server: run \
         `DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils` (integration/setup.sh does)"
    );
    let port = free_port(ports.clone(), 0);
    let ldaps_port = free_port(ports, port);
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../integration/ldap_server.py");
    let mut helper = Command::new("python3")
        .arg(&script)
        .arg(dir.path())
        .arg(port.to_string())
        .arg(ldaps_port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs integration/ldap_server.py");
    let stdout = helper.stdout.take().unwrap();
    let mut slapd = Slapd {
        helper,
        port,
        ldaps_port,
        dir,
    };
    // The helper prints one line once slapd answers and is loaded, or exits with the reason on
    // stderr.
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    if !line.starts_with("LDAP ready") {
        let status = slapd.helper.wait().unwrap();
        panic!("integration/ldap_server.py did not start slapd ({status}); see its stderr above");
    }
    slapd.helper.stdout = None;
    slapd
}

fn base_config(url: String) -> LdapConfig {
    LdapConfig {
        url,
        starttls: false,
        ca_file: None,
        connect_timeout: Duration::from_secs(1),
        operation_timeout: Duration::from_millis(500),
        user_dn_pattern: None,
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

fn simple_bind(slapd: &Slapd) -> LdapConfig {
    simple_bind_at(slapd.port)
}

fn simple_bind_at(port: u16) -> LdapConfig {
    LdapConfig {
        user_dn_pattern: Some(format!("uid={{user}},{PEOPLE}")),
        ..base_config(format!("ldap://127.0.0.1:{port}"))
    }
}

fn search_then_bind(slapd: &Slapd) -> LdapConfig {
    LdapConfig {
        bind_dn: Some("cn=reader,dc=example,dc=org".into()),
        bind_password_file: Some(slapd.reader_password_file()),
        user_search_base: Some(PEOPLE.into()),
        ..base_config(format!("ldap://127.0.0.1:{}", slapd.port))
    }
}

fn by_group_search(config: LdapConfig) -> LdapConfig {
    LdapConfig {
        group_source: GroupSource::Search,
        group_search_base: Some("ou=groups,dc=example,dc=org".into()),
        ..config
    }
}

fn service(config: LdapConfig) -> AuthService {
    AuthService::from_config(&AuthConfig {
        methods: vec![MethodConfig::Ldap(config)],
        max_failures: 0, // these tests fail on purpose; throttling has its own tests
        cache_ttl: Duration::ZERO,
        ..AuthConfig::default()
    })
    .unwrap()
}

async fn login(auth: &AuthService, user: &str, password: &str) -> Result<Vec<String>, AuthError> {
    let principal = auth
        .authenticate(&Credential::Password { user, password }, LOCALHOST)
        .await?;
    assert_eq!(principal.user, user);
    Ok(principal.groups)
}

/// The name a login runs as: the directory's, whatever case or spaces were typed.
async fn runs_as(auth: &AuthService, typed: &str, password: &str) -> Result<String, AuthError> {
    let credential = Credential::Password {
        user: typed,
        password,
    };
    Ok(auth.authenticate(&credential, LOCALHOST).await?.user)
}

fn groups(names: &[&str]) -> Result<Vec<String>, AuthError> {
    Ok(names.iter().map(|g| g.to_string()).collect())
}

#[tokio::test]
async fn simple_bind_with_a_dn_pattern() {
    let slapd = start_slapd(23000..23200);
    let auth = service(simple_bind(&slapd));
    // Groups from memberOf, read from the user's own entry as the user.
    assert_eq!(
        login(&auth, "alice", "alice-pw").await,
        groups(&["admins", "analysts"])
    );
    assert_eq!(login(&auth, "bob", "bob-pw").await, groups(&["engineers"]));
    assert_eq!(login(&auth, "carol", "carol-pw").await, groups(&[]));
    assert_eq!(
        login(&auth, "alice", "bob-pw").await,
        Err(AuthError::Rejected)
    );
    assert_eq!(login(&auth, "nobody", "x").await, Err(AuthError::Rejected));
    assert_eq!(
        login(&auth, "alice", "").await,
        Err(AuthError::Rejected),
        "an empty password would be an unauthenticated bind, which slapd accepts"
    );
    assert_eq!(
        login(&auth, "", "alice-pw").await,
        Err(AuthError::MissingUser)
    );
    // The user name is DN-escaped: it cannot point at another entry.
    assert_eq!(
        login(&auth, "alice,ou=people", "alice-pw").await,
        Err(AuthError::Rejected)
    );

    // The directory matches names case-insensitively; the session runs as its name.
    assert_eq!(
        runs_as(&auth, "ALICE", "alice-pw").await,
        Ok("alice".into())
    );
    assert_eq!(runs_as(&auth, "Bob", "bob-pw").await, Ok("bob".into()));

    // Groups by a group search, bound as the user.
    let auth = service(by_group_search(simple_bind(&slapd)));
    assert_eq!(
        login(&auth, "alice", "alice-pw").await,
        groups(&["admins", "analysts"])
    );
    assert_eq!(login(&auth, "carol", "carol-pw").await, groups(&[]));
}

#[tokio::test]
async fn search_then_bind_with_a_service_account() {
    let slapd = start_slapd(23200..23400);
    let auth = service(search_then_bind(&slapd));
    // Groups from the memberOf values the search returned.
    assert_eq!(login(&auth, "bob", "bob-pw").await, groups(&["engineers"]));
    assert_eq!(
        login(&auth, "alice", "alice-pw").await,
        groups(&["admins", "analysts"])
    );
    assert_eq!(login(&auth, "carol", "carol-pw").await, groups(&[]));
    assert_eq!(
        login(&auth, "bob", "alice-pw").await,
        Err(AuthError::Rejected)
    );
    assert_eq!(login(&auth, "nobody", "x").await, Err(AuthError::Rejected));
    assert_eq!(login(&auth, "bob", "").await, Err(AuthError::Rejected));
    // The user name is filter-escaped (RFC 4515): no wildcards, no injected clauses.
    assert_eq!(login(&auth, "*", "bob-pw").await, Err(AuthError::Rejected));
    assert_eq!(login(&auth, "b*", "bob-pw").await, Err(AuthError::Rejected));
    assert_eq!(
        login(&auth, "bob)(uid=*", "bob-pw").await,
        Err(AuthError::Rejected)
    );

    // Case and insignificant spaces as typed do not make another user.
    for typed in ["ALICE", " alice", "alice ", "Alice"] {
        assert_eq!(
            runs_as(&auth, typed, "alice-pw").await,
            Ok("alice".into()),
            "{typed:?}"
        );
    }

    // Groups by a group search, bound as the service account.
    let auth = service(by_group_search(search_then_bind(&slapd)));
    assert_eq!(
        login(&auth, "alice", "alice-pw").await,
        groups(&["admins", "analysts"])
    );
    assert_eq!(login(&auth, "bob", "bob-pw").await, groups(&["engineers"]));
    assert_eq!(login(&auth, "carol", "carol-pw").await, groups(&[]));

    // A wrong service password is the operator's problem, not the user's: unavailable.
    let wrong = slapd.dir.path().join("wrong.pw");
    std::fs::write(&wrong, "not-the-reader-pw").unwrap();
    let auth = service(LdapConfig {
        bind_password_file: Some(wrong),
        ..search_then_bind(&slapd)
    });
    assert!(matches!(
        login(&auth, "bob", "bob-pw").await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn starttls_and_ldaps_with_a_custom_ca() {
    let slapd = start_slapd(23400..23600);
    let starttls = service(LdapConfig {
        starttls: true,
        ca_file: Some(slapd.ca_file()),
        ..search_then_bind(&slapd)
    });
    assert_eq!(
        login(&starttls, "bob", "bob-pw").await,
        groups(&["engineers"])
    );
    assert_eq!(
        login(&starttls, "bob", "wrong").await,
        Err(AuthError::Rejected)
    );
    // StartTLS really happens: without the CA it fails.
    let untrusted = service(LdapConfig {
        starttls: true,
        ..search_then_bind(&slapd)
    });
    assert!(matches!(
        login(&untrusted, "bob", "bob-pw").await,
        Err(AuthError::Unavailable(_))
    ));

    let ldaps_url = format!("ldaps://127.0.0.1:{}", slapd.ldaps_port);
    let ldaps = service(LdapConfig {
        url: ldaps_url.clone(),
        ca_file: Some(slapd.ca_file()),
        ..simple_bind(&slapd)
    });
    assert_eq!(
        login(&ldaps, "alice", "alice-pw").await,
        groups(&["admins", "analysts"])
    );

    // Without the CA, the server's certificate is not trusted: no password is sent.
    let untrusted = service(LdapConfig {
        url: ldaps_url,
        ..simple_bind(&slapd)
    });
    assert!(matches!(
        login(&untrusted, "alice", "alice-pw").await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_hung_or_stopped_server_is_unavailable_quickly() {
    let slapd = start_slapd(23600..23800);
    let auth = service(search_then_bind(&slapd));
    assert!(login(&auth, "bob", "bob-pw").await.is_ok());

    // Hung: slapd is frozen, the kernel still accepts connections; the timeouts end the attempt
    // (connect 1 s + 4 × operation 0.5 s at most).
    slapd.signal("-STOP");
    let started = Instant::now();
    let result = login(&auth, "bob", "bob-pw").await;
    assert!(
        matches!(result, Err(AuthError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    slapd.signal("-CONT");
    assert!(login(&auth, "bob", "bob-pw").await.is_ok(), "recovers");

    // Stopped: connection refused, at once.
    let port = slapd.port;
    drop(slapd);
    let down = service(simple_bind_at(port));
    let started = Instant::now();
    let result = login(&down, "alice", "alice-pw").await;
    assert!(
        matches!(result, Err(AuthError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
