"""The README's first command: `integration/run-local.sh` installs what is missing and runs
sparkgate with the local launcher, which starts a Spark Thrift Server driver itself; beeline
connects and runs SQL; SIGTERM stops sparkgate and every driver it started."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from harness import REPO, free_port, spark_home, wait_for_port


@pytest.mark.timeout(400)
def test_run_local_serves_beeline_and_stops_cleanly(workdir):
    gateway_port, sts_port = free_port(), free_port()
    home = workdir / "embedded"
    env = dict(os.environ, SPARKGATE_PORT=str(gateway_port), STS_PORT=str(sts_port), SPARKGATE_HOME=str(home))
    log = open(workdir / "run-local.log", "wb")
    proc = subprocess.Popen([str(REPO / "integration" / "run-local.sh")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(gateway_port, 300, proc, workdir / "run-local.log")
        out = subprocess.run(
            [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{gateway_port}/default",
             "-n", "newuser", "--outputformat=csv2", "-e",
             "select 'hello from spark' as greeting, 6 * 7 as answer; SET spark.sparkgate.tenant"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "hello from spark,42" in out.stdout
        assert "spark.sparkgate.tenant,default" in out.stdout, "a driver sparkgate started for tenant default"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("run-local.sh did not stop within 60 s of SIGTERM")
        log.close()
    # Nothing it started is left behind.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", f"spark.sparkgate.tenant=default.*{home}"], capture_output=True, text=True)
        if not left.stdout.strip():
            break
        time.sleep(0.5)
    assert not left.stdout.strip(), f"Spark Thrift Server left running: {left.stdout}"
