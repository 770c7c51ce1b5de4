"""Shared real parts for the end-to-end suite: ONE Spark Thrift Server for the whole run,
sparkgate in front of it twice (SASL via `--backend`, NOSASL via a config file), and ONE
Kubernetes API server (`cluster`, started when the first Kubernetes test asks for it).

Endpoints are what a test connects to:
  direct          the Spark Thrift Server itself (SASL PLAIN, auth NONE)
  gateway         sparkgate, SASL PLAIN listener, started as `sparkgate --backend ... --bind ...`
  gateway-nosasl  sparkgate, NOSASL listener, started with `--config FILE`
The gateways start on first use (so `-k direct` needs no sparkgate binary). The binary is
$SPARKGATE_BIN, or built by the harness with `cargo build --release -p sparkgate`. If a real part
cannot be built or started, every test using it fails loudly (never skips).

Environment: SPARKGATE_IT_KEEP=1 keeps the work dir (logs, metastore) under integration/.work;
SPARKGATE_IT_PORTS=20000-20999 takes every port from that range.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import REPO, Sparkgate, SparkThriftServer
from helpers import free_port
from k8s_cluster import LIMITS, KubeCluster

ENDPOINT_NAMES = ["direct", "gateway", "gateway-nosasl"]


@dataclass(frozen=True)
class Endpoint:
    name: str
    port: int
    nosasl: bool

    @property
    def pyhive_auth(self) -> str:
        return "NOSASL" if self.nosasl else "NONE"

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:hive2://127.0.0.1:{self.port}/default" + (";auth=noSasl" if self.nosasl else "")


@pytest.fixture(scope="session")
def workdir():
    if os.environ.get("SPARKGATE_IT_KEEP"):
        base = REPO / "integration" / ".work"
        base.mkdir(parents=True, exist_ok=True)
        d = Path(tempfile.mkdtemp(prefix="run-", dir=base))
        d.chmod(0o711)
        print(f"\n[harness] work dir (kept): {d}")
        yield d
        return
    d = Path(tempfile.mkdtemp(prefix="sparkgate-it-"))
    # Like a service's directory: the OS users of local drivers (sparkgate as root) pass through
    # to their own directories below it; mkdtemp's 0700 would stop them.
    d.chmod(0o711)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def sts(workdir):
    # Tenant tests tell drivers apart by this setting (`SET spark.sparkgate.tenant`).
    # Its Spark UI is on (loopback): progress tests read statements' jobs there, as sparkgate does.
    server = SparkThriftServer(workdir / "sts", conf={"spark.sparkgate.tenant": "analytics",
                                                      "spark.ui.port": str(free_port())})
    try:
        server.start()
        print(f"\n[harness] Spark Thrift Server ready on {server.port} in {server.startup_seconds:.1f} s")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """ONE real Kubernetes API server for the run (integration/k8s_cluster.py), shared by
    test_k8s_cluster.py and test_kubernetes.py; each works in namespaces of its own."""
    print(f"\n[k8s] {LIMITS}. This is a real Kubernetes 1.20 API server without scheduler or kubelet;"
          " the test harness (FakeNode) plays the node and runs each driver Pod as a local Spark Thrift"
          " Server on 127.0.0.N.", flush=True)
    with KubeCluster(tmp_path_factory.mktemp("k8s")) as c:
        yield c


class _Gateways:
    """The two shared sparkgate processes, started on first use. A failure to build or start is
    kept and raised again for every later test that needs them."""

    def __init__(self, sts: SparkThriftServer, workdir: Path):
        self.sts, self.workdir = sts, workdir
        self._started: dict[str, Sparkgate] | None = None
        self._error: BaseException | None = None

    def get(self) -> dict[str, Sparkgate]:
        if self._error is not None:
            raise RuntimeError(f"sparkgate did not start (see the first failing test): {self._error}")
        if self._started is None:
            port = free_port()
            sasl = Sparkgate(
                ["--backend", f"127.0.0.1:{self.sts.port}", "--bind", f"127.0.0.1:{port}"], port,
                self.workdir / "gateway.log",
            )
            nosasl = Sparkgate.proxy(self.workdir, "gateway-nosasl", self.sts.port, transport="nosasl")
            try:
                sasl.start()
                nosasl.start()
            except BaseException as e:
                self._error = e
                sasl.stop()
                nosasl.stop()
                raise
            self._started = {"gateway": sasl, "gateway-nosasl": nosasl}
        return self._started

    def stop(self) -> None:
        for gw in (self._started or {}).values():
            gw.stop()


@pytest.fixture(scope="session")
def _gateway_manager(sts, workdir):
    manager = _Gateways(sts, workdir)
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="session")
def gateways(_gateway_manager) -> dict[str, Sparkgate]:
    """Both shared gateways, started now: {"gateway": ..., "gateway-nosasl": ...}."""
    return _gateway_manager.get()


class _Endpoints:
    """endpoints["direct" | "gateway" | "gateway-nosasl"] -> Endpoint; gateways start on first use."""

    def __init__(self, sts: SparkThriftServer, manager: _Gateways):
        self.sts, self.manager = sts, manager

    def __getitem__(self, name: str) -> Endpoint:
        if name == "direct":
            return Endpoint("direct", self.sts.port, nosasl=False)
        if name not in ENDPOINT_NAMES:
            raise KeyError(name)
        return Endpoint(name, self.manager.get()[name].port, nosasl=name.endswith("nosasl"))


@pytest.fixture(scope="session")
def endpoints(sts, _gateway_manager) -> _Endpoints:
    return _Endpoints(sts, _gateway_manager)


# --- on failure, show what every sparkgate logged while the test ran ------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    item._sparkgate_log_offsets = {gw.log: gw.log.stat().st_size for gw in Sparkgate.started if gw.log.exists()}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    offsets = getattr(item, "_sparkgate_log_offsets", {})
    for log in dict.fromkeys(gw.log for gw in Sparkgate.started):
        if not log.exists():
            continue
        with open(log, "rb") as f:
            f.seek(offsets.get(log, 0))
            lines = f.read().decode(errors="replace").splitlines()
        if lines:
            report.sections.append((f"{log.name} during the test (last 60 lines)", "\n".join(lines[-60:])))
