//! The local launcher's settings, and where its Spark comes from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tracing::warn;

use super::os_user;

/// Settings of the local launcher.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LocalLauncherConfig {
    /// Spark home (with `bin/spark-submit`); default: `$SPARK_HOME`, else the pyspark package
    /// of the repo's venv.
    pub spark_home: Option<PathBuf>,
    /// Where drivers keep their work dirs, logs and state files.
    pub work_dir: PathBuf,
    /// Loopback ports handed to drivers, from this one up.
    pub first_port: u16,
    /// A driver not answering an HS2 OpenSession within this time has failed to start.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// After SIGTERM, a driver gets this long before SIGKILL.
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
    /// Heap of each tenant's catalog process (its Hive metastore service).
    pub catalog_memory: String,
    /// Who the drivers run as: `auto` (each tenant's own OS user when sparkgate runs as root,
    /// else sparkgate's own), `tenant` or `sparkgate`. See [`os_user`].
    pub driver_users: os_user::DriverUsers,
    /// A tenant's OS user is this prefix and its name in lowercase...
    pub os_user_prefix: String,
    /// ...unless named here (tenant -> user name).
    pub os_users: BTreeMap<String, String>,
    /// Create a tenant's OS user (a system user without login) when it does not exist.
    pub create_os_users: bool,
    /// With drivers running as sparkgate's own OS user, start even though they can read the
    /// secret files sparkgate reads and each other's tables (refused otherwise).
    pub allow_shared_os_user: bool,
}

impl Default for LocalLauncherConfig {
    fn default() -> Self {
        Self {
            spark_home: None,
            work_dir: PathBuf::from("sparkgate-work"),
            first_port: 20_100,
            startup_timeout: Duration::from_secs(180),
            stop_grace: Duration::from_secs(20),
            catalog_memory: "256m".into(),
            driver_users: os_user::DriverUsers::Auto,
            os_user_prefix: "sparkgate-".into(),
            os_users: BTreeMap::new(),
            create_os_users: true,
            allow_shared_os_user: false,
        }
    }
}

/// `$SPARK_HOME`, else the pyspark package of the repo's venv.
pub(crate) fn default_spark_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("SPARK_HOME") {
        return Some(PathBuf::from(home));
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv_lib = repo.join(".venv/lib");
    std::fs::read_dir(venv_lib)
        .ok()?
        .flatten()
        .find_map(|python| {
            let home = python.path().join("site-packages/pyspark");
            home.join("bin/spark-submit").exists().then_some(home)
        })
}

/// Ports the kernel hands to outgoing connections (and to Spark's own random ports) can be
/// taken between sparkgate picking one for a driver and the driver binding it, seconds later.
pub(super) fn warn_if_ephemeral(first_port: u16) {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return;
    };
    let mut bounds = range
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    if let (Some(low), Some(high)) = (bounds.next(), bounds.next()) {
        if (low..=high).contains(&first_port) {
            warn!(
                first_port,
                ephemeral = %format!("{low}-{high}"),
                "local.first_port is inside the kernel's ephemeral port range: a driver's port may be taken before it starts (the driver is then replaced); choose a port below {low}"
            );
        }
    }
}
