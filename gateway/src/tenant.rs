//! Tenants: which users and groups may run SQL where. The tenant of a session is decided once,
//! at OpenSession, from the authenticated principal; a client may only *ask* for one of its own.

use std::collections::BTreeMap;

use serde::Deserialize;
use sparkgate_auth::{clip, Principal};

use crate::pool::autoscale::ScalingPolicy;

/// Admits everyone; only for a tenant's `users` list.
pub const ANYONE: &str = "*";

/// The OpenSession configuration key a client uses to ask for a tenant. Hive JDBC sends URL
/// settings after `?` as `set:hiveconf:KEY`; PyHive sends `configuration` keys as they are.
pub const TENANT_KEYS: [&str; 2] = ["sparkgate.tenant", "set:hiveconf:sparkgate.tenant"];

/// One tenant, as configured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Shown to users and in logs; what clients ask for with `sparkgate.tenant`.
    pub name: String,
    /// Members of any of these groups are admitted.
    #[serde(default)]
    pub groups: Vec<String>,
    /// These users are admitted; `"*"` admits every authenticated user.
    #[serde(default)]
    pub users: Vec<String>,
    /// With the static launcher: the tenant's Spark Thrift Servers (`host:port`); a session goes
    /// to the least busy one that accepts connections.
    #[serde(default)]
    pub backends: Vec<String>,
    /// With the static launcher: each backend's Spark UI (`"host:port" = "http://host:4040"`),
    /// which sparkgate reads statements' progress from. Drivers sparkgate starts get theirs.
    #[serde(default)]
    pub spark_ui: BTreeMap<String, String>,
    /// `static` (the `backends` above), `local` (sparkgate starts the tenant's drivers as
    /// processes) or `kubernetes` (as Pods).
    #[serde(default)]
    pub launcher: LauncherKind,
    /// How the tenant's pool scales (local launcher).
    #[serde(default)]
    pub scaling: ScalingPolicy,
    /// Driver JVM heap (Spark refuses less than ~450 MiB).
    #[serde(default = "default_driver_memory")]
    pub driver_memory: String,
    /// The tenant's own Spark settings, e.g. `spark.dynamicAllocation.enabled = "true"`.
    #[serde(default)]
    pub spark_conf: BTreeMap<String, String>,
    /// The tenant's own `hive.*` settings for its drivers, e.g. a shared metastore
    /// (`hive.metastore.uris`).
    #[serde(default)]
    pub hive_conf: BTreeMap<String, String>,
    /// Kubernetes launcher: accept that the tenant's tables live in each driver Pod (Spark's
    /// embedded catalog and a warehouse on the Pod's disk) and are lost with it. Without it, a
    /// Kubernetes tenant must name a shared catalog (`hive_conf` `hive.metastore.uris`) and a
    /// shared warehouse (`spark_conf` `spark.sql.warehouse.dir`, e.g. `s3a://...`). Local
    /// tenants always get a catalog that outlives their drivers.
    #[serde(default)]
    pub ephemeral_catalog: bool,
    /// Kubernetes launcher: the ServiceAccount the tenant's drivers and executors run as
    /// (default `sparkgate-<name>`).
    #[serde(default)]
    pub service_account: Option<String>,
    /// Kubernetes launcher: annotations of that ServiceAccount, e.g. the cloud role
    /// (`eks.amazonaws.com/role-arn`, `iam.gke.io/gcp-service-account`, ...).
    #[serde(default)]
    pub service_account_annotations: BTreeMap<String, String>,
    /// Refuse `ADD JAR`/`ADD FILE`/`ADD ARCHIVE` (and `CREATE FUNCTION ... USING JAR`) from the
    /// tenant's sessions: what one session adds is on the driver for all of them.
    #[serde(default)]
    pub refuse_add_resources: bool,
    /// Refuse global temporary views (the `global_temp` database, or the tenant's
    /// `spark.sql.globalTempDatabase`), which every session on a driver sees.
    #[serde(default)]
    pub refuse_global_temp: bool,
    /// A statement running longer than this is cancelled on the driver, and its client gets an
    /// error naming the limit (e.g. `"30m"`). Off by default.
    #[serde(default, with = "humantime_serde")]
    pub max_query_time: Option<std::time::Duration>,
    /// How much of a driver's error message clients get: `auto` (default: concise for Python
    /// DB-API clients such as Superset, full for JDBC), `full` (stack frames included) or
    /// `concise` (Spark's error class and message only).
    #[serde(default)]
    pub error_detail: crate::session::client::ErrorDetail,
    /// How long a cached result of the tenant is served, e.g. `"5m"`; `"0s"`: the tenant's
    /// results are not cached. Unset: `cache.ttl` (default `"0s"`). sparkgate cannot see writes
    /// made around it, which are seen only after this; writes through sparkgate drop the
    /// results they touch at once.
    #[serde(default, with = "humantime_serde")]
    pub cache_ttl: Option<std::time::Duration>,
    /// Who shares a cached result: `user` (default) or `tenant` (every user of the tenant has
    /// the same data rights).
    #[serde(default)]
    pub cache_scope: crate::session::cache::CacheScope,
    /// Statements running at once on one of the tenant's drivers; more wait in sparkgate's
    /// queue (`0`: no limit). Metadata calls and cached results never wait.
    #[serde(default = "default_max_running_per_driver")]
    pub max_running_per_driver: u32,
    /// Statements of the tenant waiting at once; one more is refused with an error naming this.
    #[serde(default = "default_max_queued")]
    pub max_queued: u32,
    /// How long a statement may wait in the queue before it fails with an error naming this.
    #[serde(default = "default_queue_timeout", with = "humantime_serde")]
    pub queue_timeout: std::time::Duration,
    /// When a session's driver is lost, open the session again on another driver of the tenant
    /// and replay what shaped its state (its OpenSession settings, `USE`, `SET`, temporary views
    /// and functions, `ADD JAR`); the statement in flight fails with an error saying so, the
    /// next one runs. `false`: the session ends with its driver.
    #[serde(default = "default_replay_sessions")]
    pub replay_sessions: bool,
}

fn default_replay_sessions() -> bool {
    true
}

fn default_max_running_per_driver() -> u32 {
    8
}

fn default_max_queued() -> u32 {
    100
}

fn default_queue_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(300)
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LauncherKind {
    #[default]
    Static,
    Local,
    Kubernetes,
}

fn default_driver_memory() -> String {
    "1g".into()
}

impl TenantConfig {
    /// A tenant with the static launcher on `backends`.
    pub fn new_static(
        name: &str,
        groups: Vec<String>,
        users: Vec<String>,
        backends: Vec<String>,
    ) -> Self {
        Self {
            name: name.into(),
            groups,
            users,
            backends,
            launcher: LauncherKind::Static,
            scaling: ScalingPolicy::default(),
            driver_memory: default_driver_memory(),
            spark_conf: BTreeMap::new(),
            hive_conf: BTreeMap::new(),
            ephemeral_catalog: false,
            service_account: None,
            service_account_annotations: BTreeMap::new(),
            refuse_add_resources: false,
            refuse_global_temp: false,
            spark_ui: BTreeMap::new(),
            max_query_time: None,
            error_detail: Default::default(),
            cache_ttl: None,
            cache_scope: Default::default(),
            max_running_per_driver: default_max_running_per_driver(),
            max_queued: default_max_queued(),
            queue_timeout: default_queue_timeout(),
            replay_sessions: default_replay_sessions(),
        }
    }

    /// The tenant's admission limits.
    pub fn admission(&self) -> crate::session::admission::AdmissionPolicy {
        crate::session::admission::AdmissionPolicy {
            max_running_per_driver: self.max_running_per_driver,
            max_queued: self.max_queued,
            queue_timeout: self.queue_timeout,
        }
    }

    /// The tenant's statement switches.
    pub fn statement_rules(&self) -> statements::StatementRules {
        statements::StatementRules {
            refuse_add_resources: self.refuse_add_resources,
            refuse_global_temp: self.refuse_global_temp.then(|| {
                self.spark_conf
                    .get("spark.sql.globalTempDatabase")
                    .cloned()
                    .unwrap_or_else(|| "global_temp".into())
            }),
        }
    }
}

impl TenantConfig {
    pub fn admits(&self, principal: &Principal) -> bool {
        self.users
            .iter()
            .any(|u| u == ANYONE || *u == principal.user)
            || self.groups.iter().any(|g| principal.groups.contains(g))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    #[error("user {:?} is not admitted by any tenant; ask an administrator to add the user or one of the user's groups to a tenant", clip(.user).to_string())]
    NoTenant { user: String },
    #[error("there is no tenant {:?}", clip(.tenant).to_string())]
    Unknown { tenant: String },
    #[error("user {:?} may not use tenant {:?}", clip(.user).to_string(), clip(.tenant).to_string())]
    NotAdmitted { user: String, tenant: String },
}

/// The configured tenants, in config order.
#[derive(Debug)]
pub struct Tenants {
    tenants: Vec<TenantConfig>,
}

impl Tenants {
    pub fn new(tenants: Vec<TenantConfig>) -> Self {
        Self { tenants }
    }

    /// The tenant a session of `principal` runs as: the one it asked for, if it is admitted
    /// there, else the first in config order that admits it.
    pub fn decide(
        &self,
        principal: &Principal,
        requested: Option<&str>,
    ) -> Result<&TenantConfig, TenantError> {
        decide(&self.tenants, principal, requested)
    }

    pub fn get(&self, name: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.name == name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tenants.iter().map(|t| t.name.as_str())
    }
}

/// The tenant decision as a pure function (see [`Tenants::decide`]).
pub fn decide<'a>(
    tenants: &'a [TenantConfig],
    principal: &Principal,
    requested: Option<&str>,
) -> Result<&'a TenantConfig, TenantError> {
    match requested.filter(|r| !r.is_empty()) {
        Some(name) => {
            let tenant =
                tenants
                    .iter()
                    .find(|t| t.name == name)
                    .ok_or_else(|| TenantError::Unknown {
                        tenant: name.to_owned(),
                    })?;
            if tenant.admits(principal) {
                Ok(tenant)
            } else {
                Err(TenantError::NotAdmitted {
                    user: principal.user.clone(),
                    tenant: name.to_owned(),
                })
            }
        }
        None => tenants
            .iter()
            .find(|t| t.admits(principal))
            .ok_or_else(|| TenantError::NoTenant {
                user: principal.user.clone(),
            }),
    }
}

pub mod statements;

#[cfg(test)]
mod tests;
