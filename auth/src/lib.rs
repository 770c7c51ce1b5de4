//! Who a client is: authentication methods turn a credential into a [`Principal`] (user and
//! groups). This crate knows nothing about Thrift; the gateway hands it what the client presented.
//!
//! Layers: the methods ([`users_file`], [`ldap`], [`jwt`], and `none`), tried in config order by
//! [`AuthService`], which also caches successes (keyed by a salted digest of the credential,
//! never the plaintext) and throttles repeated failures per user and per client address.

pub mod config;
pub mod jwt;
pub mod ldap;
mod throttle;
pub mod users_file;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::info;

pub use config::{AuthConfig, MethodConfig};
pub use users_file::hash_password;

/// An authenticated client: its user name and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub groups: Vec<String>,
}

/// What a client presented to prove who it is. `Debug` never shows secrets.
pub enum Credential<'a> {
    /// SASL PLAIN or HTTP Basic: user and password (the password may carry a JWT).
    Password { user: &'a str, password: &'a str },
    /// HTTP `Authorization: Bearer`: a JWT.
    Bearer { token: &'a str },
    /// NOSASL: the transport carries no identity; the user name comes with OpenSession.
    Anonymous { user: &'a str },
}

impl Credential<'_> {
    /// The user name the client claims, if the credential carries one.
    pub fn claimed_user(&self) -> Option<&str> {
        match self {
            Credential::Password { user, .. } | Credential::Anonymous { user } => Some(user),
            Credential::Bearer { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Credential::Password { .. } => "password",
            Credential::Bearer { .. } => "bearer token",
            Credential::Anonymous { .. } => "anonymous",
        }
    }

    /// Cache key material: the kind, the user and the secret, to be hashed with a salt.
    fn cache_material(&self) -> Vec<u8> {
        let (kind, user, secret) = match self {
            Credential::Password { user, password } => (0u8, *user, *password),
            Credential::Bearer { token } => (1u8, "", *token),
            Credential::Anonymous { user } => (2u8, *user, ""),
        };
        let mut out = vec![kind];
        out.extend_from_slice(&(user.len() as u64).to_be_bytes());
        out.extend_from_slice(user.as_bytes());
        out.extend_from_slice(secret.as_bytes());
        out
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

/// Why a client was not let in. Display texts are shown to clients: they never contain the
/// password or token.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("invalid user name, password or token")]
    Rejected,
    #[error("too many failed attempts; try again in {} s", retry_after.as_secs().max(1))]
    Throttled { retry_after: Duration },
    #[error("the identity service is unavailable: {0}")]
    Unavailable(String),
    #[error("a user name is required")]
    MissingUser,
    #[error("authentication configuration: {0}")]
    Config(String),
}

/// One authentication method.
#[allow(async_fn_in_trait)]
pub trait Authenticator: Send + Sync {
    /// `Ok(None)` when this method does not take this kind of credential.
    async fn authenticate(
        &self,
        credential: &Credential<'_>,
    ) -> Result<Option<Principal>, AuthError>;
}

/// Accepts any user and ignores the password, as the Spark Thrift Server does with auth NONE.
#[derive(Debug, Default, Clone)]
pub struct NoneAuthenticator;

impl Authenticator for NoneAuthenticator {
    async fn authenticate(
        &self,
        credential: &Credential<'_>,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(user) = credential.claimed_user() else {
            return Ok(None);
        };
        if user.is_empty() {
            return Err(AuthError::MissingUser);
        }
        Ok(Some(Principal {
            user: user.to_owned(),
            groups: Vec::new(),
        }))
    }
}

enum Method {
    None(NoneAuthenticator),
    UsersFile(users_file::UsersFile),
    Ldap(Box<ldap::LdapAuthenticator>),
    Jwt(Box<jwt::JwtAuthenticator>),
}

impl Method {
    fn name(&self) -> &'static str {
        match self {
            Method::None(_) => "none",
            Method::UsersFile(_) => "users_file",
            Method::Ldap(_) => "ldap",
            Method::Jwt(_) => "jwt",
        }
    }

    async fn authenticate(
        &self,
        credential: &Credential<'_>,
    ) -> Result<Option<Principal>, AuthError> {
        match self {
            Method::None(m) => m.authenticate(credential).await,
            Method::UsersFile(m) => m.authenticate(credential).await,
            Method::Ldap(m) => m.authenticate(credential).await,
            Method::Jwt(m) => m.authenticate(credential).await,
        }
    }
}

/// The configured methods, with caching and throttling around them.
pub struct AuthService {
    methods: Vec<Method>,
    /// Salted digest of a credential → its principal, for `cache_ttl`.
    cache: moka::future::Cache<[u8; 32], Principal>,
    salt: [u8; 32],
    throttle: throttle::Throttle,
}

impl AuthService {
    /// Builds the methods; an unreadable file or unparsable key is an error here, at startup.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthError> {
        let methods = config
            .methods
            .iter()
            .map(|m| {
                Ok(match m {
                    MethodConfig::None => Method::None(NoneAuthenticator),
                    MethodConfig::UsersFile(c) => Method::UsersFile(users_file::UsersFile::new(c)?),
                    MethodConfig::Ldap(c) => {
                        Method::Ldap(Box::new(ldap::LdapAuthenticator::new(c)?))
                    }
                    MethodConfig::Jwt(c) => Method::Jwt(Box::new(jwt::JwtAuthenticator::new(c)?)),
                })
            })
            .collect::<Result<Vec<_>, AuthError>>()?;
        if methods.is_empty() {
            return Err(AuthError::Config(
                "auth.methods is empty: nobody could log in".into(),
            ));
        }
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        Ok(Self {
            methods,
            cache: moka::future::Cache::builder()
                .time_to_live(config.cache_ttl)
                .max_capacity(100_000)
                .build(),
            salt,
            throttle: throttle::Throttle::new(
                config.max_failures,
                config.failure_window,
                config.lockout,
            ),
        })
    }

    /// Whether the `none` method is configured (anyone gets in).
    pub fn allows_anonymous(&self) -> bool {
        self.methods.iter().any(|m| matches!(m, Method::None(_)))
    }

    fn digest(&self, credential: &Credential<'_>) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update(credential.cache_material());
        hasher.finalize().into()
    }

    /// Tries the methods in order; the first that accepts wins.
    pub async fn authenticate(
        &self,
        credential: &Credential<'_>,
        client: IpAddr,
    ) -> Result<Principal, AuthError> {
        let user = credential.claimed_user().unwrap_or("");
        self.throttle.check(user, client)?;
        let key = self.digest(credential);
        if let Some(principal) = self.cache.get(&key).await {
            return Ok(principal);
        }
        let mut failure = AuthError::Rejected;
        for method in &self.methods {
            match method.authenticate(credential).await {
                Ok(Some(principal)) => {
                    self.throttle.succeeded(user);
                    self.cache.insert(key, principal.clone()).await;
                    return Ok(principal);
                }
                Ok(None) => {}
                Err(e) => {
                    info!(method = method.name(), user, client = %client, error = %e, "authentication attempt failed");
                    // An unavailable service says more than a rejection by another method.
                    if !matches!(failure, AuthError::Unavailable(_)) {
                        failure = e;
                    }
                }
            }
        }
        if !matches!(failure, AuthError::Unavailable(_)) {
            self.throttle.failed(user, client);
        }
        Err(failure)
    }
}

/// Shared by the methods that read files named in config.
fn read_config_file(path: &std::path::Path, what: &str) -> Result<String, AuthError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// An `Arc`'d service, as the gateway holds it.
pub type SharedAuth = Arc<AuthService>;

#[cfg(test)]
mod tests;
