//! The `[kubernetes]` settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use serde::Deserialize;

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
    /// The drivers' Spark UI port, behind sparkgate's filter (only sparkgate's key opens it):
    /// sparkgate reads statements' progress there. 0: no UI (and no progress in clients).
    pub ui_port: u16,
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
    /// sparkgate's password provider and UI filter for the drivers (a jar compiled for the
    /// drivers' Spark, from `DriverAuth.scala` and `UiAuth.scala`),
    /// handed to every driver Pod in a ConfigMap. The Helm chart builds it with the driver image
    /// in an init container. Unset: sparkgate compiles it with a local Spark (`SPARK_HOME`, else
    /// the repo's venv) and refuses to start without one.
    pub driver_auth_jar: Option<PathBuf>,
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
            ui_port: 4040,
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
            driver_auth_jar: None,
        }
    }
}
