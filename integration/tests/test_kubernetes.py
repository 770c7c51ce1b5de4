"""sparkgate's Kubernetes launcher end to end, against a REAL kube-apiserver.

What runs here, plainly: a real kube-apiserver v1.20.2 (end of life) with etcd and
kube-controller-manager (garbage collection, ServiceAccount tokens), but NO scheduler and NO
kubelet. The test harness plays the node (integration/k8s_node.py, FakeNode): it watches the Pods
sparkgate creates, runs each driver Pod as a real local Spark Thrift Server on its own loopback
address (127.0.0.N) and patches the Pod's status (Running, podIP, Ready) the way a kubelet would.
Everything sparkgate does (Pods, Services, ServiceAccounts, the Lease, watches, RBAC) goes through
the real API server; sparkgate finds it through KUBECONFIG.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from pathlib import Path

import helm_python as helm
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pyhive import hive
from test_isolation import DIRECT_ATTEMPTS, assert_progress_lines, assert_ui_takes_sparkgate_key_only, direct_sql
from thrift.transport.TTransport import TTransportException

from harness import REPO, Sparkgate, sparkgate_binary
from helpers import free_port, session_tenant, wait_for
from k8s_node import FakeNode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DRIVERS = "drivers"
MANAGED = "app.kubernetes.io/managed-by=sparkgate"
CHART = REPO / "charts" / "sparkgate"
ROLE = "eks.amazonaws.com/role-arn"
ARN = {
    "analytics": "arn:aws:iam::111122223333:role/analytics-spark",
    "engineering": "arn:aws:iam::111122223333:role/engineering-spark",
}


# ---- fixtures: the run's API server (conftest.py `cluster`), one fake node for the module --------

@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    cluster.create_namespace(DRIVERS)
    with FakeNode(cluster, DRIVERS, tmp_path_factory.mktemp("node"), max_running=4) as n:
        yield n


@pytest.fixture
def work(tmp_path):
    return tmp_path


@pytest.fixture
def clean(cluster, node):
    """Leaves the drivers' namespace without sparkgate Pods after the test (sparkgate stopped first)."""
    yield
    delete_all_pods(cluster, node)


# ---- helpers -------------------------------------------------------------------------------------

def pods(cluster, tenant: str | None = None, live: bool = True) -> list:
    selector = MANAGED + (f",sparkgate.io/tenant={tenant}" if tenant else "")
    found = cluster.core().list_namespaced_pod(DRIVERS, label_selector=selector).items
    if live:
        found = [p for p in found if p.metadata.deletion_timestamp is None and p.status.phase not in ("Failed", "Succeeded")]
    return found


def ready(pod) -> bool:
    return pod.status.phase == "Running" and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def delete_all_pods(cluster, node) -> None:
    core = cluster.core()
    for p in core.list_namespaced_pod(DRIVERS, label_selector=MANAGED).items:
        try:
            core.delete_namespaced_pod(p.metadata.name, DRIVERS, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise
    wait_for("the drivers' namespace to have no sparkgate Pod",
             lambda: not core.list_namespaced_pod(DRIVERS, label_selector=MANAGED).items, 60)
    wait_for("FakeNode to stop every driver", lambda: not [p for p in node.pods() if p.state in ("starting", "running")]
             and all(p.proc is None or p.proc.poll() is not None for p in node.pods()), 60)


def lease_holder(cluster, namespace: str, name: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(cluster.api()).read_namespaced_lease(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return lease.spec.holder_identity


def tenant_toml(name: str, users: list[str], *, min_drivers: int = 1, max_drivers: int = 1, target: int = 4,
                idle_ttl: str = "10m", annotations: dict | None = None, ephemeral: bool = True,
                replay: bool = True) -> str:
    # FakeNode runs each driver Pod as a local Spark Thrift Server with its own embedded catalog:
    # the tests' tenants accept that (ephemeral_catalog); a real tenant names a shared one.
    users_list = ", ".join(f'"{u}"' for u in users)
    ann = ", ".join(f'"{k}" = "{v}"' for k, v in (annotations or {}).items())
    return f"""
[[tenants]]
name = "{name}"
users = [{users_list}]
launcher = "kubernetes"
driver_memory = "512m"
spark_conf = {{ "spark.sql.shuffle.partitions" = "2" }}
service_account_annotations = {{ {ann} }}
ephemeral_catalog = {"true" if ephemeral else "false"}
replay_sessions = {"true" if replay else "false"}
[tenants.scaling]
min_drivers = {min_drivers}
max_drivers = {max_drivers}
target_operations_per_driver = {target}
scale_up_after = "2s"
idle_ttl = "{idle_ttl}"
max_concurrent_launches = 2
"""


def gateway_toml(tenants: str, *, lease_name: str, identity: str | None = None, lease_duration: str = "15s",
                 stop_on_exit: bool = True, lease_namespace: str = "", manage_sas: bool = True,
                 thrift_port: int | None = None) -> str:
    ident = f'identity = "{identity}"\n' if identity else ""
    return f"""
[server]
bind = "127.0.0.1:{{port}}"
shutdown_grace = "3s"
[pools]
wait_timeout = "150s"
stop_drivers_on_exit = {"true" if stop_on_exit else "false"}
[kubernetes]
namespace = "{DRIVERS}"
thrift_port = {thrift_port or free_port()}
startup_timeout = "200s"
not_ready_timeout = "30s"
stop_grace = "2s"
manage_service_accounts = {"true" if manage_sas else "false"}
lease_name = "{lease_name}"
lease_namespace = "{lease_namespace}"
lease_duration = "{lease_duration}"
{ident}{tenants}
"""


def start_gateway(cluster, work: Path, toml: str, name: str, kubeconfig: Path | None = None) -> Sparkgate:
    gw = Sparkgate.with_config(work, toml, name, env={"KUBECONFIG": str(kubeconfig or cluster.kubeconfig)})
    return gw.start(timeout=60)


def conf_args(pod) -> dict[str, str]:
    args = pod.spec.containers[0].args
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--conf")


def timed(label: str):
    """Prints how long a block took: `with timed("cold start"): ...`."""
    class _T:
        def __enter__(self):
            self.started = time.monotonic()
            return self

        def __exit__(self, *exc):
            self.seconds = time.monotonic() - self.started
            print(f"[k8s] {label}: {self.seconds:.1f} s", flush=True)
    return _T()


# ---- tests ---------------------------------------------------------------------------------------

@pytest.mark.timeout(400)
def test_two_tenants_run_as_their_own_service_accounts(cluster, node, work, clean):
    tenants = (tenant_toml("analytics", ["alice"], annotations={ROLE: ARN["analytics"]})
               + tenant_toml("engineering", ["eric"], annotations={ROLE: ARN["engineering"]}))
    gw = start_gateway(cluster, work, gateway_toml(tenants, lease_name="lease-tenants"), "gw")
    core = cluster.core()
    try:
        with timed("two tenants' first sessions (cold start of two driver Pods)"):
            results = {}
            threads = [threading.Thread(target=lambda u=u: results.__setitem__(u, session_tenant(gw.port, u)))
                       for u in ("alice", "eric")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
        assert results == {"alice": "analytics", "eric": "engineering"}

        by_tenant = {t: pods(cluster, t) for t in ARN}
        assert all(len(p) == 1 for p in by_tenant.values()), {t: [p.metadata.name for p in ps] for t, ps in by_tenant.items()}
        for tenant, (pod,) in by_tenant.items():
            sa = f"sparkgate-{tenant}"
            other_sa = f"sparkgate-{next(t for t in ARN if t != tenant)}"
            assert pod.spec.service_account_name == sa
            conf = conf_args(pod)
            assert conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == sa
            assert conf["spark.kubernetes.authenticate.executor.serviceAccountName"] == sa
            assert conf["spark.sparkgate.tenant"] == tenant
            assert other_sa not in str(pod.spec.to_dict()), f"{tenant}'s Pod mentions {other_sa}"
            assert pod.metadata.labels["sparkgate.io/tenant"] == tenant
            account = core.read_namespaced_service_account(sa, DRIVERS)
            assert account.metadata.annotations[ROLE] == ARN[tenant]
            assert account.metadata.labels["sparkgate.io/tenant"] == tenant
            # The headless Service of the driver, owned by its Pod.
            svc = core.read_namespaced_service(pod.metadata.name, DRIVERS)
            assert svc.spec.cluster_ip == "None"
            assert svc.spec.selector == {"sparkgate.io/driver": pod.metadata.name}
            (owner,) = svc.metadata.owner_references
            assert (owner.kind, owner.name, owner.uid) == ("Pod", pod.metadata.name, pod.metadata.uid)
            assert pod.status.pod_ip.startswith("127.0.") and pod.status.pod_ip != "127.0.0.1"
            assert_driver_takes_sparkgate_only(core, pod)
        # Progress of a tenant's statement comes from its own driver's UI.
        (analytics,) = by_tenant["analytics"]
        assert_progress_lines(gw.port, "alice", f"http://{analytics.status.pod_ip}:4040")
        # No Pod of one tenant runs as the other's ServiceAccount (every Pod sparkgate made).
        for p in pods(cluster, live=False):
            assert p.spec.service_account_name == f"sparkgate-{p.metadata.labels['sparkgate.io/tenant']}"

        # Deleting a driver Pod: the controller-manager's garbage collector removes its Service.
        victim = by_tenant["engineering"][0].metadata.name
        with timed("garbage collection of a deleted Pod's Service"):
            core.delete_namespaced_pod(victim, DRIVERS)

            def service_gone():
                try:
                    core.read_namespaced_service(victim, DRIVERS)
                    return False
                except ApiException as e:
                    return e.status == 404
            wait_for(f"Service {victim} to be garbage-collected", service_gone, 60)

            def secret_gone():
                try:
                    core.read_namespaced_secret(victim, DRIVERS)
                    return False
                except ApiException as e:
                    return e.status == 404
            wait_for(f"Secret {victim} to be garbage-collected", secret_gone, 60)
        # sparkgate notices (the Pod watch), replaces the driver (min_drivers 1), and the tenant
        # works again. (A session opened in the instant before sparkgate notices fails once: see
        # the OpenSession note in the report; here we wait for the notice.)
        wait_for("sparkgate to notice the deleted Pod",
                 lambda: any("driver lost" in line and victim in line for line in gw.log_text().splitlines()), 10)
        assert session_tenant(gw.port, "eric") == "engineering"
        assert [p.metadata.name for p in pods(cluster, "engineering")] != [victim]
    finally:
        gw.stop()
    # stop_drivers_on_exit = true (the default): sparkgate deletes its driver Pods when it stops.
    wait_for("sparkgate to delete its driver Pods on exit", lambda: not pods(cluster), 30)


@pytest.mark.timeout(500)
def test_lost_driver_pod_fails_its_session_and_is_replaced(cluster, node, work, clean):
    """With replay off, a session ends with its driver Pod, and its client learns at once."""
    gw = start_gateway(cluster, work, gateway_toml(tenant_toml("crashy", ["carl"], replay=False),
                                                   lease_name="lease-crashy"), "gw")
    try:
        for how in ("killed", "deleted"):
            conn = hive.connect("127.0.0.1", gw.port, username="carl", auth="NONE")
            cur = conn.cursor()
            cur.execute("select 1")
            assert cur.fetchall() == [(1,)]
            (pod,) = [p for p in pods(cluster, "crashy") if ready(p)]
            name = pod.metadata.name
            started = time.monotonic()
            if how == "killed":
                node.kill(name)  # SIGKILL, and the Pod turns Failed
            else:
                cluster.core().delete_namespaced_pod(name, DRIVERS)
            wait_for(f"sparkgate to notice its driver {name} is {how}",
                     lambda name=name: any("driver lost" in line and name in line for line in gw.log_text().splitlines()),
                     15)
            with pytest.raises(Exception) as raised:
                cur.execute("select 1")
                cur.fetchall()
            took = time.monotonic() - started
            message = str(raised.value)
            print(f"[k8s] driver Pod {how}: the session's next call failed after {took:.1f} s: {message[:300]}")
            assert took < 15, "the client learns within seconds"
            assert name in message, message
            assert ("Failed" in message) if how == "killed" else ("gone" in message or "deleted" in message), message
            conn.close()
            # A replacement Pod appears, and a new session succeeds there.
            with timed(f"replacement of a {how} driver Pod until a new session works"):
                assert session_tenant(gw.port, "carl") == "crashy"
            (replacement,) = pods(cluster, "crashy")
            assert replacement.metadata.name != name
        log = gw.log_text()
        assert log.count("driver lost") >= 2
    finally:
        gw.stop()


@pytest.mark.timeout(400)
def test_restarted_sparkgate_adopts_its_driver_pods(cluster, node, work, clean):
    toml = gateway_toml(tenant_toml("sticky", ["sam"]), lease_name="lease-sticky", stop_on_exit=False)
    gw1 = start_gateway(cluster, work, toml, "gw1")
    try:
        assert session_tenant(gw1.port, "sam") == "sticky"
        before = {p.metadata.uid for p in pods(cluster, "sticky")}
        assert len(before) == 1
    finally:
        gw1.stop()
    assert {p.metadata.uid for p in pods(cluster, "sticky")} == before, "stop_drivers_on_exit = false keeps the Pod"
    seen = len(node.seen)
    gw2 = start_gateway(cluster, work, toml, "gw2")
    try:
        with timed("first session after a restart (adopted driver)") as t:
            assert session_tenant(gw2.port, "sam") == "sticky"
        assert t.seconds < 15, "an adopted driver needs no cold start"
        assert "adopted a driver" in gw2.log_text()
        time.sleep(3)  # a few reconcile passes: still no new Pod
        assert {p.metadata.uid for p in pods(cluster, "sticky", live=False)} == before, "adopted, not duplicated"
        assert len(node.seen) == seen, "no Pod was created"
        assert "driver Pod created" not in gw2.log_text()
    finally:
        gw2.stop()


@pytest.mark.timeout(400)
def test_two_replicas_one_leader_and_failover(cluster, node, work, clean):
    lease = "lease-replicas"
    tenants = tenant_toml("shared", ["sue"])
    # Each replica's config has its own thrift_port, on purpose: a replica reaches a driver another
    # one started on the port written in its Pod, not on its own setting.
    config = lambda who: gateway_toml(tenants, lease_name=lease, identity=who, lease_duration="3s",
                                      stop_on_exit=False)
    a = start_gateway(cluster, work, config("replica-a"), "a")
    b = start_gateway(cluster, work, config("replica-b"), "b")
    c = None
    try:
        holder = wait_for("a Lease holder", lambda: lease_holder(cluster, DRIVERS, lease), 15)
        assert holder in ("replica-a", "replica-b")
        # Both route sessions; only the leader launched (one Pod, not two).
        assert session_tenant(a.port, "sue") == "shared"
        assert session_tenant(b.port, "sue") == "shared"
        assert len(pods(cluster, "shared")) == 1
        leader, follower = (a, b) if holder == "replica-a" else (b, a)
        other = "replica-b" if holder == "replica-a" else "replica-a"
        assert "leading" in leader.log_text() and "leading" not in follower.log_text()
        for _ in range(5):  # stays with one holder while it renews
            assert lease_holder(cluster, DRIVERS, lease) == holder
            time.sleep(1)

        # The leader stops (and gives the Lease up): the other takes it within a few durations.
        leader.stop()
        with timed("failover after the leader stopped") as t:
            wait_for(f"{other} to hold the Lease", lambda: lease_holder(cluster, DRIVERS, lease) == other, 12)
            wait_for(f"{other}'s log to say it leads", lambda: "leading" in follower.log_text(), 5)
        assert t.seconds < 9
        assert session_tenant(follower.port, "sue") == "shared"
        assert len(pods(cluster, "shared")) == 1, "the new leader adopted the driver"

        # A leader that dies without giving the Lease up: the next replica waits for it to expire.
        c = start_gateway(cluster, work, config("replica-c"), "c")
        time.sleep(2)
        assert lease_holder(cluster, DRIVERS, lease) == other
        follower.proc.kill()
        follower.proc.wait(10)
        with timed("failover after the leader was SIGKILLed (Lease expiry)") as t:
            wait_for("replica-c to hold the Lease", lambda: lease_holder(cluster, DRIVERS, lease) == "replica-c", 15)
        assert 1.5 <= t.seconds < 12, t.seconds  # not before the Lease expired (3 s after its last renewal)
        wait_for("replica-c's log to say it leads", lambda: "leading" in c.log_text(), 5)
        assert session_tenant(c.port, "sue") == "shared"
    finally:
        for gw in (a, b, c):
            if gw is not None:
                gw.stop()


def load_reports(cluster, namespace: str, name: str) -> dict[str, dict]:
    """The replicas' load reports in the shared load Lease, by annotation key."""
    try:
        lease = client.CoordinationV1Api(cluster.api()).read_namespaced_lease(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return {}
        raise
    annotations = lease.metadata.annotations or {}
    return {k: json.loads(v) for k, v in annotations.items() if k.startswith("load.sparkgate.io/")}


@pytest.mark.timeout(400)
def test_two_replicas_share_their_load_and_the_leader_scales_on_the_sum(cluster, node, work, clean):
    """Each replica carries one long statement on the one driver; a target of one statement per
    driver: neither half alone scales, the sum (published through the API server) does."""
    lease = "lease-halves"
    tenants = tenant_toml("halves", ["hal"], min_drivers=1, max_drivers=2, target=1)
    config = lambda who: gateway_toml(tenants, lease_name=lease, identity=who, lease_duration="6s")
    a = start_gateway(cluster, work, config("half-a"), "a")
    b = start_gateway(cluster, work, config("half-b"), "b")
    conns = []
    try:
        holder = wait_for("a Lease holder", lambda: lease_holder(cluster, DRIVERS, lease), 15)
        leader, follower = (a, b) if holder == "half-a" else (b, a)
        follower_key = "load.sparkgate.io/" + ("half-b" if holder == "half-a" else "half-a")
        assert session_tenant(a.port, "hal") == "halves"
        wait_for("one ready driver Pod", lambda: len([p for p in pods(cluster, "halves") if ready(p)]) == 1, 200)
        wait_for("both replicas' reports in the load Lease",
                 lambda: {"load.sparkgate.io/half-a", "load.sparkgate.io/half-b"} <= load_reports(
                     cluster, DRIVERS, lease + "-load").keys(), 15)

        def long_statement(gw):
            conn = hive.connect("127.0.0.1", gw.port, username="hal", auth="NONE")
            conns.append(conn)
            cur = conn.cursor()
            cur.execute("SELECT reflect('java.lang.Thread', 'sleep', cast(120000 as bigint))", async_=True)
            return cur

        # The follower's half alone: one statement against a target of one per driver holds.
        long_statement(follower)
        wait_for("the follower's running statement in its report", lambda: any(
            share.get("operations", 0) >= 1
            for share in load_reports(cluster, DRIVERS, lease + "-load").get(follower_key, {})
            .get("tenants", {}).get("halves", {}).get("drivers", {}).values()), 10)
        time.sleep(5)  # past scale_up_after (2 s) with room
        assert len(pods(cluster, "halves")) == 1, "one statement per driver is not over the target"
        # The leader's half on top: two on one driver, only the leader sees both.
        with timed("scale-up from load split across two replicas"):
            long_statement(leader)
            wait_for("a second driver Pod", lambda: len(pods(cluster, "halves")) == 2, 30, every=0.5)
        assert "other replicas reporting load" in leader.log_text()
        scaled = [line for line in leader.log_text().splitlines() if "scaling up" in line and "halves" in line]
        assert scaled and "running_operations: 2" in scaled[-1], scaled
        assert "scaling up" not in follower.log_text(), "only the leader decides"

        # A replica that dies leaves a report that goes stale: the leader drops and removes it.
        follower.proc.kill()
        follower.proc.wait(10)
        with timed("a killed replica's report removed") as t:
            wait_for("the killed replica's report gone", lambda: follower_key not in load_reports(
                cluster, DRIVERS, lease + "-load"), 20, every=0.5)
        assert t.seconds < 12, t.seconds
        assert "removing a stale load report" in leader.log_text()
    finally:
        for conn in conns:
            try:
                conn.close()
            except Exception as e:  # noqa: BLE001 - its replica may be gone
                print(f"[k8s] closing a connection: {e}")
        for gw in (a, b):
            gw.stop()


@pytest.mark.timeout(400)
def test_a_session_outlives_its_killed_driver_pod(cluster, node, work, clean):
    """Replay on Kubernetes: the driver Pod under a session that set a config and made a
    temporary view is killed; the session moves to the replacement Pod with both."""
    gw = start_gateway(cluster, work, gateway_toml(tenant_toml("mover", ["mo"]), lease_name="lease-mover"), "gw")
    try:
        conn = hive.connect("127.0.0.1", gw.port, username="mo", auth="NONE")
        cur = conn.cursor()
        cur.execute("SET replay.pod.marker=kept")
        cur.execute("CREATE TEMPORARY VIEW tens AS SELECT id * 10 AS ten FROM range(0, 4)")
        cur.execute("SELECT sum(ten) FROM tens")
        assert cur.fetchall() == [(60,)]
        (pod,) = [p for p in pods(cluster, "mover") if ready(p)]
        node.kill(pod.metadata.name)
        wait_for("sparkgate to notice its driver Pod is gone", lambda: "driver lost" in gw.log_text(), 15)
        with timed("the session's next statement (moved to the replacement Pod, state replayed)"):
            cur.execute("SELECT sum(ten) FROM tens")
            assert cur.fetchall() == [(60,)]
        cur.execute("SET replay.pod.marker")
        assert cur.fetchall() == [("replay.pod.marker", "kept")]
        (replacement,) = [p for p in pods(cluster, "mover") if ready(p)]
        assert replacement.metadata.name != pod.metadata.name
        assert "session moved to another driver with its state replayed" in gw.log_text()
        conn.close()
    finally:
        gw.stop()


@pytest.mark.timeout(400)
def test_http_sessions_alternate_between_replicas_on_kubernetes_drivers(cluster, node, work, clean):
    """Two replicas with the Kubernetes launcher, each with an HTTP listener and the same cookie
    key, behind a round-robin forwarder: one session's calls alternate between them on a driver
    Pod (which takes sparkgate's connections only, with its own secret: the replica that did not
    start it knows it from the API server), and go on when one replica is killed."""
    from test_replicas import RoundRobin
    key = work / "cookie.key"
    key.write_bytes(b"kubernetes-replicas-shared-cookie-key-42")
    key.chmod(0o600)
    lease = "lease-http"
    tenants = tenant_toml("webby", ["wes"])
    http_ports = [free_port(), free_port()]

    def config(who: str, port: int) -> str:
        return gateway_toml(tenants, lease_name=lease, identity=who, lease_duration="6s") + f"""
[http]
bind = "127.0.0.1:{port}"
path = "/cliservice"
cookie_key_file = "{key}"
shared_sessions = true
"""
    a = start_gateway(cluster, work, config("web-a", http_ports[0]), "a")
    b = start_gateway(cluster, work, config("web-b", http_ports[1]), "b")
    forwarder = RoundRobin(http_ports)
    try:
        from thrift.transport import THttpClient
        transport = THttpClient.THttpClient(f"http://127.0.0.1:{forwarder.port}/cliservice")
        transport.setCustomHeaders({"Authorization": "Basic " + base64.b64encode(b"wes:x").decode()})
        with timed("first HTTP session through the forwarder (driver Pod start)"):
            conn = hive.connect(thrift_transport=transport)
        cur = conn.cursor()
        cur.execute("SET spark.sql.shuffle.partitions=7")
        cur.execute("SELECT id FROM range(0, 900) ORDER BY id")
        rows = []
        while batch := cur.fetchmany(100):
            rows.extend(batch)
        assert rows == [(i,) for i in range(900)]
        assert all(n >= 3 for n in forwarder.served), forwarder.served
        assert any("taken in from its sealed handle" in gw.log_text() for gw in (a, b))
        driver_pods = pods(cluster, "webby")
        assert len(driver_pods) == 1, "one driver Pod serves both replicas"
        # Replicas forget HTTP sessions rather than close them: the driver ends abandoned ones
        # after twice sparkgate's idle timeout (Hive's own default: 7 days).
        args = driver_pods[0].spec.containers[0].args
        for setting in ("hive.server2.idle.session.timeout=7200000ms", "hive.server2.idle.operation.timeout=7200000ms",
                        "hive.server2.session.check.interval=900000ms"):
            assert setting in args, args
        victim = a if "leading" in a.log_text() else b
        victim.proc.kill()
        victim.proc.wait(10)
        with timed("next statement after a replica was killed") as t:
            cur.execute("SET spark.sql.shuffle.partitions")
            assert cur.fetchall() == [("spark.sql.shuffle.partitions", "7")]
        assert t.seconds < 10
        conn.close()
    finally:
        forwarder.close()
        for gw in (a, b):
            gw.stop()


@pytest.mark.timeout(600)
def test_scale_up_under_load_and_back_to_min(cluster, node, work, clean):
    toml = gateway_toml(tenant_toml("elastic", ["ella"], min_drivers=1, max_drivers=2, target=1, idle_ttl="5s"),
                        lease_name="lease-elastic")
    gw = start_gateway(cluster, work, toml, "gw")
    try:
        assert session_tenant(gw.port, "ella") == "elastic"
        assert len(pods(cluster, "elastic")) == 1
        stop = threading.Event()
        errors: list[Exception] = []
        queries = [0]

        def load():
            try:
                while not stop.is_set():
                    conn = hive.connect("127.0.0.1", gw.port, username="ella", auth="NONE")
                    try:
                        cur = conn.cursor()
                        cur.execute("select count(*) from range(0, 300000000, 1, 2)")
                        assert cur.fetchall() == [(300000000,)]
                        queries[0] += 1
                    finally:
                        conn.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        clients = [threading.Thread(target=load) for _ in range(3)]
        with timed("load until a second driver Pod is ready"):
            for t in clients:
                t.start()
            try:
                wait_for("a second ready driver Pod", lambda: len([p for p in pods(cluster, "elastic") if ready(p)]) >= 2,
                         240, every=1)
            finally:
                time.sleep(5)  # some queries land on the new driver too
                stop.set()
                for t in clients:
                    t.join(120)
        assert not errors, errors
        assert "scaling up" in gw.log_text()
        assert len(pods(cluster, "elastic")) == 2, "never above max_drivers"
        print(f"[k8s] {queries[0]} load queries ran")
        with timed("scale down to min_drivers after the load"):
            wait_for("back to one driver Pod", lambda: len(pods(cluster, "elastic")) == 1, 90, every=1)
        assert "scaling down" in gw.log_text()
        assert session_tenant(gw.port, "ella") == "elastic"
    finally:
        gw.stop()


def helm_config(cluster, namespace: str) -> helm.Config:
    return helm.Config(kubeconfig_path=cluster.kubeconfig, namespace=namespace)


def manifest_objects(release) -> list[dict]:
    return [o for o in yaml.safe_load_all(release["manifest"]) if o]


def assert_driver_takes_sparkgate_only(core, pod) -> None:
    """A driver Pod's Thrift port refuses every client but sparkgate: its secret comes from the
    driver's own Secret (owned by the Pod), never from the Pod spec. This API server enforces no
    NetworkPolicy (no network plugin here): the driver's own check is what is tested end to end."""
    (container,) = [c for c in pod.spec.containers if c.name == "driver"]
    env = {e.name: e for e in container.env}
    entry = env["SPARKGATE_DRIVER_SECRET"]
    assert entry.value is None and entry.value_from.secret_key_ref.name == pod.metadata.name
    secret = core.read_namespaced_secret(pod.metadata.name, DRIVERS)
    (owner,) = secret.metadata.owner_references
    assert (owner.kind, owner.uid) == ("Pod", pod.metadata.uid)
    conf = conf_args(pod)
    assert "hive.server2.authentication=CUSTOM" in container.args
    assert conf["spark.kubernetes.executor.label.sparkgate.io/tenant"] == pod.metadata.labels["sparkgate.io/tenant"]
    port = next(p.container_port for p in container.ports if p.name == "thrift")
    address = f"{pod.status.pod_ip}:{port}"
    for attempt in DIRECT_ATTEMPTS:
        with pytest.raises(TTransportException):
            direct_sql(address, **attempt)
    value = base64.b64decode(secret.data["secret"]).decode()
    assert direct_sql(address, username="sparkgate", password=value, auth="CUSTOM") == [("sparkgate",)]
    # Its Spark UI (progress), on the Pod's address, opens to sparkgate's key only.
    ui_port = next(p.container_port for p in container.ports if p.name == "spark-ui")
    assert conf["spark.ui.filters"] == "sparkgate.UiAuth"
    assert_ui_takes_sparkgate_key_only(f"http://{pod.status.pod_ip}:{ui_port}", value)


@pytest.mark.timeout(400)
def test_chart_rbac_is_enough_and_no_more(cluster, node, work, clean):
    """The chart's Role/RoleBinding, installed with helm into the API server, let sparkgate (with a
    token of the chart's ServiceAccount) run drivers; what the Role does not grant is refused."""
    release_ns = "sg-rbac"
    values = {
        "drivers": {"namespace": DRIVERS},
        "tenants": [{"name": "rbac", "users": ["rita"], "serviceAccountAnnotations": {ROLE: ARN["analytics"]},
                     "scaling": {"minDrivers": 1, "maxDrivers": 1}}],
    }
    with helm_config(cluster, release_ns) as cfg:
        release = cfg.install(CHART, "sg", values, namespace=release_ns, create_namespace=True, timeout=60)
        try:
            kinds = sorted({(o["kind"], o["metadata"]["name"]) for o in manifest_objects(release)})
            assert ("Role", "sg-sparkgate-launcher") in kinds and ("RoleBinding", "sg-sparkgate-launcher") in kinds
            # The chart made the tenant's ServiceAccount (sparkgate only checks it): wait for its token.
            cluster.wait_for_service_account(DRIVERS, "sparkgate-rbac")
            cluster.wait_for_service_account(release_ns, "sg-sparkgate")
            token = cluster.token_for(release_ns, "sg-sparkgate")
            kubeconfig = cluster.kubeconfig_for_token(token, work / "sg.kubeconfig", namespace=DRIVERS)
            toml = gateway_toml(tenant_toml("rbac", ["rita"], annotations={ROLE: ARN["analytics"]}),
                                lease_name="sparkgate-leader", lease_namespace=release_ns, manage_sas=False)
            gw = start_gateway(cluster, work, toml, "gw", kubeconfig=kubeconfig)
            try:
                with timed("first session with the chart's RBAC"):
                    assert session_tenant(gw.port, "rita") == "rbac"
                (pod,) = pods(cluster, "rbac")
                assert pod.spec.service_account_name == "sparkgate-rbac"
                assert lease_holder(cluster, release_ns, "sparkgate-leader")
                # The Role lets it publish its load (the leader sums every replica's).
                wait_for("this replica's load report", lambda: load_reports(
                    cluster, release_ns, "sparkgate-leader-load"), 10)
                assert "cannot publish" not in gw.log_text() and "cannot read the other" not in gw.log_text()
            finally:
                gw.stop()
            wait_for("sparkgate (chart RBAC) to delete its driver Pod on exit", lambda: not pods(cluster, "rbac"), 30)

            # The same token, for what the Role does not grant: 403.
            core = cluster.core(token)
            refused = [
                ("list secrets in the drivers' namespace", lambda: core.list_namespaced_secret(DRIVERS)),
                ("create a Pod in another namespace", lambda: core.create_namespaced_pod(
                    "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                                "spec": {"containers": [{"name": "x", "image": "x"}]}})),
                ("list Pods in another namespace", lambda: core.list_namespaced_pod("default")),
                ("exec into a driver Pod", lambda: core.connect_get_namespaced_pod_exec(
                    "any", DRIVERS, command=["true"], stdout=True)),
                ("edit a Role", lambda: client.RbacAuthorizationV1Api(cluster.api(token)).list_namespaced_role(DRIVERS)),
            ]
            for what, call in refused:
                with pytest.raises(ApiException) as e:
                    call()
                assert e.value.status == 403, f"{what}: {e.value.status} {e.value.body}"
                assert "system:serviceaccount:sg-rbac:sg-sparkgate" in e.value.body, e.value.body
        finally:
            cfg.uninstall("sg", timeout=60)
            cluster.core().delete_namespace(release_ns)


@pytest.mark.timeout(300)
def test_chart_installs_into_the_api_server(cluster):
    release_ns, drivers_ns = "sg-chart", "spark-drivers"
    cluster.create_namespace(drivers_ns)
    values = yaml.safe_load((CHART / "examples" / "two-tenants.yaml").read_text())
    with helm_config(cluster, release_ns) as cfg:
        with timed("helm install of the two-tenant example"):
            release = cfg.install(CHART, "sg", values, namespace=release_ns, create_namespace=True, timeout=60)
        try:
            assert release["status"] == "deployed" and release["namespace"] == release_ns
            assert cfg.status("sg")["status"] == "deployed"
            api = cluster.api()
            core, apps, rbac = client.CoreV1Api(api), client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
            deploy = apps.read_namespaced_deployment("sg-sparkgate", release_ns)
            assert deploy.spec.replicas == 2
            assert deploy.spec.template.spec.service_account_name == "sg-sparkgate"
            svc = core.read_namespaced_service("sg-sparkgate", release_ns)
            # Clients' Service carries the Thrift ports only: the admin port (drain, sessions) stays
            # off it unless service.exposeAdmin, and no ServiceMonitor asked for its own Service.
            assert {p.name: p.port for p in svc.spec.ports} == {"thrift-binary": 10009, "thrift-http": 10010}
            assert "sg-sparkgate-admin" not in {s.metadata.name for s in core.list_namespaced_service(release_ns).items}
            container = deploy.spec.template.spec.containers[0]
            assert {p.name: p.container_port for p in container.ports}["admin"] == 10011
            assert "sparkgate.toml" in core.read_namespaced_config_map("sg-sparkgate", release_ns).data
            core.read_namespaced_service_account("sg-sparkgate", release_ns)
            for tenant, arn in ARN.items():
                sa = core.read_namespaced_service_account(f"sparkgate-{tenant}", drivers_ns)
                assert sa.metadata.annotations[ROLE] == arn
            roles = {r.metadata.name for r in rbac.list_namespaced_role(drivers_ns).items}
            assert {"sg-sparkgate-launcher", "sg-sparkgate-spark-driver"} <= roles
            assert "sg-sparkgate-leader-election" in {r.metadata.name for r in rbac.list_namespaced_role(release_ns).items}
            bindings = {b.metadata.name: b for b in rbac.list_namespaced_role_binding(drivers_ns).items}
            assert [(s.kind, s.name, s.namespace) for s in bindings["sg-sparkgate-launcher"].subjects] == [
                ("ServiceAccount", "sg-sparkgate", release_ns)]
            # The 1.20 API server serves no policy/v1: the chart picked policy/v1beta1 by itself.
            pdbs = [o for o in manifest_objects(release) if o["kind"] == "PodDisruptionBudget"]
            assert [o["apiVersion"] for o in pdbs] == ["policy/v1beta1"]
            # (The test control plane runs no deployment controller and no scheduler: the
            # Deployment is stored and validated, not rolled out.)
        finally:
            cfg.uninstall("sg", timeout=60)
    wait_for("the tenant ServiceAccounts to go with the release", lambda: not [
        sa for sa in cluster.core().list_namespaced_service_account(drivers_ns).items
        if sa.metadata.name.startswith("sparkgate-")], 30)
    cluster.core().delete_namespace(release_ns)
    cluster.core().delete_namespace(drivers_ns)


@pytest.mark.timeout(300)
def test_chart_upgrade_keeps_the_replicas_shared_key_and_rolls_one_pod_at_a_time(cluster):
    """helm install with three replicas and no key of the operator's own, then helm upgrade with a
    changed setting, in the real API server: the chart's random key (which seals every open HTTP
    session's handles) survives the upgrade unchanged, the Pod template changes (a rollout), and
    the rollout keeps every old Pod until a new one is ready, with a PodDisruptionBudget. The
    test control plane runs no deployment controller: what the rollout does with those settings
    is what test_replicas.py runs with real sparkgate processes."""
    release_ns = "sg-upgrade"
    values = {"replicaCount": 3, "kubernetes": {"leaderElection": True}, "tenants": [
        {"name": "up", "users": ["*"], "launcher": "static", "backends": ["sts.example:10000"]}]}
    with helm_config(cluster, release_ns) as cfg:
        cfg.install(CHART, "sg", values, namespace=release_ns, create_namespace=True, timeout=60)
        try:
            api = cluster.api()
            core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
            key = core.read_namespaced_secret("sg-sparkgate-cookie-key", release_ns).data["cookie-key"]
            before = apps.read_namespaced_deployment("sg-sparkgate", release_ns)
            assert "shared_sessions = true" in core.read_namespaced_config_map("sg-sparkgate", release_ns).data["sparkgate.toml"]
            upgraded = dict(values, server={"shutdownGrace": "45s"})
            with timed("helm upgrade"):
                release = cfg.upgrade(CHART, "sg", upgraded, namespace=release_ns, timeout=60)
            assert cfg.status("sg")["status"] == "deployed" and len(cfg.history("sg")) == 2
            assert core.read_namespaced_secret("sg-sparkgate-cookie-key", release_ns).data["cookie-key"] == key, \
                "the upgrade kept the key: HTTP sessions opened before it stay readable"
            after = apps.read_namespaced_deployment("sg-sparkgate", release_ns)
            assert after.spec.template.metadata.annotations["checksum/config"] != \
                before.spec.template.metadata.annotations["checksum/config"], "a changed config rolls the Pods"
            assert after.spec.strategy.type == "RollingUpdate"
            assert after.spec.strategy.rolling_update.max_unavailable == 0
            assert after.spec.strategy.rolling_update.max_surge == 1
            assert after.spec.template.spec.termination_grace_period_seconds >= 45
            probe = after.spec.template.spec.containers[0].readiness_probe
            assert probe.http_get.path == "/readyz"
            pdbs = [o for o in manifest_objects(release) if o["kind"] == "PodDisruptionBudget"]
            assert [o["spec"]["minAvailable"] for o in pdbs] == [1]
        finally:
            cfg.uninstall("sg", timeout=60)
    # helm.sh/resource-policy: keep: the key outlives an uninstall too (a reinstall reads it).
    assert cluster.core().read_namespaced_secret("sg-sparkgate-cookie-key", release_ns)
    cluster.core().delete_namespace(release_ns)


@pytest.mark.timeout(120)
def test_bad_tenant_name_stops_startup(cluster, work):
    toml = gateway_toml(tenant_toml("Bad_Name", ["bob"]), lease_name="lease-bad")
    gw = Sparkgate.with_config(work, toml, "bad", env={"KUBECONFIG": str(cluster.kubeconfig)})
    with pytest.raises(RuntimeError) as raised:
        gw.start(timeout=30)
    assert "exited" in str(raised.value)
    assert gw.proc.returncode != 0
    log = gw.log_text()
    assert "Bad_Name" in log and "lower-case" in log, log[-2000:]
    check = subprocess.run([str(sparkgate_binary()), "--config", str(work / "bad.toml"), "--check-config"],
                           check=False, capture_output=True, text=True, timeout=60)
    assert check.returncode != 0
    assert "Bad_Name" in check.stderr + check.stdout
    # Nothing reached the API server.
    assert not [sa for sa in cluster.core().list_namespaced_service_account(DRIVERS).items
                if "bad" in sa.metadata.name.lower()]


@pytest.mark.timeout(120)
def test_tenant_without_a_shared_catalog_stops_startup(cluster, work):
    """A Kubernetes tenant whose tables would live (and die) in each driver Pod is refused at
    startup with what to set; `ephemeral_catalog = true` lets the same tenant start."""
    toml = gateway_toml(tenant_toml("podlocal", ["pat"], ephemeral=False), lease_name="lease-podlocal")
    gw = Sparkgate.with_config(work, toml, "podlocal", env={"KUBECONFIG": str(cluster.kubeconfig)})
    with pytest.raises(RuntimeError) as raised:
        gw.start(timeout=30)
    assert "exited" in str(raised.value) and gw.proc.returncode != 0
    log = gw.log_text()
    for what in ("podlocal", "hive.metastore.uris", "spark.sql.warehouse.dir", "ephemeral_catalog = true"):
        assert what in log, (what, log[-2000:])
    check = subprocess.run([str(sparkgate_binary()), "--config", str(work / "podlocal.toml"), "--check-config"],
                           check=False, capture_output=True, text=True, timeout=60)
    assert check.returncode != 0 and "hive.metastore.uris" in check.stderr + check.stdout
    assert not [sa for sa in cluster.core().list_namespaced_service_account(DRIVERS).items
                if "podlocal" in sa.metadata.name]
    # The same tenant, with a shared catalog named (not reached: min_drivers = 0), or accepting an
    # ephemeral one, starts.
    shared = toml.replace('spark_conf = { "spark.sql.shuffle.partitions" = "2" }',
                          'spark_conf = { "spark.sql.warehouse.dir" = "s3a://lake/podlocal" }\n'
                          'hive_conf = { "hive.metastore.uris" = "thrift://metastore.data:9083" }')
    assert shared != toml
    for name, config in [("podlocal-shared", shared.replace("min_drivers = 1", "min_drivers = 0")),
                         ("podlocal-ephemeral", gateway_toml(
                             tenant_toml("podlocal", ["pat"], min_drivers=0, ephemeral=True),
                             lease_name="lease-podlocal"))]:
        ok = Sparkgate.with_config(work, config, name, env={"KUBECONFIG": str(cluster.kubeconfig)})
        ok.start(timeout=60)
        ok.stop()
