//! The startup checks: everything [`super::Gateway::start`] verifies before it binds a port or
//! starts a driver, and `sparkgate --check-config`, which makes the same checks.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::RngCore;
use sparkgate_auth::AuthService;

use crate::config::{Config, FrontendTransport};
use crate::frontend::tls::TlsAcceptorCell;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("invalid configuration: {0}")]
    Auth(#[from] sparkgate_auth::AuthError),
    #[error("invalid configuration: {0}")]
    Tls(#[from] crate::frontend::tls::TlsError),
    #[error("invalid configuration: cannot read http.cookie_key_file {}: {source}", path.display())]
    CookieKey {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: server.transport = \"nosasl\" carries no credentials: it needs the `none` auth method")]
    NosaslNeedsNoneAuth,
    #[error("invalid configuration: auth method `none` admits anyone, and {binds:?} is reachable from the network; configure real authentication, bind to 127.0.0.1, or set server.allow_none_auth_on_network = true")]
    NoneAuthOnNetwork { binds: Vec<SocketAddr> },
    #[error("invalid configuration: admin.bind {bind} is reachable from the network, and the admin API lists users and drains drivers: set admin.token_file (a bearer token), bind 127.0.0.1, or set admin.api = false (health, readiness and metrics only)")]
    AdminWithoutToken { bind: SocketAddr },
    #[error("invalid configuration: admin.token_file {}: {reason}", path.display())]
    AdminToken {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("invalid configuration: {0}")]
    Launcher(#[from] crate::launcher::LaunchError),
    #[error("invalid configuration: local drivers would run as sparkgate's own OS user ({why}), so any SQL user could read, through Spark's file sources, {exposed}. Run sparkgate as root (each tenant's drivers then run as an OS user of its own), use the Kubernetes launcher, or set local.allow_shared_os_user = true to accept this")]
    SharedDriverUser { why: &'static str, exposed: String },
    #[error("cannot open the audit log (audit.file): {0}")]
    Audit(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Refuses setups that would let anyone in by accident.
fn check_auth(config: &Config) -> Result<(), StartError> {
    let anonymous = config
        .auth
        .methods
        .iter()
        .any(|m| matches!(m, sparkgate_auth::MethodConfig::None {}));
    if config.server.transport == FrontendTransport::Nosasl && !anonymous {
        return Err(StartError::NosaslNeedsNoneAuth);
    }
    let network_binds = std::iter::once(config.server.bind)
        .chain(config.http.bind)
        .filter(|a| !a.ip().is_loopback())
        .collect::<Vec<_>>();
    if anonymous && !network_binds.is_empty() && !config.server.allow_none_auth_on_network {
        return Err(StartError::NoneAuthOnNetwork {
            binds: network_binds,
        });
    }
    if let Some(bind) = config.admin.bind {
        if !bind.ip().is_loopback() && config.admin.api && config.admin.token_file.is_none() {
            return Err(StartError::AdminWithoutToken { bind });
        }
    }
    Ok(())
}

/// Refuses local drivers that would run as sparkgate's own OS user and could read its secrets
/// or each other's tables, unless that is explicitly accepted.
fn check_local_drivers(config: &Config) -> Result<(), StartError> {
    use crate::launcher::local::os_user;
    let local = config
        .effective_tenants()
        .iter()
        .filter(|t| t.launcher == crate::tenant::LauncherKind::Local)
        .count();
    if local == 0 || config.local.allow_shared_os_user {
        return Ok(());
    }
    let per_tenant = os_user::per_tenant(config.local.driver_users)
        .map_err(crate::launcher::LaunchError::from)?;
    if per_tenant {
        return Ok(());
    }
    let exposed = os_user::shared_user_exposure(&config.secret_files(), local);
    if exposed.is_empty() {
        return Ok(());
    }
    Err(StartError::SharedDriverUser {
        why: if config.local.driver_users == os_user::DriverUsers::Sparkgate {
            "local.driver_users = \"sparkgate\""
        } else {
            "sparkgate does not run as root"
        },
        exposed: exposed.join(", "),
    })
}

/// The admin API's bearer token, if one is configured.
fn admin_token(config: &Config) -> Result<Option<Arc<[u8]>>, StartError> {
    let Some(path) = &config.admin.token_file else {
        return Ok(None);
    };
    let refuse = |reason: String| StartError::AdminToken {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?;
    let token = text.trim();
    if token.chars().count() < 16 {
        return Err(refuse(
            "the token is shorter than 16 characters (e.g. `openssl rand -hex 32`)".into(),
        ));
    }
    Ok(Some(Arc::from(token.as_bytes())))
}

/// What startup takes from the configuration and the files it names, each checked.
pub(super) struct Checked {
    pub auth: Arc<AuthService>,
    pub tls: Option<Arc<TlsAcceptorCell>>,
    pub cookie_key: Vec<u8>,
    pub admin_token: Option<Arc<[u8]>>,
}

/// Every check startup makes before it binds a port or starts a driver: the configuration
/// itself, the safety of its auth setup, and the files it names (users files, keys,
/// certificates). Servers it names (LDAP, Kubernetes) are reached only at startup.
pub(super) fn check_all(config: &Config) -> Result<Checked, StartError> {
    config.validate()?;
    check_auth(config)?;
    check_local_drivers(config)?;
    let auth = Arc::new(AuthService::from_config(&config.auth)?);
    let tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => Some(TlsAcceptorCell::load(cert, key)?),
        _ => None,
    };
    let cookie_key = match &config.http.cookie_key_file {
        Some(path) => std::fs::read(path).map_err(|source| StartError::CookieKey {
            path: path.clone(),
            source,
        })?,
        None => {
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        }
    };
    let admin_token = admin_token(config)?;
    Ok(Checked {
        auth,
        tls,
        cookie_key,
        admin_token,
    })
}

/// `sparkgate --check-config`: the checks of [`Gateway::start`] that need no network. With
/// `files = false`, the files the configuration names are not read (a config rendered for
/// another machine, e.g. by the Helm chart, whose Secrets are not here).
pub fn check_config(config: &Config, files: bool) -> Result<(), StartError> {
    if files {
        check_all(config).map(|_| ())
    } else {
        config.validate()?;
        check_auth(config)?;
        check_local_drivers(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked without binding: tests only ever listen on loopback addresses.
    #[test]
    fn none_auth_on_a_network_address_needs_an_explicit_opt_in() {
        let mut config = Config::default();
        assert!(check_auth(&config).is_ok(), "loopback is fine");
        config.http.bind = Some("0.0.0.0:10010".parse().unwrap());
        let err = check_auth(&config).unwrap_err();
        assert!(
            err.to_string().contains("allow_none_auth_on_network"),
            "{err}"
        );
        config.server.allow_none_auth_on_network = true;
        assert!(check_auth(&config).is_ok());
    }

    #[test]
    fn an_admin_port_on_the_network_needs_a_token_of_some_length() {
        let mut config = Config::default();
        config.admin.bind = Some("127.0.0.1:10011".parse().unwrap());
        assert!(check_config(&config, true).is_ok(), "loopback is fine");
        config.admin.bind = Some("0.0.0.0:10011".parse().unwrap());
        for files in [true, false] {
            let err = check_config(&config, files).unwrap_err();
            assert!(err.to_string().contains("admin.token_file"), "{err}");
        }
        let dir = std::env::temp_dir().join(format!("sparkgate-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, "  secret\n").unwrap();
        config.admin.token_file = Some(short);
        assert!(check_config(&config, false).is_ok(), "the file is not read");
        let err = check_config(&config, true).unwrap_err();
        assert!(err.to_string().contains("shorter than 16"), "{err}");
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        config.admin.token_file = Some(good);
        let checked = check_all(&config).unwrap();
        config.admin.token_file = None;
        config.admin.api = false;
        assert!(
            check_config(&config, true).is_ok(),
            "health and metrics only need no token"
        );
        assert_eq!(
            checked.admin_token.as_deref(),
            Some(&b"0123456789abcdef0123"[..])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `--check-config` refuses what startup refuses, files included unless told not to read
    /// them.
    #[test]
    fn check_config_makes_the_startup_checks() {
        let mut config = Config::default();
        assert!(check_config(&config, true).is_ok());
        config.server.bind = "0.0.0.0:10009".parse().unwrap();
        for files in [true, false] {
            let err = check_config(&config, files).unwrap_err();
            assert!(
                err.to_string().contains("allow_none_auth_on_network"),
                "{err}"
            );
        }
        let mut config = Config::default();
        config.auth.methods = vec![sparkgate_auth::MethodConfig::UsersFile(
            sparkgate_auth::config::UsersFileConfig {
                path: "/nonexistent/users.toml".into(),
            },
        )];
        let err = check_config(&config, true).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/users.toml"), "{err}");
        assert!(check_config(&config, false).is_ok());
        config.server.transport = FrontendTransport::Nosasl;
        let err = check_config(&config, false).unwrap_err();
        assert!(err.to_string().contains("nosasl"), "{err}");
    }
}
