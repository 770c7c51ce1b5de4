//! LDAP: simple bind with a user DN pattern, or search-then-bind with a service account; groups
//! from `memberOf` or a group search. Every network step has a deadline.

use std::sync::Arc;

use ldap3::{dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::config::{GroupSource, LdapConfig};
use crate::{read_config_file, AuthError, Authenticator, Credential, Principal};

pub struct LdapAuthenticator {
    config: LdapConfig,
    bind_password: Option<String>,
    tls: Option<Arc<ldap3_rustls::ClientConfig>>,
}

/// The rustls version ldap3 is built with.
mod ldap3_rustls {
    pub use rustls021::*;
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> AuthError {
    AuthError::Unavailable(format!("LDAP {what}: {e}"))
}

/// The value of the first RDN of a DN (`cn=analysts,ou=groups,...` → `analysts`), or of
/// `attribute` if that names the first RDN.
fn rdn_value(dn: &str, attribute: &str) -> Option<String> {
    let first = dn.split(',').next()?;
    let (attr, value) = first.split_once('=')?;
    attr.trim()
        .eq_ignore_ascii_case(attribute)
        .then(|| value.trim().to_owned())
}

impl LdapAuthenticator {
    pub fn new(config: &LdapConfig) -> Result<Self, AuthError> {
        let bind_password = match &config.bind_password_file {
            Some(path) => Some(
                read_config_file(path, "LDAP bind password file")?
                    .trim_end_matches('\n')
                    .to_owned(),
            ),
            None => None,
        };
        let search_mode = config.bind_dn.is_some() || config.user_search_base.is_some();
        match (&config.user_dn_pattern, search_mode) {
            (Some(p), false) if p.contains("{user}") => {}
            (None, true) if config.bind_dn.is_some() && config.user_search_base.is_some() && bind_password.is_some() => {}
            _ => {
                return Err(AuthError::Config(
                    "ldap needs either user_dn_pattern (with {user}) or bind_dn + bind_password_file + user_search_base".into(),
                ))
            }
        }
        if config.group_source == GroupSource::Search && config.group_search_base.is_none() {
            return Err(AuthError::Config(
                "ldap group_source = \"search\" needs group_search_base".into(),
            ));
        }
        let tls = match &config.ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    AuthError::Config(format!("cannot read LDAP ca_file {}: {e}", path.display()))
                })?;
                let mut roots = ldap3_rustls::RootCertStore::empty();
                for cert in rustls_pemfile::certs(&mut pem.as_slice())
                    .map_err(|e| AuthError::Config(format!("LDAP ca_file: {e}")))?
                {
                    roots
                        .add(&ldap3_rustls::Certificate(cert))
                        .map_err(|e| AuthError::Config(format!("LDAP ca_file: {e}")))?;
                }
                Some(Arc::new(
                    ldap3_rustls::ClientConfig::builder()
                        .with_safe_defaults()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                ))
            }
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            bind_password,
            tls,
        })
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
            .map_err(|e| unavailable("connect", e))?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.config.operation_timeout);
        Ok(ldap)
    }

    async fn bind(&self, ldap: &mut Ldap, dn: &str, password: &str) -> Result<bool, AuthError> {
        ldap.with_timeout(self.config.operation_timeout);
        let result = ldap
            .simple_bind(dn, password)
            .await
            .map_err(|e| unavailable("bind", e))?;
        match result.rc {
            0 => Ok(true),
            49 => Ok(false), // invalidCredentials
            rc => Err(unavailable(
                "bind",
                format!("result code {rc}: {}", result.text),
            )),
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attributes: Vec<&str>,
    ) -> Result<Vec<SearchEntry>, AuthError> {
        ldap.with_timeout(self.config.operation_timeout);
        let (entries, _) = ldap
            .search(base, Scope::Subtree, filter, attributes)
            .await
            .map_err(|e| unavailable("search", e))?
            .success()
            .map_err(|e| unavailable("search", e))?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    async fn authenticate_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Principal, AuthError> {
        let mut ldap = self.connect().await?;
        let (dn, member_of) = match &self.config.user_dn_pattern {
            Some(pattern) => (pattern.replace("{user}", &dn_escape(user)), None),
            None => {
                let bind_dn = self.config.bind_dn.as_deref().expect("checked at startup");
                let bind_password = self.bind_password.as_deref().expect("checked at startup");
                if !self.bind(&mut ldap, bind_dn, bind_password).await? {
                    return Err(AuthError::Unavailable(
                        "LDAP service account bind was refused (check bind_dn and bind_password_file)".into(),
                    ));
                }
                let filter = self
                    .config
                    .user_search_filter
                    .replace("{user}", &ldap_escape(user));
                let base = self
                    .config
                    .user_search_base
                    .as_deref()
                    .expect("checked at startup");
                let mut found = self
                    .search(&mut ldap, base, &filter, vec!["memberOf"])
                    .await?;
                if found.len() != 1 {
                    return Err(AuthError::Rejected);
                }
                let entry = found.remove(0);
                let member_of = entry.attrs.get("memberOf").cloned().unwrap_or_default();
                (entry.dn, Some(member_of))
            }
        };
        if !self.bind(&mut ldap, &dn, password).await? {
            let _ = ldap.unbind().await;
            return Err(AuthError::Rejected);
        }
        let attribute = self.config.group_name_attribute.as_str();
        let groups = match self.config.group_source {
            GroupSource::MemberOf => {
                let values = match member_of {
                    Some(values) => values,
                    None => {
                        // Read our own entry, now bound as the user.
                        let mut own = self
                            .search(&mut ldap, &dn, "(objectClass=*)", vec!["memberOf"])
                            .await?;
                        own.pop()
                            .and_then(|e| e.attrs.get("memberOf").cloned())
                            .unwrap_or_default()
                    }
                };
                values
                    .iter()
                    .filter_map(|g| rdn_value(g, attribute))
                    .collect()
            }
            GroupSource::Search => {
                let base = self
                    .config
                    .group_search_base
                    .as_deref()
                    .expect("checked at startup");
                let filter = self
                    .config
                    .group_search_filter
                    .replace("{dn}", &ldap_escape(&dn))
                    .replace("{user}", &ldap_escape(user));
                let entries = self
                    .search(&mut ldap, base, &filter, vec![attribute])
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
        let _ = ldap.unbind().await;
        Ok(Principal {
            user: user.to_owned(),
            groups,
        })
    }
}

impl Authenticator for LdapAuthenticator {
    async fn authenticate(
        &self,
        credential: &Credential<'_>,
    ) -> Result<Option<Principal>, AuthError> {
        let Credential::Password { user, password } = credential else {
            return Ok(None);
        };
        // An empty password makes an unauthenticated bind, which servers accept: refuse it here.
        if user.is_empty() || password.is_empty() {
            return Err(AuthError::Rejected);
        }
        let deadline = self.config.connect_timeout + self.config.operation_timeout * 4;
        match tokio::time::timeout(deadline, self.authenticate_password(user, password)).await {
            Ok(result) => result.map(Some),
            Err(_) => Err(AuthError::Unavailable(format!(
                "LDAP server at {} did not answer within {:?}",
                self.config.url, deadline
            ))),
        }
    }
}
