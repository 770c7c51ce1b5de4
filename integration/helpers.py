"""What the end-to-end harness and tests share: free loopback ports, waiting (for a condition, for a
port), the Spark Thrift Server command line, the session-tenant probe, and signed test tokens. Stdlib only at import
time (ldap_server.py runs with any python3); pyspark and PyHive are imported where they are used.

Environment: SPARKGATE_IT_PORTS=LOW-HIGH (e.g. 20000-20999) takes every port from that range.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import socket
import subprocess
import time
from pathlib import Path

STS_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


def spark_home() -> Path:
    import pyspark  # only available inside the venv

    return Path(pyspark.__file__).resolve().parent


# ---- ports ---------------------------------------------------------------------------------------

# Ports handed out in this process (with SPARKGATE_IT_PORTS: never the same one twice).
_handed_out: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _it_ports(pairs: bool = False) -> list[int] | None:
    """The SPARKGATE_IT_PORTS range (less its last port for `pairs`), shuffled, or None if unset."""
    span = os.environ.get("SPARKGATE_IT_PORTS", "").strip()
    if not span:
        return None
    low, high = (int(p) for p in span.split("-"))
    candidates = list(range(low, high if pairs else high + 1))
    random.shuffle(candidates)
    return candidates


def free_port() -> int:
    """A free loopback port. With SPARKGATE_IT_PORTS=LOW-HIGH (e.g. 20000-20999) it is taken from
    that range (never the same one twice in a process), so parallel runs can be kept apart."""
    candidates = _it_ports()
    if candidates is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for port in candidates:
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port left in SPARKGATE_IT_PORTS={os.environ['SPARKGATE_IT_PORTS']}")


def free_port_pair() -> int:
    """A free loopback port P with P+1 free too (etcd's client and peer ports); honours
    SPARKGATE_IT_PORTS like free_port."""
    candidates = _it_ports(pairs=True)
    if candidates is None:
        # Not bind(0) ports: Linux hands out odd ones there and uses even ones for connect(), so
        # with many sockets in TIME-WAIT, P+1 is nearly always taken. Below the ephemeral range
        # neither happens.
        try:
            low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            low = 32768
        candidates = random.sample(range(10000, max(low - 1, 10002)), min(200, max(low - 10002, 1)))
    for port in candidates:
        if port + 1 > 65535 or {port, port + 1} & _handed_out:
            continue
        if _bindable(port) and _bindable(port + 1):
            _handed_out.update({port, port + 1})
            return port
    raise RuntimeError("no two consecutive free loopback ports for etcd")


# ---- waiting -------------------------------------------------------------------------------------

def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.2):
    """Calls `check` every `every` s until it returns something truthy, and returns that; raises
    AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None,
                  every: float = 0.2) -> None:
    """Waits until something accepts connections on 127.0.0.1:`port`. Raises RuntimeError after
    `timeout` s, or as soon as `proc` exits (with the tail of `log`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            name = Path(str(proc.args[0] if isinstance(proc.args, (list, tuple)) else proc.args)).name
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening on {port}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(every)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


# ---- Spark Thrift Server -------------------------------------------------------------------------

def sts_command(port: int, *, host: str = "127.0.0.1", workdir: Path | None = None, master: str = "local[1]",
                driver_memory: str | None = "512m", conf: dict[str, str] | None = None,
                hiveconf: dict[str, str] | None = None, deploy_mode: str | None = None,
                spark_submit: str | Path | None = None) -> list[str]:
    """The spark-submit argv of a Spark Thrift Server listening on `host`:`port`.

    With `workdir`, a local server: everything it writes lives under `workdir` (tmp, warehouse,
    Derby metastore, scratch dirs), its driver binds to `host`, the UI is off unless `conf` turns it
    on, and the JIT is kept cheap. These settings win over the same keys in `conf`/`hiveconf`. Without `workdir`, only
    what is given (e.g. the args of a driver Pod). `spark_submit` defaults to pyspark's."""
    conf = dict(conf or {})
    hiveconf = dict(hiveconf or {})
    java_options = None
    if workdir is not None:
        w = workdir
        java_options = f"-Djava.io.tmpdir={w}/tmp -XX:TieredStopAtLevel=1 -XX:-UsePerfData"
        conf.setdefault("spark.ui.enabled", "false")
        conf.update({
            "spark.local.dir": f"{w}/tmp",
            "spark.sql.warehouse.dir": f"{w}/warehouse",
            "spark.driver.host": host,
            "spark.driver.bindAddress": host,
        })
        hiveconf.update({
            "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={w}/metastore_db;create=true",
            "hive.exec.scratchdir": f"{w}/scratch",
            "hive.exec.local.scratchdir": f"{w}/ls",
        })
    hiveconf.update({"hive.server2.thrift.bind.host": host, "hive.server2.thrift.port": str(port)})
    argv = [str(spark_submit or spark_home() / "bin" / "spark-submit"), "--class", STS_CLASS, "--master", master]
    if deploy_mode:
        argv += ["--deploy-mode", deploy_mode]
    if driver_memory:
        argv += ["--driver-memory", driver_memory]
    if java_options:
        argv += ["--driver-java-options", java_options]
    argv += [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]
    argv.append("spark-internal")
    argv += [arg for key, value in hiveconf.items() for arg in ("--hiveconf", f"{key}={value}")]
    return argv


# ---- sessions ------------------------------------------------------------------------------------

def session_tenant(port: int, user: str, *, host: str = "127.0.0.1", auth: str = "NONE",
                   check_query: bool = True) -> str:
    """Opens a PyHive session on `host`:`port` as `user` and returns what `SET
    spark.sparkgate.tenant` answers there (the tenant of the driver it reached). With `check_query`
    it also runs `select 1 + 1` in that session and asserts the answer."""
    from pyhive import hive  # only available inside the venv

    conn = hive.connect(host, port, username=user, auth=auth)
    try:
        cur = conn.cursor()
        cur.execute("SET spark.sparkgate.tenant")
        tenant = cur.fetchall()[0][1]
        if check_query:
            cur.execute("select 1 + 1")
            assert cur.fetchall() == [(2,)]
        return tenant
    finally:
        conn.close()


def make_jwt(claims: dict, secret: bytes) -> str:
    """An HS256 JSON Web Token signed with `secret`, as an identity provider would issue it."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"
