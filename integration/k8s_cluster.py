"""A real Kubernetes API server for the end-to-end tests: `KubeCluster` runs
integration/k8s/control-plane.sh (build once into ~/.cache/sparkgate, then etcd + kube-apiserver +
kube-controller-manager on free loopback ports in a temp dir) and hands out clients, namespaces,
ServiceAccount tokens and kubeconfigs.

What it is, stated plainly in the test output: a real kube-apiserver v1.20.2 (end of life), with no
scheduler and no kubelet. Pods stay Pending unless the test harness plays the node
(integration/k8s_node.py, `FakeNode`).

    with KubeCluster() as cluster:
        cluster.create_namespace("drivers")
        cluster.create_service_account("drivers", "analytics")
        token = cluster.token_for("drivers", "analytics")
        cluster.kubeconfig_for_token(token, workdir / "analytics.kubeconfig")

Environment: SPARKGATE_CACHE moves the build cache; SPARKGATE_IT_PORTS=LOW-HIGH takes the ports
from that range (as in helpers.py); SPARKGATE_IT_KEEP=1 keeps the control plane's dir (certs, logs).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from harness import REPO
from helpers import free_port, free_port_pair

CONTROL_PLANE = REPO / "integration" / "k8s" / "control-plane.sh"
K8S_VERSION = "v1.20.2"
LIMITS = (f"Kubernetes API server: real kube-apiserver {K8S_VERSION} (end of life), no scheduler, no kubelet; "
          "the test harness plays the node")


class KubeCluster:
    """etcd + kube-apiserver + kube-controller-manager, started by control-plane.sh in `workdir`
    (a temp dir if None). Attributes once started: kubeconfig (admin, Path), server (URL),
    ca_file (Path), admin_token (str)."""

    def __init__(self, workdir: Path | None = None, build_timeout: float = 1800.0, start_timeout: float = 120.0):
        self._own_workdir = workdir is None
        self.workdir = Path(workdir).resolve() if workdir else None
        self.build_timeout = build_timeout
        self.start_timeout = start_timeout
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self.ca_file: Path | None = None
        self.admin_token: str | None = None
        self.build_seconds: float | None = None
        self.start_seconds: float | None = None
        self._started = False

    # ---- lifecycle ----

    def start(self) -> KubeCluster:
        print(LIMITS, flush=True)
        started = time.monotonic()
        self._run(["build"], self.build_timeout, {})
        self.build_seconds = time.monotonic() - started
        if self.workdir is None:
            if os.environ.get("SPARKGATE_IT_KEEP"):
                base = REPO / "integration" / ".work"
                base.mkdir(parents=True, exist_ok=True)
                self.workdir = Path(tempfile.mkdtemp(prefix="k8s-", dir=base))
                print(f"[k8s] control plane dir (kept): {self.workdir}", flush=True)
            else:
                self.workdir = Path(tempfile.mkdtemp(prefix="sparkgate-k8s-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = {
            "ETCD_PORT": str(free_port_pair()),
            "APISERVER_PORT": str(free_port()),
            "CONTROLLER_PORT": str(free_port()),
        }
        started = time.monotonic()
        self._started = True
        try:
            self._run(["start", str(self.workdir)], self.start_timeout, ports)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        self.server = f"https://127.0.0.1:{ports['APISERVER_PORT']}"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.ca_file = self.workdir / "ca.crt"
        self.admin_token = (self.workdir / "tokens.csv").read_text().split(",", 1)[0]
        print(f"[k8s] API server {self.server} ready (build check {self.build_seconds:.1f} s, start"
              f" {self.start_seconds:.1f} s)", flush=True)
        return self

    def _run(self, args: list[str], timeout: float, env: dict[str, str]) -> None:
        try:
            out = subprocess.run(["bash", str(CONTROL_PLANE), *args], env=dict(os.environ, **env), check=False,
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"control-plane.sh {args[0]} took over {timeout} s:\n{e.stderr or ''}") from None
        if out.stdout.strip():
            print(out.stdout.rstrip(), flush=True)
        if out.returncode != 0:
            raise RuntimeError(f"control-plane.sh {' '.join(args)} failed ({out.returncode}):\n"
                               f"{out.stdout[-3000:]}\n{out.stderr[-6000:]}")

    def stop(self) -> None:
        if self.workdir is not None and self._started:
            subprocess.run(["bash", str(CONTROL_PLANE), "stop", str(self.workdir)], stdin=subprocess.DEVNULL,
                           check=False, capture_output=True, timeout=60)
            self._started = False
            if self._own_workdir and not os.environ.get("SPARKGATE_IT_KEEP"):
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self, component: str) -> str:
        """The log of `etcd`, `kube-apiserver` or `kube-controller-manager`."""
        path = self.workdir / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- clients ----

    def api(self, token: str | None = None):
        """A `kubernetes.client.ApiClient` for this server, as admin (system:masters) or with `token`."""
        from kubernetes import client  # only available inside the venv

        config = client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self.ca_file)
        config.verify_ssl = True
        config.api_key = {"authorization": token or self.admin_token}
        config.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(config)

    def core(self, token: str | None = None):
        """`kubernetes.client.CoreV1Api` over api(token)."""
        from kubernetes import client

        return client.CoreV1Api(self.api(token))

    # ---- helpers ----

    def create_namespace(self, name: str, timeout: float = 30.0) -> None:
        """Creates namespace `name` and waits until its `default` ServiceAccount has a token secret
        (before that, Kubernetes 1.20's ServiceAccount admission refuses Pods there)."""
        from kubernetes import client

        self.core().create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self.wait_for_service_account(name, "default", timeout)

    def create_service_account(self, namespace: str, name: str, timeout: float = 30.0) -> None:
        """Creates a ServiceAccount and waits for its token secret (Pods using it are refused until then)."""
        from kubernetes import client

        self.core().create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
        self.wait_for_service_account(namespace, name, timeout)

    def wait_for_service_account(self, namespace: str, name: str, timeout: float = 30.0) -> None:
        from kubernetes.client.exceptions import ApiException

        core = self.core()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if core.read_namespaced_service_account(name, namespace).secrets:
                    return
            except ApiException as e:
                if e.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"ServiceAccount {namespace}/{name} has no token secret after {timeout} s;"
                                   f" kube-controller-manager log:\n{self.log('kube-controller-manager')[-3000:]}")
            time.sleep(0.2)

    def token_for(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """A bound token for the ServiceAccount, from the TokenRequest API (as the API server's audience)."""
        from kubernetes import client

        request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=["https://kubernetes.default.svc.cluster.local"], expiration_seconds=seconds))
        reply = self.core().create_namespaced_service_account_token(service_account, namespace, request)
        return reply.status.token

    def kubeconfig_for_token(self, token: str, path: Path | str, namespace: str = "default") -> Path:
        """Writes a kubeconfig (this server, its CA inline, `token`) to `path`; returns the path."""
        path = Path(path)
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: sparkgate-test\n  cluster:\n    server: {self.server}\n"
            f"    certificate-authority-data: {ca}\n"
            f"users:\n- name: token\n  user:\n    token: {token}\n"
            f"contexts:\n- name: token\n  context: {{cluster: sparkgate-test, user: token, namespace: {namespace}}}\n"
            "current-context: token\n")
        path.chmod(0o600)
        return path
