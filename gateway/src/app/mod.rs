//! Running a whole gateway: check the config, bind, serve, and the one shutdown path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::admin::AdminView;
use crate::config::Config;
use crate::driver::metrics::LinkGauges;
use crate::frontend::http::CookieSigner;
use crate::frontend::limits::ConnectionLimits;
use crate::frontend::tls::RELOAD_CHECK_EVERY;
use crate::frontend::Shared;
use crate::pool::metrics::{PoolFamilies, PoolGauges};
use crate::session::metrics::SessionGauges;
use crate::session::CallHandler;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

mod accounting;
mod checks;
mod pools;

use checks::{check_all, Checked};
pub use checks::{check_config, StartError};
use pools::{start_pools, PoolSet};

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
            admin_token,
        } = check_all(&config)?;
        let mut metrics = Metrics::default();
        let pool_metrics = PoolFamilies::register(metrics.registry_mut());
        let PoolSet {
            pools,
            election,
            local_driver_uids,
        } = start_pools(&config, &pool_metrics).await?;
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
        let mut handler = CallHandler::new(config.clone(), auth.clone(), pools.clone());
        handler.seal_http_handles(&cookie_key);
        handler.recorders.audit = Arc::new(
            crate::audit::AuditLog::start(&config.audit)
                .map_err(|e| StartError::Audit(e.to_string()))?,
        );
        let shared = Arc::new(Shared {
            handler: Arc::new(handler),
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
            // A cookie stands in for the login: it lasts no longer than a cached login does,
            // so a removed user loses HTTP access within auth.cache_ttl too.
            let cookie_ttl = config.http.cookie_ttl.min(config.auth.cache_ttl);
            let cookies = Arc::new(CookieSigner::new(cookie_key, cookie_ttl, tls.is_some()));
            tasks.spawn(
                "http listener",
                crate::frontend::http::serve(http_listener, shared.clone(), cookies),
            );
        }
        spawn_housekeeping(shared.clone());
        if shared.config.http.shared_sessions {
            spawn_shared_session_rechecks(shared.clone());
        }
        accounting::spawn_usage_accounting(shared.clone());
        tasks.spawn(
            "admission dispatcher",
            shared
                .handler
                .clone()
                .dispatch_queued(shared.shutdown.force_close.clone()),
        );
        tasks.spawn(
            "admission watch",
            shared
                .handler
                .clone()
                .watch_awaited_drivers(shared.shutdown.force_close.clone()),
        );
        let registry = metrics.registry_mut();
        PoolGauges::register(registry, &pools);
        SessionGauges::register(registry, shared.handler.table.clone());
        LinkGauges::register(registry, shared.handler.links.clone());
        crate::session::cache::metrics::CacheMetrics::register(
            registry,
            shared.handler.cache.clone(),
        );
        crate::usage::metrics::UsageMetrics::register(
            registry,
            shared.handler.recorders.usage.clone(),
        );
        crate::session::metrics::AdmissionGauges::register(registry, shared.handler.clone());
        if let Some(admin_listener) = admin_listener {
            let view = AdminView {
                handler: shared.handler.clone(),
                metrics: Arc::new(metrics),
                shutdown: shared.shutdown.clone(),
                token: admin_token,
                api: config.admin.api,
                untrusted_uids: local_driver_uids.into(),
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
        let election = election.map(|c| {
            let stop = CancellationToken::new();
            let leader = crate::pool::leader::run(
                c.client.clone(),
                c.election,
                c.leading.clone(),
                stop.clone(),
            );
            let sharing =
                crate::pool::replicas::run(c.client, c.sharing, c.pools, c.leading, stop.clone());
            let task = tasks.spawn("leader election and load sharing", async move {
                futures::join!(leader, sharing);
            });
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
        shared.handler.recorders.audit.close(Duration::from_secs(5));
        info!("shutdown complete");
    }
}

/// How long shutdown waits for a pool's reconcile pass in progress (a launch under way).
pub const POOL_LOOP_JOIN: Duration = Duration::from_secs(30);
/// How long shutdown waits to give the leader Lease up.
pub const LEASE_RELEASE: Duration = Duration::from_secs(10);

/// Shared HTTP sessions and statements this replica has not heard of in a while, asked of their
/// drivers (see [`crate::session::CallHandler::recheck_shared_sessions`]), until shutdown. Its
/// own task: a slow driver holds up no other housekeeping.
fn spawn_shared_session_rechecks(shared: Arc<Shared>) {
    let tasks = shared.shutdown.clone();
    tasks.spawn("shared session rechecks", async move {
        let mut tick = tokio::time::interval(crate::session::SHARED_RECHECK_AFTER / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.shutdown.stop_accepting.cancelled() => return,
            }
            tokio::select! {
                _ = shared.handler.recheck_shared_sessions() => {}
                _ = shared.shutdown.stop_accepting.cancelled() => return,
            }
        }
    });
}

/// Idle-session expiry, tenants' query time limits and TLS certificate reloads, until shutdown.
fn spawn_housekeeping(shared: Arc<Shared>) {
    let tasks = shared.shutdown.clone();
    let mut every = Duration::from_secs(5)
        .min(shared.config.server.idle_session_timeout / 2)
        .min(RELOAD_CHECK_EVERY);
    // A statement runs past its tenant's max_query_time by one tick at most.
    let tenants = shared.config.effective_tenants();
    if tenants.iter().any(|t| t.max_query_time.is_some()) {
        every = every.min(Duration::from_secs(1));
    }
    tasks.spawn("housekeeping", async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.shutdown.stop_accepting.cancelled() => return,
            }
            shared.handler.expire_idle_sessions().await;
            shared.handler.cancel_overdue_statements().await;
            shared.handler.forget_gone_drivers();
            if let Some(tls) = &shared.tls {
                tls.reload_if_changed();
            }
        }
    });
}
