//! The service: chain order, error choice, cache, throttling, secrets kept out of logs.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::UsersFileConfig;

const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const ELSEWHERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

fn password<'a>(user: &'a str, password: &'a str) -> Credential<'a> {
    Credential::Password { user, password }
}

/// A method that knows one user/password (or always fails with `error`), and counts its calls.
#[derive(Clone)]
struct Fake {
    calls: Arc<AtomicUsize>,
    /// Each check takes this long, and counts as costly when it is not zero.
    delay: Duration,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    user: &'static str,
    password: &'static str,
    groups: Vec<String>,
    error: Option<AuthError>,
}

impl Fake {
    fn knows(user: &'static str, password: &'static str, group: &str) -> Self {
        Self {
            calls: Arc::default(),
            delay: Duration::ZERO,
            running: Arc::default(),
            peak: Arc::default(),
            user,
            password,
            groups: vec![group.to_owned()],
            error: None,
        }
    }

    fn failing(error: AuthError) -> Self {
        Self {
            error: Some(error),
            ..Self::knows("", "", "")
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Authenticator for Fake {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match *credential {
            Credential::Password { user, password }
                if user == self.user && password == self.password =>
            {
                Ok(Principal {
                    user: user.to_owned(),
                    groups: self.groups.clone(),
                })
            }
            _ => Err(AuthError::Rejected),
        }
    }

    fn accepts(&self, credential: &Credential<'_>) -> bool {
        matches!(credential, Credential::Password { .. })
    }

    fn costly(&self) -> bool {
        !self.delay.is_zero()
    }
}

fn config() -> AuthConfig {
    AuthConfig {
        methods: vec![],
        cache_ttl: Duration::from_secs(300),
        max_failures: 1000,
        failure_window: Duration::from_secs(60),
        lockout: Duration::from_secs(60),
        ..AuthConfig::default()
    }
}

fn service(config: &AuthConfig, fakes: &[&Fake]) -> AuthService {
    let methods = fakes
        .iter()
        .map(|f| Box::new((*f).clone()) as Box<dyn Authenticator>)
        .collect();
    AuthService::with_authenticators(config, methods)
}

#[tokio::test]
async fn methods_are_tried_in_order_and_the_first_success_wins() {
    let first = Fake::knows("alice", "a-pw", "from-first");
    let second = Fake::knows("alice", "a-pw", "from-second");
    let third = Fake::knows("bob", "b-pw", "from-third");
    let auth = service(&config(), &[&first, &second, &third]);
    let alice = auth
        .authenticate(&password("alice", "a-pw"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(alice.groups, vec!["from-first"]);
    assert_eq!((first.calls(), second.calls(), third.calls()), (1, 0, 0));
    let bob = auth
        .authenticate(&password("bob", "b-pw"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(bob.groups, vec!["from-third"]);
    assert_eq!((first.calls(), second.calls(), third.calls()), (2, 1, 1));
}

#[tokio::test]
async fn unavailable_beats_rejected_whatever_the_order() {
    let down = Fake::failing(AuthError::Unavailable("LDAP connect failed".into()));
    let no = Fake::failing(AuthError::Rejected);
    for order in [[&down, &no], [&no, &down]] {
        let auth = service(&config(), &order);
        assert_eq!(
            auth.authenticate(&password("alice", "pw"), LOCALHOST).await,
            Err(AuthError::Unavailable("LDAP connect failed".into()))
        );
    }
    // Nobody takes a bearer token: rejected, without asking anyone.
    let auth = service(&config(), &[&down]);
    let calls = down.calls();
    assert_eq!(
        auth.authenticate(&Credential::Bearer { token: "a.b.c" }, LOCALHOST)
            .await,
        Err(AuthError::Rejected)
    );
    assert_eq!(down.calls(), calls);
}

#[tokio::test]
async fn successes_are_cached_and_failures_are_not() {
    let fake = Fake::knows("alice", "a-pw", "g");
    let auth = service(&config(), &[&fake]);
    for _ in 0..3 {
        assert!(auth
            .authenticate(&password("alice", "a-pw"), LOCALHOST)
            .await
            .is_ok());
    }
    assert_eq!(fake.calls(), 1, "later calls come from the cache");
    // Another password is another key: it goes to the method, and its failure is not kept.
    for _ in 0..2 {
        assert_eq!(
            auth.authenticate(&password("alice", "guess"), LOCALHOST)
                .await,
            Err(AuthError::Rejected)
        );
    }
    assert_eq!(fake.calls(), 3);
    // The user name is part of the key.
    assert!(auth
        .authenticate(&password("ALICE", "a-pw"), LOCALHOST)
        .await
        .is_err());
    assert_eq!(fake.calls(), 4);
}

#[tokio::test]
async fn cached_results_expire_and_a_zero_ttl_turns_the_cache_off() {
    let fake = Fake::knows("alice", "a-pw", "g");
    let short = AuthConfig {
        cache_ttl: Duration::from_millis(200),
        ..config()
    };
    let auth = service(&short, &[&fake]);
    auth.authenticate(&password("alice", "a-pw"), LOCALHOST)
        .await
        .unwrap();
    auth.authenticate(&password("alice", "a-pw"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(fake.calls(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    auth.authenticate(&password("alice", "a-pw"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(fake.calls(), 2, "expired");

    let fake = Fake::knows("alice", "a-pw", "g");
    let off = AuthConfig {
        cache_ttl: Duration::ZERO,
        ..config()
    };
    let auth = service(&off, &[&fake]);
    auth.authenticate(&password("alice", "a-pw"), LOCALHOST)
        .await
        .unwrap();
    auth.authenticate(&password("alice", "a-pw"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(fake.calls(), 2);
}

#[test]
fn cache_keys_are_salted_digests() {
    let a = cache::CredentialCache::new(Duration::from_secs(1));
    let b = cache::CredentialCache::new(Duration::from_secs(1));
    let c = password("alice", "hunter2");
    assert_eq!(a.key(&c), a.key(&c));
    assert_ne!(a.key(&c), b.key(&c), "salt differs per service");
    assert_ne!(a.key(&c), a.key(&password("alice", "hunter3")));
    // (user, password) pairs cannot collide by moving characters across the boundary.
    assert_ne!(a.key(&password("ab", "c")), a.key(&password("a", "bc")));
    assert_ne!(
        a.key(&Credential::Anonymous { user: "alice" }),
        a.key(&password("alice", ""))
    );
    assert!(!format!("{:?}", a.key(&c)).contains("hunter2"));
}

#[tokio::test]
async fn throttling_per_user_and_per_address_with_lockout_expiry() {
    let fake = Fake::knows("alice", "a-pw", "g");
    let bob = Fake::knows("bob", "b-pw", "g");
    let config = AuthConfig {
        max_failures: 3,
        lockout: Duration::from_millis(300),
        cache_ttl: Duration::ZERO,
        ..config()
    };
    let auth = service(&config, &[&fake, &bob]);
    for _ in 0..3 {
        assert_eq!(
            auth.authenticate(&password("alice", "bad"), LOCALHOST)
                .await,
            Err(AuthError::Rejected)
        );
    }
    let calls = fake.calls();
    // alice is locked out from anywhere, even with the right password, without asking the
    // methods...
    for addr in [LOCALHOST, ELSEWHERE] {
        let r = auth.authenticate(&password("alice", "a-pw"), addr).await;
        assert!(matches!(r, Err(AuthError::Throttled { .. })), "{r:?}");
    }
    assert_eq!(fake.calls(), calls);
    // ...and so is the address that failed, for every user.
    let r = auth.authenticate(&password("bob", "b-pw"), LOCALHOST).await;
    assert!(matches!(r, Err(AuthError::Throttled { .. })), "{r:?}");
    assert!(auth
        .authenticate(&password("bob", "b-pw"), ELSEWHERE)
        .await
        .is_ok());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        auth.authenticate(&password("alice", "a-pw"), LOCALHOST)
            .await
            .is_ok(),
        "lockout ends"
    );
}

#[tokio::test]
async fn an_unavailable_service_does_not_count_as_a_failure() {
    let down = Fake::failing(AuthError::Unavailable("down".into()));
    let config = AuthConfig {
        max_failures: 2,
        ..config()
    };
    let auth = service(&config, &[&down]);
    for _ in 0..5 {
        assert_eq!(
            auth.authenticate(&password("alice", "pw"), LOCALHOST).await,
            Err(AuthError::Unavailable("down".into()))
        );
    }
}

#[tokio::test]
async fn none_takes_any_password_and_anonymous_but_needs_a_user() {
    let auth = AuthService::from_config(&AuthConfig::default()).unwrap();
    assert!(auth.allows_anonymous());
    let p = auth
        .authenticate(&password("alice", "whatever"), LOCALHOST)
        .await
        .unwrap();
    assert_eq!(
        p,
        Principal {
            user: "alice".into(),
            groups: vec![]
        }
    );
    let p = auth
        .authenticate(&Credential::Anonymous { user: "bob" }, LOCALHOST)
        .await
        .unwrap();
    assert_eq!(p.user, "bob");
    assert_eq!(
        auth.authenticate(&Credential::Anonymous { user: "" }, LOCALHOST)
            .await,
        Err(AuthError::MissingUser)
    );
    assert_eq!(
        auth.authenticate(&Credential::Bearer { token: "a.b.c" }, LOCALHOST)
            .await,
        Err(AuthError::Rejected),
        "none does not take tokens"
    );
}

#[tokio::test]
async fn anonymous_goes_to_none_only() {
    let fake = Fake::knows("alice", "", "g");
    let auth = service(&config(), &[&fake]);
    assert!(!auth.allows_anonymous());
    assert_eq!(
        auth.authenticate(&Credential::Anonymous { user: "alice" }, LOCALHOST)
            .await,
        Err(AuthError::Rejected)
    );
    assert_eq!(fake.calls(), 0);
}

#[test]
fn config_errors_are_clear() {
    let err = AuthService::from_config(&config()).err().unwrap();
    assert_eq!(
        err.to_string(),
        "authentication configuration: auth.methods is empty: nobody could log in"
    );
    let err = AuthService::from_config(&AuthConfig {
        methods: vec![MethodConfig::UsersFile(UsersFileConfig {
            path: "/nonexistent/users.toml".into(),
        })],
        ..config()
    })
    .err()
    .unwrap();
    assert!(matches!(err, AuthError::Config(_)));
    assert!(err.to_string().contains("/nonexistent/users.toml"), "{err}");
}

#[test]
fn error_texts_for_clients() {
    assert_eq!(
        AuthError::Rejected.to_string(),
        "invalid user name or password/token"
    );
    assert_eq!(
        AuthError::Throttled {
            retry_after: Duration::from_millis(1500)
        }
        .to_string(),
        "too many failed attempts; try again in 1 s"
    );
}

fn slow(delay: Duration) -> Fake {
    Fake {
        delay,
        ..Fake::knows("alice", "right", "g")
    }
}

/// 40 wrong passwords for one user at once, limit 5: at most 5 are checked, the rest refused
/// before any check (they were all checked before the attempt was counted first).
#[tokio::test]
async fn concurrent_wrong_passwords_are_checked_at_most_max_failures_times() {
    let fake = slow(Duration::from_millis(50));
    let config = AuthConfig {
        max_failures: 5,
        max_concurrent_checks: 64,
        ..config()
    };
    let svc = service(&config, &[&fake]);
    let results = futures::future::join_all((0..40).map(|i| {
        let svc = &svc;
        async move {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, i));
            let wrong = password("alice", "wrong");
            svc.authenticate(&wrong, from).await
        }
    }))
    .await;
    assert!(fake.calls() <= 5, "{} checks", fake.calls());
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r, Err(AuthError::Throttled { .. })))
            .count(),
        40 - fake.calls()
    );
    let locked = svc
        .authenticate(&password("alice", "right"), LOCALHOST)
        .await;
    assert!(
        matches!(locked, Err(AuthError::Throttled { .. })),
        "{locked:?}"
    );
}

/// A flood of logins (each a different user from a different address, so no throttle stops
/// it) runs at most `max_concurrent_checks` checks at once, and a good login still gets in.
#[tokio::test]
async fn costly_checks_are_bounded_and_a_good_login_is_still_served() {
    let fake = slow(Duration::from_millis(10));
    let config = AuthConfig {
        max_failures: 5,
        max_concurrent_checks: 3,
        check_wait: Duration::from_secs(30),
        ..config()
    };
    let svc = service(&config, &[&fake]);
    let users: Vec<String> = (0..60).map(|i| format!("user{i}")).collect();
    let flood = futures::future::join_all(users.iter().enumerate().map(|(i, user)| {
        let svc = &svc;
        async move {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 2, i as u8));
            let wrong = password(user, "wrong");
            svc.authenticate(&wrong, from).await
        }
    }));
    let alice = password("alice", "right");
    let good = svc.authenticate(&alice, LOCALHOST);
    let (flood, good) = tokio::join!(flood, good);
    assert!(flood.iter().all(|r| *r == Err(AuthError::Rejected)));
    assert_eq!(good.unwrap().user, "alice");
    assert_eq!(fake.peak.load(Ordering::SeqCst), 3, "checks at once");
}

/// Past `check_wait`, a login is refused as busy at once, and that counts as no failure.
#[tokio::test]
async fn past_the_check_wait_a_login_is_refused_as_busy() {
    let fake = slow(Duration::from_millis(500));
    let config = AuthConfig {
        max_failures: 1,
        max_concurrent_checks: 1,
        check_wait: Duration::from_millis(50),
        ..config()
    };
    let svc = service(&config, &[&fake]);
    let alice = password("alice", "right");
    let first = svc.authenticate(&alice, LOCALHOST);
    let second = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let started = std::time::Instant::now();
        let bob = password("bob", "x");
        let r = svc.authenticate(&bob, ELSEWHERE).await;
        (r, started.elapsed())
    };
    let (first, (second, waited)) = tokio::join!(first, second);
    assert_eq!(first.unwrap().user, "alice");
    assert_eq!(second, Err(AuthError::Busy));
    assert!(waited < Duration::from_millis(400), "{waited:?}");
    // max_failures = 1: had the busy refusal counted, bob and ELSEWHERE would be locked now.
    let r = svc.authenticate(&password("bob", "x"), ELSEWHERE).await;
    assert_eq!(r, Err(AuthError::Rejected));
}

#[test]
fn client_text_is_clipped_and_escaped_for_logs() {
    assert_eq!(clip("alice").to_string(), "alice");
    assert_eq!(clip("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
    let long = "é".repeat(100);
    assert_eq!(
        clip(&long).to_string(),
        format!("{}...(+72 bytes)", "é".repeat(CLIP_CHARS))
    );
}

#[tokio::test]
async fn absurdly_long_user_names_are_refused_before_any_check() {
    let fake = Fake::knows("alice", "right", "g");
    let svc = service(&config(), &[&fake]);
    let long = "a".repeat(MAX_USER_NAME + 1);
    let r = svc.authenticate(&password(&long, "right"), LOCALHOST).await;
    assert_eq!(r, Err(AuthError::Rejected));
    assert_eq!(fake.calls(), 0);
}
