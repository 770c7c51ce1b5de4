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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;
use tracing::{info, warn};

use super::{
    probe, DriverSecret, DriverSpec, Health, LaunchError, LaunchedDriver, Launcher,
    DRIVER_AUTH_SOURCE,
};
use crate::tenant::TenantConfig;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const TENANT_LABEL: &str = "sparkgate.io/tenant";
pub const DRIVER_LABEL: &str = "sparkgate.io/driver";
const FIELD_MANAGER: &str = "sparkgate";
/// What the jar handed to driver Pods holds: the password provider of their Thrift port and the
/// filter of their UI (the chart's init container compiles the same two files).
const DRIVER_JAR_SOURCES: &[(&str, &str)] = &[
    ("DriverAuth.scala", DRIVER_AUTH_SOURCE),
    ("UiAuth.scala", super::ui::UI_AUTH_SOURCE),
];

mod config;
mod health;
mod identity;
mod objects;

pub use config::KubernetesConfig;
use health::{judge_pod, Tracking};
use identity::ensure_service_account;
pub use identity::{service_account_of, validate_tenant, IdentityError, TenantIdentity};
use objects::{build_driver_auth_config_map, build_driver_secret, merge, SECRET_KEY};
pub use objects::{build_driver_pod, build_driver_service, DriverAccess};

/// Drivers as Pods through the Kubernetes API.
pub struct KubeLauncher {
    client: Client,
    config: KubernetesConfig,
    namespace: String,
    tenants: HashMap<String, TenantIdentity>,
    pods: Store<Pod>,
    template: Option<Value>,
    access: DriverAccess,
    /// Each driver's secret: made here for the drivers this process starts, read from their
    /// Secrets for the drivers it finds.
    secrets: Mutex<HashMap<String, DriverSecret>>,
    tracking: Mutex<Tracking>,
    /// The Pod watch feeding `pods`.
    watch: tokio::task::AbortHandle,
}

impl Drop for KubeLauncher {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl KubeLauncher {
    /// Connects (in-cluster config, else `KUBECONFIG`/`~/.kube/config`), checks or applies the
    /// tenants' ServiceAccounts, and starts watching driver Pods. Every problem here is a
    /// startup error naming what to fix.
    /// `service_user`: the user sparkgate's connections to the drivers log in as.
    pub async fn new(
        config: KubernetesConfig,
        tenants: &[TenantConfig],
        service_user: &str,
    ) -> Result<Arc<Self>, LaunchError> {
        let start = |m: String| LaunchError::Start(m);
        for tenant in tenants {
            validate_tenant(tenant)?;
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
            ensure_service_account(&accounts, &config, tenant, identity).await?;
        }
        let access = DriverAccess {
            jar_config_map: publish_driver_auth(&client, &config, &namespace).await?,
            service_user: service_user.to_owned(),
        };
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
        // The watch lives exactly as long as the launcher: its Drop aborts it.
        #[allow(clippy::disallowed_methods)]
        let watch = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    warn!(error = %e, "watch on driver Pods failed; retrying");
                }
            }
        })
        .abort_handle();
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
            access,
            secrets: Mutex::default(),
            tracking: Mutex::default(),
            watch,
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
        let pod = build_driver_pod(
            &self.config,
            &self.namespace,
            identity,
            id,
            spec,
            &self.access,
        );
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
        // The Pod waits for its Secret (the kubelet holds the container until it exists).
        let secret = DriverSecret::generate();
        let secret_object = build_driver_secret(&self.namespace, &id, &spec.tenant, &uid, &secret);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = secrets
            .patch(&id, &params, &Patch::Apply(&secret_object))
            .await
        {
            let _ = pods.delete(&id, &DeleteParams::default()).await;
            return Err(LaunchError::Start(format!(
                "cannot create the Secret of driver {id}: {e}"
            )));
        }
        self.secrets
            .lock()
            .expect("secrets")
            .insert(id.clone(), secret.clone());
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
            secret,
            ui: None,
        })
    }

    /// A found driver's secret, from its Secret the first time (a driver of an earlier run or
    /// of another replica). None without one: sparkgate cannot use that driver.
    async fn secret_of(&self, id: &str) -> DriverSecret {
        if let Some(known) = self.secrets.lock().expect("secrets").get(id) {
            return known.clone();
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let value = match secrets.get_opt(id).await {
            Ok(Some(object)) => object
                .data
                .and_then(|data| data.get(SECRET_KEY).cloned())
                .and_then(|bytes| String::from_utf8(bytes.0).ok()),
            Ok(None) => None,
            Err(e) => {
                warn!(driver = %id, error = %e, "cannot read the driver's Secret");
                return DriverSecret::default();
            }
        };
        match value {
            Some(value) => {
                let secret = DriverSecret::from_value(value);
                self.secrets
                    .lock()
                    .expect("secrets")
                    .insert(id.to_owned(), secret.clone());
                secret
            }
            None => {
                warn!(driver = %id, "driver without its Secret: sparkgate cannot log in to it");
                DriverSecret::default()
            }
        }
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
                    if probe(&address, &driver.secret).await {
                        return Ok(LaunchedDriver {
                            ui: self.ui_of(&address),
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
        self.secrets.lock().expect("secrets").remove(&driver.id);
        let mut tracking = self.tracking.lock().expect("tracking");
        tracking.created.remove(&driver.id);
        tracking.not_ready_since.remove(&driver.id);
        tracking.was_ready.remove(&driver.id);
    }

    /// The driver's Spark UI, on the Pod's address (as its Thrift port), when drivers have one.
    fn ui_of(&self, address: &str) -> Option<String> {
        let (host, _) = address.rsplit_once(':')?;
        (self.config.ui_port != 0).then(|| format!("http://{host}:{}", self.config.ui_port))
    }

    fn pod_health(&self, id: &str, pod: Option<&Pod>) -> Health {
        let mut tracking = self.tracking.lock().expect("tracking");
        judge_pod(&mut tracking, &self.config, id, pod)
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
        async move {
            let found: Vec<(LaunchedDriver, Health)> = self
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
                            ui: self.ui_of(&address),
                            address,
                            pid: 0,
                            secret: DriverSecret::default(),
                        },
                        health,
                    ))
                })
                .collect();
            let mut listed = Vec::with_capacity(found.len());
            for (mut driver, health) in found {
                driver.secret = self.secret_of(&driver.id).await;
                listed.push((driver, health));
            }
            listed
        }
        .boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        let pod = self.pod(&driver.id);
        self.pod_health(&driver.id, pod.as_deref())
    }
}

/// Puts sparkgate's password provider where driver Pods mount it: a ConfigMap in the drivers'
/// namespace named by the jar's content. Returns its name.
async fn publish_driver_auth(
    client: &Client,
    config: &KubernetesConfig,
    namespace: &str,
) -> Result<String, LaunchError> {
    let start = |m: String| LaunchError::Start(m);
    let path = match &config.driver_auth_jar {
        Some(path) => path.clone(),
        None => {
            let spark_home = super::local::default_spark_home().ok_or_else(|| {
                start("kubernetes.driver_auth_jar is not set and there is no local Spark to build sparkgate's driver password provider with: set kubernetes.driver_auth_jar (the Helm chart builds it with the driver image) or SPARK_HOME".into())
            })?;
            let jar = super::jvm::ScalaJar::new(
                "driver-auth",
                DRIVER_JAR_SOURCES,
                spark_home,
                std::env::temp_dir().join("sparkgate-driver-auth"),
            );
            tokio::task::spawn_blocking(move || jar.path())
                .await
                .map_err(|e| start(format!("driver password provider build failed: {e}")))??
        }
    };
    let jar = std::fs::read(&path).map_err(|e| {
        start(format!(
            "kubernetes.driver_auth_jar {}: {e}",
            path.display()
        ))
    })?;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(&jar);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("sparkgate-driver-auth-{hex}");
    let object = build_driver_auth_config_map(namespace, &name, &jar);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    maps.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|e| {
        start(format!(
            "cannot apply ConfigMap {name} (sparkgate's driver password provider) in namespace {namespace:?}: {e}"
        ))
    })?;
    Ok(name)
}

#[cfg(test)]
mod tests;
