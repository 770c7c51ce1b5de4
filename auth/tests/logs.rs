//! Passwords and tokens never reach the logs or error texts: every attempt below is logged by a
//! global subscriber at TRACE, and the output is searched for the secrets. Alone in its test
//! binary, so the subscriber sees every event.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sparkgate_auth::config::{JwtConfig, UsersFileConfig};
use sparkgate_auth::{users_file, AuthConfig, AuthService, Credential, MethodConfig};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn password<'a>(user: &'a str, password: &'a str) -> Credential<'a> {
    Credential::Password { user, password }
}

/// Collects everything logged, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn passwords_and_tokens_never_reach_the_logs_or_error_texts() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    users_file::set_user(&users, "alice", "correct-horse", &[]).unwrap();
    let secret = dir.path().join("jwt.secret");
    std::fs::write(&secret, "a-shared-secret-of-enough-length").unwrap();
    let auth = AuthService::from_config(&AuthConfig {
        methods: vec![
            MethodConfig::UsersFile(UsersFileConfig { path: users }),
            MethodConfig::Jwt(JwtConfig {
                hs256_secret_file: Some(secret),
                public_key_file: None,
                jwks_file: None,
                algorithms: vec!["HS256".into()],
                issuer: None,
                audience: None,
                user_claim: "sub".into(),
                groups_claim: "groups".into(),
                leeway: Duration::ZERO,
            }),
        ],
        max_failures: 5,
        ..AuthConfig::default()
    })
    .unwrap();
    let forged = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.Zm9yZ2VkLXNpZ25hdHVyZQ";
    let mut errors = String::new();
    for credential in [
        password("alice", "hunter2-wrong"),
        password("alice", forged),
        Credential::Bearer { token: forged },
        password("alice", "correct-horse"),
        password("mallory", "hunter2-wrong"),
        password("mallory", "hunter2-wrong"),
        password("mallory", "hunter2-wrong"),
    ] {
        if let Err(e) = auth.authenticate(&credential, LOCALHOST).await {
            errors.push_str(&format!("{e} {e:?}\n"));
        }
        errors.push_str(&format!("{credential:?}\n"));
    }
    // Client-chosen user names cost a bounded amount of log, and cannot forge log lines.
    let logged = || logs.0.lock().unwrap().len();
    let huge = "x".repeat(300_000);
    let forging = "eve\nINFO forged line".to_owned();
    for user in [huge.as_str(), forging.as_str()] {
        let before = logged();
        let refused = auth.authenticate(&password(user, "nope"), LOCALHOST).await;
        assert!(refused.is_err());
        let grew = logged() - before;
        assert!(grew < 2_000, "{grew} bytes of log for one attempt");
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.contains("\nINFO forged line"), "{logs}");
    assert!(
        logs.contains("+299936 bytes"),
        "the clipped name says how much was cut"
    );
    assert!(logs.contains("eve\\nINFO forged line"), "escaped: {logs}");
    assert!(logs.contains("authentication failed"), "{logs}");
    assert!(
        logs.contains("user=\"alice\"") || logs.contains("user=alice"),
        "{logs}"
    );
    assert!(logs.contains("127.0.0.1"), "{logs}");
    assert!(
        logs.contains("Throttled") || logs.contains("too many"),
        "{logs}"
    );
    for secret in [
        "hunter2",
        "correct-horse",
        "Zm9yZ2Vk",
        "eyJ",
        "a-shared-secret",
    ] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
        assert!(!errors.contains(secret), "{secret} in errors:\n{errors}");
    }
}
