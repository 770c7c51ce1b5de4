//! Who a tenant's local drivers run as, and what of the machine they can reach.
//!
//! Spark's file sources read any file the driver's OS user can (``select * from
//! text.`file:///...` ``), so a driver running as sparkgate's own user hands every SQL user
//! sparkgate's secrets (JWT secret, cookie key, users file) and every other tenant's files. When
//! sparkgate runs as root, each tenant's drivers and catalog therefore run as an unprivileged OS
//! user of the tenant's own (created if missing), in directories only that user can open, and
//! sparkgate's own files are checked to be out of its reach at startup. Without root, startup
//! refuses a setup in which the drivers could read a secret or another tenant's tables, unless
//! `local.allow_shared_os_user` says that is accepted (see [`shared_user_exposure`]).
//!
//! The layout under `local.work_dir` (modes for per-tenant users; the same shape otherwise):
//! ```text
//! work_dir/                 root 0711   traversable, not listable
//!   drivers/<id>/           root 0711   driver.json (its secret, 0600), logs (0600)
//!     tmp/ scratch/ ls/ run/  tenant 0700
//!   tenants/<tenant>/       root 0711   catalog.json, catalog.log (0600)
//!     catalog/ warehouse/ home/  tenant 0700
//!   driver-auth/ catalog-server/ spark-home/   root 0755   jars and Spark, readable by all
//! ```
//! State files sit in root's directories: a tenant user who could rewrite one could make
//! sparkgate signal a process of its choosing.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use tracing::{info, warn};

/// Who runs the local drivers (`local.driver_users`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DriverUsers {
    /// `tenant` when sparkgate runs as root, `sparkgate` otherwise.
    #[default]
    Auto,
    /// Each tenant's own OS user (needs root).
    Tenant,
    /// sparkgate's own OS user: every driver can read what sparkgate can.
    Sparkgate,
}

#[derive(Debug, thiserror::Error)]
pub enum OsUserError {
    #[error("local.driver_users = \"tenant\" runs each tenant's drivers as its own OS user, which needs sparkgate to run as root")]
    NeedsRoot,
    #[error("tenant {tenant:?}: OS user name {name:?} is not valid (lowercase letters, digits, '-' and '_', at most 32, starting with a letter or '_'); set local.os_users.{tenant} = \"<name>\"")]
    BadName { tenant: String, name: String },
    #[error("tenants {first:?} and {second:?} would run as the same OS user {name:?}: each tenant needs its own (local.os_users)")]
    Shared {
        first: String,
        second: String,
        name: String,
    },
    #[error(
        "tenant {tenant:?}: OS user {name:?} does not exist and local.create_os_users is false"
    )]
    Missing { tenant: String, name: String },
    #[error(
        "tenant {tenant:?}: OS user {name:?} is root; a tenant's drivers must run unprivileged"
    )]
    Privileged { tenant: String, name: String },
    #[error("tenant {tenant:?}: cannot create OS user {name:?} with useradd: {reason}")]
    Create {
        tenant: String,
        name: String,
        reason: String,
    },
    #[error("tenant {tenant:?}'s drivers run as OS user {name:?}, which cannot reach {}: make it and its parent directories traversable by others (chmod o+x), or choose a local.work_dir outside a private directory", path.display())]
    Unreachable {
        tenant: String,
        name: String,
        path: PathBuf,
    },
    #[error("{}: readable by OS user {name:?}, which runs tenant {tenant:?}'s drivers: any SQL user of the tenant could read it (`select * from text.`file://...``). Make it readable by sparkgate only (chmod 600, or chmod o-r and keep the group from tenants)", path.display())]
    SecretReadable {
        path: PathBuf,
        tenant: String,
        name: String,
    },
    #[error("cannot check what OS user {name:?} can read: {reason}")]
    Probe { name: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An OS user a tenant's drivers run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Whether sparkgate runs as root (and so can run drivers as other users).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether drivers run as per-tenant users, after `auto` is decided.
pub fn per_tenant(mode: DriverUsers) -> Result<bool, OsUserError> {
    match mode {
        DriverUsers::Auto => Ok(is_root()),
        DriverUsers::Tenant if !is_root() => Err(OsUserError::NeedsRoot),
        DriverUsers::Tenant => Ok(true),
        DriverUsers::Sparkgate => Ok(false),
    }
}

/// The OS user name of each tenant: its `overrides` entry, else `prefix` + its name in lowercase.
pub fn user_names(
    tenants: &[String],
    prefix: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, OsUserError> {
    let mut names = BTreeMap::new();
    let mut owner_of: BTreeMap<String, String> = BTreeMap::new();
    for tenant in tenants {
        let name = overrides
            .get(tenant)
            .cloned()
            .unwrap_or_else(|| format!("{prefix}{}", tenant.to_ascii_lowercase()));
        if !valid_user_name(&name) {
            return Err(OsUserError::BadName {
                tenant: tenant.clone(),
                name,
            });
        }
        if let Some(first) = owner_of.insert(name.clone(), tenant.clone()) {
            return Err(OsUserError::Shared {
                first,
                second: tenant.clone(),
                name,
            });
        }
        names.insert(tenant.clone(), name);
    }
    Ok(names)
}

/// Debian's default `useradd` rule (NAME_REGEX), and its 32-character limit.
fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// The tenant's OS user, created (a system user with no login shell and no home of its own) if
/// it is missing and `create` allows.
pub fn ensure_user(tenant: &str, name: &str, create: bool) -> Result<RunAs, OsUserError> {
    let lookup = || {
        nix::unistd::User::from_name(name).map_err(|e| OsUserError::Probe {
            name: name.to_owned(),
            reason: e.to_string(),
        })
    };
    let user = match lookup()? {
        Some(user) => user,
        None if !create => {
            return Err(OsUserError::Missing {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
            })
        }
        None => {
            let failed = |reason: String| OsUserError::Create {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                reason,
            };
            let out = Command::new("useradd")
                .args(["--system", "--user-group", "--no-create-home"])
                .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
                .arg(name)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| failed(e.to_string()))?;
            // Exit 9: another sparkgate (or an earlier start) created it meanwhile.
            if !out.status.success() && out.status.code() != Some(9) {
                return Err(failed(
                    String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                ));
            }
            info!(%tenant, user = %name, "created the OS user the tenant's local drivers run as");
            lookup()?.ok_or_else(|| failed("not found after useradd".into()))?
        }
    };
    if user.uid.is_root() || user.gid.as_raw() == 0 {
        return Err(OsUserError::Privileged {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(RunAs {
        name: name.to_owned(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// Each local tenant's OS user, when drivers run as per-tenant users (empty otherwise: they run
/// as sparkgate's own).
pub fn tenant_users(
    config: &super::LocalLauncherConfig,
    tenants: &[String],
) -> Result<BTreeMap<String, RunAs>, OsUserError> {
    if !per_tenant(config.driver_users)? {
        return Ok(BTreeMap::new());
    }
    let names = user_names(tenants, &config.os_user_prefix, &config.os_users)?;
    let mut users = BTreeMap::new();
    for (tenant, name) in names {
        let user = ensure_user(&tenant, &name, config.create_os_users)?;
        if !can_enter(&user, &config.work_dir.join("tenants"))? {
            return Err(OsUserError::Unreachable {
                tenant,
                name,
                path: config.work_dir.clone(),
            });
        }
        users.insert(tenant, user);
    }
    Ok(users)
}

/// A directory of sparkgate's with `mode` (created if missing).
pub fn own_dir(path: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// A directory only `user` (or, without one, sparkgate) can open. One that exists but belongs to
/// someone else (written by drivers of an earlier sparkgate that ran them as root) is handed
/// over whole; symbolic links are changed themselves, never followed.
pub fn private_dir(path: &Path, user: Option<&RunAs>) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    if let Some(user) = user {
        if std::fs::symlink_metadata(path)?.uid() != user.uid {
            warn!(dir = %path.display(), user = %user.name, "handing a directory over to the tenant's OS user");
            chown_tree(path, user)?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

fn chown_tree(path: &Path, user: &RunAs) -> std::io::Result<()> {
    let owner = (
        Some(nix::unistd::Uid::from_raw(user.uid)),
        Some(nix::unistd::Gid::from_raw(user.gid)),
    );
    nix::unistd::fchownat(
        None,
        path,
        owner.0,
        owner.1,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// The OS user a process runs as (`None` when it is gone).
pub fn process_uid(pid: u32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// The OS user of the process at the other end of a loopback TCP connection, from the kernel's
/// socket tables: the socket whose local port is the peer's and whose remote port is ours.
pub fn loopback_peer_uid(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    if !peer.ip().is_loopback() && !peer.ip().to_canonical().is_loopback() {
        return None;
    }
    let (theirs, ours) = (
        format!(":{:04X}", peer.port()),
        format!(":{:04X}", local.port()),
    );
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let matches =
                    fields.len() > 7 && fields[1].ends_with(&theirs) && fields[2].ends_with(&ours);
                matches.then(|| fields[7].parse().ok()).flatten()
            })
        })
}

/// Runs a driver or catalog process as `user`, with an environment of its own: sparkgate's may
/// carry credentials (cloud keys, tokens) that are not the tenant's.
pub fn run_as(cmd: &mut Command, user: &RunAs, home: &Path) {
    cmd.env_clear();
    for (key, value) in std::env::vars_os() {
        let keep = key
            .to_str()
            .is_some_and(|k| INHERITED_ENV.contains(&k) || k.starts_with("LC_"));
        if keep {
            cmd.env(key, value);
        }
    }
    // No supplementary groups: Rust's `uid` drops them when sparkgate runs as root.
    cmd.uid(user.uid)
        .gid(user.gid)
        .env("HOME", home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name);
}

/// What a driver needs of sparkgate's environment: where programs and Java are, the locale, and
/// Spark/Hadoop configuration directories an operator points every driver at.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "JAVA_HOME",
    "LANG",
    "TZ",
    "HADOOP_CONF_DIR",
    "SPARK_CONF_DIR",
];

/// Which of `paths` `user` can open for reading: one `test -r` each, run as that user, so the
/// answer includes every parent directory, group and ACL.
pub fn readable_by(user: &RunAs, paths: &[PathBuf]) -> Result<Vec<PathBuf>, OsUserError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"for f in "$@"; do if test -r "$f"; then printf '%s\0' "$f"; fi; done"#)
        .arg("sh")
        .args(paths)
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| OsUserError::Probe {
            name: user.name.clone(),
            reason: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(OsUserError::Probe {
            name: user.name.clone(),
            reason: format!("the check exited with {}", out.status),
        });
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(p)))
        .collect())
}

/// Whether `user` can enter `dir` (and so everything sparkgate opens up for it below).
pub fn can_enter(user: &RunAs, dir: &Path) -> Result<bool, OsUserError> {
    let status = Command::new("test")
        .arg("-x")
        .arg(dir)
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| OsUserError::Probe {
            name: user.name.clone(),
            reason: e.to_string(),
        })?;
    Ok(status.success())
}

/// A Spark home every tenant user can read: `spark_home` itself when they all can, else a copy
/// under `work_dir/spark-home/` (hard links where the file system allows: no second copy of
/// Spark's jars on disk), for a Spark inside a private directory (a venv in root's home).
pub fn reachable_spark_home(
    spark_home: &Path,
    work_dir: &Path,
    users: &BTreeMap<String, RunAs>,
) -> Result<PathBuf, OsUserError> {
    let mut reachable = true;
    for user in users.values() {
        reachable &= can_enter(user, &spark_home.join("jars"))?;
    }
    if reachable {
        return Ok(spark_home.to_owned());
    }
    // The path and the names of Spark's jars: an upgraded Spark in the same place gets a new
    // copy, not the old one's.
    let key = {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update(spark_home.as_os_str().as_encoded_bytes());
        let mut jars: Vec<_> = std::fs::read_dir(spark_home.join("jars"))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        jars.sort();
        for jar in jars {
            digest.update(jar.as_encoded_bytes());
        }
        let digest = digest.finalize();
        digest[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let parent = work_dir.join("spark-home");
    own_dir(&parent, 0o755)?;
    let mirror = parent.join(&key);
    if !mirror.join("bin/spark-submit").exists() {
        let partial = parent.join(format!("{key}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        link_tree(spark_home, &partial)?;
        let _ = std::fs::remove_dir_all(&mirror);
        std::fs::rename(&partial, &mirror)?;
        info!(spark_home = %spark_home.display(), mirror = %mirror.display(), "the tenants' OS users cannot reach the Spark home; their drivers use a copy of it");
    }
    for (tenant, user) in users {
        if !can_enter(user, &mirror.join("jars"))? {
            return Err(OsUserError::Unreachable {
                tenant: tenant.clone(),
                name: user.name.clone(),
                path: mirror,
            });
        }
    }
    Ok(mirror)
}

fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_dir() {
            link_tree(&source, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// Why drivers that run as sparkgate's own OS user would expose what they must not: the secret
/// files sparkgate reads, and, with several local tenants, each other's tables. Empty when there
/// is nothing to expose (one tenant, no secrets: the embedded default).
pub fn shared_user_exposure(secrets: &[PathBuf], local_tenants: usize) -> Vec<String> {
    let mut exposed: Vec<String> = secrets
        .iter()
        .map(|p| format!("the secret file {}", p.display()))
        .collect();
    if local_tenants > 1 {
        exposed.push(format!(
            "the tables and work dirs of the other {} local tenants",
            local_tenants - 1
        ));
    }
    exposed
}

#[cfg(test)]
mod tests;
