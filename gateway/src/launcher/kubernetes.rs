//! The Kubernetes launcher: each driver is a Pod running Spark's HiveThriftServer2 in client
//! mode (the Pod is the Spark driver and asks Kubernetes for its executors), under its tenant's
//! ServiceAccount, which carries the tenant's cloud role (e.g. `eks.amazonaws.com/role-arn`).
//! A headless Service per driver, owned by its Pod, lets executors reach the driver.
//!
//! Labels are the truth about which drivers exist: a watch on
//! `app.kubernetes.io/managed-by=sparkgate` Pods feeds [`Launcher::list`] and
//! [`Launcher::health`], so a restarted sparkgate (or another replica) sees the same drivers.
//! Everything is written by server-side apply under one field manager, so a reconcile is
//! idempotent.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, Toleration};
use k8s_openapi::api::core::v1::{ResourceRequirements, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::submit::DriverCommand;
use super::{probe, DriverSpec, Health, LaunchError, LaunchedDriver, Launcher};
use crate::tenant::TenantConfig;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const TENANT_LABEL: &str = "sparkgate.io/tenant";
pub const DRIVER_LABEL: &str = "sparkgate.io/driver";
const FIELD_MANAGER: &str = "sparkgate";

/// Settings of the Kubernetes launcher (`[kubernetes]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The drivers' namespace; default: the namespace sparkgate runs in (in a cluster), else
    /// the kubeconfig's.
    pub namespace: Option<String>,
    /// Spark image of the driver Pods and, through `spark.kubernetes.container.image`, of their
    /// executors.
    pub image: String,
    pub image_pull_policy: String,
    /// spark-submit inside the image.
    pub spark_submit: String,
    pub thrift_port: u16,
    /// Fixed so the headless Service can name them: executors connect to these.
    pub driver_port: u16,
    pub block_manager_port: u16,
    /// A driver Pod must be ready (and answer an HS2 OpenSession) within this time.
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// A ready driver Pod that stays not ready this long is given up and replaced.
    #[serde(with = "humantime_serde")]
    pub not_ready_timeout: Duration,
    /// Apply each tenant's ServiceAccount (with its annotations) at startup; `false` when they
    /// are made elsewhere (the Helm chart), and then they must exist.
    pub manage_service_accounts: bool,
    /// With several replicas, only the holder of a Lease makes scaling decisions.
    pub leader_election: bool,
    pub lease_name: String,
    /// Namespace of the Lease; default: the drivers' namespace.
    pub lease_namespace: String,
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// This replica's name in the Lease; default: `$POD_NAME`, else host name and process id.
    pub identity: Option<String>,
    /// E.g. `yunikorn`; empty: the cluster's default scheduler.
    pub scheduler_name: String,
    /// A Pod (YAML or JSON) the driver Pods are built on, for anything not configurable here
    /// (volumes, sidecars, affinity); sparkgate's own fields win.
    pub pod_template_file: Option<PathBuf>,
    /// The driver container's resources (requests/limits).
    pub resources: Option<ResourceRequirements>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// Extra labels on driver Pods, e.g. YuniKorn's `queue`.
    pub labels: BTreeMap<String, String>,
    /// Grace given to a driver Pod when it is deleted.
    #[serde(with = "humantime_serde")]
    pub stop_grace: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            image: "apache/spark:4.0.1".into(),
            image_pull_policy: "IfNotPresent".into(),
            spark_submit: "/opt/spark/bin/spark-submit".into(),
            thrift_port: 10000,
            driver_port: 7078,
            block_manager_port: 7079,
            startup_timeout: Duration::from_secs(300),
            not_ready_timeout: Duration::from_secs(120),
            manage_service_accounts: true,
            leader_election: true,
            lease_name: "sparkgate-leader".into(),
            lease_namespace: String::new(),
            lease_duration: Duration::from_secs(15),
            identity: None,
            scheduler_name: String::new(),
            pod_template_file: None,
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            labels: BTreeMap::new(),
            stop_grace: Duration::from_secs(30),
        }
    }
}

/// A tenant's Kubernetes identity.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantIdentity {
    pub service_account: String,
    pub annotations: BTreeMap<String, String>,
}

/// The ServiceAccount a tenant's drivers and executors run as.
pub fn service_account_of(tenant: &TenantConfig) -> String {
    tenant
        .service_account
        .clone()
        .unwrap_or_else(|| format!("sparkgate-{}", tenant.name))
}

/// Whether `name` is a DNS-1123 label (what Pod, Service and ServiceAccount names must be
/// here), at most `max` characters.
fn is_dns_label(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Checks, before anything is created, that a tenant's names make valid Kubernetes objects.
/// Driver names are `sg-<tenant>-<8 hex>`; Services need a leading letter, which `sg-` gives.
pub fn validate_tenant(tenant: &TenantConfig) -> Result<(), String> {
    if !is_dns_label(&tenant.name, 50) {
        return Err(format!(
            "tenant {:?} cannot run on Kubernetes: its name must be lower-case letters, digits and '-', at most 50 characters, not starting or ending with '-'",
            tenant.name
        ));
    }
    let sa = service_account_of(tenant);
    if !is_dns_label(&sa, 63) {
        return Err(format!(
            "tenant {:?}: service_account {sa:?} is not a valid Kubernetes name",
            tenant.name
        ));
    }
    if !tenant.ephemeral_catalog {
        let mut missing = Vec::new();
        if !crate::launcher::local::own_catalog(&tenant.hive_conf, &tenant.spark_conf) {
            missing.push("hive_conf \"hive.metastore.uris\" (a shared Hive metastore, e.g. \"thrift://metastore.data:9083\")");
        }
        if !shared_storage(tenant.spark_conf.get("spark.sql.warehouse.dir")) {
            missing.push("spark_conf \"spark.sql.warehouse.dir\" on shared storage (e.g. \"s3a://bucket/warehouse\")");
        }
        if !missing.is_empty() {
            return Err(format!(
                "tenant {:?} would keep its tables inside each driver Pod (lost with the Pod): set {}, or set ephemeral_catalog = true to accept that",
                tenant.name,
                missing.join(" and ")
            ));
        }
    }
    Ok(())
}

/// Whether a warehouse location is outside the Pod: a URI of a shared file system (`s3a://`,
/// `gs://`, `abfss://`, `hdfs://`, ...), not a local path.
fn shared_storage(location: Option<&String>) -> bool {
    let Some((scheme, rest)) = location.and_then(|l| l.trim().split_once("://")) else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !matches!(scheme.to_ascii_lowercase().as_str(), "file" | "local")
        && !rest.is_empty()
}

#[derive(Debug, Default)]
struct Tracking {
    /// Drivers this process created, and when: the watch may not show them yet.
    created: HashMap<String, Instant>,
    /// Ready drivers seen not ready, since when.
    not_ready_since: HashMap<String, Instant>,
    /// Drivers once seen ready.
    was_ready: std::collections::HashSet<String>,
}

/// Drivers as Pods through the Kubernetes API.
pub struct KubeLauncher {
    client: Client,
    config: KubernetesConfig,
    namespace: String,
    tenants: HashMap<String, TenantIdentity>,
    pods: Store<Pod>,
    template: Option<Value>,
    tracking: Mutex<Tracking>,
}

impl KubeLauncher {
    /// Connects (in-cluster config, else `KUBECONFIG`/`~/.kube/config`), checks or applies the
    /// tenants' ServiceAccounts, and starts watching driver Pods. Every problem here is a
    /// startup error naming what to fix.
    pub async fn new(
        config: KubernetesConfig,
        tenants: &[TenantConfig],
    ) -> Result<Arc<Self>, LaunchError> {
        let start = |m: String| LaunchError::Start(m);
        for tenant in tenants {
            validate_tenant(tenant).map_err(start)?;
        }
        let kube_config = kube::Config::infer()
            .await
            .map_err(|e| start(format!("no Kubernetes configuration: {e}")))?;
        let namespace = config
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| kube_config.default_namespace.clone());
        let client = Client::try_from(kube_config)
            .map_err(|e| start(format!("cannot build a Kubernetes client: {e}")))?;
        let template = match &config.pod_template_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    start(format!(
                        "kubernetes.pod_template_file {}: {e}",
                        path.display()
                    ))
                })?;
                let value: Value = serde_json::from_str(&text)
                    .or_else(|_| serde_saphyr::from_str(&text))
                    .map_err(|e| {
                        start(format!(
                            "kubernetes.pod_template_file {} is not a Pod in YAML or JSON: {e}",
                            path.display()
                        ))
                    })?;
                Some(value)
            }
            None => None,
        };
        let identities: HashMap<String, TenantIdentity> = tenants
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    TenantIdentity {
                        service_account: service_account_of(t),
                        annotations: t.service_account_annotations.clone(),
                    },
                )
            })
            .collect();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        for (tenant, identity) in &identities {
            ensure_service_account(&accounts, &config, tenant, identity)
                .await
                .map_err(start)?;
        }
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(
                pods_api,
                watcher::Config::default().labels(&format!("{MANAGED_BY}=sparkgate")),
            )
            .default_backoff(),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    warn!(error = %e, "watch on driver Pods failed; retrying");
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), reader.wait_until_ready())
            .await
            .map_err(|_| start(format!("cannot list Pods in namespace {namespace:?} within 30 s (API server unreachable, or RBAC refuses pods list/watch)")))?
            .map_err(|e| start(e.to_string()))?;
        info!(%namespace, tenants = identities.len(), "Kubernetes launcher ready");
        Ok(Arc::new(Self {
            client,
            config,
            namespace,
            tenants: identities,
            pods: reader,
            template,
            tracking: Mutex::default(),
        }))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn pod(&self, id: &str) -> Option<Arc<Pod>> {
        self.pods
            .get(&reflector::ObjectRef::new(id).within(&self.namespace))
    }

    /// The driver Pod for `spec`, as applied (template first, sparkgate's fields over it).
    pub fn driver_pod(&self, id: &str, spec: &DriverSpec) -> Result<Value, LaunchError> {
        let identity = self.tenants.get(&spec.tenant).ok_or_else(|| {
            LaunchError::Start(format!(
                "tenant {:?} has no Kubernetes identity",
                spec.tenant
            ))
        })?;
        let pod = build_driver_pod(&self.config, &self.namespace, identity, id, spec);
        Ok(match &self.template {
            Some(template) => merge(template.clone(), pod),
            None => pod,
        })
    }

    async fn apply(&self, spec: &DriverSpec) -> Result<LaunchedDriver, LaunchError> {
        let id = format!("sg-{}-{:08x}", spec.tenant, rand::random::<u32>());
        let pod = self.driver_pod(&id, spec)?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        // A new namespace's ServiceAccounts get their token a moment after they appear, and
        // Kubernetes refuses Pods until then: retry that briefly.
        let deadline = Instant::now() + Duration::from_secs(30);
        let created = loop {
            match pods.patch(&id, &params, &Patch::Apply(&pod)).await {
                Ok(created) => break created,
                Err(kube::Error::Api(e))
                    if e.code == 403
                        && e.message.contains("token")
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(LaunchError::Start(format!(
                        "cannot create driver Pod {id}: {e}"
                    )))
                }
            }
        };
        self.tracking
            .lock()
            .expect("tracking")
            .created
            .insert(id.clone(), Instant::now());
        let uid = created.uid().unwrap_or_default();
        let service = build_driver_service(&self.config, &self.namespace, &id, &spec.tenant, &uid);
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = services.patch(&id, &params, &Patch::Apply(&service)).await {
            let _ = pods.delete(&id, &DeleteParams::default()).await;
            return Err(LaunchError::Start(format!(
                "cannot create the Service of driver {id}: {e}"
            )));
        }
        info!(driver = %id, tenant = %spec.tenant, namespace = %self.namespace, "driver Pod created");
        Ok(LaunchedDriver {
            id,
            tenant: spec.tenant.clone(),
            address: String::new(),
            pid: 0,
        })
    }

    async fn ready(&self, driver: &LaunchedDriver) -> Result<LaunchedDriver, LaunchError> {
        let deadline = Instant::now() + self.config.startup_timeout;
        while Instant::now() < deadline {
            match self.health(driver) {
                Health::Dead(reason) => {
                    return Err(LaunchError::Failed {
                        id: driver.id.clone(),
                        reason,
                    })
                }
                Health::Ready { address } => {
                    if probe(&address).await {
                        return Ok(LaunchedDriver {
                            address,
                            ..driver.clone()
                        });
                    }
                }
                Health::Alive => {}
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(LaunchError::NotReady {
            id: driver.id.clone(),
            secs: self.config.startup_timeout.as_secs(),
            log: format!("kubectl -n {} logs {}", self.namespace, driver.id),
        })
    }

    async fn delete(&self, driver: &LaunchedDriver) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(self.config.stop_grace.as_secs() as u32),
            ..DeleteParams::default()
        };
        match pods.delete(&driver.id, &params).await {
            Ok(_) => info!(driver = %driver.id, "driver Pod deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => warn!(driver = %driver.id, error = %e, "cannot delete driver Pod"),
        }
        let mut tracking = self.tracking.lock().expect("tracking");
        tracking.created.remove(&driver.id);
        tracking.not_ready_since.remove(&driver.id);
        tracking.was_ready.remove(&driver.id);
    }

    fn pod_health(&self, id: &str, pod: Option<&Pod>) -> Health {
        let mut tracking = self.tracking.lock().expect("tracking");
        judge_pod(&mut tracking, &self.config, id, pod)
    }
}

/// The port the driver Pod serves HS2 on: its `driver` container's port named `thrift`, as the
/// Pod was made (by a previous run, or another replica, whose `thrift_port` may differ), else
/// this process's `thrift_port`.
fn thrift_port_of(pod: &Pod, config: &KubernetesConfig) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| c.name == "driver"))
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some("thrift"))
                .map(|p| p.container_port)
        })
        .unwrap_or(i32::from(config.thrift_port))
}

/// The health of driver `id` from its Pod as the watch shows it (`None`: not in the watch's
/// cache), and what this process remembers about it.
fn judge_pod(
    tracking: &mut Tracking,
    config: &KubernetesConfig,
    id: &str,
    pod: Option<&Pod>,
) -> Health {
    let Some(pod) = pod else {
        // Just created: the watch may not show it yet. Once the watch has shown it, its
        // absence means it is gone.
        let fresh = tracking
            .created
            .get(id)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(30));
        return if fresh {
            Health::Alive
        } else {
            Health::Dead("its Pod is gone".into())
        };
    };
    // Seen by the watch: from now on, not being in the watch's cache means deleted.
    tracking.created.remove(id);
    if pod.metadata.deletion_timestamp.is_some() {
        return Health::Dead("its Pod is being deleted".into());
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase == "Failed" || phase == "Succeeded" {
        let why = status
            .and_then(|s| s.message.clone().or(s.reason.clone()))
            .unwrap_or_default();
        return Health::Dead(if why.is_empty() {
            format!("its Pod is {phase}")
        } else {
            format!("its Pod is {phase}: {why}")
        });
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let ip = status
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty());
    match (ready, ip) {
        (true, Some(ip)) => {
            tracking.not_ready_since.remove(id);
            tracking.was_ready.insert(id.to_owned());
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            Health::Ready {
                address: format!("{host}:{}", thrift_port_of(pod, config)),
            }
        }
        _ if tracking.was_ready.contains(id) => {
            let since = *tracking
                .not_ready_since
                .entry(id.to_owned())
                .or_insert_with(Instant::now);
            if since.elapsed() >= config.not_ready_timeout {
                Health::Dead(format!(
                    "its Pod has not been ready for {} s",
                    since.elapsed().as_secs()
                ))
            } else {
                Health::Alive
            }
        }
        _ => Health::Alive,
    }
}

impl Launcher for KubeLauncher {
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        self.apply(spec).boxed()
    }

    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        self.ready(driver).boxed()
    }

    fn stop<'a>(&'a self, driver: &'a LaunchedDriver) -> BoxFuture<'a, ()> {
        self.delete(driver).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>> {
        let found = self
            .pods
            .state()
            .iter()
            .filter_map(|pod| {
                let labels = pod.metadata.labels.as_ref()?;
                let id = labels.get(DRIVER_LABEL)?.clone();
                let tenant = labels.get(TENANT_LABEL)?.clone();
                if pod.name_any() != id {
                    return None;
                }
                let health = self.pod_health(&id, Some(pod));
                let address = match &health {
                    Health::Ready { address } => address.clone(),
                    _ => String::new(),
                };
                Some((
                    LaunchedDriver {
                        id,
                        tenant,
                        address,
                        pid: 0,
                    },
                    health,
                ))
            })
            .collect();
        std::future::ready(found).boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        let pod = self.pod(&driver.id);
        self.pod_health(&driver.id, pod.as_deref())
    }
}

async fn ensure_service_account(
    accounts: &Api<ServiceAccount>,
    config: &KubernetesConfig,
    tenant: &str,
    identity: &TenantIdentity,
) -> Result<(), String> {
    let name = &identity.service_account;
    if config.manage_service_accounts {
        let account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": name,
                "labels": { MANAGED_BY: "sparkgate", TENANT_LABEL: tenant },
                "annotations": identity.annotations,
            },
        });
        accounts
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&account),
            )
            .await
            .map_err(|e| format!("tenant {tenant:?}: cannot apply ServiceAccount {name:?}: {e}"))?;
        info!(%tenant, service_account = %name, "tenant ServiceAccount applied");
        return Ok(());
    }
    let existing = accounts
        .get_opt(name)
        .await
        .map_err(|e| format!("tenant {tenant:?}: cannot read ServiceAccount {name:?}: {e}"))?;
    let Some(existing) = existing else {
        return Err(format!(
            "tenant {tenant:?}: ServiceAccount {name:?} does not exist (kubernetes.manage_service_accounts = false: create it, e.g. with the Helm chart)"
        ));
    };
    let have = existing.metadata.annotations.unwrap_or_default();
    for (key, value) in &identity.annotations {
        if have.get(key) != Some(value) {
            return Err(format!(
                "tenant {tenant:?}: ServiceAccount {name:?} lacks the annotation {key}={value}"
            ));
        }
    }
    Ok(())
}

/// The driver Pod of one driver (before any template).
pub fn build_driver_pod(
    config: &KubernetesConfig,
    namespace: &str,
    identity: &TenantIdentity,
    id: &str,
    spec: &DriverSpec,
) -> Value {
    let sa = &identity.service_account;
    // Executors find the driver by its headless Service's name.
    let driver_host = format!("{id}.{namespace}.svc");
    let mut submit = DriverCommand::new(spec);
    submit
        .option("--master", "k8s://https://kubernetes.default.svc")
        .option("--deploy-mode", "client")
        .option("--name", id)
        .default_spark("spark.kubernetes.container.image", config.image.clone())
        .default_spark(
            "spark.kubernetes.container.image.pullPolicy",
            config.image_pull_policy.clone(),
        )
        // Spark scales executors; sparkgate scales drivers. No external shuffle service on
        // Kubernetes, hence shuffle tracking.
        .default_spark("spark.dynamicAllocation.enabled", "true")
        .default_spark("spark.dynamicAllocation.shuffleTracking.enabled", "true")
        .default_spark(super::RELATION_CACHE_SIZE.0, super::RELATION_CACHE_SIZE.1);
    if !config.scheduler_name.is_empty() {
        submit.default_spark(
            "spark.kubernetes.scheduler.name",
            config.scheduler_name.clone(),
        );
    }
    for (key, value) in &config.labels {
        submit.default_spark(
            &format!("spark.kubernetes.executor.label.{key}"),
            value.clone(),
        );
    }
    submit
        .spark("spark.kubernetes.namespace", namespace)
        .spark(
            "spark.kubernetes.authenticate.driver.serviceAccountName",
            sa.clone(),
        )
        .spark(
            "spark.kubernetes.authenticate.executor.serviceAccountName",
            sa.clone(),
        )
        // Executors are owned by the driver Pod: deleting it removes them.
        .spark("spark.kubernetes.driver.pod.name", id)
        .spark("spark.kubernetes.executor.podNamePrefix", id)
        .spark("spark.driver.host", driver_host)
        .spark("spark.driver.bindAddress", "0.0.0.0")
        .spark("spark.driver.port", config.driver_port.to_string())
        .spark(
            "spark.driver.blockManager.port",
            config.block_manager_port.to_string(),
        )
        .spark(
            "spark.blockManager.port",
            config.block_manager_port.to_string(),
        )
        .spark("spark.sparkgate.tenant", spec.tenant.clone())
        .hive("hive.server2.thrift.port", config.thrift_port.to_string())
        .hive("hive.server2.thrift.bind.host", "0.0.0.0")
        .hive("hive.server2.transport.mode", "binary")
        // sparkgate authenticates; the driver is reachable only through its Service.
        .hive("hive.server2.authentication", "NONE");
    let args = submit.args();
    let mut labels = config.labels.clone();
    labels.insert(MANAGED_BY.into(), "sparkgate".into());
    labels.insert(TENANT_LABEL.into(), spec.tenant.clone());
    labels.insert(DRIVER_LABEL.into(), id.into());
    let mut container = json!({
        "name": "driver",
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": [config.spark_submit],
        "args": args,
        "ports": [
            { "name": "thrift", "containerPort": config.thrift_port, "protocol": "TCP" },
            { "name": "driver-rpc", "containerPort": config.driver_port, "protocol": "TCP" },
            { "name": "blockmanager", "containerPort": config.block_manager_port, "protocol": "TCP" },
        ],
        "env": [
            { "name": "SPARK_USER", "value": "sparkgate" },
        ],
        "readinessProbe": {
            "tcpSocket": { "port": "thrift" },
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
    });
    if let Some(resources) = &config.resources {
        container["resources"] = serde_json::to_value(resources).expect("serializable");
    }
    let mut pod_spec = json!({
        "serviceAccountName": sa,
        "restartPolicy": "Never",
        "containers": [container],
    });
    if !config.scheduler_name.is_empty() {
        pod_spec["schedulerName"] = json!(config.scheduler_name);
    }
    if !config.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(config.node_selector);
    }
    if !config.tolerations.is_empty() {
        pod_spec["tolerations"] = serde_json::to_value(&config.tolerations).expect("serializable");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": id, "namespace": namespace, "labels": labels },
        "spec": pod_spec,
    })
}

/// The headless Service of one driver, owned by its Pod (deleting the Pod removes it).
pub fn build_driver_service(
    config: &KubernetesConfig,
    namespace: &str,
    id: &str,
    tenant: &str,
    pod_uid: &str,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": id,
            "namespace": namespace,
            "labels": { MANAGED_BY: "sparkgate", TENANT_LABEL: tenant, DRIVER_LABEL: id },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": id, "uid": pod_uid,
                "controller": true, "blockOwnerDeletion": false,
            }],
        },
        "spec": {
            "clusterIP": "None",
            "selector": { DRIVER_LABEL: id },
            // Executors connect while the driver starts, before its Thrift port is ready.
            "publishNotReadyAddresses": true,
            // Server-side apply keys a Service's ports by (port, protocol); Kubernetes 1.20
            // refuses an applied port without its protocol (no default in the apply schema).
            "ports": [
                { "name": "thrift", "port": config.thrift_port, "targetPort": config.thrift_port, "protocol": "TCP" },
                { "name": "driver-rpc", "port": config.driver_port, "targetPort": config.driver_port, "protocol": "TCP" },
                { "name": "blockmanager", "port": config.block_manager_port, "targetPort": config.block_manager_port, "protocol": "TCP" },
            ],
        },
    })
}

/// `ours` over `base`: objects merge key by key, the `containers` list by container name, and
/// anything else in `ours` replaces what `base` has.
fn merge(base: Value, ours: Value) -> Value {
    match (base, ours) {
        (Value::Object(mut base), Value::Object(ours)) => {
            for (key, value) in ours {
                let merged = match base.remove(&key) {
                    Some(old) if key == "containers" => merge_by_name(old, value),
                    Some(old) => merge(old, value),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Object(base)
        }
        (_, ours) => ours,
    }
}

fn merge_by_name(base: Value, ours: Value) -> Value {
    let (Value::Array(mut base), Value::Array(ours)) = (base, ours.clone()) else {
        return ours;
    };
    for item in ours {
        let name = item.get("name").cloned();
        match base
            .iter_mut()
            .find(|b| name.is_some() && b.get("name") == name.as_ref())
        {
            Some(existing) => *existing = merge(existing.take(), item),
            None => base.push(item),
        }
    }
    Value::Array(base)
}

#[cfg(test)]
mod tests;
