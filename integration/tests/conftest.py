"""Shared real parts for the end-to-end suite: ONE Spark Thrift Server for the whole run, and
sparkgate in front of it twice (SASL via `--backend`, NOSASL via a config file).

Endpoints are what a test connects to:
  direct          the Spark Thrift Server itself (SASL PLAIN, auth NONE)
  gateway         sparkgate, SASL PLAIN listener, started as `sparkgate --backend ... --bind ...`
  gateway-nosasl  sparkgate, NOSASL listener, started with `--config FILE`
If a real part cannot start, the fixtures raise and every test using them fails loudly.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness import SparkThriftServer, Sparkgate, free_port  # noqa: E402


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
    with tempfile.TemporaryDirectory(prefix="sparkgate-it-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def sts(workdir):
    # Tenant tests tell drivers apart by this setting (`SET spark.sparkgate.tenant`).
    server = SparkThriftServer(workdir / "sts", conf={"spark.sparkgate.tenant": "analytics"})
    try:
        server.start()
        print(f"\n[harness] Spark Thrift Server ready on {server.port} in {server.startup_seconds:.1f} s")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateways(sts, workdir):
    port = free_port()
    sasl = Sparkgate(
        ["--backend", f"127.0.0.1:{sts.port}", "--bind", f"127.0.0.1:{port}"], port, workdir / "gateway.log"
    )
    nosasl = Sparkgate.with_config(
        workdir,
        f'[server]\nbind = "127.0.0.1:{{port}}"\ntransport = "nosasl"\n[backend]\naddress = "127.0.0.1:{sts.port}"\n',
        "gateway-nosasl",
    )
    try:
        sasl.start()
        nosasl.start()
        yield {"gateway": sasl, "gateway-nosasl": nosasl}
    finally:
        sasl.stop()
        nosasl.stop()


@pytest.fixture(scope="session")
def endpoints(sts, gateways) -> dict[str, Endpoint]:
    return {
        "direct": Endpoint("direct", sts.port, nosasl=False),
        "gateway": Endpoint("gateway", gateways["gateway"].port, nosasl=False),
        "gateway-nosasl": Endpoint("gateway-nosasl", gateways["gateway-nosasl"].port, nosasl=True),
    }


ENDPOINT_NAMES = ["direct", "gateway", "gateway-nosasl"]
