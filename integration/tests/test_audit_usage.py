"""The audit log and usage accounting, end to end.

Audit: one sparkgate in front of the suite's shared Spark Thrift Server, with a users file and
JWT logins, the binary and HTTP transports, the result cache and admission control on; a mixed
workload (a query fetched in full, a failing one, a cache hit, a queued one, a SET of a secret,
a literal, refused logins) is checked line by line in the audit file, and every secret used
(passwords, the JWT, the session cookie, the SET value, the literal) is grepped for.

Usage: a tenant on the local launcher (a real driver sparkgate starts), its driver-seconds
checked against the driver's known lifetime (Starting, then Ready), statements, rows and bytes
against a known workload; a restart of sparkgate keeps the totals (usage.file).
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import pytest
from pyhive import hive
from thrift.transport import THttpClient
from thrift.transport.TTransport import TTransportException

from harness import REPO, Sparkgate
from helpers import free_port, make_jwt, wait_for

PASSWORD = "Pa55-audit-XYZZY-pw"
WRONG = "wrong-Pw-QWERTY-77"
JWT_SECRET = b"audit-test-jwt-secret-0123456789"
SET_SECRET = "AKIA-SET-SECRET-9876"
LITERAL = "customer-secret-literal-4242"


@pytest.fixture(scope="module")
def gw(sts, workdir):
    d = workdir / "audit"
    d.mkdir(exist_ok=True)
    users = d / "users.toml"
    for user in ("auditor", "other"):
        subprocess.run([str(REPO / "target/release/sparkgate"), "passwd", str(users), user, "--group", "analysts"],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    (d / "jwt.secret").write_bytes(JWT_SECRET)
    http_port = free_port()
    audit_file = d / "logs" / "audit.log"
    backend = f"127.0.0.1:{sts.port}"
    gateway = Sparkgate.with_config(d, f"""
[server]
bind = "127.0.0.1:{{port}}"
[http]
bind = "127.0.0.1:{http_port}"
path = "/cliservice"
[auth]
max_failures = 1000
[[auth.methods]]
type = "users_file"
path = "{users}"
[[auth.methods]]
type = "jwt"
hs256_secret_file = "{d / 'jwt.secret'}"
algorithms = ["HS256"]
issuer = "it-idp"
audience = "sparkgate"
[audit]
file = "{audit_file}"
[[tenants]]
name = "audited"
groups = ["analysts", "jwt-users"]
backends = ["{backend}"]
cache_ttl = "5m"
max_running_per_driver = 1
""", "audit-gateway").start()
    gateway.audit_file = audit_file
    gateway.http_port = http_port
    yield gateway
    gateway.stop()


def connect(gw, user="auditor", password=PASSWORD):
    return hive.connect("127.0.0.1", gw.port, username=user, password=password, auth="LDAP")


def records(gw, event=None):
    text = gw.audit_file.read_text() if gw.audit_file.exists() else ""
    # The writer may be mid-batch: a last line without its newline is not whole yet.
    lines = text.split("\n")[:-1]
    out = [json.loads(line) for line in lines]
    return [r for r in out if event is None or r["event"] == event]


def statement_record(gw, fragment, timeout=10):
    def find():
        found = [r for r in records(gw, "statement") if fragment in (r.get("statement") or "")]
        return found[-1] if found else None
    return wait_for(f"audit record of a statement with {fragment!r}", find, timeout=timeout)


def test_a_mixed_workload_is_audited_field_by_field(gw, sts):
    with connect(gw) as conn:
        cur = conn.cursor()
        cur.execute("SELECT id, 'x' AS tag FROM range(25) WHERE id < 100")
        assert len(cur.fetchall()) == 25
        with pytest.raises(hive.OperationalError, match="TABLE_OR_VIEW_NOT_FOUND"):
            cur.execute("SELECT * FROM no_such_table_audit")
        cur.execute("SELECT 41 + 1 AS answer")
        cur.fetchall()
        cur.execute("SELECT 41 + 1 AS answer")  # from the cache
        assert cur.fetchall() == [(42,)]
        cur.execute(f"SET spark.hadoop.fs.s3a.secret.key={SET_SECRET}")
        cur.execute(f"SELECT '{LITERAL}' AS s")
        cur.fetchall()
        # A queued statement: one place per driver, a blocker holds it.
        # A record is written when its statement's operation closes (or its session ends).
        blocker = conn.cursor()
        blocker.execute("SELECT reflect('java.lang.Thread', 'sleep', cast(2500 as bigint)) AS slept", async_=True)
        time.sleep(0.3)
        with connect(gw, "other") as other:
            queued = other.cursor()
            queued.execute("SELECT 7 AS queued_one")
            assert queued.fetchall() == [(7,)]
        blocker.fetchall()

    full = statement_record(gw, "FROM range(?)")
    assert full["state"] == "finished"
    assert full["user"] == "auditor" and full["effective_user"] == "auditor"
    assert full["transport"] == "binary" and full["tenant"] == "audited"
    assert full["client_addr"].startswith("127.0.0.1:")
    assert full["driver"] == f"127.0.0.1:{sts.port}"
    assert full["statement"] == "SELECT id, ? AS tag FROM range(?) WHERE id < ?"
    assert len(full["statement_sha256"]) == 64
    assert full["rows_fetched"] == 25 and full["bytes_fetched"] > 25
    assert full["cache_hit"] is False and full["queue_wait_ms"] == 0
    assert full["run_ms"] >= 0 and len(full["session_id"]) == 32 and len(full["operation_id"]) == 32

    failed = statement_record(gw, "no_such_table_audit")
    assert failed["state"] == "error"
    assert "TABLE_OR_VIEW_NOT_FOUND" in failed["error"] and "\n" not in failed["error"]
    assert failed["error_code"]

    answers = [r for r in records(gw, "statement") if r.get("statement") == "SELECT ? + ? AS answer"]
    assert [r["cache_hit"] for r in answers] == [False, True]
    assert answers[1]["rows_fetched"] == 1

    setting = statement_record(gw, "spark.hadoop.fs.s3a.secret.key")
    assert setting["statement"] == "SET spark.hadoop.fs.s3a.secret.key=?"

    waited = statement_record(gw, "queued_one")
    assert waited["user"] == "other" and waited["state"] == "finished"
    assert waited["queue_wait_ms"] >= 1000, waited

    opened = records(gw, "session_open")
    assert any(r["user"] == "auditor" and r["tenant"] == "audited" for r in opened)
    # The close record leaves with the writer's next batch (every 50 ms), after the client is gone.
    closed = wait_for("audit record of the auditor's session close", lambda: [
        r for r in records(gw, "session_close") if r["session_id"] == full["session_id"]], timeout=10)
    assert closed[0]["state"] == "closed by client", closed


def test_refused_logins_and_http_sessions_are_audited_without_secrets(gw):
    with pytest.raises(TTransportException, match="invalid user name or password"):
        connect(gw, "auditor", WRONG)
    long_name = "intruder-" + "z" * 300
    with pytest.raises(TTransportException, match="invalid user name or password"):
        connect(gw, long_name, WRONG)
    token = make_jwt({"sub": "jwt-user", "groups": ["jwt-users"], "iss": "it-idp", "aud": "sparkgate",
                      "exp": int(time.time()) + 600, "nbf": int(time.time()) - 5}, JWT_SECRET)
    transport = THttpClient.THttpClient(f"http://127.0.0.1:{gw.http_port}/cliservice")
    transport.setCustomHeaders({"Authorization": f"Bearer {token}"})
    with hive.connect(thrift_transport=transport) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 'over http' AS over_http_column")
        assert cur.fetchall() == [("over http",)]
        # The session cookie sparkgate handed with its last reply.
        cookie = transport.headers.get("Set-Cookie") or ""
    assert "=" in cookie, "sparkgate hands a session cookie"
    refused = wait_for("two refused logins audited",
                       lambda: records(gw, "login_refused") if len(records(gw, "login_refused")) >= 2 else None,
                       timeout=10)
    assert refused[0]["user"] == "auditor" and refused[0]["transport"] == "binary"
    assert "invalid user name or password" in refused[0]["error"]
    assert refused[1]["user"].startswith("intruder-") and len(refused[1]["user"]) <= 65
    over_http = statement_record(gw, "AS over_http_column")
    assert over_http["transport"] == "http" and over_http["user"] == "jwt-user"
    text = gw.audit_file.read_text()
    secrets = [PASSWORD, WRONG, token, token.split(".")[2], JWT_SECRET.decode(), SET_SECRET, LITERAL]
    secrets.append(cookie.split(";")[0].split("=", 1)[1])
    for secret in secrets:
        assert secret not in text, f"a secret reached the audit log: {secret[:12]}..."


# --- usage accounting with a real driver sparkgate starts --------------------------------------

def usage_toml(work, admin_port, first_port, usage_file):
    return f"""
[server]
bind = "127.0.0.1:{{port}}"
shutdown_grace = "3s"
[admin]
bind = "127.0.0.1:{admin_port}"
[local]
work_dir = "{work}"
first_port = {first_port}
startup_timeout = "180s"
stop_grace = "15s"
[pools]
wait_timeout = "240s"
stop_drivers_on_exit = true
[usage]
file = "{usage_file}"
save_every = "1s"
[[tenants]]
name = "billed"
users = ["*"]
launcher = "local"
driver_memory = "600m"
[tenants.scaling]
min_drivers = 1
max_drivers = 1
"""


def admin_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.load(r)


def test_usage_counts_driver_seconds_statements_and_survives_a_restart(workdir):
    from test_pools import first_driver_port  # the suite's safe driver port range

    work = workdir / "usage"
    work.mkdir(exist_ok=True)
    usage_file = work / "state" / "usage.json"
    admin = free_port()
    began = time.time()
    gateway = Sparkgate.with_config(work, usage_toml(work / "drivers", admin, first_driver_port(), usage_file),
                                    "usage-gateway").start()
    try:
        wait_for("the tenant's driver ready",
                 lambda: any(d["state"] == "ready" for d in admin_json(admin, "/api/v1/drivers")), timeout=240)
        ready_at = time.time()
        with hive.connect("127.0.0.1", gateway.port, username="payer") as conn:
            cur = conn.cursor()
            for _ in range(3):
                cur.execute("SELECT id FROM range(40)")
                assert len(cur.fetchall()) == 40
        time.sleep(3)
        report = admin_json(admin, f"/api/v1/usage?since={int(began) - 1}")
        measured = time.time()
        billed = report["tenants"]["billed"]
        starting, ready = billed["driver_seconds_starting"], billed["driver_seconds_ready"]
        # One driver: Starting for as long as sparkgate watched it start (its log says), then
        # Ready until now; sampled every second.
        start_secs = float(re.search(r"driver ready .*secs=([0-9.]+)", gateway.log_text()).group(1))
        assert abs(starting - start_secs) < 2.5, (starting, start_secs)
        assert abs(ready - (measured - ready_at)) < 4.0, (ready, measured - ready_at)
        # PyHive's `USE default` on connect, then the three queries.
        assert billed["statements"] == 4 and billed["rows_fetched"] == 120 and billed["bytes_fetched"] > 120
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
        assert 'sparkgate_usage_statements_total{tenant="billed"} 4' in metrics
        future = admin_json(admin, f"/api/v1/usage?since={int(measured) + 3600}")
        assert future["tenants"]["billed"]["statements"] == 0
        bad = urllib.request.Request(f"http://127.0.0.1:{admin}/api/v1/usage?since=yesterday")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 400
    finally:
        gateway.stop()
    saved = json.loads(usage_file.read_text())
    assert saved["totals"]["billed"]["statements"] == 4
    again = Sparkgate.with_config(work, usage_toml(work / "drivers", admin, first_driver_port(), usage_file),
                                  "usage-gateway-2").start()
    try:
        totals = admin_json(admin, "/api/v1/usage")["tenants"]["billed"]
        assert totals["statements"] == 4 and totals["rows_fetched"] == 120
        assert totals["driver_seconds_ready"] >= ready - 1
    finally:
        again.stop()
