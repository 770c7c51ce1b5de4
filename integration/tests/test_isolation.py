"""Isolation past the gateway, with real local drivers: a driver sparkgate runs takes sparkgate's
connections only (hive.server2.authentication=CUSTOM with sparkgate's password provider and a
secret per driver), so a client that reaches a driver's port directly runs no SQL there; each
tenant's drivers run as an OS user of the tenant's own (sparkgate runs as root here, as in CI), so
no SQL reads sparkgate's secrets or another tenant's tables through Spark's file sources; and a
tenant's switches refuse what all sessions on a driver share (ADD JAR/FILE, global_temp).

One sparkgate serves the module: tenant "pooled" (no switches, one driver from the start) and
tenant "strict" (both switches on, its driver started by its first session), with a JWT secret
and a cookie key configured (files only sparkgate may read)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pyhive import hive
from test_pools import catalog_pid, catalog_state, driver_pids, first_driver_port, pool_toml, run_sql
from thrift.transport.TTransport import TTransportException

from harness import Sparkgate, sparkgate_binary
from helpers import free_port

JWT_SECRET = "jwt-secret-only-sparkgate-knows-0123456789"
COOKIE_KEY = "cookie-key-only-sparkgate-knows-0123456789"
SPARKGATE_CREDENTIAL = "sparkgate-own-cloud-credential-0123456789"


def secrets_toml(work: Path) -> str:
    """A JWT secret and a cookie key, as an operator keeps them: files readable by sparkgate only."""
    for name, value in (("jwt.secret", JWT_SECRET), ("cookie.key", COOKIE_KEY)):
        (work / name).write_text(value)
        (work / name).chmod(0o600)
    return f"""
[http]
cookie_key_file = "{work / 'cookie.key'}"
[[auth.methods]]
type = "none"
[[auth.methods]]
type = "jwt"
hs256_secret_file = "{work / 'jwt.secret'}"
algorithms = ["HS256"]
"""


@pytest.fixture(scope="module")
def gateway(workdir):
    assert os.geteuid() == 0, "the isolation tests run sparkgate as root (as CI does): drivers get OS users of their own"
    work = workdir / "isolation"
    work.mkdir()
    admin_port = free_port()
    config = pool_toml(work, first_driver_port(), min_drivers=1, max_drivers=1, admin_port=admin_port,
                       extra_tenants=STRICT_TENANT + secrets_toml(work))
    # Credentials of sparkgate's own, as a cloud VM would give it: not the tenants'.
    gw = Sparkgate.with_config(work, config, "gw", env={"AWS_SECRET_ACCESS_KEY": SPARKGATE_CREDENTIAL})
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


def test_a_tenants_switches_refuse_what_its_sessions_would_share(gateway):
    # Where the driver's OS user can read it.
    jar = gateway.work / "empty.jar"
    jar.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    jar.chmod(0o644)
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


def sql_error(port: int, tenant: str, statement: str) -> str:
    with pytest.raises(hive.OperationalError) as refused:
        tenant_sql(port, tenant, statement)
    return str(refused.value)


def process_user(pid: int) -> str:
    return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name


def test_each_tenants_drivers_and_catalog_run_as_its_own_os_user(gateway):
    tenant_sql(gateway.port, "strict", "select 1")
    users = {}
    for pid in driver_pids(gateway.work):
        tenant = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"spark.sparkgate.tenant=")[1].split(b"\0")[0].decode()
        users.setdefault(tenant, set()).add(process_user(pid))
    assert users == {"pooled": {"sparkgate-pooled"}, "strict": {"sparkgate-strict"}}
    for tenant in ("pooled", "strict"):
        pid = catalog_pid(gateway.work, tenant)
        assert pid is not None and process_user(pid) == f"sparkgate-{tenant}"
        # SQL sees the session's user, as before; the OS user is below it.
        assert tenant_sql(gateway.port, tenant, "select current_user()", user="sam") == [("sam",)]
    # sparkgate's environment stays with sparkgate.
    for pid in driver_pids(gateway.work):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"AWS_SECRET_ACCESS_KEY" not in environ and SPARKGATE_CREDENTIAL.encode() not in environ
        assert b"SPARKGATE_DRIVER_SECRET=" in environ, "the environment read is the driver's"


def test_no_sql_reads_sparkgates_secrets(gateway):
    work = gateway.work
    driver_state = next((work / "drivers").glob("*/driver.json"))
    secrets = [work / "jwt.secret", work / "cookie.key", work / "gw.toml", driver_state]
    # The same reads of a file anyone may read work: what fails below is the permission.
    public = work / "public.txt"
    public.write_text("for everyone\n")
    public.chmod(0o644)
    assert tenant_sql(gateway.port, "pooled", f"select * from text.`file://{public}`") == [("for everyone",)]
    assert tenant_sql(gateway.port, "pooled", f"select length(content) from binaryFile.`file://{public}`") == [(13,)]
    for path in secrets:
        for query in (f"select * from text.`file://{path}`",
                      f"select content from binaryFile.`file://{path}`",
                      f"select * from json.`file://{path}`"):
            message = sql_error(gateway.port, "pooled", query)
            assert "Permission denied" in message or "AccessDenied" in message, f"{query}: {message[:500]}"
            for secret in (JWT_SECRET, COOKIE_KEY, json.loads(driver_state.read_text())["secret"]):
                assert secret not in message
    # Nor by listing the directories they are in.
    message = sql_error(gateway.port, "pooled", f"select path from binaryFile.`file://{work}/drivers/*/driver.json`")
    assert JWT_SECRET not in message


def test_two_tenants_cannot_read_each_others_tables(gateway):
    tenant_sql(gateway.port, "strict", "create table if not exists strict_only as select 'strict data' as v")
    tenant_sql(gateway.port, "pooled", "create table if not exists pooled_only as select 'pooled data' as v")
    theirs = gateway.work / "tenants" / "strict" / "warehouse" / "strict_only"
    ours = gateway.work / "tenants" / "pooled" / "warehouse" / "pooled_only"
    # Each reads its own table's files by path...
    assert tenant_sql(gateway.port, "pooled", f"select v from parquet.`file://{ours}`") == [("pooled data",)]
    assert tenant_sql(gateway.port, "strict", f"select v from parquet.`file://{theirs}`") == [("strict data",)]
    # ...and neither the other's, nor its catalog, nor its drivers' temp files.
    for tenant, path in (("pooled", theirs), ("strict", ours)):
        message = sql_error(gateway.port, tenant, f"select v from parquet.`file://{path}`")
        assert "Permission denied" in message or "AccessDenied" in message or "PATH_NOT_FOUND" in message, message[:500]
        assert "strict data" not in message and "pooled data" not in message
    other_catalog = gateway.work / "tenants" / "strict" / "catalog"
    message = sql_error(gateway.port, "pooled", f"select count(*) from binaryFile.`file://{other_catalog}/*`")
    assert "Permission denied" in message or "AccessDenied" in message or "PATH_NOT_FOUND" in message, message[:500]
    for d in (gateway.work / "tenants" / "strict" / "warehouse", other_catalog):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700 and pwd.getpwuid(d.stat().st_uid).pw_name == "sparkgate-strict"


def test_a_secret_a_tenants_os_user_could_read_stops_startup(workdir):
    work = workdir / "readable-secret"
    work.mkdir()
    config = pool_toml(work, first_driver_port(), min_drivers=0, max_drivers=1) + secrets_toml(work)
    (work / "jwt.secret").chmod(0o644)  # as an editor might leave it
    gw = Sparkgate.with_config(work, config, "gw")
    with pytest.raises(RuntimeError):
        gw.start(timeout=60)
    gw.stop()
    log = gw.log_text()
    assert f"{work / 'jwt.secret'}: readable by OS user \"sparkgate-pooled\"" in log, log[-2000:]
    assert "chmod 600" in log
    assert JWT_SECRET not in log


def check_config(work: Path, toml: str) -> subprocess.CompletedProcess:
    config = work / "check.toml"
    config.write_text(toml.replace("{port}", "10009"))
    return subprocess.run([str(sparkgate_binary()), "--config", str(config), "--check-config"],
                          check=False, capture_output=True, text=True, timeout=60)


def test_drivers_as_sparkgates_own_os_user_need_an_explicit_yes(workdir):
    work = workdir / "shared-user"
    work.mkdir()
    config = pool_toml(work, first_driver_port(), min_drivers=0, max_drivers=1) + secrets_toml(work)
    shared = config.replace("[local]\n", '[local]\ndriver_users = "sparkgate"\n', 1)
    refused = check_config(work, shared)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert f"the secret file {work / 'jwt.secret'}" in out and f"the secret file {work / 'cookie.key'}" in out, out
    assert "local.allow_shared_os_user" in out, out
    accepted = check_config(work, shared.replace("[local]\n", "[local]\nallow_shared_os_user = true\n", 1))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    # One tenant without secrets (the embedded default) has nothing to expose.
    plain = pool_toml(work, first_driver_port(), min_drivers=0, max_drivers=1).replace(
        "[local]\n", '[local]\ndriver_users = "sparkgate"\n', 1)
    assert check_config(work, plain).returncode == 0


# The metastore's get_all_databases call (Thrift binary protocol, unframed, as Hive's client sends
# it), sent with bash's /dev/tcp: what a tenant's SQL could do with `TRANSFORM ... USING 'bash ...'`.
METASTORE_CALL = r"""
exec 3<>/dev/tcp/127.0.0.1/$0 || exit 3
printf '\200\001\000\001\000\000\000\021get_all_databases\000\000\000\001\000' >&3
timeout 20 head -c 4 <&3 | od -An -tx1
"""


def bash_as(os_user: str | None, script: str, *args: str) -> str:
    """Runs a bash script as `os_user` (None: as the test), as a tenant's SQL could with
    `TRANSFORM ... USING`; returns its output."""
    as_user = {}
    if os_user:
        entry = pwd.getpwnam(os_user)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    out = subprocess.run(["/bin/bash", "-c", script, *args], capture_output=True, text=True,
                         timeout=60, cwd="/", check=False, **as_user)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def metastore_reply(port: int, os_user: str | None) -> str:
    """The first bytes of the catalog's answer to a call made as `os_user` (None: as the test)."""
    return bash_as(os_user, METASTORE_CALL, str(port))


ADMIN_GET = r"""
exec 3<>/dev/tcp/127.0.0.1/$0 || exit 3
printf 'GET /api/v1/drivers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
timeout 20 head -n 1 <&3
"""


def test_the_tokenless_admin_api_is_not_for_a_local_drivers_os_user(gateway):
    """Without admin.token_file the API answers local tools; SQL on a local driver can run commands
    (TRANSFORM ... USING) as the tenant's OS user, which must not list sessions or drain drivers."""
    port = gateway.admin.rsplit(":", 1)[1]
    assert bash_as("sparkgate-pooled", ADMIN_GET, port).startswith("HTTP/1.1 403")
    assert bash_as("sparkgate-strict", ADMIN_GET, port).startswith("HTTP/1.1 403")
    assert bash_as("nobody", ADMIN_GET, port).startswith("HTTP/1.1 200")
    assert bash_as(None, ADMIN_GET, port).startswith("HTTP/1.1 200")


def test_a_tenants_catalog_answers_its_own_drivers_only(gateway):
    tenant_sql(gateway.port, "strict", "select 1")
    port = catalog_state(gateway.work, "strict")["port"]
    # Its own tenant's user gets a reply (0x80010002: a REPLY message)...
    assert metastore_reply(port, "sparkgate-strict") == "80 01 00 02"
    # ...another tenant's user, or anyone else on the machine, a closed connection.
    assert metastore_reply(port, "sparkgate-pooled") == ""
    assert metastore_reply(port, "nobody") == ""
    assert metastore_reply(port, None) == ""
    assert tenant_sql(gateway.port, "strict", "show databases") == [("default",)]


def test_drivers_an_earlier_sparkgate_ran_as_itself_are_replaced_and_the_tables_kept(workdir):
    """Upgrading: drivers and a catalog an earlier run started as sparkgate's own user (root) are
    stopped, the tenant's files handed to its OS user, and its tables are all still there."""
    work = workdir / "upgrade"
    work.mkdir()
    port = first_driver_port()
    earlier = pool_toml(work, port, min_drivers=1, max_drivers=1, stop_on_exit=False).replace(
        "[local]\n", '[local]\ndriver_users = "sparkgate"\n', 1)
    gw = Sparkgate.with_config(work, earlier, "earlier")
    gw.start()
    try:
        run_sql(gw.port, "create table kept as select 'before' as v")
        old_pids = driver_pids(work)
        assert old_pids and {process_user(p) for p in old_pids} == {"root"}
        old_catalog = catalog_pid(work, "pooled")
        assert old_catalog is not None and process_user(old_catalog) == "root"
    finally:
        gw.stop()
    assert driver_pids(work) == old_pids, "left running for the next run (stop_drivers_on_exit = false)"
    gw = Sparkgate.with_config(work, pool_toml(work, port, min_drivers=1, max_drivers=1), "now")
    gw.start()
    try:
        assert run_sql(gw.port, "select v from kept") == [("before",)]
        run_sql(gw.port, "insert into kept values ('after')")
        assert sorted(run_sql(gw.port, "select v from kept")) == [("after",), ("before",)]
        pids = driver_pids(work)
        assert pids and not set(pids) & set(old_pids)
        assert {process_user(p) for p in pids} == {"sparkgate-pooled"}
        catalog = catalog_pid(work, "pooled")
        assert catalog != old_catalog and process_user(catalog) == "sparkgate-pooled"
        log = gw.log_text()
        assert "stopping a driver that runs as another OS user than its tenant's" in log
        assert "stopping the tenant catalog: it runs as another OS user than the tenant's" in log
        warehouse = work / "tenants" / "pooled" / "warehouse" / "kept"
        assert {pwd.getpwuid(f.stat().st_uid).pw_name for f in warehouse.iterdir()} == {"sparkgate-pooled"}
    finally:
        gw.stop()


def listening_addresses(port: int) -> list[str]:
    """The addresses listening on TCP `port` (the kernel's socket tables)."""
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            # The kernel writes each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            ip = ipaddress.ip_address(raw)
            found.append(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found


def test_a_local_drivers_spark_ui_serves_sparkgate_only_and_feeds_progress(gateway):
    """Drivers sparkgate runs have a Spark UI (statements' progress), on loopback, that answers
    only the key sparkgate derives from the driver's secret: it shows every statement's text and
    can kill jobs."""
    states = [json.loads(p.read_text()) for p in (gateway.work / "drivers").glob("*/driver.json")]
    # The "pooled" tenant's driver: the progress below runs there (earlier tests may have started
    # the "strict" tenant's too).
    state = next(s for s in states if s["tenant"] == "pooled")
    ui = state.get("ui")
    assert ui and ui.startswith("http://127.0.0.1:"), state
    port = ui.rsplit(":", 1)[1]
    assert_ui_takes_sparkgate_key_only(ui, state["secret"])
    # Only on loopback: another address of this machine gets no connection.
    listening = listening_addresses(int(port))
    assert listening and all(a == "127.0.0.1" for a in listening), listening
    assert_progress_lines(gateway.port, "sam", ui, {"sparkgate.tenant": "pooled"})


def assert_ui_takes_sparkgate_key_only(ui: str, secret: str) -> None:
    """The driver UI at `ui` refuses no key, a wrong key and the driver's secret itself; it opens
    to the key sparkgate derives from the secret."""
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}, {"Authorization": f"Bearer {secret}"}):
        request = urllib.request.Request(f"{ui}/api/v1/applications", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    digest = hashlib.sha256(f"sparkgate-ui:{secret}".encode()).hexdigest()
    request = urllib.request.Request(f"{ui}/api/v1/applications", headers={"Authorization": f"Bearer {digest}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)[0]["id"]


def assert_progress_lines(port: int, user: str, ui: str, configuration: dict[str, str] | None = None) -> None:
    """A slow statement through sparkgate gets Hive-style progress lines in its operation log
    (what Superset's bar reads), pointing at the driver's UI `ui`."""
    conn = hive.connect("127.0.0.1", port, username=user, auth="NONE", configuration=configuration)
    try:
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM range(0, 3000000000, 1, 32) WHERE hash(id) % 7 = 1", async_=True)
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("Launching Job 1 out of 1" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(1)
            lines += cur.fetch_logs()
        cur.cancel()
    finally:
        conn.close()
    assert any("Launching Job 1 out of 1" in line for line in lines), lines
    assert any(f"Tracking URL = {ui}/jobs/job/?id=" in line for line in lines), lines
