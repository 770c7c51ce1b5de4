//! The objects of one driver: its Pod (with the spark-submit command line) and headless Service.

use serde_json::{json, Value};

use base64::Engine;

use super::{KubernetesConfig, TenantIdentity, DRIVER_LABEL, MANAGED_BY, TENANT_LABEL};
use crate::launcher::submit::DriverCommand;
use crate::launcher::{DriverSecret, DriverSpec, DRIVER_SECRET_ENV};

/// Where a driver Pod finds sparkgate's password provider (its ConfigMap, mounted).
pub const DRIVER_AUTH_MOUNT: &str = "/opt/sparkgate";
pub const DRIVER_AUTH_JAR: &str = "sparkgate-driver-auth.jar";
/// The key of a driver's secret in its Secret.
pub const SECRET_KEY: &str = "secret";

/// How a driver takes sparkgate's connections and no others.
#[derive(Debug, Clone)]
pub struct DriverAccess {
    /// The ConfigMap (in the drivers' namespace) holding sparkgate's password provider.
    pub jar_config_map: String,
    /// The user sparkgate's connections log in as.
    pub service_user: String,
}

/// The driver Pod of one driver (before any template).
pub fn build_driver_pod(
    config: &KubernetesConfig,
    namespace: &str,
    identity: &TenantIdentity,
    id: &str,
    spec: &DriverSpec,
    access: &DriverAccess,
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
        .default_spark(
            crate::launcher::RELATION_CACHE_SIZE.0,
            crate::launcher::RELATION_CACHE_SIZE.1,
        );
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
        // The chart's NetworkPolicy lets a tenant's executors, and no one else, reach its
        // drivers' RPC and block manager ports: executors carry the tenant's label.
        .spark(
            &format!("spark.kubernetes.executor.label.{TENANT_LABEL}"),
            spec.tenant.clone(),
        )
        .hive("hive.server2.thrift.port", config.thrift_port.to_string())
        .hive("hive.server2.thrift.bind.host", "0.0.0.0")
        .hive("hive.server2.transport.mode", "binary")
        // Its Service makes it reachable from the cluster: it takes sparkgate's connections only.
        .sparkgate_only(
            &format!("{DRIVER_AUTH_MOUNT}/{DRIVER_AUTH_JAR}"),
            &access.service_user,
        );
    let mut ports = vec![
        json!({ "name": "thrift", "containerPort": config.thrift_port, "protocol": "TCP" }),
        json!({ "name": "driver-rpc", "containerPort": config.driver_port, "protocol": "TCP" }),
        json!({ "name": "blockmanager", "containerPort": config.block_manager_port, "protocol": "TCP" }),
    ];
    if config.ui_port == 0 {
        submit.spark("spark.ui.enabled", "false");
    } else {
        // Its filter is in the same jar as the password provider (on the class path above).
        crate::launcher::ui::enable(&mut submit, config.ui_port);
        ports.push(
            json!({ "name": "spark-ui", "containerPort": config.ui_port, "protocol": "TCP" }),
        );
    }
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
        "ports": ports,
        "env": [
            { "name": "SPARK_USER", "value": "sparkgate" },
            // From the driver's own Secret: neither in the Pod spec nor on a command line.
            { "name": DRIVER_SECRET_ENV, "valueFrom": { "secretKeyRef": { "name": id, "key": SECRET_KEY } } },
        ],
        "volumeMounts": [
            { "name": "sparkgate-driver-auth", "mountPath": DRIVER_AUTH_MOUNT, "readOnly": true },
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
        "volumes": [
            { "name": "sparkgate-driver-auth", "configMap": { "name": access.jar_config_map } },
        ],
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

/// A driver's own Secret (its password, see [`DriverSecret`]), owned by its Pod.
pub fn build_driver_secret(
    namespace: &str,
    id: &str,
    tenant: &str,
    pod_uid: &str,
    secret: &DriverSecret,
) -> Value {
    let value = base64::engine::general_purpose::STANDARD.encode(secret.expose());
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": id,
            "namespace": namespace,
            "labels": { MANAGED_BY: "sparkgate", TENANT_LABEL: tenant, DRIVER_LABEL: id },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": id, "uid": pod_uid,
                "controller": true, "blockOwnerDeletion": false,
            }],
        },
        "type": "Opaque",
        "data": { SECRET_KEY: value },
    })
}

/// The ConfigMap of sparkgate's password provider, named by its content (two sparkgate
/// versions side by side each keep theirs).
pub fn build_driver_auth_config_map(namespace: &str, name: &str, jar: &[u8]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { MANAGED_BY: "sparkgate" },
        },
        "binaryData": { DRIVER_AUTH_JAR: base64::engine::general_purpose::STANDARD.encode(jar) },
    })
}

/// `ours` over `base`: objects merge key by key, lists of named things (containers, volumes,
/// mounts, env) by name, and anything else in `ours` replaces what `base` has.
pub(super) fn merge(base: Value, ours: Value) -> Value {
    match (base, ours) {
        (Value::Object(mut base), Value::Object(ours)) => {
            for (key, value) in ours {
                let merged = match base.remove(&key) {
                    Some(old)
                        if matches!(
                            key.as_str(),
                            "containers" | "initContainers" | "volumes" | "volumeMounts" | "env"
                        ) =>
                    {
                        merge_by_name(old, value)
                    }
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
