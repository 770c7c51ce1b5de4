use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::config::{JwtConfig, UsersFileConfig};

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn service(methods: Vec<MethodConfig>) -> AuthService {
    // Tests fail on purpose many times from one address; throttling has its own test.
    AuthService::from_config(&AuthConfig {
        methods,
        max_failures: 1000,
        ..AuthConfig::default()
    })
    .unwrap()
}

fn password<'a>(user: &'a str, password: &'a str) -> Credential<'a> {
    Credential::Password { user, password }
}

#[tokio::test]
async fn none_accepts_any_password_but_needs_a_user() {
    let auth = service(vec![MethodConfig::None]);
    assert!(auth.allows_anonymous());
    let p = auth
        .authenticate(&password("alice", "whatever"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(p.user, "alice");
    assert_eq!(
        auth.authenticate(&Credential::Anonymous { user: "" }, LOCALHOST)
            .await,
        Err(AuthError::MissingUser)
    );
    assert_eq!(
        auth.authenticate(&Credential::Bearer { token: "x" }, LOCALHOST)
            .await,
        Err(AuthError::Rejected),
        "none does not take tokens"
    );
}

fn users_file(dir: &Path) -> PathBuf {
    let path = dir.join("users.toml");
    users_file::set_user(&path, "alice", "wonderland", &["analysts".into()]).unwrap();
    users_file::set_user(&path, "bob", "builder", &[]).unwrap();
    path
}

#[tokio::test]
async fn users_file_checks_argon2_hashes_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = users_file(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("$argon2id$") && !text.contains("wonderland"),
        "only hashes are stored"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let auth = service(vec![MethodConfig::UsersFile(UsersFileConfig {
        path: path.clone(),
    })]);
    assert!(!auth.allows_anonymous());
    let alice = auth
        .authenticate(&password("alice", "wonderland"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(alice.groups, vec!["analysts".to_string()]);
    assert_eq!(
        auth.authenticate(&password("alice", "wrong"), LOCALHOST)
            .await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        auth.authenticate(&password("nobody", "x"), LOCALHOST).await,
        Err(AuthError::Rejected)
    );
    // A new user appears without a restart.
    std::thread::sleep(Duration::from_millis(20));
    users_file::set_user(&path, "carol", "singer", &["engineers".into()]).unwrap();
    let carol = auth
        .authenticate(&password("carol", "singer"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(carol.groups, vec!["engineers".to_string()]);
}

#[tokio::test]
async fn users_file_with_plaintext_password_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    std::fs::write(&path, "[users.alice]\npassword = \"secret\"\n").unwrap();
    let err = AuthService::from_config(&AuthConfig {
        methods: vec![MethodConfig::UsersFile(UsersFileConfig { path })],
        ..AuthConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("not an argon2 hash"), "{err}");
}

fn hs256(dir: &Path) -> (MethodConfig, &'static [u8]) {
    let secret = b"a-shared-secret-of-enough-length";
    let path = dir.join("jwt.secret");
    std::fs::write(&path, secret).unwrap();
    let config = JwtConfig {
        hs256_secret_file: Some(path),
        public_key_file: None,
        jwks_file: None,
        algorithms: vec!["HS256".into()],
        issuer: Some("https://idp.example".into()),
        audience: Some("sparkgate".into()),
        user_claim: "sub".into(),
        groups_claim: "groups".into(),
        leeway: Duration::from_secs(0),
    };
    (MethodConfig::Jwt(config), secret)
}

fn token(secret: &[u8], claims: serde_json::Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "sub": "alice", "groups": ["analysts", "admins"],
        "iss": "https://idp.example", "aud": "sparkgate",
        "exp": now() + 600, "nbf": now() - 10,
    });
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

#[tokio::test]
async fn jwt_hs256_checks_signature_issuer_audience_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let (method, secret) = hs256(dir.path());
    let auth = service(vec![method]);
    let good = token(secret, claims(json!({})));
    let p = auth
        .authenticate(&Credential::Bearer { token: &good }, LOCALHOST)
        .await
        .unwrap();
    assert_eq!(
        p,
        Principal {
            user: "alice".into(),
            groups: vec!["analysts".into(), "admins".into()]
        }
    );
    // The same token in a SASL PLAIN password, with the matching user or none.
    assert!(auth
        .authenticate(&password("alice", &good), LOCALHOST)
        .await
        .is_ok());
    assert!(auth
        .authenticate(&password("", &good), LOCALHOST)
        .await
        .is_ok());
    assert_eq!(
        auth.authenticate(&password("bob", &good), LOCALHOST).await,
        Err(AuthError::Rejected)
    );
    let bad = [
        token(secret, claims(json!({"exp": now() - 60}))),
        token(secret, claims(json!({"nbf": now() + 600}))),
        token(secret, claims(json!({"iss": "https://evil.example"}))),
        token(secret, claims(json!({"aud": "someone-else"}))),
        token(b"another-secret-entirely-different", claims(json!({}))),
        format!("{}x", &good[..good.len() - 1]),
        "not.a.token".into(),
    ];
    for t in &bad {
        assert_eq!(
            auth.authenticate(&Credential::Bearer { token: t }, LOCALHOST)
                .await,
            Err(AuthError::Rejected),
            "{t}"
        );
    }
}

#[tokio::test]
async fn jwt_rs256_and_groups_from_a_string_claim() {
    let config = JwtConfig {
        hs256_secret_file: None,
        public_key_file: Some(fixture("rs256-public.pem")),
        jwks_file: None,
        algorithms: vec!["RS256".into()],
        issuer: None,
        audience: None,
        user_claim: "preferred_username".into(),
        groups_claim: "roles".into(),
        leeway: Duration::from_secs(30),
    };
    let auth = service(vec![MethodConfig::Jwt(config)]);
    let sign = |key: &str| {
        let pem = std::fs::read(fixture(key)).unwrap();
        encode(
            &Header::new(jsonwebtoken::Algorithm::RS256),
            &json!({"preferred_username": "bob", "roles": "engineers, oncall", "exp": now() + 60}),
            &EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap()
    };
    let good = sign("rs256-private.pem");
    let p = auth
        .authenticate(&Credential::Bearer { token: &good }, LOCALHOST)
        .await
        .unwrap();
    assert_eq!(p.user, "bob");
    assert_eq!(
        p.groups,
        vec!["engineers".to_string(), "oncall".to_string()]
    );
    let forged = sign("other-private.pem");
    assert_eq!(
        auth.authenticate(&Credential::Bearer { token: &forged }, LOCALHOST)
            .await,
        Err(AuthError::Rejected)
    );
}

#[tokio::test]
async fn failures_are_throttled_per_user_and_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = users_file(dir.path());
    let auth = AuthService::from_config(&AuthConfig {
        methods: vec![MethodConfig::UsersFile(UsersFileConfig { path })],
        max_failures: 3,
        failure_window: Duration::from_secs(60),
        lockout: Duration::from_millis(300),
        ..AuthConfig::default()
    })
    .unwrap();
    let elsewhere: IpAddr = "127.0.0.2".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(
            auth.authenticate(&password("alice", "bad"), LOCALHOST)
                .await,
            Err(AuthError::Rejected)
        );
    }
    // alice is locked out from anywhere, even with the right password...
    for addr in [LOCALHOST, elsewhere] {
        let r = auth
            .authenticate(&password("alice", "wonderland"), addr)
            .await;
        assert!(matches!(r, Err(AuthError::Throttled { .. })), "{r:?}");
    }
    // ...and so is the address that failed, for every user.
    let r = auth
        .authenticate(&password("bob", "builder"), LOCALHOST)
        .await;
    assert!(matches!(r, Err(AuthError::Throttled { .. })), "{r:?}");
    assert!(auth
        .authenticate(&password("bob", "builder"), elsewhere)
        .await
        .is_ok());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        auth.authenticate(&password("alice", "wonderland"), LOCALHOST)
            .await
            .is_ok(),
        "lockout ends"
    );
}

#[tokio::test]
async fn chain_tries_methods_in_order_and_caches_successes() {
    let dir = tempfile::tempdir().unwrap();
    let path = users_file(dir.path());
    let (jwt, secret) = hs256(dir.path());
    let auth = service(vec![
        MethodConfig::UsersFile(UsersFileConfig { path: path.clone() }),
        jwt,
    ]);
    assert!(auth
        .authenticate(&password("alice", "wonderland"), LOCALHOST)
        .await
        .is_ok());
    let t = token(secret, claims(json!({})));
    assert_eq!(
        auth.authenticate(&password("alice", &t), LOCALHOST)
            .await
            .unwrap()
            .user,
        "alice"
    );
    // Cached: the result survives the user's removal from the file until the TTL ends.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, "").unwrap();
    assert!(auth
        .authenticate(&password("alice", "wonderland"), LOCALHOST)
        .await
        .is_ok());
    assert_eq!(
        auth.authenticate(&password("bob", "builder"), LOCALHOST)
            .await,
        Err(AuthError::Rejected)
    );
}

#[test]
fn secrets_never_show_in_debug_or_errors() {
    let c = password("alice", "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
    let b = Credential::Bearer {
        token: "eyJsecret.token.here",
    };
    assert!(!format!("{b:?}").contains("eyJ"));
    for e in [
        AuthError::Rejected,
        AuthError::Throttled {
            retry_after: Duration::from_secs(3),
        },
    ] {
        assert!(!e.to_string().contains("hunter2"));
    }
}
