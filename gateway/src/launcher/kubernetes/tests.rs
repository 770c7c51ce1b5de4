use std::collections::BTreeMap;

use serde_json::json;

use super::health::{judge_pod, Tracking};
use super::*;

fn spec(tenant: &str) -> DriverSpec {
    DriverSpec {
        tenant: tenant.into(),
        driver_memory: "2g".into(),
        spark_conf: BTreeMap::from([
            ("spark.sql.shuffle.partitions".to_owned(), "8".to_owned()),
            (
                "spark.kubernetes.authenticate.executor.serviceAccountName".to_owned(),
                "someone-else".to_owned(),
            ),
        ]),
        hive_conf: BTreeMap::from([(
            "hive.metastore.uris".to_owned(),
            "thrift://metastore:9083".to_owned(),
        )]),
    }
}

fn identity() -> TenantIdentity {
    TenantIdentity {
        service_account: "sparkgate-analytics".into(),
        annotations: BTreeMap::new(),
    }
}

fn args_of(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn driver_and_executors_run_as_the_tenant_service_account_whatever_the_tenant_sets() {
    let config = KubernetesConfig::default();
    let pod = build_driver_pod(
        &config,
        "drivers",
        &identity(),
        "sg-analytics-1",
        &spec("analytics"),
        &access(),
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "sparkgate-analytics");
    let args = args_of(&pod);
    for expected in [
        "spark.kubernetes.authenticate.driver.serviceAccountName=sparkgate-analytics",
        "spark.kubernetes.authenticate.executor.serviceAccountName=sparkgate-analytics",
        "spark.kubernetes.namespace=drivers",
        "spark.driver.host=sg-analytics-1.drivers.svc",
        "spark.sparkgate.tenant=analytics",
        "spark.dynamicAllocation.shuffleTracking.enabled=true",
        "spark.sql.shuffle.partitions=8",
        "hive.metastore.uris=thrift://metastore:9083",
        "hive.server2.thrift.port=10000",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "missing {expected}: {args:?}"
        );
    }
    assert!(!args.iter().any(|a| a.contains("someone-else")), "{args:?}");
    assert_eq!(pod["metadata"]["labels"][TENANT_LABEL], "analytics");
    assert_eq!(pod["metadata"]["labels"][DRIVER_LABEL], "sg-analytics-1");
    assert_eq!(pod["metadata"]["labels"][MANAGED_BY], "sparkgate");
}

#[test]
fn service_is_headless_owned_by_its_pod_and_published_before_ready() {
    let service = build_driver_service(&KubernetesConfig::default(), "d", "sg-a-1", "a", "uid-1");
    assert_eq!(service["spec"]["clusterIP"], "None");
    assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(service["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(service["metadata"]["ownerReferences"][0]["kind"], "Pod");
    // Server-side apply needs every key of the ports list: port and protocol.
    for port in service["spec"]["ports"].as_array().unwrap() {
        assert_eq!(port["protocol"], "TCP", "{port}");
    }
}

#[test]
fn bad_tenant_names_are_config_errors() {
    let mut tenant = TenantConfig::new_static("Analytics_Team", vec![], vec![], vec![]);
    tenant.ephemeral_catalog = true;
    assert!(validate_tenant(&tenant)
        .unwrap_err()
        .to_string()
        .contains("lower-case"));
    tenant.name = "analytics".into();
    assert!(validate_tenant(&tenant).is_ok());
    tenant.service_account = Some("Bad Name".into());
    assert!(validate_tenant(&tenant)
        .unwrap_err()
        .to_string()
        .contains("service_account"));
    tenant.name = "a".repeat(51);
    assert!(validate_tenant(&tenant).is_err());
}

#[test]
fn a_tenant_whose_tables_would_die_with_the_pod_is_refused_unless_it_says_so() {
    let mut tenant = TenantConfig::new_static("analytics", vec![], vec![], vec![]);
    let refused = validate_tenant(&tenant).unwrap_err().to_string();
    assert!(refused.contains("hive.metastore.uris"), "{refused}");
    assert!(refused.contains("spark.sql.warehouse.dir"), "{refused}");
    assert!(refused.contains("ephemeral_catalog = true"), "{refused}");
    tenant.hive_conf.insert(
        "hive.metastore.uris".into(),
        "thrift://metastore:9083".into(),
    );
    let refused = validate_tenant(&tenant).unwrap_err().to_string();
    assert!(!refused.contains("hive.metastore.uris"), "{refused}");
    assert!(refused.contains("spark.sql.warehouse.dir"), "{refused}");
    // A warehouse on the Pod's own disk is not shared storage.
    for local in [
        "/opt/spark/warehouse",
        "file:///warehouse",
        "local:///w",
        "s3a://",
    ] {
        tenant
            .spark_conf
            .insert("spark.sql.warehouse.dir".into(), local.into());
        assert!(validate_tenant(&tenant).is_err(), "{local}");
    }
    for shared in [
        "s3a://lake/warehouse",
        "gs://lake/w",
        "abfss://c@a.dfs.core.windows.net/w",
        "hdfs://nn:8020/w",
    ] {
        tenant
            .spark_conf
            .insert("spark.sql.warehouse.dir".into(), shared.into());
        assert!(validate_tenant(&tenant).is_ok(), "{shared}");
    }
    let mut ephemeral = TenantConfig::new_static("scratch", vec![], vec![], vec![]);
    ephemeral.ephemeral_catalog = true;
    assert!(validate_tenant(&ephemeral).is_ok());
}

#[test]
fn template_fields_survive_and_ours_win() {
    let template = json!({
        "metadata": { "annotations": { "team": "data" } },
        "spec": {
            "serviceAccountName": "template-sa",
            "volumes": [{ "name": "cache", "emptyDir": {} }],
            "containers": [
                { "name": "driver", "volumeMounts": [{ "name": "cache", "mountPath": "/cache" }] },
                { "name": "sidecar", "image": "busybox" },
            ],
        },
    });
    let ours = build_driver_pod(
        &KubernetesConfig::default(),
        "d",
        &identity(),
        "sg-a-1",
        &spec("a"),
        &access(),
    );
    let pod = merge(template, ours);
    assert_eq!(pod["spec"]["serviceAccountName"], "sparkgate-analytics");
    assert_eq!(pod["metadata"]["annotations"]["team"], "data");
    assert_eq!(pod["spec"]["volumes"][0]["name"], "cache");
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["volumeMounts"][0]["mountPath"], "/cache");
    assert_eq!(containers[0]["command"][0], "/opt/spark/bin/spark-submit");
    // Named lists merge: the template's volume and mount stay beside sparkgate's own.
    assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 2);
    assert_eq!(containers[0]["volumeMounts"].as_array().unwrap().len(), 2);
}

fn access() -> DriverAccess {
    DriverAccess {
        jar_config_map: "sparkgate-driver-auth-0123".into(),
        service_user: "sparkgate".into(),
    }
}

#[test]
fn a_driver_pod_takes_sparkgate_only_with_a_secret_from_its_own_secret() {
    let pod = build_driver_pod(
        &KubernetesConfig::default(),
        "drivers",
        &identity(),
        "sg-analytics-1",
        &spec("analytics"),
        &access(),
    );
    let args = args_of(&pod);
    for expected in [
        "hive.server2.authentication=CUSTOM",
        "hive.server2.custom.authentication.class=sparkgate.DriverAuth",
        "spark.driver.extraClassPath=/opt/sparkgate/sparkgate-driver-auth.jar",
        "spark.kubernetes.executor.label.sparkgate.io/tenant=analytics",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "missing {expected}: {args:?}"
        );
    }
    let container = &pod["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let secret = env
        .iter()
        .find(|e| e["name"] == "SPARKGATE_DRIVER_SECRET")
        .expect("secret env");
    assert_eq!(
        secret["valueFrom"]["secretKeyRef"]["name"],
        "sg-analytics-1"
    );
    assert!(
        secret.get("value").is_none(),
        "the value is never in the Pod spec"
    );
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/opt/sparkgate");
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        "sparkgate-driver-auth-0123"
    );
    let secret = crate::launcher::DriverSecret::generate();
    let object = build_driver_secret("drivers", "sg-analytics-1", "analytics", "uid-9", &secret);
    assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "uid-9");
    let stored = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        object["data"]["secret"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(stored, secret.expose().as_bytes());
    assert!(!format!("{secret:?}").contains(secret.expose()));
}

fn pod_in(phase: &str, ready: bool, ip: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": "sg-a-1" },
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
        },
    }))
    .unwrap()
}

#[test]
fn a_pod_gone_from_the_watch_after_it_was_seen_is_dead_at_once() {
    let config = KubernetesConfig::default();
    let mut tracking = Tracking::default();
    tracking.created.insert("sg-a-1".into(), Instant::now());
    // Just created, not in the watch yet: alive.
    assert_eq!(
        judge_pod(&mut tracking, &config, "sg-a-1", None),
        Health::Alive
    );
    let pending = pod_in("Pending", false, None);
    assert_eq!(
        judge_pod(&mut tracking, &config, "sg-a-1", Some(&pending)),
        Health::Alive
    );
    // Seen, then gone (deleted): dead, not "just created" for the rest of 30 s.
    assert!(matches!(
        judge_pod(&mut tracking, &config, "sg-a-1", None),
        Health::Dead(reason) if reason.contains("gone")
    ));
}

#[test]
fn pod_phases_and_readiness_decide_health() {
    let config = KubernetesConfig::default();
    let mut tracking = Tracking::default();
    let running = pod_in("Running", true, Some("10.1.2.3"));
    assert_eq!(
        judge_pod(&mut tracking, &config, "sg-a-1", Some(&running)),
        Health::Ready {
            address: "10.1.2.3:10000".into()
        }
    );
    let failed = pod_in("Failed", false, Some("10.1.2.3"));
    assert!(matches!(
        judge_pod(&mut tracking, &config, "sg-a-1", Some(&failed)),
        Health::Dead(reason) if reason.contains("Failed")
    ));
    // Ready once, then not ready: alive until not_ready_timeout.
    let unready = pod_in("Running", false, Some("10.1.2.3"));
    assert_eq!(
        judge_pod(&mut tracking, &config, "sg-a-1", Some(&unready)),
        Health::Alive
    );
    let quick = KubernetesConfig {
        not_ready_timeout: Duration::ZERO,
        ..KubernetesConfig::default()
    };
    assert!(matches!(
        judge_pod(&mut tracking, &quick, "sg-a-1", Some(&unready)),
        Health::Dead(_)
    ));
}

#[test]
fn a_ready_pod_is_reached_on_its_own_thrift_port() {
    // Made by another replica (or a previous run) whose thrift_port differs from ours.
    let mut pod = pod_in("Running", true, Some("10.1.2.3"));
    pod.spec = Some(
        serde_json::from_value(json!({
            "containers": [{
                "name": "driver",
                "ports": [
                    { "name": "driver-rpc", "containerPort": 7078 },
                    { "name": "thrift", "containerPort": 31000 },
                ],
            }],
        }))
        .unwrap(),
    );
    let mut tracking = Tracking::default();
    assert_eq!(
        judge_pod(
            &mut tracking,
            &KubernetesConfig::default(),
            "sg-a-1",
            Some(&pod)
        ),
        Health::Ready {
            address: "10.1.2.3:31000".into()
        }
    );
}
