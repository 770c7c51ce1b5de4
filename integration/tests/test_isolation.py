"""Isolation past the gateway, with real local drivers: a driver sparkgate runs takes sparkgate's
connections only (hive.server2.authentication=CUSTOM with sparkgate's password provider and a
secret per driver), so a client that reaches a driver's port directly runs no SQL there; and a
tenant's switches refuse what all sessions on a driver share (ADD JAR/FILE, global_temp).

One sparkgate serves the module: tenant "pooled" (no switches, one driver from the start) and
tenant "strict" (both switches on, its driver started by its first session)."""

from __future__ import annotations

import json
import stat
import urllib.request
from pathlib import Path

import pytest
from pyhive import hive
from test_pools import driver_pids, first_driver_port, pool_toml, run_sql
from thrift.transport.TTransport import TTransportException

from harness import Sparkgate
from helpers import free_port


@pytest.fixture(scope="module")
def gateway(workdir):
    work = workdir / "isolation"
    work.mkdir()
    admin_port = free_port()
    config = pool_toml(work, first_driver_port(), min_drivers=1, max_drivers=1, admin_port=admin_port,
                       extra_tenants=STRICT_TENANT)
    gw = Sparkgate.with_config(work, config, "gw")
    gw.start()
    gw.work = work
    gw.admin = f"http://127.0.0.1:{admin_port}"
    try:
        assert run_sql(gw.port, "select 1") == [(1,)]
        yield gw
    finally:
        gw.stop()


STRICT_TENANT = """
[[tenants]]
name = "strict"
users = ["*"]
launcher = "local"
driver_memory = "600m"
refuse_add_resources = true
refuse_global_temp = true
[tenants.scaling]
min_drivers = 0
max_drivers = 1
"""


def driver_of(gw) -> dict:
    drivers = json.loads(urllib.request.urlopen(f"{gw.admin}/api/v1/drivers", timeout=5).read())
    ready = [d for d in drivers if d["state"] == "ready" and d["tenant"] == "pooled"]
    assert len(ready) == 1, drivers
    return ready[0]


def direct_sql(address: str, **connect) -> list:
    host, port = address.rsplit(":", 1)
    conn = hive.connect(host, int(port), **connect)
    try:
        cur = conn.cursor()
        cur.execute("select current_user()")
        return cur.fetchall()
    finally:
        conn.close()


# Every way in a client could try: SASL PLAIN as anyone with any password (sparkgate's own
# service user and its old fixed password included), asking to act for another user, NOSASL.
DIRECT_ATTEMPTS = [
    {"username": "mallory", "auth": "NONE"},
    {"username": "sparkgate", "auth": "NONE"},
    {"username": "sparkgate", "password": "sparkgate", "auth": "CUSTOM"},
    {"username": "sparkgate", "password": "sparkgate", "auth": "CUSTOM",
         "configuration": {"hive.server2.proxy.user": "carl"}},
    {"username": "carl", "password": "", "auth": "LDAP"},
    {"username": "carl", "auth": "NOSASL"},
]


@pytest.mark.parametrize("attempt", DIRECT_ATTEMPTS, ids=lambda a: f"{a['auth']}-{a['username']}-{a.get('password', '')}"
                         + ("-proxy" if "configuration" in a else ""))
def test_a_direct_connection_to_a_local_driver_runs_no_sql(gateway, attempt):
    address = driver_of(gateway)["address"]
    with pytest.raises(TTransportException) as refused:
        direct_sql(address, **attempt)
    if attempt["auth"] != "NOSASL":
        # The driver's SASL layer says why; NOSASL clients just see the connection closed.
        assert "Error validating the login" in str(refused.value), refused.value
    # ...and sparkgate still gets in, as the user it authenticated.
    assert run_sql(gateway.port, "select current_user()", user="carl") == [("carl",)]


def test_the_driver_secret_is_on_no_command_line_and_in_no_file_others_can_read(gateway):
    driver = driver_of(gateway)
    state = next((gateway.work / "drivers").glob("*/driver.json"))
    mode = stat.S_IMODE(state.stat().st_mode)
    assert mode == 0o600, oct(mode)
    secret = json.loads(state.read_text())["secret"]
    assert len(secret) == 64, "a random 256-bit secret"
    pids = driver_pids(gateway.work)
    assert pids, "the driver runs"
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline
        assert b"hive.server2.authentication=CUSTOM" in cmdline
    # The driver's own secret lets one in: the refusals above are the check, not a broken driver.
    assert direct_sql(driver["address"], username="sparkgate", password=secret, auth="CUSTOM") == [("sparkgate",)]
    log = gateway.log_text()
    assert secret not in log, "never logged"


def test_a_tenant_cannot_switch_the_check_off(workdir):
    """A tenant's settings cannot reopen its drivers: sparkgate's auth settings win."""
    work = workdir / "tenant-overrides"
    work.mkdir()
    extra = """
[tenants.hive_conf]
"hive.server2.authentication" = "NONE"
"hive.server2.custom.authentication.class" = "org.apache.hive.service.auth.AnonymousAuthenticationProviderImpl"
"hadoop.proxyuser.mallory.hosts" = "*"
"""
    # The tenant's own table (before its scaling table).
    config = pool_toml(work, first_driver_port(), min_drivers=0, max_drivers=1).replace(
        "[tenants.scaling]", extra.strip() + "\n[tenants.scaling]", 1)
    gw = Sparkgate.with_config(work, config, "gw")
    gw.start()
    try:
        assert run_sql(gw.port, "select current_user()", user="carl") == [("carl",)]
        pids = driver_pids(work)
        assert pids
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"hive.server2.authentication=CUSTOM" in cmdline
            assert b"AnonymousAuthenticationProviderImpl" not in cmdline and b"mallory" not in cmdline
        assert "ignoring a tenant setting only sparkgate sets" in gw.log_text()
        address = json.loads(next((work / "drivers").glob("*/driver.json")).read_text())["address"]
        with pytest.raises(TTransportException):
            direct_sql(address, username="mallory", auth="NONE")
    finally:
        gw.stop()


def tenant_sql(port: int, tenant: str, statement: str, user: str = "sam") -> list:
    conn = hive.connect("127.0.0.1", port, username=user, auth="NONE", configuration={"sparkgate.tenant": tenant})
    try:
        cur = conn.cursor()
        cur.execute(statement)
        return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def test_a_tenants_switches_refuse_what_its_sessions_would_share(gateway, tmp_path):
    jar = tmp_path / "empty.jar"
    jar.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    shared = [
        f"ADD JAR {jar}",
        f"add file {jar}",
        "create global temporary view shared_v as select 1 as x",
        "select * from global_temp.shared_v",
        "SELECT * FROM IDENTIFIER('global_temp.shared_v')",
    ]
    # Without the switches the driver runs them: what one session adds, every later one sees.
    tenant_sql(gateway.port, "pooled", shared[0])
    tenant_sql(gateway.port, "pooled", shared[2])
    assert tenant_sql(gateway.port, "pooled", shared[3], user="other") == [(1,)], "a global temp view is shared"
    # With them, sparkgate refuses each before it reaches the driver, with a clear error.
    for statement in shared:
        with pytest.raises(hive.OperationalError) as refused:
            tenant_sql(gateway.port, "strict", statement)
        message = str(refused.value)
        assert "sparkgate refused the statement for tenant" in message and "strict" in message, message
    log = gateway.log_text()
    assert "statement refused by the tenant's rules" in log
    # Everything else runs as usual on the strict tenant's driver, temporary views included.
    assert tenant_sql(gateway.port, "strict", "select 'add jar' as s") == [("add jar",)]
    assert tenant_sql(gateway.port, "strict", "create temporary view mine as select 2 as x") == []
