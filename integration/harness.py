"""Starts the real parts of an end-to-end test: a Spark Thrift Server and sparkgate processes.

Used by the pytest suite (integration/tests), bench.py, and sts.sh (`python harness.py sts-start PORT
WORKDIR [NONE|NOSASL]` / `sts-stop WORKDIR`). start_sts()/stop_sts() are the short forms.
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
from typing import ClassVar

from helpers import STS_CLASS, free_port, spark_home, sts_command, wait_for_port

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"


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
        self.workdir = Path(workdir).resolve()
        self.port = port or free_port()
        self.auth = auth
        self.cores = cores
        # Extra --conf settings, e.g. spark.sparkgate.tenant=NAME to tell drivers apart in tests.
        self.conf = conf or {}
        # With spark.ui.port in `conf`, the UI is on there (statements' progress).
        ui_port = self.conf.get("spark.ui.port")
        self.ui_url = f"http://127.0.0.1:{ui_port}" if ui_port else None
        if ui_port:
            self.conf.setdefault("spark.ui.enabled", "true")
        self.log = self.workdir / "sts.log"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return sts_command(
            self.port, workdir=self.workdir, master=f"local[{self.cores}]", conf=self.conf,
            hiveconf={"hive.server2.transport.mode": "binary", "hive.server2.authentication": self.auth},
        )

    def start(self, timeout: float = 180.0) -> SparkThriftServer:
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as e:
                raise RuntimeError(f"cannot start a Spark Thrift Server on 127.0.0.1:{self.port}: {e}") from None
        # SPARK_LOCAL_IP: the Spark UI (when on) listens on loopback too, not on every interface.
        env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOG_DIR=str(self.workdir),
                   SPARK_LOCAL_IP="127.0.0.1")
        env.pop("PYSPARK_PYTHON", None)
        started = time.monotonic()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        # spark-submit ends by exec'ing the driver JVM, so this pid is the server (and its group).
        self.pid_file.write_text(f"{self.proc.pid}\n")
        try:
            wait_for_port(self.port, timeout, self.proc, self.log)
            self._wait_for_session(started + timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    @property
    def pid_file(self) -> Path:
        return self.workdir / "sts.pid"

    def _wait_for_session(self, deadline: float) -> None:
        """Ready = an HS2 OpenSession succeeds (the port opens before the server can serve)."""
        from pyhive import hive

        last = None
        while time.monotonic() < deadline:
            try:
                conn = hive.connect("127.0.0.1", self.port, username="probe", auth=self.auth)
                conn.close()
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                last = e
                if self.proc is not None and self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        raise RuntimeError(f"Spark Thrift Server on {self.port} accepted no session: {last}\n{tail}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.pid_file.unlink(missing_ok=True)


def start_sts(port: int | None, workdir: Path | str, auth: str = "NONE", **kwargs) -> SparkThriftServer:
    """Starts a Spark Thrift Server (auth NONE = SASL PLAIN, any password; NOSASL = raw Thrift) on
    127.0.0.1:`port` (a free one if None) with everything under `workdir` (log: sts.log, pid:
    sts.pid); returns once an HS2 OpenSession succeeds. Stop it with stop_sts()."""
    auth = auth.upper()
    if auth not in ("NONE", "NOSASL"):
        raise ValueError(f"auth must be NONE or NOSASL, not {auth!r}")
    return SparkThriftServer(Path(workdir), port, auth, **kwargs).start()


def stop_sts(server: SparkThriftServer | Path | str, grace: float = 20.0) -> None:
    """Stops a server from start_sts(), or the one whose pid file is in the given work dir (e.g.
    started by `sts.sh start` in another process)."""
    if isinstance(server, SparkThriftServer):
        server.stop()
        return
    pid_file = Path(server) / "sts.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().strip())
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        cmdline = ""
    # Only a process that is still our server (pids get reused).
    if STS_CLASS in cmdline and str(Path(server).resolve()) in cmdline:
        try:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
                    break  # a zombie: gone, its parent has not reaped it
                time.sleep(0.2)
            else:
                if Path(f"/proc/{pid}").exists():
                    os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, FileNotFoundError):
            pass
    pid_file.unlink(missing_ok=True)


_build_result: Path | Exception | None = None


def sparkgate_binary() -> Path:
    """$SPARKGATE_BIN if set; otherwise builds target/release/sparkgate with
    `cargo build --release -p sparkgate` (once per process) and returns it. A failed build raises,
    so every test that needs the gateway fails loudly with the compiler's output."""
    global _build_result
    if os.environ.get("SPARKGATE_BIN"):
        return Path(os.environ["SPARKGATE_BIN"])
    if _build_result is None:
        started = time.monotonic()
        try:
            out = subprocess.run(["cargo", "build", "--release", "-p", "sparkgate"], cwd=REPO, check=False,
                                 capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except OSError as e:
            _build_result = RuntimeError(f"cannot run `cargo build --release -p sparkgate`: {e}")
            raise _build_result from e
        if out.returncode != 0:
            _build_result = RuntimeError(
                f"`cargo build --release -p sparkgate` failed ({out.returncode}):\n{out.stderr[-6000:]}")
        else:
            _build_result = REPO / "target" / "release" / "sparkgate"
            print(f"[harness] cargo build --release -p sparkgate: {time.monotonic() - started:.1f} s", flush=True)
    if isinstance(_build_result, Exception):
        raise _build_result
    return _build_result


class Sparkgate:
    """A sparkgate process; `args` are its command-line arguments."""

    # Every instance started in this process (the test suite shows their new log lines on failure).
    started: ClassVar[list[Sparkgate]] = []

    def __init__(self, args: list[str], port: int, log: Path, env: dict | None = None):
        self.args = args
        self.port = port
        self.log = Path(log)
        self.env = env
        self.proc: subprocess.Popen | None = None

    @classmethod
    def with_config(cls, workdir: Path, toml: str, name: str, env: dict | None = None) -> Sparkgate:
        """Writes `toml` (which must use the placeholder {port} for server.bind) and runs it;
        `env` adds to the process's environment (e.g. KUBECONFIG)."""
        port = free_port()
        config = Path(workdir) / f"{name}.toml"
        config.write_text(toml.replace("{port}", str(port)))
        # sparkgate's own file: a tenant's drivers (their own OS users, as root) must not read it.
        config.chmod(0o600)
        return cls(["--config", str(config)], port, Path(workdir) / f"{name}.log", env=env)

    @classmethod
    def proxy(cls, workdir: Path, name: str, backend_port: int, transport: str = "sasl", **server: str | int) -> Sparkgate:
        """sparkgate as a plain proxy to one backend, from a config file; `server` adds settings
        under [server], e.g. handshake_timeout="2s", max_message_size=1048576."""
        def toml_value(v):
            return str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int) else f'"{v}"'

        extra = "".join(f"{key} = {toml_value(value)}\n" for key, value in server.items())
        return cls.with_config(
            workdir,
            f'[server]\nbind = "127.0.0.1:{{port}}"\ntransport = "{transport}"\n{extra}'
            f'[backend]\naddress = "127.0.0.1:{backend_port}"\n',
            name,
        )

    def start(self, timeout: float = 20.0) -> Sparkgate:
        binary = sparkgate_binary()
        if not binary.exists():
            raise RuntimeError(f"sparkgate binary {binary} is missing: run `cargo build --release -p sparkgate`")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SPARKGATE_LOG=os.environ.get("SPARKGATE_LOG", "info"), NO_COLOR="1")
        env.update(self.env or {})
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), *self.args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        Sparkgate.started.append(self)
        try:
            wait_for_port(self.port, timeout, self.proc, self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=40.0)


def _main() -> None:
    # `python harness.py sts-start PORT WORKDIR [AUTH]`: start an STS in the background (it outlives
    # this process), print its pid once it serves; `sts-stop WORKDIR` stops it (integration/sts.sh).
    if len(sys.argv) in (4, 5) and sys.argv[1] == "sts-start":
        port = int(sys.argv[2])
        try:
            sts = start_sts(port or None, Path(sys.argv[3]).resolve(), sys.argv[4] if len(sys.argv) > 4 else "NONE")
        except (RuntimeError, ValueError) as e:
            sys.exit(f"sts-start: {e}")
        print(f"Spark Thrift Server ({sts.auth}) ready on 127.0.0.1:{sts.port} (pid {sts.proc.pid}) in"
              f" {sts.startup_seconds:.1f} s; log {sts.log}", file=sys.stderr, flush=True)
        print(sts.proc.pid, flush=True)
        return
    if len(sys.argv) == 3 and sys.argv[1] == "sts-stop":
        stop_sts(Path(sys.argv[2]).resolve())
        return
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


if __name__ == "__main__":
    _main()
