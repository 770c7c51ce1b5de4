//! Authentication settings (the gateway's `[auth]` table). The default admits anyone (`none`),
//! as the Spark Thrift Server does out of the box; the gateway refuses that on public binds.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Tried in this order; the first that accepts the credential wins.
    pub methods: Vec<MethodConfig>,
    /// How long a successful result is reused for the same credential, so reconnecting clients
    /// do not cost an LDAP round trip or an argon2 hash each time. `0s` turns caching off.
    /// A removed user or changed password takes effect after at most this long.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Failures within `failure_window`, per user or (separately) per client address, before
    /// attempts are refused for `lockout`; slows password guessing. `0` turns throttling off.
    pub max_failures: u32,
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    #[serde(with = "humantime_serde")]
    pub lockout: Duration,
    /// Password checks (users file argon2 hashes, ~19 MiB each; LDAP binds) running at once, at
    /// most; bounds the memory a flood of logins can take. Cached successes skip the check.
    pub max_concurrent_checks: usize,
    /// How long a login waits for a check to be free before it is refused as busy.
    #[serde(with = "humantime_serde")]
    pub check_wait: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            methods: vec![MethodConfig::None {}],
            cache_ttl: Duration::from_secs(300),
            max_failures: 5,
            failure_window: Duration::from_secs(60),
            lockout: Duration::from_secs(60),
            max_concurrent_checks: 4,
            check_wait: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MethodConfig {
    /// Any user, password ignored: development only. (A struct variant, so that stray keys
    /// such as `path` under `type = "none"` are refused like everywhere else.)
    None {},
    UsersFile(UsersFileConfig),
    Ldap(LdapConfig),
    Jwt(JwtConfig),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersFileConfig {
    /// TOML: `[users.NAME] password = "$argon2id$..."`, `groups = [...]`; reloaded on change.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// CA certificates (PEM) to trust for ldaps/StartTLS, instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_ldap_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_ldap_timeout", with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// Simple bind: the user's DN, `{user}` replaced (DN-escaped).
    #[serde(default)]
    pub user_dn_pattern: Option<String>,
    /// Search-then-bind: a service account finds the user's DN first.
    #[serde(default)]
    pub bind_dn: Option<String>,
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    #[serde(default)]
    pub user_search_base: Option<String>,
    /// `{user}` replaced (filter-escaped).
    #[serde(default = "default_user_filter")]
    pub user_search_filter: String,
    #[serde(default)]
    pub group_source: GroupSource,
    #[serde(default)]
    pub group_search_base: Option<String>,
    /// `{dn}` (the user's DN) and `{user}` replaced (filter-escaped).
    #[serde(default = "default_group_filter")]
    pub group_search_filter: String,
    /// The attribute (or RDN) that names a group.
    #[serde(default = "default_group_attribute")]
    pub group_name_attribute: String,
    /// The attribute of the user's entry that is the user's name: a login as `ALICE` or
    /// ` alice` (which the directory matches as `alice`) runs as the directory's `alice`.
    #[serde(default = "default_user_attribute")]
    pub user_name_attribute: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// The user entry's `memberOf` values.
    #[default]
    MemberOf,
    /// A search for group entries naming the user.
    Search,
}

fn default_ldap_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_user_filter() -> String {
    "(uid={user})".into()
}
fn default_group_filter() -> String {
    "(member={dn})".into()
}
fn default_group_attribute() -> String {
    "cn".into()
}

fn default_user_attribute() -> String {
    "uid".into()
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256: a file holding the shared secret.
    #[serde(default)]
    pub hs256_secret_file: Option<PathBuf>,
    /// RS256/ES256: a PEM public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A JWKS document (keys chosen by `kid`).
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Accepted algorithms, e.g. `["RS256"]`.
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

fn default_user_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

#[cfg(test)]
mod tests;
