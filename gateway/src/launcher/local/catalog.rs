//! Each tenant's catalog for its local drivers: tables that outlive drivers.
//!
//! Spark's default catalog is an embedded Derby database in the driver's work dir, which only one
//! JVM may open and which dies with the driver. Instead every tenant gets one Hive metastore
//! service (Hive 2.3, from Spark's own jars) on a loopback port, with its Derby database and its
//! warehouse under `<work_dir>/tenants/<tenant>/`; all of the tenant's drivers reach it through
//! `hive.metastore.uris`. sparkgate owns it like a driver: started with the tenant's first driver,
//! found again after a restart (a state file), restarted if it dies while drivers use it, and
//! stopped with the tenant's last driver.
//!
//! Hive 2.3's own metastore main binds every interface and has no authentication, so sparkgate
//! serves the metastore through a small Scala main (`LoopbackMetastore.scala`) bound to
//! 127.0.0.1, compiled once with the Scala compiler that Spark's jars carry.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::os_user::{self, RunAs};
use super::process::{alive, signal};
use crate::launcher::jvm::{java, ScalaJar};
use crate::launcher::LaunchError;

const SERVER_SOURCE: &str = include_str!("LoopbackMetastore.scala");
const SERVER_CLASS: &str = "sparkgate.LoopbackMetastore";

/// Whether a tenant's settings point its drivers at a catalog of its own (a shared metastore
/// service, a metastore database the tenant runs, or a metastore client such as AWS Glue's);
/// such a tenant keeps it and gets no catalog from sparkgate.
pub fn own_catalog(
    hive_conf: &BTreeMap<String, String>,
    spark_conf: &BTreeMap<String, String>,
) -> bool {
    [
        "hive.metastore.uris",
        "javax.jdo.option.ConnectionURL",
        "hive.metastore.client.factory.class",
    ]
    .iter()
    .any(|key| {
        hive_conf.get(*key).is_some_and(|v| !v.trim().is_empty())
            || spark_conf
                .get(&format!("spark.hadoop.{key}"))
                .is_some_and(|v| !v.trim().is_empty())
    })
}

/// What sparkgate knows of a tenant's catalog process between runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CatalogState {
    /// Kept across restarts of the process, so drivers that outlive it find it again.
    port: u16,
    /// 0 when not running.
    pid: u32,
    /// SIGTERM sent: it is on its way out and is not to be reused.
    #[serde(default)]
    stopping: bool,
}

/// The tenants' catalog processes of one local launcher.
pub struct TenantCatalogs {
    spark_home: PathBuf,
    /// Absolute: drivers and catalogs run in other directories.
    work_dir: PathBuf,
    /// Heap of each catalog JVM.
    memory: String,
    stop_grace: Duration,
    /// The catalog server, compiled on first use.
    server: ScalaJar,
    /// Held while a catalog process is started or stopped: one process per tenant at most.
    processes: std::sync::Mutex<()>,
    /// Each tenant's OS user (empty: catalogs run as sparkgate's own).
    users: BTreeMap<String, RunAs>,
}

impl TenantCatalogs {
    pub fn new(
        spark_home: PathBuf,
        work_dir: PathBuf,
        memory: String,
        stop_grace: Duration,
        users: BTreeMap<String, RunAs>,
    ) -> Self {
        Self {
            server: ScalaJar::new(
                "loopback-metastore",
                &[("LoopbackMetastore.scala", SERVER_SOURCE)],
                spark_home.clone(),
                work_dir.join("catalog-server"),
            ),
            spark_home,
            work_dir,
            memory,
            stop_grace,
            processes: std::sync::Mutex::new(()),
            users,
        }
    }

    /// The tenant's own directory: its catalog database and its warehouse.
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.work_dir.join("tenants").join(tenant)
    }

    /// Where the tenant's managed tables keep their files.
    pub fn warehouse(&self, tenant: &str) -> PathBuf {
        self.tenant_dir(tenant).join("warehouse")
    }

    fn catalog_dir(&self, tenant: &str) -> PathBuf {
        self.tenant_dir(tenant).join("catalog")
    }

    /// In the tenant's directory, which is sparkgate's: the catalog directory is the tenant
    /// user's, who must not choose the pid sparkgate signals.
    fn state_file(&self, tenant: &str) -> PathBuf {
        self.tenant_dir(tenant).join("catalog.json")
    }

    /// Where sparkgate kept the state before tenants had OS users of their own.
    fn earlier_state_file(&self, tenant: &str) -> PathBuf {
        self.catalog_dir(tenant).join("catalog.json")
    }

    fn read_state(&self, tenant: &str) -> Option<CatalogState> {
        let text = std::fs::read_to_string(self.state_file(tenant))
            .or_else(|_| {
                // Trusted only while the catalog directory is still sparkgate's.
                let earlier = self.earlier_state_file(tenant);
                let ours = std::fs::symlink_metadata(self.catalog_dir(tenant))
                    .is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw());
                if ours {
                    std::fs::read_to_string(earlier)
                } else {
                    Err(std::io::ErrorKind::NotFound.into())
                }
            })
            .ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write_state(&self, tenant: &str, state: &CatalogState) -> Result<(), LaunchError> {
        let path = self.state_file(tenant);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string(state).expect("serializable"))?;
        std::fs::rename(tmp, path)?;
        let _ = std::fs::remove_file(self.earlier_state_file(tenant));
        Ok(())
    }

    /// Stops the tenant's catalog if it runs as another OS user than the tenant's (started by
    /// an earlier sparkgate as its own): its database files are about to change owner.
    /// Blocking, at startup.
    pub fn stop_foreign(&self, tenant: &str) {
        let _one_at_a_time = self.processes.lock().expect("catalog processes");
        let Some(state) = self.read_state(tenant) else {
            return;
        };
        let expected = self
            .users
            .get(tenant)
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |u| u.uid);
        if !self.is_catalog_process(tenant, state.pid)
            || os_user::process_uid(state.pid).is_none_or(|uid| uid == expected)
        {
            return;
        }
        warn!(%tenant, pid = state.pid, "stopping the tenant catalog: it runs as another OS user than the tenant's");
        signal(state.pid, nix::sys::signal::Signal::SIGTERM);
        self.wait_gone(tenant, state.pid);
        self.mark_stopped(tenant, state.pid);
    }

    /// Whether `pid` is this tenant's catalog process (not a stranger that got its pid).
    fn is_catalog_process(&self, tenant: &str, pid: u32) -> bool {
        if pid == 0 || !alive(pid) {
            return false;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        cmdline.contains(SERVER_CLASS)
            && cmdline.contains(&self.catalog_dir(tenant).display().to_string())
    }

    /// The metastore URI of the tenant's catalog, starting it if it does not run. Does not wait
    /// for it to serve: drivers retry connecting (`hive.metastore.connect.retries`), so a cold
    /// start runs the catalog and the driver at once. Blocking (it may compile the catalog server
    /// once, and waits for a stopping catalog to exit); call it off the async runtime.
    ///
    /// `pick_port` gives a loopback port no driver and no other catalog has (the caller holds
    /// the launcher's spawn lock, so nothing takes it before the state file records it).
    pub fn ensure_running(
        &self,
        tenant: &str,
        pick_port: &dyn Fn() -> Result<u16, LaunchError>,
    ) -> Result<String, LaunchError> {
        let _one_at_a_time = self.processes.lock().expect("catalog processes");
        self.ensure_running_locked(tenant, pick_port)
    }

    /// Every port a tenant's catalog has (running or not): each tenant keeps its own, and no
    /// driver or other catalog may get it.
    pub fn reserved_ports(&self) -> Vec<u16> {
        let Ok(entries) = std::fs::read_dir(self.work_dir.join("tenants")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|tenant| self.read_state(&tenant).map(|s| s.port))
            .collect()
    }

    fn ensure_running_locked(
        &self,
        tenant: &str,
        pick_port: &dyn Fn() -> Result<u16, LaunchError>,
    ) -> Result<String, LaunchError> {
        let state = self.read_state(tenant);
        if let Some(state) = &state {
            if !state.stopping && self.is_catalog_process(tenant, state.pid) {
                return Ok(uri(state.port));
            }
            if state.stopping && self.is_catalog_process(tenant, state.pid) {
                // Its database is still open: a second catalog process could not boot it.
                self.wait_gone(tenant, state.pid);
                self.mark_stopped(tenant, state.pid);
            }
        }
        let jar = self.server.path()?;
        let dir = self.catalog_dir(tenant);
        let warehouse = self.warehouse(tenant);
        std::fs::create_dir_all(self.tenant_dir(tenant))?;
        os_user::private_dir(&dir, self.users.get(tenant))?;
        os_user::private_dir(&warehouse, self.users.get(tenant))?;
        // The same port as before when it is free: drivers that outlived the previous process
        // have its address.
        let port = match state.map(|s| s.port) {
            Some(port) if port_free_soon(port) => port,
            Some(old) => {
                // Something else listens there: drivers that still use that address would talk to
                // it, not to their catalog.
                return Err(LaunchError::PortTaken {
                    tenant: tenant.to_owned(),
                    port: old,
                });
            }
            None => pick_port()?,
        };
        let d = dir.display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.tenant_dir(tenant).join("catalog.log"))?;
        let mut cmd = std::process::Command::new(java());
        if let Some(user) = self.users.get(tenant) {
            os_user::run_as(&mut cmd, user, &self.tenant_dir(tenant).join("home"));
        }
        cmd.arg(format!("-Xmx{}", self.memory))
            .args(["-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-XX:+UseSerialGC"])
            .arg(format!("-Djava.io.tmpdir={d}"))
            .arg(format!("-Dderby.system.home={d}"))
            .arg(format!("-Dderby.stream.error.file={d}/derby.log"))
            .arg(format!(
                "-Djavax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={d}/metastore_db;create=true"
            ))
            .arg(format!("-Dhive.metastore.warehouse.dir={}", warehouse.display()))
            // Spark's own embedded catalog does the same: the schema is made on first use.
            .arg("-Ddatanucleus.schema.autoCreateAll=true")
            .arg("-Dhive.metastore.schema.verification=false")
            .arg("-cp")
            .arg(format!("{}/jars/*:{}", self.spark_home.display(), jar.display()))
            .arg(SERVER_CLASS)
            .args(["127.0.0.1", &port.to_string()])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| {
            LaunchError::Start(format!("cannot start tenant {tenant:?}'s catalog: {e}"))
        })?;
        let pid = child.id();
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        self.write_state(
            tenant,
            &CatalogState {
                port,
                pid,
                stopping: false,
            },
        )?;
        info!(%tenant, port, pid, dir = %d, "tenant catalog started");
        Ok(uri(port))
    }

    /// Whether the tenant's catalog should run but its process is gone (cheap: a file and /proc).
    pub fn needs_revival(&self, tenant: &str) -> bool {
        self.read_state(tenant)
            .is_some_and(|s| !s.stopping && s.pid != 0 && !self.is_catalog_process(tenant, s.pid))
    }

    /// Restarts the catalog of a tenant whose drivers still run, if it died. Blocking. `Err` when
    /// its port is taken by another process: the tenant's drivers must then be replaced.
    pub fn revive(
        &self,
        tenant: &str,
        pick_port: &dyn Fn() -> Result<u16, LaunchError>,
    ) -> Result<(), LaunchError> {
        let _one_at_a_time = self.processes.lock().expect("catalog processes");
        let Some(state) = self.read_state(tenant) else {
            return Ok(());
        };
        if state.stopping || state.pid == 0 || self.is_catalog_process(tenant, state.pid) {
            return Ok(());
        }
        warn!(%tenant, pid = state.pid, "tenant catalog died while drivers use it; restarting it");
        self.ensure_running_locked(tenant, pick_port).map(|_| ())
    }

    /// Drops the tenant's catalog state (its port is unusable): its next start picks a new port.
    pub fn forget_port(&self, tenant: &str) {
        let _ = std::fs::remove_file(self.state_file(tenant));
    }

    /// Asks the tenant's catalog to stop (its last driver is gone); returns its pid to wait for.
    pub fn begin_stop(&self, tenant: &str) -> Option<u32> {
        let _one_at_a_time = self.processes.lock().expect("catalog processes");
        let mut state = self.read_state(tenant)?;
        if !self.is_catalog_process(tenant, state.pid) {
            return None;
        }
        state.stopping = true;
        if let Err(e) = self.write_state(tenant, &state) {
            warn!(%tenant, error = %e, "cannot record the catalog stopping");
        }
        signal(state.pid, nix::sys::signal::Signal::SIGTERM);
        Some(state.pid)
    }

    /// Waits (bounded by the stop grace, then SIGKILL) for a stopping catalog to exit, then
    /// records it stopped. Blocking.
    pub fn wait_exit(&self, tenant: &str, pid: u32) {
        self.wait_gone(tenant, pid);
        // The record is read and written under the lock: a start may have replaced it while
        // this waited, and must not be overwritten with the stopped process's.
        let _one_at_a_time = self.processes.lock().expect("catalog processes");
        self.mark_stopped(tenant, pid);
    }

    fn wait_gone(&self, tenant: &str, pid: u32) {
        let deadline = Instant::now() + self.stop_grace;
        while self.is_catalog_process(tenant, pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.is_catalog_process(tenant, pid) {
            warn!(%tenant, pid, "tenant catalog ignored SIGTERM; killing it");
            signal(pid, nix::sys::signal::Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.is_catalog_process(tenant, pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Its command line goes when its memory does, before its sockets close: the port is
        // free only once the process is gone (or a zombie). Bounded, in case the pid was reused.
        let deadline = Instant::now() + EXIT_TAIL;
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Records the catalog stopped, if `pid` is still the one on record. The caller holds the
    /// processes lock.
    fn mark_stopped(&self, tenant: &str, pid: u32) {
        if let Some(mut state) = self.read_state(tenant) {
            if state.pid == pid {
                state.pid = 0;
                state.stopping = false;
                let _ = self.write_state(tenant, &state);
                info!(%tenant, pid, "tenant catalog stopped");
            }
        }
    }
}

fn uri(port: u16) -> String {
    format!("thrift://127.0.0.1:{port}")
}

/// How long a stopped catalog's process may take, once it no longer runs its program, to be
/// gone with its sockets closed.
const EXIT_TAIL: Duration = Duration::from_secs(5);

/// Whether the loopback `port` can be bound, now or within a moment (a process on its way out,
/// a busy machine slowing its exit, may still hold it).
fn port_free_soon(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Driver dirs in which a driver of an earlier sparkgate kept tables (its own Derby catalog and
/// warehouse), with the tables' directory names: they are not in the tenant's catalog.
pub fn per_driver_tables(drivers_dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir(drivers_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let mut tables: Vec<String> = std::fs::read_dir(dir.join("warehouse"))
            .map(|it| {
                it.flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        tables.sort();
        if !tables.is_empty() || dir.join("metastore_db").exists() {
            found.push((dir, tables));
        }
    }
    found.sort();
    found
}

/// Logs at startup every earlier driver's tables ([`per_driver_tables`]), so they are not lost
/// silently; the README says how to bring them back. Their files are left as they are.
pub fn report_per_driver_tables(drivers_dir: &Path) {
    for (dir, tables) in per_driver_tables(drivers_dir) {
        warn!(
            driver_dir = %dir.display(),
            warehouse = %dir.join("warehouse").display(),
            catalog = %dir.join("metastore_db").display(),
            tables = %tables.join(","),
            "a driver of an earlier sparkgate kept tables in its own catalog, not in its tenant's: \
             they are not visible to sessions now; see the README (Where tables live, tables of an \
             earlier sparkgate) to bring them into the tenant's catalog"
        );
    }
}

#[cfg(test)]
mod tests;
