//! Who a client is: authentication methods turn a [`Credential`] into a [`Principal`] (user and
//! groups). This crate knows nothing about Thrift; the gateway hands it what the client presented
//! (SASL PLAIN, HTTP Basic/Bearer, or a NOSASL user name) and the client's address.
//!
//! Layers, inside out:
//! 1. **Methods**, each an [`Authenticator`]: [`users_file`] (argon2id hashes in a TOML file),
//!    [`ldap`] (simple bind or search-then-bind, groups from `memberOf` or a group search),
//!    [`jwt`] (HS256/RS256/ES256 bearer tokens) and [`NoneAuthenticator`] (development only).
//! 2. **[`AuthService`]**: tries the configured methods in order (first success wins), caches
//!    successes (keyed by user and a salted digest of the credential, never the plaintext) and
//!    throttles repeated failures per user and per client address.
//!
//! Passwords and tokens never appear in logs, in `Debug` output or in error texts.

pub mod config;
pub mod jwt;
pub mod ldap;
pub mod users_file;

mod cache;
mod throttle;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tracing::{debug, info, warn};

pub use config::{AuthConfig, MethodConfig};
pub use users_file::hash_password;

/// Longest user name a credential may claim, in bytes; longer ones are refused before any
/// check (no directory or users file has such names).
pub const MAX_USER_NAME: usize = 256;

/// How much client-supplied text (user names, requested tenants, method names) logs and error
/// messages keep: a 300 KB user name must not make 300 KB of log per attempt.
pub const CLIP_CHARS: usize = 64;

/// Client-supplied text as logs and messages show it: at most [`CLIP_CHARS`] characters,
/// control characters escaped (no forged log lines), and how much was left out.
#[derive(Debug, Clone, Copy)]
pub struct Clip<'a>(pub &'a str);

/// See [`Clip`].
pub fn clip(text: &str) -> Clip<'_> {
    Clip(text)
}

impl std::fmt::Display for Clip<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (shown, (i, c)) in self.0.char_indices().enumerate() {
            if shown == CLIP_CHARS {
                return write!(f, "...(+{} bytes)", self.0.len() - i);
            }
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// An authenticated client: its user name and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub groups: Vec<String>,
}

/// What a client presented to prove who it is. `Debug` never shows the secret.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// SASL PLAIN or HTTP Basic: user and password. The password may carry a JWT, for clients
    /// that only have user/password fields.
    Password { user: &'a str, password: &'a str },
    /// HTTP `Authorization: Bearer`: a JWT.
    Bearer { token: &'a str },
    /// NOSASL: the transport carries no proof; the user name comes with OpenSession.
    Anonymous { user: &'a str },
}

impl Credential<'_> {
    /// The user name the client claims, if the credential carries one (a bearer token names its
    /// user inside, which only the JWT method may read).
    pub fn claimed_user(&self) -> Option<&str> {
        match self {
            Credential::Password { user, .. } | Credential::Anonymous { user } => Some(user),
            Credential::Bearer { .. } => None,
        }
    }

    /// A name for logs: "password", "bearer token" or "anonymous".
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Password { .. } => "password",
            Credential::Bearer { .. } => "bearer token",
            Credential::Anonymous { .. } => "anonymous",
        }
    }
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.claimed_user() {
            Some(user) => write!(f, "Credential({}, user {user:?})", self.kind()),
            None => write!(f, "Credential({})", self.kind()),
        }
    }
}

/// Why a client was not let in. Display texts are meant for clients: they never contain the
/// password or token.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong password, unknown user, bad or expired token: deliberately indistinguishable.
    #[error("invalid user name or password/token")]
    Rejected,
    /// Too many failures for this user or from this address.
    #[error("too many failed attempts; try again in {} s", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    /// The identity service (LDAP server) could not be asked; a retry may help.
    #[error("the identity service is unavailable: {0}")]
    Unavailable(String),
    /// Too many credential checks are running; a retry in a moment may help.
    #[error("sparkgate is checking too many logins at once; retry in a moment")]
    Busy,
    /// The credential names no user where one is needed.
    #[error("a user name is required")]
    MissingUser,
    /// Bad configuration, found at startup by [`AuthService::from_config`].
    #[error("authentication configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// When every method failed, the error that says most about why: an unreachable service
    /// beats a missing user name, which beats a plain rejection.
    fn weight(&self) -> u8 {
        match self {
            AuthError::Rejected => 0,
            AuthError::MissingUser => 1,
            AuthError::Throttled { .. } | AuthError::Busy => 2,
            AuthError::Unavailable(_) => 3,
            AuthError::Config(_) => 4,
        }
    }
}

/// One authentication method.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// The principal the credential proves, or why not. A credential of a kind this method does
    /// not take is [`AuthError::Rejected`].
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError>;

    /// As [`Authenticator::authenticate`], with the time the proof stops being valid, if it
    /// does (a token's `exp`): a cached success never outlives it.
    async fn authenticate_until(
        &self,
        credential: &Credential<'_>,
    ) -> Result<(Principal, Option<SystemTime>), AuthError> {
        self.authenticate(credential).await.map(|p| (p, None))
    }

    /// Whether this method takes this kind of credential at all; [`AuthService`] skips it
    /// otherwise, so it neither logs a failure nor decides the error.
    fn accepts(&self, credential: &Credential<'_>) -> bool {
        let _ = credential;
        true
    }

    /// The method's name in logs.
    fn name(&self) -> &'static str {
        "custom"
    }

    /// Whether this method lets anyone in (the gateway refuses that on public binds).
    fn admits_anyone(&self) -> bool {
        false
    }

    /// Whether a check costs much memory or a connection (a password hash, a directory bind):
    /// such checks run at most `auth.max_concurrent_checks` at once.
    fn costly(&self) -> bool {
        false
    }
}

/// Accepts any user name and ignores the password, as the Spark Thrift Server does with auth
/// NONE. For development only.
#[derive(Debug, Default, Clone)]
pub struct NoneAuthenticator;

#[async_trait::async_trait]
impl Authenticator for NoneAuthenticator {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError> {
        match credential.claimed_user() {
            None => Err(AuthError::Rejected),
            Some("") => Err(AuthError::MissingUser),
            Some(user) => Ok(Principal {
                user: user.to_owned(),
                groups: Vec::new(),
            }),
        }
    }

    fn accepts(&self, credential: &Credential<'_>) -> bool {
        !matches!(credential, Credential::Bearer { .. })
    }

    fn name(&self) -> &'static str {
        "none"
    }

    fn admits_anyone(&self) -> bool {
        true
    }
}

/// The configured methods, with caching and throttling around them. Cheap to share behind an
/// `Arc`; every method is safe to call concurrently.
pub struct AuthService {
    /// Tried in config order.
    methods: Vec<Box<dyn Authenticator>>,
    /// Successful results, so a client reconnecting does not pay an LDAP round trip or an
    /// argon2 hash each time.
    cache: cache::CredentialCache,
    /// Failure counts and lockouts per user and per client address.
    throttle: throttle::Throttle,
    /// Permits for costly credential checks running at once (`auth.max_concurrent_checks`).
    checks: tokio::sync::Semaphore,
    /// How long a check waits for a permit before a "busy" refusal (`auth.check_wait`).
    check_wait: Duration,
}

impl AuthService {
    /// Builds the configured methods. An unreadable file, an unparsable key or an incomplete
    /// method is an [`AuthError::Config`] here, at startup.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthError> {
        if config.methods.is_empty() {
            return Err(AuthError::Config(
                "auth.methods is empty: nobody could log in".into(),
            ));
        }
        let methods = config
            .methods
            .iter()
            .map(|m| -> Result<Box<dyn Authenticator>, AuthError> {
                Ok(match m {
                    MethodConfig::None {} => Box::new(NoneAuthenticator),
                    MethodConfig::UsersFile(c) => Box::new(users_file::UsersFile::new(c)?),
                    MethodConfig::Ldap(c) => Box::new(ldap::LdapAuthenticator::new(c)?),
                    MethodConfig::Jwt(c) => Box::new(jwt::JwtAuthenticator::new(c)?),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with_authenticators(config, methods))
    }

    /// A service over the given methods instead of `config.methods` (for tests and embedders);
    /// caching and throttling follow `config`.
    pub fn with_authenticators(config: &AuthConfig, methods: Vec<Box<dyn Authenticator>>) -> Self {
        Self {
            methods,
            cache: cache::CredentialCache::new(config.cache_ttl),
            throttle: throttle::Throttle::new(
                config.max_failures,
                config.failure_window,
                config.lockout,
            ),
            checks: tokio::sync::Semaphore::new(config.max_concurrent_checks.max(1)),
            check_wait: config.check_wait,
        }
    }

    /// Whether a `none` method is configured (anyone gets in).
    pub fn allows_anonymous(&self) -> bool {
        self.methods.iter().any(|m| m.admits_anyone())
    }

    /// Who the credential proves the client to be. Methods are tried in config order; the first
    /// success wins. When all fail, the most meaningful error is returned
    /// ([`AuthError::Unavailable`] over [`AuthError::Rejected`]), and the failure counts against
    /// the user and the client address, unless the cause was an unavailable service.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future leaves no partial state (at worst an LDAP connection is
    /// closed early).
    pub async fn authenticate(
        &self,
        credential: &Credential<'_>,
        client: IpAddr,
    ) -> Result<Principal, AuthError> {
        self.authenticate_until(credential, client)
            .await
            .map(|(principal, _)| principal)
    }

    /// As [`AuthService::authenticate`], with the time the proof stops being valid, if it does
    /// (a token's `exp`): what is derived from the login (an HTTP cookie) must not outlive it.
    ///
    /// # Cancel safety
    /// As [`AuthService::authenticate`].
    pub async fn authenticate_until(
        &self,
        credential: &Credential<'_>,
        client: IpAddr,
    ) -> Result<(Principal, Option<SystemTime>), AuthError> {
        let user = credential.claimed_user().unwrap_or("");
        let kind = credential.kind();
        if user.len() > MAX_USER_NAME {
            info!(user = %clip(user), client = %client, credential = kind, bytes = user.len(), "authentication refused: user name too long");
            return Err(AuthError::Rejected);
        }
        let attempt = match self.throttle.begin(user, client) {
            Ok(attempt) => attempt,
            Err(e) => {
                info!(user = %clip(user), client = %client, credential = kind, error = %e, "authentication refused");
                return Err(e);
            }
        };
        let key = self.cache.key(credential);
        if let Some((principal, valid_until)) = self.cache.get(&key).await {
            debug!(user = %principal.user, client = %client, "authenticated from cache");
            attempt.succeeded();
            return Ok((principal, valid_until));
        }
        let methods: Vec<_> = self
            .methods
            .iter()
            .filter(|m| m.accepts(credential))
            .collect();
        // Costly checks (argon2 takes ~19 MiB each, an LDAP bind a connection) are bounded,
        // so a flood of logins cannot exhaust memory; past the bound, a fast refusal.
        let _permit = if methods.iter().any(|m| m.costly()) {
            match tokio::time::timeout(self.check_wait, self.checks.acquire()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    warn!(user = %clip(user), client = %client, credential = kind, "too many credential checks at once; refused");
                    return Err(AuthError::Busy);
                }
            }
        } else {
            None
        };
        let mut failure: Option<AuthError> = None;
        for method in methods {
            match method.authenticate_until(credential).await {
                Ok((principal, valid_until)) => {
                    debug!(user = %principal.user, client = %client, method = method.name(), "authenticated");
                    attempt.succeeded();
                    self.cache.insert(key, principal.clone(), valid_until).await;
                    return Ok((principal, valid_until));
                }
                Err(e) => {
                    info!(user = %clip(user), client = %client, method = method.name(), credential = kind, error = %e, "authentication failed");
                    if failure.as_ref().is_none_or(|f| e.weight() > f.weight()) {
                        failure = Some(e);
                    }
                }
            }
        }
        let failure = failure.unwrap_or_else(|| {
            info!(user = %clip(user), client = %client, credential = kind, "no authentication method takes this kind of credential");
            AuthError::Rejected
        });
        // Only a rejected credential counts; an unavailable service decides nothing.
        if matches!(failure, AuthError::Rejected) {
            attempt.failed();
        }
        Err(failure)
    }
}

/// Shared by the methods that read files named in config.
fn read_config_file(path: &std::path::Path, what: &str) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
