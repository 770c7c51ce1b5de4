//! Launchers start, stop and list Spark Thrift Server drivers. The `local` launcher runs them as
//! child processes of sparkgate (the embedded default); the `kubernetes` launcher runs Pods; the
//! `static` launcher ([`fixed`]) lists servers at configured addresses and starts none.
//!
//! Which drivers exist is read back from the launcher (state files in the work dir for local
//! drivers, labelled Pods on Kubernetes), so a restarted sparkgate finds the drivers of its
//! previous run instead of leaking them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::sasl::PlainCredentials;
use serde::{Deserialize, Serialize};

pub mod fixed;
pub mod jvm;
pub mod kubernetes;
pub mod local;
pub mod submit;
pub mod ui;

pub use local::{LocalLauncher, LocalLauncherConfig};

/// A driver's default for Spark's per-driver cache of table plans and their file listings: off.
/// A tenant's drivers share one catalog, and a driver does not learn of rows another driver
/// wrote into a table it has cached (it would answer from its stale file list until
/// `REFRESH TABLE`). A tenant may turn it back on in `spark_conf`.
pub const RELATION_CACHE_SIZE: (&str, &str) = ("spark.sql.filesourceTableRelationCacheSize", "0");

/// What a tenant's drivers are started with.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverSpec {
    pub tenant: String,
    pub driver_memory: String,
    /// The tenant's own `spark.*` settings (e.g. dynamic allocation).
    pub spark_conf: BTreeMap<String, String>,
    /// The tenant's own `hive.*` settings (e.g. a shared metastore URI).
    pub hive_conf: BTreeMap<String, String>,
}

/// A driver a launcher knows of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchedDriver {
    pub id: String,
    pub tenant: String,
    /// `host:port` of its binary HS2 transport; empty until the launcher knows it (a Pod has
    /// no IP before it runs).
    pub address: String,
    /// The process (local launcher only).
    #[serde(default)]
    pub pid: u32,
    /// The password the driver takes from sparkgate's connections and from no others; empty
    /// for servers sparkgate does not run (static backends).
    #[serde(default)]
    pub secret: DriverSecret,
    /// Base URL of its Spark UI (`http://host:port`), which sparkgate reads progress from;
    /// `None` when it has none sparkgate may read.
    #[serde(default)]
    pub ui: Option<String>,
}

/// A driver's own password: the Spark Thrift Server runs `hive.server2.authentication=CUSTOM`
/// with sparkgate's provider ([`DRIVER_AUTH_CLASS`]), which accepts a connection only with
/// this value. One per driver, random, so whoever learns one driver's (a SQL user of that very
/// driver can) reaches no other driver with it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DriverSecret(String);

impl DriverSecret {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn from_value(value: String) -> Self {
        Self(value)
    }

    /// The value, for the SASL PLAIN password and the driver's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for DriverSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "DriverSecret(none)"
        } else {
            "DriverSecret(..)"
        })
    }
}

/// sparkgate's password provider on every driver it runs, and the environment variable it reads
/// the driver's secret from (never a command line argument: those are world-readable).
pub const DRIVER_AUTH_CLASS: &str = "sparkgate.DriverAuth";
pub const DRIVER_SECRET_ENV: &str = "SPARKGATE_DRIVER_SECRET";
/// The provider's source, compiled with the driver's own Spark (see [`jvm`]).
pub const DRIVER_AUTH_SOURCE: &str = include_str!("DriverAuth.scala");

/// What a launcher knows of a driver's health between reconcile passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Starting or running as far as the launcher knows.
    Alive,
    /// Serving: the launcher has seen it ready, at this address.
    Ready { address: String },
    /// Gone or failed, and why.
    Dead(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start a driver: {0}")]
    Start(String),
    #[error("driver {id} did not become ready within {secs} s; see {log}")]
    NotReady { id: String, secs: u64, log: String },
    #[error("driver {id} failed: {reason}")]
    Failed { id: String, reason: String },
    #[error("tenant {tenant:?}'s catalog port {port} is taken by another process; its drivers are replaced")]
    PortTaken { tenant: String, port: u16 },
    #[error("launcher i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Identity(#[from] kubernetes::IdentityError),
    #[error(transparent)]
    OsUser(#[from] local::os_user::OsUserError),
}

/// Starts, stops and lists drivers. Every method may take time and fail; the pool calls them
/// from its reconcile loop and never holds a lock across one.
pub trait Launcher: Send + Sync + 'static {
    /// Asks for a new driver; it is not ready yet (see [`Launcher::wait_ready`]).
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>>;

    /// Waits, with the launcher's deadline, until the driver serves HS2; returns it with its
    /// address filled in.
    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>>;

    /// Stops a driver (gracefully, then by force after a deadline) and forgets it.
    fn stop<'a>(&'a self, driver: &'a LaunchedDriver) -> BoxFuture<'a, ()>;

    /// Every driver that exists now, of every tenant, ready or not.
    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>>;

    /// The launcher's current view of one driver; cheap (no I/O), called every reconcile pass.
    fn health(&self, driver: &LaunchedDriver) -> Health;

    /// Whether the pool may start and stop drivers to follow load; `false` for fixed servers.
    fn scales(&self) -> bool {
        true
    }

    /// Whether a listed driver serves now, at `address` (checked before a pool adopts it).
    fn answers<'a>(&'a self, driver: &'a LaunchedDriver, address: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(probe(address, &driver.secret))
    }
}

/// Whether an HS2 server at `address` opens (and closes) a session for sparkgate, with the
/// driver's secret (any password where it has none).
pub async fn probe(address: &str, secret: &DriverSecret) -> bool {
    let auth = ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: "sparkgate-probe".into(),
        password: if secret.is_empty() {
            "x".into()
        } else {
            secret.expose().to_owned()
        },
    });
    let Ok(mut conn) =
        Hs2Connection::connect(address, &auth, 1 << 20, Duration::from_secs(2)).await
    else {
        return false;
    };
    let open = Hs2Request::OpenSession(t::TOpenSessionReq {
        client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
        username: Some("sparkgate-probe".into()),
        password: None,
        configuration: None,
    });
    let call = tokio::time::timeout(Duration::from_secs(10), conn.call(&open)).await;
    let Ok(Ok(Hs2Response::OpenSession(resp))) = call else {
        return false;
    };
    if let Some(session_handle) = resp.session_handle {
        let close = Hs2Request::CloseSession(t::TCloseSessionReq { session_handle });
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.call(&close)).await;
        return resp.status.status_code == t::TStatusCode::SUCCESS_STATUS;
    }
    false
}
