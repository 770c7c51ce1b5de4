"""The Kubernetes test bed itself: a real kube-apiserver v1.20.2 (end of life; no scheduler, no
kubelet) from integration/k8s/control-plane.sh, and FakeNode, the harness playing the kubelet by
running each sparkgate driver Pod as a real local Spark Thrift Server on its own loopback IP.
The sparkgate Kubernetes tests build on both, so this proves them first. The API server is the
run's one (conftest.py `cluster`); this module works in namespaces of its own."""

from __future__ import annotations

import socket
import time

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pyhive import hive

from helpers import free_port, sts_command, wait_for
from k8s_node import FakeNode, PodSpecError, parse_driver

# Not test_kubernetes.py's "drivers": the two modules share the API server.
DRIVERS = "fake-node"
TENANT = "analytics"


@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    cluster.create_namespace(DRIVERS)
    cluster.create_service_account(DRIVERS, TENANT)
    with FakeNode(cluster, DRIVERS, tmp_path_factory.mktemp("node")) as n:
        yield n


def driver_pod(name: str, thrift_port: int, tenant: str = TENANT, driver_id: str | None = None) -> dict:
    """A Pod shaped like the ones sparkgate's Kubernetes launcher creates."""
    spark_submit, *args = sts_command(
        thrift_port, host="0.0.0.0", master="k8s://https://kubernetes.default.svc", deploy_mode="client",
        driver_memory=None, spark_submit="/opt/spark/bin/spark-submit",
        conf={
            "spark.sparkgate.tenant": tenant,
            "spark.kubernetes.namespace": DRIVERS,
            "spark.kubernetes.container.image": "apache/spark:4.0.0",
            "spark.driver.host": f"driver-svc.{DRIVERS}.svc",
            "spark.driver.port": "7078",
            "spark.blockManager.port": "7079",
            "spark.executor.instances": "2",
            "spark.dynamicAllocation.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
        },
        hiveconf={"hive.server2.authentication": "NONE"},
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/managed-by": "sparkgate",
                "sparkgate.io/tenant": tenant,
                "sparkgate.io/driver": driver_id or name,
            },
        },
        "spec": {
            "serviceAccountName": tenant,
            "restartPolicy": "Never",
            "containers": [{
                "name": "driver",
                "image": "apache/spark:4.0.0",
                "command": [spark_submit],
                "args": args,
                "ports": [
                    {"name": "thrift", "containerPort": thrift_port},
                    {"name": "driver-rpc", "containerPort": 7078},
                    {"name": "blockmanager", "containerPort": 7079},
                ],
            }],
        },
    }


def condition(pod, kind: str) -> str | None:
    return next((c.status for c in pod.status.conditions or [] if c.type == kind), None)


def test_parse_driver_reads_the_launcher_contract():
    spec = parse_driver(driver_pod("p", 16500))
    assert spec.thrift_port == 16500
    assert spec.conf["spark.sparkgate.tenant"] == TENANT
    assert spec.hiveconf["hive.server2.thrift.bind.host"] == "0.0.0.0"
    # Cluster-only settings stay in the Pod; the rest reaches the local driver.
    assert spec.local_conf == {"spark.sparkgate.tenant": TENANT, "spark.sql.shuffle.partitions": "4"}
    with pytest.raises(PodSpecError):
        parse_driver({"spec": {"containers": [{"name": "sidecar"}]}})
    with pytest.raises(PodSpecError):
        parse_driver({"spec": {"containers": [{"name": "driver", "args": ["--conf", "no-equals-sign"]}]}})


def test_api_server_is_real_and_ready(cluster):
    version = client.VersionApi(cluster.api()).get_code()
    assert version.git_version == "v1.20.2"
    core = cluster.core()
    assert core.read_namespaced_service_account("default", "default").secrets
    # The admin kubeconfig works for a stock client too.
    api = config.new_client_from_config(str(cluster.kubeconfig))
    assert client.CoreV1Api(api).read_namespace("kube-system").metadata.name == "kube-system"


def test_token_request_tokens_are_subject_to_rbac(cluster, tmp_path):
    cluster.create_namespace("tenants")
    cluster.create_service_account("tenants", "analytics")
    token = cluster.token_for("tenants", "analytics", seconds=600)
    assert token.count(".") == 2  # a JWT

    # Authenticated (not 401), but RBAC grants it nothing: 403.
    with pytest.raises(ApiException) as refused:
        cluster.core(token).list_namespaced_secret("tenants")
    assert refused.value.status == 403
    assert "system:serviceaccount:tenants:analytics" in refused.value.body

    # The same through a kubeconfig made for the token.
    path = cluster.kubeconfig_for_token(token, tmp_path / "analytics.kubeconfig", namespace="tenants")
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(config.new_client_from_config(str(path))).list_namespaced_secret("tenants")
    assert refused.value.status == 403

    # A made-up token is not authenticated at all.
    with pytest.raises(ApiException) as unknown:
        cluster.core("not-a-token").list_namespaced_secret("tenants")
    assert unknown.value.status == 401


def test_fake_node_runs_driver_pods(cluster, node):
    core = cluster.core()
    ports = {"driver-a": free_port(), "driver-b": free_port()}
    for name, port in ports.items():
        core.create_namespaced_pod(DRIVERS, driver_pod(name, port))

    local = {name: node.wait_for(name, "running", timeout=300) for name in ports}
    assert local["driver-a"].ip != local["driver-b"].ip
    for name, port in ports.items():
        pod = core.read_namespaced_pod(name, DRIVERS)
        ip = local[name].ip
        assert ip.startswith("127.0.") and ip != "127.0.0.1"
        assert pod.status.phase == "Running"
        assert pod.status.pod_ip == ip
        assert [i.ip for i in pod.status.pod_ips] == [ip]
        assert condition(pod, "Ready") == "True" and condition(pod, "ContainersReady") == "True"
        assert pod.status.container_statuses[0].ready
        with socket.create_connection((ip, port), timeout=5):
            pass
        # The Pod's --conf reached the driver; its own bind address did not (the node's IP did).
        conn = hive.connect(ip, port, username="test")
        try:
            cur = conn.cursor()
            cur.execute("SET spark.sparkgate.tenant")
            assert cur.fetchall()[0][1] == TENANT
            cur.execute("select 1")
            assert cur.fetchall() == [(1,)]
        finally:
            conn.close()

    seen = {p["metadata"]["name"]: p for p in node.seen}
    assert seen["driver-a"]["spec"]["serviceAccountName"] == TENANT
    assert seen["driver-a"]["metadata"]["labels"]["sparkgate.io/tenant"] == TENANT

    # A crash: the driver is SIGKILLed, the Pod turns Failed and not ready.
    a = local["driver-a"]
    node.kill("driver-a")
    assert a.proc.poll() is not None
    pod = wait_for("driver-a Failed", lambda: (p := core.read_namespaced_pod("driver-a", DRIVERS)).status.phase == "Failed" and p)
    assert condition(pod, "Ready") == "False"
    assert not pod.status.container_statuses[0].ready
    with pytest.raises(OSError):
        socket.create_connection((a.ip, ports["driver-a"]), timeout=2).close()

    # Deleting a Pod stops its driver.
    b = local["driver-b"]
    core.delete_namespaced_pod("driver-b", DRIVERS)
    wait_for("driver-b's process to end",
             lambda: node.pod("driver-b").state == "deleted" and b.proc.poll() is not None, timeout=60)
    core.delete_namespaced_pod("driver-a", DRIVERS)


def test_fake_node_fails_pods_it_cannot_run(cluster, node):
    core = cluster.core()
    pod = driver_pod("no-driver", free_port())
    pod["spec"]["containers"][0]["name"] = "sidecar"
    core.create_namespaced_pod(DRIVERS, pod)
    failed = wait_for("no-driver Failed",
                      lambda: (p := core.read_namespaced_pod("no-driver", DRIVERS)).status.phase == "Failed" and p)
    assert "no container named 'driver'" in failed.status.message
    assert node.pod("no-driver").state == "failed"
    core.delete_namespaced_pod("no-driver", DRIVERS)


def test_fake_node_limits_running_drivers(cluster, tmp_path):
    """Past max_running, Pods stay Pending until a running one goes."""
    cluster.create_namespace("small-node")
    cluster.create_service_account("small-node", TENANT)
    core = cluster.core()
    with FakeNode(cluster, "small-node", tmp_path / "node", max_running=1) as small:
        for name in ("first", "second"):
            pod = driver_pod(name, free_port())
            core.create_namespaced_pod("small-node", pod)
        small.wait_for("first", "running", timeout=300)
        time.sleep(2)
        assert small.pod("second").state == "pending"
        assert core.read_namespaced_pod("second", "small-node").status.phase == "Pending"
        core.delete_namespaced_pod("first", "small-node")
        second = small.wait_for("second", "running", timeout=300)
        assert core.read_namespaced_pod("second", "small-node").status.pod_ip == second.ip
    assert second.proc.poll() is not None  # stop() stopped it
