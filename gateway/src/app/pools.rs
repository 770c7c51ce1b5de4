//! The driver pools a gateway starts: one per tenant, each with its tenant's launcher, and the
//! leader election that decides which replica scales them on Kubernetes.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::StartError;
use crate::config::Config;
use crate::launcher::fixed::FixedLauncher;
use crate::launcher::kubernetes::KubeLauncher;
use crate::launcher::{DriverSpec, Launcher, LocalLauncher};
use crate::pool::metrics::PoolFamilies;
use crate::pool::{DriverPool, PoolLimits};
use crate::tenant::{LauncherKind, TenantConfig};

/// The driver pools, and, with several replicas on Kubernetes, the election that decides which
/// of them scales.
pub(super) struct PoolSet {
    pub pools: HashMap<String, Arc<DriverPool>>,
    pub election: Option<Coordination>,
    /// The OS users local drivers run as: local processes that run tenants' SQL.
    pub local_driver_uids: Vec<u32>,
}

/// How replicas on Kubernetes act as one: one leads (scales the pools), every one shares its
/// load with it.
pub(super) struct Coordination {
    pub client: kube::Client,
    pub election: crate::pool::leader::Election,
    pub sharing: crate::pool::replicas::LoadSharing,
    pub leading: Arc<AtomicBool>,
    /// The pools on Kubernetes, whose load the replicas share.
    pub pools: Vec<Arc<DriverPool>>,
}

/// A pool per tenant, each with its tenant's launcher; drivers a previous run left are adopted.
pub(super) async fn start_pools(
    config: &Config,
    metrics: &PoolFamilies,
) -> Result<PoolSet, StartError> {
    let tenants = config.effective_tenants();
    let of_kind =
        |kind| -> Vec<&TenantConfig> { tenants.iter().filter(|t| t.launcher == kind).collect() };
    let fixed = of_kind(LauncherKind::Static);
    let local = of_kind(LauncherKind::Local);
    let on_kubernetes = of_kind(LauncherKind::Kubernetes);
    let mut set = PoolSet {
        pools: HashMap::new(),
        election: None,
        local_driver_uids: Vec::new(),
    };
    let limits = PoolLimits {
        max_sessions_per_driver: config.pools.max_sessions_per_driver,
        max_waiting: config.pools.max_waiting,
        wait_timeout: config.pools.wait_timeout,
        drain_grace: config.pools.drain_grace,
        reconcile_every: config.pools.reconcile_every,
    };
    // Neither started nor stopped by sparkgate, so nothing here to decide or to keep.
    let always = Arc::new(AtomicBool::new(true));
    if !fixed.is_empty() {
        let launcher: Arc<dyn Launcher> = Arc::new(FixedLauncher::new(fixed.iter().copied()));
        // Someone else's servers: sparkgate does not bound their sessions.
        let fixed_limits = PoolLimits {
            max_sessions_per_driver: u32::MAX,
            ..limits.clone()
        };
        let pools = &mut set.pools;
        add_pools(
            metrics,
            &fixed,
            &fixed_limits,
            &launcher,
            &always,
            &[],
            pools,
        )
        .await;
    }
    if !local.is_empty() {
        let names: Vec<String> = local.iter().map(|t| t.name.clone()).collect();
        let mut secrets = config.secret_files();
        secrets.extend(config.source.clone());
        let local_launcher = LocalLauncher::new(
            config.local.clone(),
            &config.backend.service_user,
            &names,
            &secrets,
        )?;
        set.local_driver_uids = local_launcher.driver_uids();
        let launcher: Arc<dyn Launcher> = Arc::new(local_launcher);
        // The local launcher's drivers belong to this process alone: it always decides.
        let hive = driver_session_timeout(config);
        add_pools(
            metrics,
            &local,
            &limits,
            &launcher,
            &always,
            &hive,
            &mut set.pools,
        )
        .await;
        // Drivers of tenants no longer configured are not adopted by anyone: stop them.
        for (orphan, _) in launcher.list().await {
            if !set.pools.contains_key(&orphan.tenant) {
                warn!(driver = %orphan.id, tenant = %orphan.tenant, "stopping a driver of a tenant no longer configured");
                launcher.stop(&orphan).await;
            }
        }
    }
    if !on_kubernetes.is_empty() {
        let owned: Vec<TenantConfig> = on_kubernetes.iter().map(|t| (*t).clone()).collect();
        let kube = KubeLauncher::new(
            config.kubernetes.clone(),
            &owned,
            &config.backend.service_user,
        )
        .await?;
        let k8s = &config.kubernetes;
        let leading = Arc::new(AtomicBool::new(!k8s.leader_election));
        let launcher: Arc<dyn Launcher> = kube.clone();
        add_pools(
            metrics,
            &on_kubernetes,
            &limits,
            &launcher,
            &leading,
            &driver_session_timeout(config),
            &mut set.pools,
        )
        .await;
        if k8s.leader_election {
            let namespace = if k8s.lease_namespace.is_empty() {
                kube.namespace().to_owned()
            } else {
                k8s.lease_namespace.clone()
            };
            let identity = k8s
                .identity
                .clone()
                .unwrap_or_else(crate::pool::leader::default_identity);
            set.election = Some(Coordination {
                client: kube.client(),
                sharing: crate::pool::replicas::LoadSharing {
                    namespace: namespace.clone(),
                    lease_name: format!("{}-load", k8s.lease_name),
                    identity: identity.clone(),
                    stale_after: k8s.lease_duration,
                    every: config.pools.reconcile_every.max(Duration::from_secs(1)),
                },
                election: crate::pool::leader::Election {
                    namespace,
                    lease_name: k8s.lease_name.clone(),
                    identity,
                    lease_duration: k8s.lease_duration,
                },
                leading,
                pools: on_kubernetes
                    .iter()
                    .filter_map(|t| set.pools.get(&t.name).cloned())
                    .collect(),
            });
        }
    }
    Ok(set)
}

async fn add_pools(
    metrics: &PoolFamilies,
    tenants: &[&TenantConfig],
    limits: &PoolLimits,
    launcher: &Arc<dyn Launcher>,
    leading: &Arc<AtomicBool>,
    hive_defaults: &[(&str, String)],
    pools: &mut HashMap<String, Arc<DriverPool>>,
) {
    for tenant in tenants {
        let mut hive_conf = tenant.hive_conf.clone();
        for (key, value) in hive_defaults {
            hive_conf
                .entry((*key).to_owned())
                .or_insert_with(|| value.clone());
        }
        let spec = DriverSpec {
            tenant: tenant.name.clone(),
            driver_memory: tenant.driver_memory.clone(),
            spark_conf: tenant.spark_conf.clone(),
            hive_conf,
        };
        let pool_metrics = metrics.for_tenant(&tenant.name);
        let pool = DriverPool::new(
            spec,
            tenant.scaling.clone(),
            limits.clone(),
            launcher.clone(),
            pool_metrics,
            leading.clone(),
        );
        pool.adopt().await;
        pools.insert(tenant.name.clone(), pool);
    }
}

/// With shared HTTP sessions, replicas forget sessions instead of closing them (any replica may
/// still serve them), so a driver must end those nobody comes back to. Hive's own idle timeout
/// is 7 days, checked every 6 hours, and never ends a session holding an operation (clients
/// leave their last one open): sparkgate's drivers close finished operations and sessions idle
/// for twice sparkgate's idle timeout (plus the reuse TTL: a kept session is idle on the
/// driver), checked every quarter of it (3 s to 15 min). Running statements are never ended by
/// it. A tenant's own `hive_conf` value of any of these keys wins.
pub(super) fn driver_session_timeout(config: &Config) -> Vec<(&'static str, String)> {
    if !config.http.shared_sessions {
        return Vec::new();
    }
    let server = &config.server;
    let timeout = server.idle_session_timeout * 2 + server.session_reuse_ttl;
    let check = (timeout / 4).clamp(Duration::from_secs(3), Duration::from_secs(15 * 60));
    vec![
        (
            "hive.server2.idle.session.timeout",
            format!("{}ms", timeout.as_millis()),
        ),
        (
            "hive.server2.idle.operation.timeout",
            format!("{}ms", timeout.as_millis()),
        ),
        (
            "hive.server2.session.check.interval",
            format!("{}ms", check.as_millis()),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_end_forgotten_shared_sessions_after_twice_the_idle_timeout() {
        let mut config = Config::default();
        assert!(
            driver_session_timeout(&config).is_empty(),
            "Hive's defaults when replicas close their own sessions"
        );
        config.http.shared_sessions = true;
        let set: HashMap<_, _> = driver_session_timeout(&config).into_iter().collect();
        assert_eq!(set["hive.server2.idle.session.timeout"], "7200000ms");
        assert_eq!(set["hive.server2.idle.operation.timeout"], "7200000ms");
        assert_eq!(set["hive.server2.session.check.interval"], "900000ms");
        config.server.idle_session_timeout = Duration::from_secs(4);
        config.server.session_reuse_ttl = Duration::from_secs(2);
        let set: HashMap<_, _> = driver_session_timeout(&config).into_iter().collect();
        assert_eq!(set["hive.server2.idle.session.timeout"], "10000ms");
        assert_eq!(
            set["hive.server2.session.check.interval"], "3000ms",
            "Hive refuses a check interval under 3 s"
        );
    }
}
