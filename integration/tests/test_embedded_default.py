"""The README's first command: `integration/run-local.sh` installs what is missing and runs
sparkgate with the local launcher, which starts a Spark Thrift Server driver itself; beeline
connects and runs SQL; SIGTERM stops sparkgate and every driver it started; a table made in one
run is there in the next."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from harness import REPO
from helpers import free_port, spark_home, wait_for_port


def run_local(workdir, home, gateway_port, sts_port, name: str) -> subprocess.Popen:
    env = dict(os.environ, SPARKGATE_PORT=str(gateway_port), STS_PORT=str(sts_port), SPARKGATE_HOME=str(home))
    with open(workdir / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([str(REPO / "integration" / "run-local.sh")], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    wait_for_port(gateway_port, 300, proc, workdir / f"{name}.log")
    return proc


def beeline(gateway_port: int, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{gateway_port}/default",
         "-n", "newuser", "--outputformat=csv2", "-e", sql],
        stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=120,
    )


def stop(proc: subprocess.Popen, home) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("run-local.sh did not stop within 60 s of SIGTERM")
    # Nothing it started is left behind: no driver, no catalog.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-af", f"{home}"], check=False, capture_output=True, text=True)
        left = [line for line in left.stdout.splitlines() if "HiveThriftServer2" in line or "LoopbackMetastore" in line]
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"left running: {left}"


@pytest.mark.timeout(600)
def test_run_local_serves_beeline_and_stops_cleanly(workdir):
    gateway_port, sts_port = free_port(), free_port()
    home = workdir / "embedded"
    proc = run_local(workdir, home, gateway_port, sts_port, "run-local")
    try:
        out = beeline(gateway_port, "select 'hello from spark' as greeting, 6 * 7 as answer; SET spark.sparkgate.tenant; "
                                    "create table notes (note string); insert into notes values ('kept')")
        assert out.returncode == 0, out.stderr[-2000:]
        assert "hello from spark,42" in out.stdout
        assert "spark.sparkgate.tenant,default" in out.stdout, "a driver sparkgate started for tenant default"
    finally:
        stop(proc, home)
    assert (home / "tenants" / "default" / "warehouse" / "notes").is_dir()
    # The next run (new driver, new catalog process) has the table.
    proc = run_local(workdir, home, gateway_port, sts_port, "run-local-again")
    try:
        out = beeline(gateway_port, "select note from notes")
        assert out.returncode == 0, out.stderr[-2000:]
        assert "kept" in out.stdout.splitlines(), out.stdout
    finally:
        stop(proc, home)
