//! LDAP: simple bind with a user DN pattern, or search-then-bind with a service account; groups
//! from `memberOf` or a group search. Every network step has a deadline, so a dead server is an
//! [`AuthError::Unavailable`] within `connect_timeout + 4 × operation_timeout`, not a hang.
//!
//! The user name is escaped wherever it goes: as a DN value (RFC 4514) in `user_dn_pattern`, as
//! a filter value (RFC 4515) in the search filters. An empty password is refused before any
//! bind, since servers treat it as an unauthenticated bind and report success.

use std::sync::Arc;

use ldap3::{dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tracing::warn;

use crate::config::{GroupSource, LdapConfig};
use crate::{read_config_file, AuthError, Authenticator, Credential, Principal};

/// The `ldap` method.
pub struct LdapAuthenticator {
    config: LdapConfig,
    /// The service account's password (search-then-bind), read once at startup.
    bind_password: Option<String>,
    /// Trusts `ca_file` instead of the system's roots, when set.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// LDAP result code for a wrong password or a DN that does not exist.
const INVALID_CREDENTIALS: u32 = 49;

/// Reads the value of the first RDN of `dn` if its attribute is `attribute`:
/// `cn=analysts,ou=groups,dc=example,dc=org` → `analysts`. RFC 4514 escapes are undone
/// (`cn=a\,b` → `a,b`; hex pairs as UTF-8).
pub fn rdn_value(dn: &str, attribute: &str) -> Option<String> {
    let (attr, rest) = dn.split_once('=')?;
    if !attr.trim().eq_ignore_ascii_case(attribute) {
        return None;
    }
    let mut bytes = Vec::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            ',' | '+' => break,
            '\\' => {
                let hex = rest
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        bytes.push(b);
                        chars.next();
                        chars.next();
                    }
                    None => {
                        let (_, escaped) = chars.next()?;
                        let mut buf = [0u8; 4];
                        bytes.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            c => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    let value = String::from_utf8(bytes).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn config_error(message: impl Into<String>) -> AuthError {
    AuthError::Config(format!("ldap: {}", message.into()))
}

impl LdapAuthenticator {
    pub fn new(config: &LdapConfig) -> Result<Self, AuthError> {
        let ldaps = config.url.starts_with("ldaps://");
        if !ldaps && !config.url.starts_with("ldap://") {
            return Err(config_error(format!(
                "url {:?} must start with ldap:// or ldaps://",
                config.url
            )));
        }
        if ldaps && config.starttls {
            return Err(config_error(
                "starttls is for ldap:// urls; ldaps:// is TLS already",
            ));
        }
        let bind_password = match &config.bind_password_file {
            Some(path) => Some(
                read_config_file(path, "LDAP bind password file")?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => None,
        };
        let search_mode = config.bind_dn.is_some() || config.user_search_base.is_some();
        match (&config.user_dn_pattern, search_mode) {
            (Some(pattern), false) => {
                if !pattern.contains("{user}") {
                    return Err(config_error("user_dn_pattern needs {user}"));
                }
            }
            (None, true) => {
                if config.bind_dn.is_none()
                    || config.user_search_base.is_none()
                    || bind_password.is_none()
                {
                    return Err(config_error(
                        "search-then-bind needs bind_dn, bind_password_file and user_search_base",
                    ));
                }
                if bind_password.as_deref() == Some("") {
                    return Err(config_error("bind_password_file is empty"));
                }
                if !config.user_search_filter.contains("{user}") {
                    return Err(config_error("user_search_filter needs {user}"));
                }
            }
            (Some(_), true) => {
                return Err(config_error(
                    "set either user_dn_pattern (simple bind) or bind_dn + user_search_base (search-then-bind), not both",
                ))
            }
            (None, false) => {
                return Err(config_error(
                    "set user_dn_pattern (simple bind) or bind_dn + bind_password_file + user_search_base (search-then-bind)",
                ))
            }
        }
        if config.group_source == GroupSource::Search && config.group_search_base.is_none() {
            return Err(config_error(
                "group_source = \"search\" needs group_search_base",
            ));
        }
        let tls = match &config.ca_file {
            Some(path) => {
                if !ldaps && !config.starttls {
                    return Err(config_error(
                        "ca_file is set but the connection is plain: use ldaps:// or starttls = true",
                    ));
                }
                let pem = std::fs::read(path).map_err(|e| {
                    config_error(format!("cannot read ca_file {}: {e}", path.display()))
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.map_err(|e| config_error(format!("ca_file {}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| config_error(format!("ca_file {}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(config_error(format!(
                        "ca_file {} holds no PEM certificate",
                        path.display()
                    )));
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| config_error(format!("TLS: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(tls))
            }
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            bind_password,
            tls,
        })
    }

    /// Logs the details for the operator and gives the client a short reason.
    fn unavailable(&self, step: &str, e: impl std::fmt::Display) -> AuthError {
        warn!(url = %self.config.url, step, error = %e, "LDAP server unavailable");
        AuthError::Unavailable(format!("LDAP {step} failed"))
    }

    async fn connect(&self) -> Result<Ldap, AuthError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.connect_timeout)
            .set_starttls(self.config.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(|e| self.unavailable("connect", e))?;
        // ldap3's connection task: it ends when `ldap` (this login's handle) is dropped.
        #[allow(clippy::disallowed_methods)]
        {
            ldap3::drive!(conn);
        }
        ldap.with_timeout(self.config.operation_timeout);
        Ok(ldap)
    }

    /// `Ok(false)` for invalid credentials (wrong password or no such DN).
    async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<bool, AuthError> {
        let result = ldap
            .with_timeout(self.config.operation_timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| self.unavailable("bind", e))?;
        match result.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            rc => Err(self.unavailable("bind", format!("result code {rc}: {}", result.text))),
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attributes: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, AuthError> {
        let (entries, _) = ldap
            .with_timeout(self.config.operation_timeout)
            .search(base, scope, filter, attributes)
            .await
            .map_err(|e| self.unavailable("search", e))?
            .success()
            .map_err(|e| self.unavailable("search", e))?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    /// Binds as the service account (search-then-bind mode).
    async fn bind_service_account(&self, ldap: &mut Ldap) -> Result<(), AuthError> {
        let (Some(dn), Some(password)) = (&self.config.bind_dn, &self.bind_password) else {
            unreachable!("checked at startup");
        };
        if self.bind(ldap, dn, password).await? {
            Ok(())
        } else {
            Err(self.unavailable(
                "service account bind",
                "invalid credentials: check bind_dn and bind_password_file",
            ))
        }
    }

    async fn authenticate_password(
        &self,
        ldap: &mut Ldap,
        user: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let search_mode = self.config.user_dn_pattern.is_none();
        let name_attribute = self.config.user_name_attribute.as_str();
        // The user's DN, and its entry if the search already read it.
        let (dn, entry) = match &self.config.user_dn_pattern {
            Some(pattern) => (pattern.replace("{user}", &dn_escape(user)), None),
            None => {
                self.bind_service_account(ldap).await?;
                let filter = self
                    .config
                    .user_search_filter
                    .replace("{user}", &ldap_escape(user));
                let base = self.config.user_search_base.as_deref().unwrap_or_default();
                let mut found = self
                    .search(
                        ldap,
                        base,
                        Scope::Subtree,
                        &filter,
                        vec!["memberOf", name_attribute],
                    )
                    .await?;
                match found.len() {
                    1 => {}
                    0 => return Err(AuthError::Rejected),
                    n => {
                        warn!(
                            user = %crate::clip(user),
                            entries = n,
                            filter = %crate::clip(&filter),
                            "LDAP user search is ambiguous; refusing"
                        );
                        return Err(AuthError::Rejected);
                    }
                }
                let entry = found.remove(0);
                (entry.dn.clone(), Some(entry))
            }
        };
        if !self.bind(ldap, &dn, password).await? {
            return Err(AuthError::Rejected);
        }
        let entry = match entry {
            Some(entry) => Some(entry),
            // Simple bind mode: read our own entry, bound as the user.
            None => self
                .search(
                    ldap,
                    &dn,
                    Scope::Base,
                    "(objectClass=*)",
                    vec!["memberOf", name_attribute],
                )
                .await?
                .into_iter()
                .next(),
        };
        // The directory's name for the user, not the name as typed (which the directory
        // matched case- and space-insensitively).
        let name = entry
            .as_ref()
            .and_then(|e| e.attrs.get(name_attribute))
            .and_then(|v| v.first().cloned())
            // A DN the directory returned names the entry; a DN from the pattern is as typed.
            .or_else(|| search_mode.then(|| rdn_value(&dn, name_attribute)).flatten())
            .unwrap_or_else(|| {
                warn!(dn = %crate::clip(&dn), attribute = name_attribute, "LDAP user entry has no name attribute; keeping the name as typed");
                user.to_owned()
            });
        let attribute = self.config.group_name_attribute.as_str();
        let mut groups: Vec<String> = match self.config.group_source {
            GroupSource::MemberOf => {
                let values = entry
                    .as_ref()
                    .and_then(|e| e.attrs.get("memberOf").cloned())
                    .unwrap_or_default();
                values
                    .iter()
                    .filter_map(|g| rdn_value(g, attribute))
                    .collect()
            }
            GroupSource::Search => {
                if search_mode {
                    // Groups are often readable by the service account only.
                    self.bind_service_account(ldap).await?;
                }
                let base = self.config.group_search_base.as_deref().unwrap_or_default();
                let filter = self
                    .config
                    .group_search_filter
                    .replace("{dn}", &ldap_escape(&dn))
                    .replace("{user}", &ldap_escape(&name));
                let entries = self
                    .search(ldap, base, Scope::Subtree, &filter, vec![attribute])
                    .await?;
                entries
                    .into_iter()
                    .filter_map(|e| {
                        e.attrs
                            .get(attribute)
                            .and_then(|v| v.first().cloned())
                            .or_else(|| rdn_value(&e.dn, attribute))
                    })
                    .collect()
            }
        };
        groups.sort();
        groups.dedup();
        Ok(Principal { user: name, groups })
    }
}

#[async_trait::async_trait]
impl Authenticator for LdapAuthenticator {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError> {
        let Credential::Password { user, password } = *credential else {
            return Err(AuthError::Rejected);
        };
        if user.is_empty() {
            return Err(AuthError::MissingUser);
        }
        // An empty password makes an unauthenticated bind, which servers accept: refuse it here.
        if password.is_empty() {
            return Err(AuthError::Rejected);
        }
        let deadline = self.config.connect_timeout + self.config.operation_timeout * 4;
        let attempt = async {
            let mut ldap = self.connect().await?;
            let result = self.authenticate_password(&mut ldap, user, password).await;
            let _ = ldap.unbind().await;
            result
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable("request", format!("no answer within {deadline:?}"))),
        }
    }

    fn accepts(&self, credential: &Credential<'_>) -> bool {
        matches!(credential, Credential::Password { .. })
    }

    fn name(&self) -> &'static str {
        "ldap"
    }

    fn costly(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
