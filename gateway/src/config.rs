//! Configuration: one TOML file of serde structs, every field with a documented default.
//! `gateway/sparkgate.example.toml` is the annotated reference and is loaded by a test.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::launcher::kubernetes::KubernetesConfig;
use crate::launcher::LocalLauncherConfig;
use crate::tenant::{LauncherKind, TenantConfig, ANYONE};

/// Everything sparkgate reads from its config file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub backend: BackendConfig,
    /// Authentication methods, tried in order (default: `none`, any user).
    pub auth: sparkgate_auth::AuthConfig,
    /// Who may run SQL where. Empty: one tenant, `default`, admitting everyone, on
    /// `backend.address`.
    pub tenants: Vec<TenantConfig>,
    /// Driver pools of tenants with `launcher = "local"` or `"kubernetes"`.
    pub pools: PoolsConfig,
    /// The local launcher (drivers as child processes).
    pub local: LocalLauncherConfig,
    /// The Kubernetes launcher (drivers as Pods).
    pub kubernetes: KubernetesConfig,
    pub admin: AdminConfig,
    /// The result cache's memory budget (each tenant's TTL and scope are its own).
    pub cache: crate::session::cache::CacheConfig,
    /// The audit log (off unless `audit.file` or `audit.stderr` is set).
    pub audit: crate::audit::AuditConfig,
    /// Usage accounting per tenant (`usage.file` keeps it across restarts).
    pub usage: crate::usage::UsageConfig,
    /// The file this was read from (not a key of it): no tenant's drivers may read it.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// The admin HTTP port (health, readiness, metrics, drivers/sessions API).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Off unless set. A bind other than loopback needs `token_file`.
    pub bind: Option<SocketAddr>,
    /// A file holding the admin API's bearer token (at least 16 characters; surrounding
    /// whitespace is ignored). With it, everything but `/healthz`, `/readyz` and `/metrics` needs
    /// `Authorization: Bearer <token>`. Without it, the port answers only loopback host names.
    pub token_file: Option<std::path::PathBuf>,
    /// `false`: the port serves `/healthz`, `/readyz` and `/metrics` only (any bind, no token).
    pub api: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bind: None,
            token_file: None,
            api: true,
        }
    }
}

/// Settings shared by every driver pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolsConfig {
    /// Sessions one driver takes at most.
    pub max_sessions_per_driver: u32,
    /// Sessions that may wait for a driver per tenant; more are refused at once.
    pub max_waiting: u32,
    /// How long a session waits for a driver (cold start, full pool) before it is refused.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// A draining driver is stopped when its sessions end, or after this long.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// On shutdown, stop the drivers (`true`) or leave them for the next run to adopt.
    pub stop_drivers_on_exit: bool,
    /// How often each pool looks at its drivers and load (the autoscaler's tick).
    #[serde(with = "humantime_serde")]
    pub reconcile_every: Duration,
}

impl Default for PoolsConfig {
    fn default() -> Self {
        Self {
            max_sessions_per_driver: 50,
            max_waiting: 200,
            wait_timeout: Duration::from_secs(180),
            drain_grace: Duration::from_secs(600),
            stop_drivers_on_exit: true,
            reconcile_every: Duration::from_millis(500),
        }
    }
}

/// The client-facing listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address clients connect to.
    pub bind: SocketAddr,
    /// `sasl` (SASL PLAIN, what beeline and PyHive use by default) or `nosasl` (`;auth=noSasl`).
    pub transport: FrontendTransport,
    /// Largest Thrift message accepted from a client, in bytes.
    pub max_message_size: usize,
    /// Time a new connection has to finish the SASL exchange (or send its first message).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time a client may take to send the rest of a message it has started.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// A session with no call for this long is closed on the backend.
    #[serde(with = "humantime_serde")]
    pub idle_session_timeout: Duration,
    /// Client connections served at once, over all listeners (binary and HTTP); more wait in
    /// the kernel's accept queue.
    pub max_connections: usize,
    /// Sessions one connection may hold open.
    pub max_sessions_per_connection: usize,
    /// Operations (statements, metadata calls) one session may hold open; a client closes
    /// them with CloseOperation (or by closing the session).
    pub max_operations_per_session: usize,
    /// Rows per fetch the Hive JDBC driver uses, sent in the OpenSession reply
    /// (`hive.server2.thrift.resultset.default.fetch.size`) when the backend sends none.
    pub default_fetch_size: u32,
    /// Most rows one FetchResults may ask the backend for; larger requests are lowered to it
    /// (clients keep fetching until a batch comes back empty, so they still get every row).
    pub max_fetch_rows: i64,
    /// On SIGTERM/SIGINT: how long running sessions may go on before they are closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// On shutdown, after the grace period: how long drivers get to answer the CloseSession of
    /// the sessions left (all closed at once). Twice this, plus the grace period and ~50 s for
    /// pools, leader Lease and tasks, bounds the time from SIGTERM to exit.
    #[serde(with = "humantime_serde")]
    pub shutdown_close_timeout: Duration,
    /// Connections one authenticated user may hold at once (binary transport).
    pub max_connections_per_user: usize,
    /// Connections one client address may hold at once (both transports).
    pub max_connections_per_address: usize,
    /// Users who may open sessions as another user (`hive.server2.proxy.user`).
    pub admin_users: Vec<String>,
    /// Members of these groups may too.
    pub admin_groups: Vec<String>,
    /// The `none` authentication method accepts anyone: refused with a non-loopback listener
    /// unless this is set.
    pub allow_none_auth_on_network: bool,
    /// How long a JDBC client's status call (GetOperationStatus) waits for a running statement
    /// to end before answering, as HiveServer2's long polling does (beeline and JDBC poll again
    /// at once). Python clients (Superset) sleep between polls themselves: only their polls in
    /// a statement's first `status_wait` are held, later ones are answered at once, so a Stop
    /// pressed meanwhile is sent at their next poll.
    #[serde(with = "humantime_serde")]
    pub status_wait: Duration,
    /// A closed client session that changed no session state (no SET, USE, temporary view,
    /// ADD JAR, write...) is kept open on its driver this long for the next OpenSession of the
    /// same user, tenant and configuration, which is then answered without a driver round trip.
    /// Default `"0s"`: off.
    #[serde(with = "humantime_serde")]
    pub session_reuse_ttl: Duration,
    /// At most this many such sessions are kept, over all users (default 64).
    pub session_reuse_max: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 10009)),
            transport: FrontendTransport::Sasl,
            max_message_size: 64 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            idle_session_timeout: Duration::from_secs(3600),
            max_connections: 10_000,
            max_sessions_per_connection: 64,
            max_operations_per_session: 1000,
            default_fetch_size: 10_000,
            max_fetch_rows: 100_000,
            shutdown_grace: Duration::from_secs(30),
            shutdown_close_timeout: Duration::from_secs(10),
            max_connections_per_user: 200,
            max_connections_per_address: 500,
            admin_users: Vec::new(),
            admin_groups: Vec::new(),
            allow_none_auth_on_network: false,
            status_wait: Duration::from_secs(5),
            session_reuse_ttl: Duration::ZERO,
            session_reuse_max: 64,
        }
    }
}

/// Thrift over HTTP (beeline `;transportMode=http;httpPath=cliservice`, PyHive `THttpClient`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the HTTP listener; none by default.
    pub bind: Option<SocketAddr>,
    /// Path clients POST to; a trailing slash is tolerated.
    pub path: String,
    /// How long the session cookie spares a client re-authentication.
    #[serde(with = "humantime_serde")]
    pub cookie_ttl: Duration,
    /// File holding the key that signs cookies and seals HTTP session handles (shared by
    /// replicas); random per process if unset.
    pub cookie_key_file: Option<PathBuf>,
    /// Several replicas serve one HTTP session (behind a load balancer, consecutive calls reach
    /// any of them): a replica takes in the sessions of the others from their sealed handles, an
    /// idle or stopping replica forgets its HTTP sessions instead of closing them on the driver,
    /// a statement waits for its turn in its ExecuteStatement call, and HTTP sessions are not
    /// served from the result cache. Needs the same `cookie_key_file` on every replica.
    pub shared_sessions: bool,
    /// `X-Forwarded-For` is believed only from these addresses (e.g. a load balancer); the
    /// client is then the rightmost hop in it that is not one of them.
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest request body accepted, in bytes; a larger `Content-Length` is refused (413)
    /// before anything is read.
    pub max_body_size: usize,
    /// A request's body must arrive within this long (408 after it).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: None,
            path: "/cliservice".into(),
            cookie_ttl: Duration::from_secs(3600),
            cookie_key_file: None,
            shared_sessions: false,
            trusted_proxies: Vec::new(),
            max_body_size: 64 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// TLS for both listeners (PEM files, reloaded when they change).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first. TLS is on when this and `key_file` are set.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FrontendTransport {
    Sasl,
    Nosasl,
}

/// The Spark Thrift Server sessions are forwarded to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port` of the Spark Thrift Server's binary transport.
    pub address: String,
    /// `sasl` when the server runs `hive.server2.authentication=NONE` (Spark's default), `nosasl`
    /// when it runs `NOSASL`.
    pub transport: FrontendTransport,
    /// Largest reply accepted from the backend, in bytes (big FetchResults batches).
    pub max_message_size: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline for every call but a synchronous ExecuteStatement, OpenSession and CloseSession.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Deadline for OpenSession and CloseSession: a driver that does not answer them must not
    /// hold a new session (or a disconnecting client's cleanup) for `call_timeout`.
    #[serde(with = "humantime_serde")]
    pub session_call_timeout: Duration,
    /// Deadline for a synchronous ExecuteStatement (runAsync=false), which runs the whole query.
    #[serde(with = "humantime_serde")]
    pub execute_timeout: Duration,
    /// Connections to one driver, at most, shared by all its sessions; a call waits (within its
    /// deadline) when all are busy.
    pub max_connections_per_driver: usize,
    /// The user sparkgate's driver connections authenticate as; each session still runs as its
    /// own user (OpenSession passes it as `hive.server2.proxy.user`).
    pub service_user: String,
    /// How long one status call waits on the driver (each session's
    /// `hive.server2.long.polling.timeout`): sparkgate sees a statement end, a client go away or
    /// a limit pass within this, at about one driver call per this per waiting client.
    #[serde(with = "humantime_serde")]
    pub status_poll: Duration,
    /// The backend's Spark UI (`http://host:4040`), which sparkgate reads statements' progress
    /// from (without tenants: the one backend's).
    pub spark_ui: Option<String>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:10000".into(),
            transport: FrontendTransport::Sasl,
            max_message_size: 512 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(300),
            session_call_timeout: Duration::from_secs(30),
            execute_timeout: Duration::from_secs(6 * 3600),
            max_connections_per_driver: 64,
            service_user: "sparkgate".into(),
            status_poll: Duration::from_millis(500),
            spark_ui: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("invalid config: {0}")]
    Tenant(#[from] crate::launcher::kubernetes::IdentityError),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "<inline>".into(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The tenants sessions are routed to; without configured ones, `default` admits everyone.
    pub fn effective_tenants(&self) -> Vec<TenantConfig> {
        if self.tenants.is_empty() {
            let mut tenant = TenantConfig::new_static(
                "default",
                Vec::new(),
                vec![ANYONE.into()],
                vec![self.backend.address.clone()],
            );
            if let Some(ui) = &self.backend.spark_ui {
                tenant
                    .spark_ui
                    .insert(self.backend.address.clone(), ui.clone());
            }
            vec![tenant]
        } else {
            self.tenants.clone()
        }
    }

    /// The files of sparkgate's that hold a secret: credentials, keys, password hashes.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        use sparkgate_auth::MethodConfig;
        let mut files: Vec<PathBuf> = self
            .auth
            .methods
            .iter()
            .filter_map(|m| match m {
                MethodConfig::UsersFile(f) => Some(f.path.clone()),
                MethodConfig::Ldap(l) => l.bind_password_file.clone(),
                MethodConfig::Jwt(j) => j.hs256_secret_file.clone(),
                MethodConfig::None {} => None,
            })
            .collect();
        files.extend(self.http.cookie_key_file.clone());
        files.extend(self.tls.key_file.clone());
        files.extend(self.admin.token_file.clone());
        files
    }

    /// Checks what serde cannot, before any port is bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let not_host_port = |a: &str| {
            a.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        };
        if not_host_port(&self.backend.address) {
            return invalid(format!(
                "backend.address {:?} is not HOST:PORT",
                self.backend.address
            ));
        }
        if self.backend.max_connections_per_driver == 0 {
            return invalid("backend.max_connections_per_driver must be at least 1".into());
        }
        if self.pools.reconcile_every < Duration::from_millis(10) {
            return invalid("pools.reconcile_every must be at least 10ms".into());
        }
        let mut names = std::collections::HashSet::new();
        for tenant in &self.tenants {
            if tenant.name.is_empty() || !names.insert(tenant.name.as_str()) {
                return invalid(format!(
                    "tenant name {:?} is empty or used twice",
                    tenant.name
                ));
            }
            if tenant.launcher == LauncherKind::Kubernetes {
                crate::launcher::kubernetes::validate_tenant(tenant)?;
            }
            if tenant.launcher == LauncherKind::Static && tenant.backends.is_empty() {
                return invalid(format!(
                    "tenant {:?} has no backends (static launcher)",
                    tenant.name
                ));
            }
            let scaling = &tenant.scaling;
            if scaling.max_drivers == 0 || scaling.min_drivers > scaling.max_drivers {
                return invalid(format!(
                    "tenant {:?}: scaling needs 0 <= min_drivers <= max_drivers and max_drivers >= 1",
                    tenant.name
                ));
            }
            if !tenant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return invalid(format!(
                    "tenant name {:?}: use letters, digits, '-' and '_' only",
                    tenant.name
                ));
            }
            if let Some(bad) = tenant.backends.iter().find(|b| not_host_port(b)) {
                return invalid(format!(
                    "tenant {:?}: backend {bad:?} is not HOST:PORT",
                    tenant.name
                ));
            }
            if tenant.users.is_empty() && tenant.groups.is_empty() {
                return invalid(format!(
                    "tenant {:?} admits nobody (no users, no groups)",
                    tenant.name
                ));
            }
        }
        if !self.http.path.starts_with('/') {
            return invalid(format!("http.path {:?} must start with /", self.http.path));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("tls.cert_file and tls.key_file go together".into());
        }
        if self.server.max_message_size < 1024 || self.backend.max_message_size < 1024 {
            return invalid("max_message_size must be at least 1024 bytes".into());
        }
        if self.server.max_fetch_rows < 1 {
            return invalid("server.max_fetch_rows must be at least 1".into());
        }
        if self.server.max_connections == 0
            || self.server.max_sessions_per_connection == 0
            || self.server.max_operations_per_session == 0
        {
            return invalid(
                "max_connections, max_sessions_per_connection and max_operations_per_session must be above 0".into(),
            );
        }
        for (name, d) in [
            ("server.handshake_timeout", self.server.handshake_timeout),
            (
                "server.shutdown_close_timeout",
                self.server.shutdown_close_timeout,
            ),
            ("server.read_timeout", self.server.read_timeout),
            ("http.body_timeout", self.http.body_timeout),
            (
                "server.idle_session_timeout",
                self.server.idle_session_timeout,
            ),
            ("backend.connect_timeout", self.backend.connect_timeout),
            ("backend.call_timeout", self.backend.call_timeout),
            (
                "backend.session_call_timeout",
                self.backend.session_call_timeout,
            ),
            ("backend.execute_timeout", self.backend.execute_timeout),
        ] {
            if d.is_zero() {
                return invalid(format!("{name} must be above zero"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
