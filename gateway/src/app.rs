//! Running a whole gateway: check the config, bind, serve, and the one shutdown path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use sparkgate_auth::AuthService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::AdminView;
use crate::config::{Config, FrontendTransport};
use crate::driver::metrics::LinkGauges;
use crate::frontend::http::CookieSigner;
use crate::frontend::limits::ConnectionLimits;
use crate::frontend::tls::{TlsAcceptorCell, RELOAD_CHECK_EVERY};
use crate::frontend::Shared;
use crate::launcher::fixed::FixedLauncher;
use crate::launcher::kubernetes::KubeLauncher;
use crate::launcher::{DriverSpec, Launcher, LocalLauncher};
use crate::pool::metrics::{PoolFamilies, PoolGauges};
use crate::pool::{DriverPool, PoolLimits};
use crate::session::metrics::SessionGauges;
use crate::session::CallHandler;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::tenant::LauncherKind;
use crate::tenant::TenantConfig;
use std::sync::atomic::AtomicBool;

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
    #[error("invalid configuration: {0}")]
    Launcher(#[from] crate::launcher::LaunchError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, running gateway.
pub struct Gateway {
    /// The binary-transport listener's address.
    pub local_addr: SocketAddr,
    /// The HTTP listener's address, when one is configured.
    pub http_addr: Option<SocketAddr>,
    /// The admin port's address, when one is configured.
    pub admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    /// The leader election (Kubernetes, several replicas): stopped only after the pools' drivers
    /// are dealt with at shutdown, so the leader still leads while it stops them.
    election: Option<(CancellationToken, JoinHandle<()>)>,
    /// Each pool's reconcile loop, joined at shutdown before any driver is stopped.
    pool_loops: Vec<JoinHandle<()>>,
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
    Ok(())
}

/// What startup takes from the configuration and the files it names, each checked.
struct Checked {
    auth: Arc<AuthService>,
    tls: Option<Arc<TlsAcceptorCell>>,
    cookie_key: Vec<u8>,
}

/// Every check startup makes before it binds a port or starts a driver: the configuration
/// itself, the safety of its auth setup, and the files it names (users files, keys,
/// certificates). Servers it names (LDAP, Kubernetes) are reached only at startup.
fn check_all(config: &Config) -> Result<Checked, StartError> {
    config.validate()?;
    check_auth(config)?;
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
    Ok(Checked {
        auth,
        tls,
        cookie_key,
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
        check_auth(config)
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Gateway {
    /// Checks the configuration, binds the listeners and starts serving in the background.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let Checked {
            auth,
            tls,
            cookie_key,
        } = check_all(&config)?;
        let mut metrics = Metrics::default();
        let pool_metrics = PoolFamilies::register(metrics.registry_mut());
        let PoolSet { pools, election } = start_pools(&config, &pool_metrics).await?;
        let config = Arc::new(config);
        let listener = bind(config.server.bind).await?;
        let http_listener = match config.http.bind {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let local_addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let http_addr = http_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound"));
        let admin_listener = match config.admin.bind {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .map(|l| l.local_addr().expect("bound"));
        let shared = Arc::new(Shared {
            handler: Arc::new(CallHandler::new(
                config.clone(),
                auth.clone(),
                pools.clone(),
            )),
            limits: ConnectionLimits::new(
                config.server.max_connections,
                config.server.max_connections_per_user,
                config.server.max_connections_per_address,
            ),
            auth,
            tls: tls.clone(),
            shutdown: Shutdown::default(),
            tracker: TaskTracker::new(),
            config: config.clone(),
        });
        let tasks = shared.shutdown.clone();
        tasks.spawn(
            "binary listener",
            crate::frontend::binary::serve(listener, shared.clone()),
        );
        if let Some(http_listener) = http_listener {
            let cookies = Arc::new(CookieSigner::new(
                cookie_key,
                config.http.cookie_ttl,
                tls.is_some(),
            ));
            tasks.spawn(
                "http listener",
                crate::frontend::http::serve(http_listener, shared.clone(), cookies),
            );
        }
        spawn_housekeeping(shared.clone());
        let registry = metrics.registry_mut();
        PoolGauges::register(registry, &pools);
        SessionGauges::register(registry, shared.handler.table.clone());
        LinkGauges::register(registry, shared.handler.links.clone());
        if let Some(admin_listener) = admin_listener {
            let view = AdminView {
                handler: shared.handler.clone(),
                metrics: Arc::new(metrics),
                shutdown: shared.shutdown.clone(),
            };
            tasks.spawn("admin port", crate::admin::serve(admin_listener, view));
        }
        let pool_loops = pools
            .values()
            .map(|pool| {
                tasks.spawn(
                    "pool reconcile",
                    pool.clone().run(shared.shutdown.stop_accepting.clone()),
                )
            })
            .collect();
        let election = election.map(|(client, election, leading)| {
            let stop = CancellationToken::new();
            let task = tasks.spawn(
                "leader election",
                crate::pool::leader::run(client, election, leading, stop.clone()),
            );
            (stop, task)
        });
        info!(
            %local_addr,
            http = ?http_addr,
            admin = ?admin_addr,
            tls = tls.is_some(),
            transport = ?config.server.transport,
            tenants = ?config.effective_tenants().iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "sparkgate listening"
        );
        Ok(Self {
            local_addr,
            http_addr,
            admin_addr,
            shared,
            election,
            pool_loops,
        })
    }

    /// Sessions open right now.
    pub fn session_count(&self) -> usize {
        self.shared.handler.table.session_count()
    }

    /// The one shutdown path (see [`crate::shutdown`]). Its length is bounded: the grace period,
    /// then `server.shutdown_close_timeout` for cut connections to close their sessions, the
    /// same again for sessions left over (HTTP), [`POOL_LOOP_JOIN`] for the pool loops, the
    /// drivers' stops (in parallel; local drivers: `local.stop_grace`), [`LEASE_RELEASE`] for
    /// the leader Lease and 5 s for background tasks.
    pub async fn shutdown(self) {
        let shared = self.shared;
        let election = self.election;
        let config = &shared.config;
        let grace = config.server.shutdown_grace;
        let close_deadline = config.server.shutdown_close_timeout;
        info!(
            grace_secs = grace.as_secs(),
            connections = shared.tracker.len(),
            "shutting down"
        );
        shared.shutdown.stop_accepting.cancel();
        shared.tracker.close();
        if tokio::time::timeout(grace, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                connections = shared.tracker.len(),
                "grace period over; cutting remaining connections and their calls"
            );
            shared.shutdown.force_close.cancel();
            // Each cut connection closes its sessions on their drivers, in parallel.
            if tokio::time::timeout(close_deadline, shared.tracker.wait())
                .await
                .is_err()
            {
                warn!(
                    connections = shared.tracker.len(),
                    "connections still closing their sessions; going on without them"
                );
            }
        }
        // HTTP sessions outlive their connections; close what is left, in parallel.
        if tokio::time::timeout(close_deadline, shared.handler.close_all())
            .await
            .is_err()
        {
            warn!("drivers did not answer CloseSession in time; their sessions end with them");
        }
        // No reconcile pass may launch a driver behind the stop below.
        for pool_loop in self.pool_loops {
            let abort = pool_loop.abort_handle();
            if tokio::time::timeout(POOL_LOOP_JOIN, pool_loop)
                .await
                .is_err()
            {
                warn!("a pool's reconcile pass did not end in time; cancelled");
                abort.abort();
            }
        }
        if config.pools.stop_drivers_on_exit {
            // A follower's drivers are the leader's to keep or stop. The election still runs
            // here, so a leader stays leader until every pool's drivers are stopped.
            let leading = shared.handler.pools.values().filter(|p| p.leading());
            futures::future::join_all(leading.map(|pool| pool.stop_all())).await;
        } else if shared.handler.pools.values().any(|p| p.scales()) {
            info!("leaving drivers running for the next run to adopt (pools.stop_drivers_on_exit = false)");
        }
        // Last, give the Lease up (and wait for that), so another replica takes over at once.
        if let Some((stop, task)) = election {
            stop.cancel();
            if tokio::time::timeout(LEASE_RELEASE, task).await.is_err() {
                warn!("could not give up the leader lease in time; it expires by itself");
            }
        }
        shared.shutdown.force_close.cancel();
        if !shared
            .shutdown
            .join_background(Duration::from_secs(5))
            .await
        {
            warn!(
                tasks = shared.shutdown.background_tasks(),
                "background tasks still running at exit"
            );
        }
        info!("shutdown complete");
    }
}

/// How long shutdown waits for a pool's reconcile pass in progress (a launch under way).
pub const POOL_LOOP_JOIN: Duration = Duration::from_secs(30);
/// How long shutdown waits to give the leader Lease up.
pub const LEASE_RELEASE: Duration = Duration::from_secs(10);

/// The driver pools, and, with several replicas on Kubernetes, the election that decides which
/// of them scales.
struct PoolSet {
    pools: HashMap<String, Arc<DriverPool>>,
    election: Option<(kube::Client, crate::pool::leader::Election, Arc<AtomicBool>)>,
}

/// A pool per tenant, each with its tenant's launcher; drivers a previous run left are adopted.
async fn start_pools(config: &Config, metrics: &PoolFamilies) -> Result<PoolSet, StartError> {
    let tenants = config.effective_tenants();
    let of_kind =
        |kind| -> Vec<&TenantConfig> { tenants.iter().filter(|t| t.launcher == kind).collect() };
    let fixed = of_kind(LauncherKind::Static);
    let local = of_kind(LauncherKind::Local);
    let on_kubernetes = of_kind(LauncherKind::Kubernetes);
    let mut set = PoolSet {
        pools: HashMap::new(),
        election: None,
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
        let launcher: Arc<dyn Launcher> = Arc::new(FixedLauncher::new(
            fixed
                .iter()
                .map(|t| (t.name.as_str(), t.backends.as_slice())),
        ));
        // Someone else's servers: sparkgate does not bound their sessions.
        let fixed_limits = PoolLimits {
            max_sessions_per_driver: u32::MAX,
            ..limits.clone()
        };
        let pools = &mut set.pools;
        add_pools(metrics, &fixed, &fixed_limits, &launcher, &always, pools).await;
    }
    if !local.is_empty() {
        let launcher: Arc<dyn Launcher> = Arc::new(LocalLauncher::new(config.local.clone())?);
        // The local launcher's drivers belong to this process alone: it always decides.
        add_pools(metrics, &local, &limits, &launcher, &always, &mut set.pools).await;
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
        let kube = KubeLauncher::new(config.kubernetes.clone(), &owned).await?;
        let k8s = &config.kubernetes;
        let leading = Arc::new(AtomicBool::new(!k8s.leader_election));
        if k8s.leader_election {
            let namespace = if k8s.lease_namespace.is_empty() {
                kube.namespace().to_owned()
            } else {
                k8s.lease_namespace.clone()
            };
            set.election = Some((
                kube.client(),
                crate::pool::leader::Election {
                    namespace,
                    lease_name: k8s.lease_name.clone(),
                    identity: k8s
                        .identity
                        .clone()
                        .unwrap_or_else(crate::pool::leader::default_identity),
                    lease_duration: k8s.lease_duration,
                },
                leading.clone(),
            ));
        }
        let launcher: Arc<dyn Launcher> = kube;
        add_pools(
            metrics,
            &on_kubernetes,
            &limits,
            &launcher,
            &leading,
            &mut set.pools,
        )
        .await;
    }
    Ok(set)
}

async fn add_pools(
    metrics: &PoolFamilies,
    tenants: &[&TenantConfig],
    limits: &PoolLimits,
    launcher: &Arc<dyn Launcher>,
    leading: &Arc<AtomicBool>,
    pools: &mut HashMap<String, Arc<DriverPool>>,
) {
    for tenant in tenants {
        let spec = DriverSpec {
            tenant: tenant.name.clone(),
            driver_memory: tenant.driver_memory.clone(),
            spark_conf: tenant.spark_conf.clone(),
            hive_conf: tenant.hive_conf.clone(),
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

/// Idle-session expiry and TLS certificate reloads, until shutdown.
fn spawn_housekeeping(shared: Arc<Shared>) {
    let tasks = shared.shutdown.clone();
    let every = Duration::from_secs(5)
        .min(shared.config.server.idle_session_timeout / 2)
        .min(RELOAD_CHECK_EVERY);
    tasks.spawn("housekeeping", async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.shutdown.stop_accepting.cancelled() => return,
            }
            shared.handler.expire_idle_sessions().await;
            shared.handler.forget_gone_drivers();
            if let Some(tls) = &shared.tls {
                tls.reload_if_changed();
            }
        }
    });
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
