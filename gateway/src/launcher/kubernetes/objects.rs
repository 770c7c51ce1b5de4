//! The objects of one driver: its Pod (with the spark-submit command line) and headless Service.

use serde_json::{json, Value};

use super::{KubernetesConfig, TenantIdentity, DRIVER_LABEL, MANAGED_BY, TENANT_LABEL};
use crate::launcher::submit::DriverCommand;
use crate::launcher::DriverSpec;

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
pub(super) fn merge(base: Value, ours: Value) -> Value {
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
