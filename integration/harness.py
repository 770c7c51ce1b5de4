"""Starts the real parts of an end-to-end test: a Spark Thrift Server and sparkgate processes.

Used by the pytest suite (integration/tests) and by the scripts (run-local.sh, bench-beeline.sh).
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"


def spark_home() -> Path:
    import pyspark  # noqa: PLC0415 - only available inside the venv

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it does not go in time."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class SparkThriftServer:
    """A Spark Thrift Server in local mode on a loopback port (see shared HS2-NOTES launch line)."""

    def __init__(self, workdir: Path, port: int | None = None, auth: str = "NONE", cores: int = 2,
                 conf: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.auth = auth
        self.cores = cores
        # Extra --conf settings, e.g. spark.sparkgate.tenant=NAME to tell drivers apart in tests.
        self.conf = conf or {}
        self.log = self.workdir / "sts.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        w = self.workdir
        return [
            str(spark_home() / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
            "--master", f"local[{self.cores}]",
            "--driver-memory", "512m",
            "--driver-java-options", f"-Djava.io.tmpdir={w}/tmp -XX:TieredStopAtLevel=1 -XX:-UsePerfData",
            "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.local.dir={w}/tmp",
            "--conf", f"spark.sql.warehouse.dir={w}/warehouse",
            "--conf", "spark.driver.host=127.0.0.1",
            "--conf", "spark.driver.bindAddress=127.0.0.1",
            *[arg for key, value in self.conf.items() for arg in ("--conf", f"{key}={value}")],
            "spark-internal",
            "--hiveconf", f"javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={w}/metastore_db;create=true",
            "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
            "--hiveconf", f"hive.server2.thrift.port={self.port}",
            "--hiveconf", "hive.server2.transport.mode=binary",
            "--hiveconf", f"hive.server2.authentication={self.auth}",
            "--hiveconf", f"hive.exec.scratchdir={w}/scratch",
            "--hiveconf", f"hive.exec.local.scratchdir={w}/ls",
        ]

    def start(self, timeout: float = 180.0) -> "SparkThriftServer":
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOG_DIR=str(self.workdir))
        env.pop("PYSPARK_PYTHON", None)
        started = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        wait_for_port(self.port, timeout, self.proc, self.log)
        self._wait_for_session(started + timeout)
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_for_session(self, deadline: float) -> None:
        """Ready = an HS2 OpenSession succeeds (the port opens before the server can serve)."""
        from pyhive import hive  # noqa: PLC0415

        last = None
        while time.monotonic() < deadline:
            try:
                conn = hive.connect("127.0.0.1", self.port, username="probe", auth=self.auth)
                conn.close()
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                last = e
                time.sleep(0.5)
        raise RuntimeError(f"Spark Thrift Server on {self.port} accepted no session: {last}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


def sparkgate_binary() -> Path:
    return Path(os.environ.get("SPARKGATE_BIN", REPO / "target" / "release" / "sparkgate"))


class Sparkgate:
    """A sparkgate process; `args` are its command-line arguments."""

    def __init__(self, args: list[str], port: int, log: Path, env: dict | None = None):
        self.args = args
        self.port = port
        self.log = Path(log)
        self.env = env
        self.proc: subprocess.Popen | None = None

    @classmethod
    def with_config(cls, workdir: Path, toml: str, name: str) -> "Sparkgate":
        """Writes `toml` (which must use the placeholder {port} for server.bind) and runs it."""
        port = free_port()
        config = Path(workdir) / f"{name}.toml"
        config.write_text(toml.replace("{port}", str(port)))
        return cls(["--config", str(config)], port, Path(workdir) / f"{name}.log")

    def start(self, timeout: float = 20.0) -> "Sparkgate":
        binary = sparkgate_binary()
        if not binary.exists():
            raise RuntimeError(f"sparkgate binary {binary} is missing: run `cargo build --release -p sparkgate`")
        env = dict(os.environ, SPARKGATE_LOG=os.environ.get("SPARKGATE_LOG", "info"), NO_COLOR="1")
        env.update(self.env or {})
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), *self.args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        wait_for_port(self.port, timeout, self.proc, self.log)
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=40.0)


if __name__ == "__main__":
    # `python harness.py sts WORKDIR PORT [AUTH]`: start an STS in the foreground, for scripts.
    if len(sys.argv) >= 4 and sys.argv[1] == "sts":
        # SIGTERM (from run-local.sh's cleanup) must stop the server too, not orphan it.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        sts = SparkThriftServer(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "NONE")
        sts.start()
        print(f"Spark Thrift Server ready on 127.0.0.1:{sts.port} (pid {sts.proc.pid}) in {sts.startup_seconds:.1f} s", flush=True)
        try:
            sts.proc.wait()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            sts.stop()
    else:
        print(__doc__)
        sys.exit(2)
