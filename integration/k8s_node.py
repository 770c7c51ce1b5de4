"""The test harness playing the kubelet: `FakeNode` watches the Pods sparkgate creates (label
app.kubernetes.io/managed-by=sparkgate) in one namespace of a real kube-apiserver and, for each,
starts the driver the Pod describes as a REAL local Spark Thrift Server on a loopback address of its
own (127.0.0.10, 127.0.0.11, ...: all of 127/8 reaches lo on Linux without setup), then PATCHes
`pods/{name}/status` the way a kubelet would (Running, podIP, Ready) once the server accepts an HS2
session. There is no scheduler, no container runtime and no kubelet here; everything else that
sparkgate does goes through the real API server.

What it takes from the Pod (the launcher's contract): the container named `driver`, its
spark-submit style args (`--conf K=V` before the primary resource, `--hiveconf K=V` after it), and
its port named `thrift`, its environment (values and Secret keys, waited for like a kubelet) and
its ConfigMap volumes (written into the Pod's work dir; paths into them in `--conf` values point
there). Every `--conf spark.*` is passed to the local server except the ones that
only make sense in a cluster (`DROPPED_CONF`); it always runs `--master local[1]` with a 512 MB heap.

    node = FakeNode(cluster, "drivers", workdir / "node").start()
    ...  # sparkgate creates Pods; node.seen records them; node.kill(name) simulates a crash
    node.stop()
"""

from __future__ import annotations

import base64
import datetime
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from harness import stop_process
from helpers import spark_home, sts_command

MANAGED_BY = "app.kubernetes.io/managed-by=sparkgate"
DRIVER_CONTAINER = "driver"
THRIFT_PORT_NAME = "thrift"

# `--conf` keys (exact, or prefixes ending in ".") a local driver must not get: the cluster
# manager, addresses and ports the node assigns, executors, and sizes (the local heap stays small).
DROPPED_CONF = (
    "spark.master", "spark.submit.deployMode", "spark.kubernetes.", "spark.driver.host", "spark.driver.bindAddress",
    "spark.driver.port", "spark.blockManager.port", "spark.driver.blockManager.port", "spark.dynamicAllocation.",
    "spark.executor.", "spark.driver.memory", "spark.driver.memoryOverhead", "spark.driver.cores",
    "spark.driver.extraJavaOptions", "spark.local.dir",
)


# Loopback addresses handed out in this process, shared by every FakeNode (two nodes in one test
# run must not give two Pods the same address).
_ip_lock = threading.Lock()
_next_ip = 10


def _allocate_ip() -> str:
    global _next_ip
    with _ip_lock:
        while True:
            n = _next_ip
            _next_ip += 1
            a, b = divmod(n, 256)
            if a > 255:
                raise RuntimeError("FakeNode ran out of 127.0.x.y addresses")
            if b not in (0, 255):
                return f"127.0.{a}.{b}"


def _dropped(key: str) -> bool:
    return any(key.startswith(p) if p.endswith(".") else key == p for p in DROPPED_CONF)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodSpecError(ValueError):
    """The Pod does not describe a driver this node can run."""


@dataclass
class DriverSpec:
    """What the node read from a Pod's `driver` container."""

    command: list[str]
    args: list[str]
    conf: dict[str, str]  # every --conf, as given
    hiveconf: dict[str, str]  # every --hiveconf, as given
    thrift_port: int
    image: str

    @property
    def local_conf(self) -> dict[str, str]:
        """The --conf settings passed to the local server."""
        return {k: v for k, v in self.conf.items() if k.startswith("spark.") and not _dropped(k)}


def parse_driver(pod: dict) -> DriverSpec:
    """Reads the `driver` container of a Pod (as a plain dict, API field names). Raises PodSpecError."""
    containers = (pod.get("spec") or {}).get("containers") or []
    driver = next((c for c in containers if c.get("name") == DRIVER_CONTAINER), None)
    if driver is None:
        raise PodSpecError(f"no container named {DRIVER_CONTAINER!r} (containers: {[c.get('name') for c in containers]})")
    args = list(driver.get("args") or [])
    conf: dict[str, str] = {}
    hiveconf: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        for flag, into in (("--conf", conf), ("--hiveconf", hiveconf)):
            if arg == flag or arg.startswith(flag + "="):
                if arg == flag:
                    if i + 1 >= len(args):
                        raise PodSpecError(f"{flag} without a value at the end of args")
                    value = args[i + 1]
                    i += 1
                else:
                    value = arg[len(flag) + 1:]
                key, eq, val = value.partition("=")
                if not eq or not key:
                    raise PodSpecError(f"{flag} {value!r} is not KEY=VALUE")
                into[key] = val
                break
        i += 1
    port = next((p.get("containerPort") for p in driver.get("ports") or [] if p.get("name") == THRIFT_PORT_NAME), None)
    if port is None and "hive.server2.thrift.port" in hiveconf:
        try:
            port = int(hiveconf["hive.server2.thrift.port"])
        except ValueError:
            raise PodSpecError(f"hive.server2.thrift.port={hiveconf['hive.server2.thrift.port']!r}") from None
    if port is None:
        raise PodSpecError(f"container {DRIVER_CONTAINER!r} has no port named {THRIFT_PORT_NAME!r}")
    return DriverSpec(command=list(driver.get("command") or []), args=args, conf=conf, hiveconf=hiveconf,
                      thrift_port=int(port), image=driver.get("image") or "")


@dataclass
class LocalPod:
    """A Pod this node has seen, and its local driver process if any."""

    name: str
    uid: str
    pod: dict  # the Pod as first seen (API field names), for tests to assert on
    ip: str | None = None
    driver: DriverSpec | None = None
    workdir: Path | None = None
    proc: subprocess.Popen | None = None
    # pending -> starting -> running -> (killed | failed | deleted | stopped)
    state: str = "pending"
    message: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)
    holds_slot: bool = False  # one of the node's max_running slots
    deleted: bool = False  # the Pod is gone from the API server

    @property
    def log(self) -> Path | None:
        return self.workdir / "sts.log" if self.workdir else None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


class FakeNode:
    """Plays the kubelet for the sparkgate-managed Pods of `namespace` (see the module doc)."""

    def __init__(self, cluster, namespace: str, workdir: Path, max_running: int = 3,
                 startup_timeout: float = 180.0, driver_memory: str = "512m"):
        self.cluster = cluster
        self.namespace = namespace
        self.workdir = Path(workdir).resolve()
        self.max_running = max_running
        self.startup_timeout = startup_timeout
        self.driver_memory = driver_memory
        self._slots = threading.BoundedSemaphore(max_running)
        self._lock = threading.Lock()
        self._pods: dict[str, LocalPod] = {}  # by uid
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watcher: threading.Thread | None = None
        self.seen: list[dict] = []  # every Pod seen (dict, API field names), in order
        self.events: list[str] = []  # what the node did, one line each (shown by tests on failure)
        self._api = None

    # ---- lifecycle ----

    def start(self) -> FakeNode:
        from kubernetes import client

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._api = self.cluster.api()
        self._core = client.CoreV1Api(self._api)
        self._watcher = threading.Thread(target=self._watch_loop, name=f"fake-node-{self.namespace}", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Stops watching and every local driver (the Pods keep their last status)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(15)
        with self._lock:
            pods = list(self._pods.values())
        for p in pods:
            p.cancelled.set()
        for p in pods:
            self._stop_driver(p, "stopped", grace=10.0)
        for t in list(self._threads):
            t.join(30)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- what tests use ----

    def pod(self, name: str) -> LocalPod:
        """The newest Pod seen under `name`."""
        with self._lock:
            found = [p for p in self._pods.values() if p.name == name]
        if not found:
            raise KeyError(f"FakeNode has seen no Pod {name!r} in {self.namespace}")
        return found[-1]

    def pods(self) -> list[LocalPod]:
        with self._lock:
            return list(self._pods.values())

    def running(self) -> list[LocalPod]:
        return [p for p in self.pods() if p.state == "running"]

    def wait_for(self, name: str, state: str = "running", timeout: float = 240.0) -> LocalPod:
        """Waits until the node has taken Pod `name` to `state`; raises with the node's events if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                p = self.pod(name)
                if p.state == state:
                    return p
                if state == "running" and p.state in ("failed", "killed", "deleted", "stopped"):
                    break
            except KeyError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"Pod {name} did not reach {state!r} in {timeout} s; node events:\n"
                           + "\n".join(self.events[-30:]))

    def kill(self, pod_name: str) -> None:
        """SIGKILLs the Pod's driver, as a crash would, and marks the Pod Failed (not ready)."""
        p = self.pod(pod_name)
        p.cancelled.set()
        if p.proc is not None and p.proc.poll() is None:
            try:
                os.killpg(p.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.proc.wait(10)
        self._release(p)
        p.state = "killed"
        self._event(f"{p.name}: killed (SIGKILL)")
        self._patch_failed(p, "Killed", "the driver was killed by the test (FakeNode.kill)", exit_code=137)

    # ---- the watch ----

    def _watch_loop(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                listed = self._core.list_namespaced_pod(self.namespace, label_selector=MANAGED_BY)
                current = set()
                for pod in listed.items:
                    current.add(pod.metadata.uid)
                    self._on_pod(pod)
                with self._lock:
                    gone = [p for uid, p in self._pods.items() if uid not in current and p.state in ("pending", "starting", "running")]
                for p in gone:
                    self._on_deleted(p)
                w = watch.Watch()
                for ev in w.stream(self._core.list_namespaced_pod, self.namespace, label_selector=MANAGED_BY,
                                   resource_version=listed.metadata.resource_version, timeout_seconds=3,
                                   _request_timeout=10):
                    if self._stop.is_set():
                        w.stop()
                        break
                    pod = ev["object"]
                    if ev["type"] == "DELETED":
                        with self._lock:
                            p = self._pods.get(pod.metadata.uid)
                        if p is not None:
                            self._on_deleted(p)
                    elif ev["type"] in ("ADDED", "MODIFIED"):
                        self._on_pod(pod)
            except Exception as e:  # noqa: BLE001 - the node survives API hiccups, relists
                if not self._stop.is_set():
                    self._event(f"watch error (relisting): {type(e).__name__}: {e}")
                    self._stop.wait(1)

    def _on_pod(self, pod) -> None:
        uid = pod.metadata.uid
        if pod.metadata.deletion_timestamp is not None:
            with self._lock:
                p = self._pods.get(uid)
            if p is not None:
                self._on_deleted(p)
            return
        with self._lock:
            if uid in self._pods:
                return
            as_dict = self._api.sanitize_for_serialization(pod)
            p = LocalPod(name=pod.metadata.name, uid=uid, pod=as_dict)
            self._pods[uid] = p
            self.seen.append(as_dict)
        self._event(f"{p.name}: seen")
        t = threading.Thread(target=self._run_pod, args=(p,), name=f"fake-node-{p.name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _on_deleted(self, p: LocalPod) -> None:
        with self._lock:  # the watch and the relist can both report one deletion
            if p.deleted:
                return
            p.deleted = True
        if p.state in ("deleted", "killed", "failed", "stopped"):
            p.state = "deleted"  # its driver is already gone
            return
        self._event(f"{p.name}: deleted, stopping its driver")
        p.cancelled.set()
        threading.Thread(target=self._stop_driver, args=(p, "deleted"), daemon=True).start()

    # ---- one Pod ----

    def _run_pod(self, p: LocalPod) -> None:
        try:
            p.driver = parse_driver(p.pod)
        except PodSpecError as e:
            p.state = "failed"
            p.message = str(e)
            self._event(f"{p.name}: cannot run: {e}")
            self._patch_failed(p, "InvalidDriverSpec", f"FakeNode cannot run this Pod: {e}")
            return
        # Stays Pending until a slot is free (max_running local drivers at once).
        while not self._slots.acquire(timeout=0.5):
            if p.cancelled.is_set() or self._stop.is_set():
                return
        p.holds_slot = True
        if p.cancelled.is_set() or self._stop.is_set():
            self._release(p)
            return
        p.ip = _allocate_ip()
        p.workdir = self.workdir / f"{p.name}-{p.uid[:8]}"
        p.state = "starting"
        self._event(f"{p.name}: starting a Spark Thrift Server on {p.ip}:{p.driver.thrift_port}")
        started = time.monotonic()
        try:
            self._start_driver(p)
            self._wait_ready(p, started + self.startup_timeout)
        except Exception as e:  # noqa: BLE001 - any failure to start marks the Pod Failed
            if p.cancelled.is_set():
                return
            self._stop_driver(p, "failed", grace=5.0)
            p.message = f"{e}"
            self._event(f"{p.name}: driver failed to start: {e}")
            self._patch_failed(p, "DriverFailed", f"local Spark Thrift Server did not start: {str(e)[:500]}")
            return
        if p.cancelled.is_set():
            return
        p.state = "running"
        self._event(f"{p.name}: running on {p.ip}:{p.driver.thrift_port} after {time.monotonic() - started:.1f} s")
        self._patch_running(p)
        # Watches the process: if it dies by itself, the Pod fails, as with a kubelet.
        while not p.cancelled.is_set() and not self._stop.is_set():
            if p.proc.poll() is not None:
                p.state = "failed"
                self._release(p)
                self._event(f"{p.name}: driver exited with {p.proc.returncode}")
                self._patch_failed(p, "Error", f"the driver exited with {p.proc.returncode}",
                                   exit_code=p.proc.returncode)
                return
            time.sleep(0.5)

    def _command(self, p: LocalPod, mounts: dict[str, Path]) -> list[str]:
        # The node's address, port and local paths win over the Pod's (sts_command's local settings).
        # Paths inside mounted volumes point at the node's copy of the volume.
        def local_path(value: str) -> str:
            for mount, local in mounts.items():
                value = value.replace(mount.rstrip("/") + "/", f"{local}/")
            return value
        conf = {k: local_path(v) for k, v in p.driver.local_conf.items()}
        return sts_command(p.driver.thrift_port, host=p.ip, workdir=p.workdir, driver_memory=self.driver_memory,
                           conf=conf, hiveconf=p.driver.hiveconf)

    def _driver_container(self, p: LocalPod) -> dict:
        return next(c for c in p.pod["spec"]["containers"] if c.get("name") == DRIVER_CONTAINER)

    def _wait_for(self, what: str, read, p: LocalPod, timeout: float = 60.0):
        """Reads an object the container needs; like a kubelet, waits while it does not exist yet."""
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        while True:
            try:
                return read()
            except ApiException as e:
                if e.status != 404:
                    raise
            if time.monotonic() > deadline or p.cancelled.is_set() or self._stop.is_set():
                raise RuntimeError(f"{what} does not exist (CreateContainerConfigError)")
            time.sleep(0.5)

    def _container_env(self, p: LocalPod) -> dict[str, str]:
        """The driver container's environment as a kubelet sets it: plain values and Secret keys."""
        env = {}
        for e in self._driver_container(p).get("env") or []:
            if "value" in e:
                env[e["name"]] = e["value"] or ""
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = self._wait_for(f"Secret {ref['name']}",
                                        lambda name=ref["name"]: self._core.read_namespaced_secret(name, self.namespace), p)
                if ref["key"] not in (secret.data or {}):
                    raise RuntimeError(f"Secret {ref['name']} has no key {ref['key']!r}")
                env[e["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
        return env

    def _mount_config_maps(self, p: LocalPod) -> dict[str, Path]:
        """Writes each ConfigMap volume the driver container mounts into the Pod's work dir; returns
        {mountPath: local directory}. Other volume kinds are not mounted."""
        volumes = {v["name"]: v for v in p.pod["spec"].get("volumes") or []}
        mounts = {}
        for m in self._driver_container(p).get("volumeMounts") or []:
            source = (volumes.get(m["name"]) or {}).get("configMap")
            if not source:
                continue
            cm = self._wait_for(f"ConfigMap {source['name']}",
                                lambda name=source["name"]: self._core.read_namespaced_config_map(name, self.namespace), p)
            local = p.workdir / "volumes" / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            for key, text in (cm.data or {}).items():
                (local / key).write_text(text)
            for key, encoded in (cm.binary_data or {}).items():
                (local / key).write_bytes(base64.b64decode(encoded))
            mounts[m["mountPath"]] = local
        return mounts

    def _start_driver(self, p: LocalPod) -> None:
        (p.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            try:
                probe.bind((p.ip, p.driver.thrift_port))
            except OSError as e:
                raise RuntimeError(f"{p.ip}:{p.driver.thrift_port} is taken: {e}") from None
        mounts = self._mount_config_maps(p)
        # SPARK_LOCAL_IP: the driver's UI (if the Pod turns it on) listens on the Pod's address.
        env = dict(os.environ, **self._container_env(p), SPARK_HOME=str(spark_home()), SPARK_LOG_DIR=str(p.workdir),
                   SPARK_LOCAL_IP=p.ip)
        env.pop("PYSPARK_PYTHON", None)
        command = self._command(p, mounts)
        (p.workdir / "command").write_text("\n".join(command) + "\n")
        with open(p.log, "wb") as log:
            p.proc = subprocess.Popen(command, cwd=p.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    def _wait_ready(self, p: LocalPod, deadline: float) -> None:
        """Ready = the port accepts AND an HS2 session opens (auth NONE/NOSASL), or for other auth
        modes the server has logged that it started."""
        auth = p.driver.hiveconf.get("hive.server2.authentication", "NONE").upper()
        last: Exception | None = None
        while time.monotonic() < deadline:
            if p.cancelled.is_set():
                return
            if p.proc.poll() is not None:
                raise RuntimeError(f"exited with {p.proc.returncode}:\n{p.log_text()[-2000:]}")
            try:
                with socket.create_connection((p.ip, p.driver.thrift_port), timeout=1):
                    pass
                if auth in ("NONE", "NOSASL"):
                    from pyhive import hive

                    hive.connect(p.ip, p.driver.thrift_port, username="fake-node-probe", auth=auth).close()
                    return
                if "HiveThriftServer2 started" in p.log_text():
                    return
            except Exception as e:  # noqa: BLE001 - not yet
                last = e
            time.sleep(0.5)
        raise RuntimeError(f"not ready after {self.startup_timeout} s ({last}):\n{p.log_text()[-2000:]}")

    def _stop_driver(self, p: LocalPod, state: str, grace: float = 10.0) -> None:
        if p.proc is not None:
            stop_process(p.proc, grace=grace)
        self._release(p)
        if p.state in ("pending", "starting", "running"):
            p.state = state

    def _release(self, p: LocalPod) -> None:
        with self._lock:
            if p.holds_slot:
                p.holds_slot = False
                self._slots.release()

    # ---- status, as a kubelet reports it ----

    def _patch_running(self, p: LocalPod) -> None:
        now = _now()
        ip = p.ip
        self._patch_status(p, {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [{
                "name": DRIVER_CONTAINER, "ready": True, "started": True, "restartCount": 0,
                "image": p.driver.image or "local", "imageID": "", "containerID": f"fakenode://{p.proc.pid}",
                "state": {"running": {"startedAt": now}},
            }],
        })

    def _patch_failed(self, p: LocalPod, reason: str, message: str, exit_code: int = 1) -> None:
        now = _now()
        status = {
            "phase": "Failed",
            "reason": reason,
            "message": message,
            "conditions": [
                {"type": t, "status": "False", "reason": reason, "lastTransitionTime": now}
                for t in ("ContainersReady", "Ready")
            ],
            "containerStatuses": [{
                "name": DRIVER_CONTAINER, "ready": False, "started": False, "restartCount": 0,
                "image": (p.driver.image if p.driver else "") or "local", "imageID": "",
                "state": {"terminated": {"exitCode": exit_code, "reason": reason, "message": message[:1000],
                                         "finishedAt": now}},
            }],
        }
        if p.ip:
            status.update(hostIP="127.0.0.1", podIP=p.ip, podIPs=[{"ip": p.ip}])
        self._patch_status(p, status)

    def _patch_status(self, p: LocalPod, status: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.patch_namespaced_pod_status(p.name, self.namespace, {"status": status},
                                                 _content_type="application/merge-patch+json")
        except ApiException as e:
            if e.status == 404:  # deleted meanwhile
                self._event(f"{p.name}: gone before its status could be set to {status['phase']}")
                return
            self._event(f"{p.name}: status patch ({status['phase']}) failed: {e.status} {e.reason} {e.body}")
            raise

    def _event(self, line: str) -> None:
        stamped = f"{time.strftime('%H:%M:%S')} {line}"
        self.events.append(stamped)
        print(f"[fake-node {self.namespace}] {line}", flush=True)
