use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET: &[u8] = b"a-shared-secret-of-enough-length";

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

fn config() -> JwtConfig {
    JwtConfig {
        hs256_secret_file: None,
        public_key_file: None,
        jwks_file: None,
        algorithms: vec!["HS256".into()],
        issuer: None,
        audience: None,
        user_claim: "sub".into(),
        groups_claim: "groups".into(),
        leeway: Duration::ZERO,
    }
}

/// HS256 with issuer and audience checked; the secret lives in `dir`.
fn hs256(dir: &Path) -> JwtAuthenticator {
    let path = dir.join("jwt.secret");
    std::fs::write(&path, [SECRET, b"\n"].concat()).unwrap();
    JwtAuthenticator::new(&JwtConfig {
        hs256_secret_file: Some(path),
        issuer: Some("https://idp.example".into()),
        audience: Some("sparkgate".into()),
        ..config()
    })
    .unwrap()
}

fn sign_hs(secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Good claims for alice, with `changes` applied (a null value removes the claim).
fn claims(changes: Value) -> Value {
    let mut c = json!({
        "sub": "alice", "groups": ["analysts", "admins"],
        "iss": "https://idp.example", "aud": "sparkgate",
        "exp": now() + 600, "nbf": now() - 10,
    });
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn bearer(token: &str) -> Credential<'_> {
    Credential::Bearer { token }
}

#[tokio::test]
async fn hs256_good_token() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = hs256(dir.path());
    let token = sign_hs(SECRET, &claims(json!({})));
    assert_eq!(
        jwt.authenticate(&bearer(&token)).await,
        Ok(Principal {
            user: "alice".into(),
            groups: vec!["analysts".into(), "admins".into()],
        })
    );
}

#[tokio::test]
async fn hs256_refuses_bad_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = hs256(dir.path());
    let good = sign_hs(SECRET, &claims(json!({})));
    let cases = [
        (
            "expired",
            sign_hs(SECRET, &claims(json!({"exp": now() - 60}))),
        ),
        (
            "not yet valid",
            sign_hs(SECRET, &claims(json!({"nbf": now() + 600}))),
        ),
        ("no expiry", sign_hs(SECRET, &claims(json!({"exp": null})))),
        (
            "wrong issuer",
            sign_hs(SECRET, &claims(json!({"iss": "https://evil.example"}))),
        ),
        ("no issuer", sign_hs(SECRET, &claims(json!({"iss": null})))),
        (
            "wrong audience",
            sign_hs(SECRET, &claims(json!({"aud": "someone-else"}))),
        ),
        (
            "no audience",
            sign_hs(SECRET, &claims(json!({"aud": null}))),
        ),
        ("no user", sign_hs(SECRET, &claims(json!({"sub": null})))),
        (
            "forged signature",
            sign_hs(b"another-secret-entirely-different!", &claims(json!({}))),
        ),
        ("tampered signature", {
            let i = good.len() - 10;
            let c = if &good[i..=i] == "A" { "B" } else { "A" };
            format!("{}{c}{}", &good[..i], &good[i + 1..])
        }),
        ("alg none", {
            let mut parts = good.split('.');
            let _ = parts.next();
            format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                parts.next().unwrap()
            )
        }),
        ("garbage", "not.a.token".into()),
    ];
    for (what, token) in &cases {
        assert_eq!(
            jwt.authenticate(&bearer(token)).await,
            Err(AuthError::Rejected),
            "{what}"
        );
    }
}

#[tokio::test]
async fn leeway_tolerates_clock_skew() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    std::fs::write(&path, SECRET).unwrap();
    let jwt = JwtAuthenticator::new(&JwtConfig {
        hs256_secret_file: Some(path),
        leeway: Duration::from_secs(60),
        ..config()
    })
    .unwrap();
    let skewed = sign_hs(
        SECRET,
        &claims(json!({"exp": now() - 20, "nbf": now() + 20})),
    );
    assert!(jwt.authenticate(&bearer(&skewed)).await.is_ok());
    let too_old = sign_hs(SECRET, &claims(json!({"exp": now() - 120})));
    assert_eq!(
        jwt.authenticate(&bearer(&too_old)).await,
        Err(AuthError::Rejected)
    );
}

#[tokio::test]
async fn a_token_in_the_password_must_name_the_given_user() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = hs256(dir.path());
    let token = sign_hs(SECRET, &claims(json!({})));
    let as_password = |user| Credential::Password {
        user,
        password: &token,
    };
    assert!(jwt.accepts(&as_password("alice")));
    assert_eq!(
        jwt.authenticate(&as_password("alice")).await.unwrap().user,
        "alice"
    );
    assert_eq!(
        jwt.authenticate(&as_password("")).await.unwrap().user,
        "alice"
    );
    assert_eq!(
        jwt.authenticate(&as_password("bob")).await,
        Err(AuthError::Rejected)
    );
    // Ordinary passwords are not for this method.
    let plain = Credential::Password {
        user: "alice",
        password: "hunter2",
    };
    assert!(!jwt.accepts(&plain));
    assert!(!jwt.accepts(&Credential::Anonymous { user: "alice" }));
}

#[test]
fn jwt_shape() {
    assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
    assert!(looks_like_jwt("a-_.b.c"));
    assert!(!looks_like_jwt("a.b"));
    assert!(!looks_like_jwt("a.b.c.d"));
    assert!(!looks_like_jwt("a..c"));
    assert!(!looks_like_jwt("a.b."));
    assert!(!looks_like_jwt("pass.w0rd.with space"));
    assert!(!looks_like_jwt("p@ss.word.x"));
}

fn groups_of(jwt: &JwtAuthenticator, groups: Value) -> Vec<String> {
    let token = sign_hs(SECRET, &claims(json!({ "groups": groups })));
    jwt.verify(&token).unwrap().groups
}

#[test]
fn groups_from_an_array_or_a_separated_string() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = hs256(dir.path());
    assert_eq!(groups_of(&jwt, json!(["a", "b"])), vec!["a", "b"]);
    assert_eq!(groups_of(&jwt, json!("a b")), vec!["a", "b"]);
    assert_eq!(groups_of(&jwt, json!("a,b, c")), vec!["a", "b", "c"]);
    assert_eq!(groups_of(&jwt, json!("")), Vec::<String>::new());
    assert_eq!(groups_of(&jwt, json!(null)), Vec::<String>::new());
    assert_eq!(groups_of(&jwt, json!(42)), Vec::<String>::new());
}

fn sign_rs(key: &str, claims: &Value, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture(key)).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

#[tokio::test]
async fn rs256_with_a_pem_public_key() {
    let jwt = JwtAuthenticator::new(&JwtConfig {
        public_key_file: Some(fixture("rs256-public.pem")),
        algorithms: vec!["RS256".into()],
        user_claim: "preferred_username".into(),
        groups_claim: "roles".into(),
        ..config()
    })
    .unwrap();
    let c = json!({"preferred_username": "bob", "roles": "engineers oncall", "exp": now() + 60});
    let p = jwt
        .authenticate(&bearer(&sign_rs("rs256-private.pem", &c, None)))
        .await
        .unwrap();
    assert_eq!(p.user, "bob");
    assert_eq!(p.groups, vec!["engineers", "oncall"]);
    let forged = sign_rs("other-private.pem", &c, None);
    assert_eq!(
        jwt.authenticate(&bearer(&forged)).await,
        Err(AuthError::Rejected)
    );
    // An HS256 token "signed" with the public key as secret (algorithm confusion).
    let public = std::fs::read(fixture("rs256-public.pem")).unwrap();
    let confused = sign_hs(&public, &c);
    assert_eq!(
        jwt.authenticate(&bearer(&confused)).await,
        Err(AuthError::Rejected)
    );
}

#[tokio::test]
async fn es256_with_a_pem_public_key() {
    let jwt = JwtAuthenticator::new(&JwtConfig {
        public_key_file: Some(fixture("es256-public.pem")),
        algorithms: vec!["ES256".into()],
        ..config()
    })
    .unwrap();
    let pem = std::fs::read(fixture("es256-private.pem")).unwrap();
    let token = encode(
        &Header::new(Algorithm::ES256),
        &json!({"sub": "carol", "exp": now() + 60}),
        &EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap();
    let p = jwt.authenticate(&bearer(&token)).await.unwrap();
    assert_eq!(
        p,
        Principal {
            user: "carol".into(),
            groups: vec![]
        }
    );
}

#[tokio::test]
async fn rs256_with_a_jwks_file_picks_the_key_by_kid() {
    let jwt = JwtAuthenticator::new(&JwtConfig {
        jwks_file: Some(fixture("jwks.json")),
        algorithms: vec!["RS256".into()],
        ..config()
    })
    .unwrap();
    let c = json!({"sub": "bob", "exp": now() + 60});
    let good = sign_rs("rs256-private.pem", &c, Some("rs-1"));
    assert_eq!(jwt.authenticate(&bearer(&good)).await.unwrap().user, "bob");
    // A single-key set also takes tokens without kid.
    let no_kid = sign_rs("rs256-private.pem", &c, None);
    assert!(jwt.authenticate(&bearer(&no_kid)).await.is_ok());
    let unknown_kid = sign_rs("rs256-private.pem", &c, Some("rs-2"));
    assert_eq!(
        jwt.authenticate(&bearer(&unknown_kid)).await,
        Err(AuthError::Rejected)
    );
    let forged = sign_rs("other-private.pem", &c, Some("rs-1"));
    assert_eq!(
        jwt.authenticate(&bearer(&forged)).await,
        Err(AuthError::Rejected)
    );
}

#[test]
fn bad_configurations_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "tiny").unwrap();
    let cases = [
        (config(), "exactly one of"),
        (
            JwtConfig {
                hs256_secret_file: Some(dir.path().join("missing")),
                ..config()
            },
            "cannot read JWT secret file",
        ),
        (
            JwtConfig {
                hs256_secret_file: Some(short.clone()),
                ..config()
            },
            "shorter than 32 bytes",
        ),
        (
            JwtConfig {
                hs256_secret_file: Some(short.clone()),
                algorithms: vec![],
                ..config()
            },
            "algorithms is empty",
        ),
        (
            JwtConfig {
                hs256_secret_file: Some(short),
                algorithms: vec!["HS999".into()],
                ..config()
            },
            "unknown JWT algorithm",
        ),
        (
            JwtConfig {
                public_key_file: Some(fixture("rs256-private.pem")),
                algorithms: vec!["ES256".into()],
                ..config()
            },
            "JWT public key",
        ),
        (
            JwtConfig {
                public_key_file: Some(fixture("rs256-public.pem")),
                algorithms: vec!["HS256".into()],
                ..config()
            },
            "need hs256_secret_file",
        ),
        (
            JwtConfig {
                jwks_file: Some(fixture("jwks.json")),
                algorithms: vec!["ES256".into()],
                ..config()
            },
            "has no key for",
        ),
    ];
    for (config, expected) in cases {
        let err = JwtAuthenticator::new(&config).err().expect(expected);
        assert!(matches!(err, AuthError::Config(_)), "{err}");
        assert!(
            err.to_string().contains(expected),
            "{err} (expected {expected:?})"
        );
    }
}

/// A cached success for a token ends at the token's `exp`, not `cache_ttl` later.
#[tokio::test]
async fn a_cached_token_stops_working_at_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let service = crate::AuthService::with_authenticators(
        &crate::config::AuthConfig {
            cache_ttl: Duration::from_secs(300),
            ..Default::default()
        },
        vec![Box::new(hs256(dir.path()))],
    );
    let token = sign_hs(SECRET, &claims(json!({"exp": now() + 1})));
    let client = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    let first = service.authenticate(&bearer(&token), client).await;
    assert_eq!(first.unwrap().user, "alice");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = service.authenticate(&bearer(&token), client).await;
    assert_eq!(later, Err(AuthError::Rejected), "expired, cache or not");
    let fresh = sign_hs(SECRET, &claims(json!({})));
    let service_fresh = service.authenticate(&bearer(&fresh), client).await;
    assert_eq!(
        service_fresh.unwrap().user,
        "alice",
        "a valid token still works"
    );
}
