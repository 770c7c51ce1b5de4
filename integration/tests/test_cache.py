"""The result cache against the suite's real Spark Thrift Server: what is cached and what never
is, results identical to the driver's for every column type and fetch size, freshness (writes
through sparkgate, REFRESH, the admin API, TTL), who shares a result, single flight, results
too large to keep, and the figures on /metrics.

One sparkgate of its own in front of the shared server, with four tenants on it: `cached`
(alice, bob: per-user results), `shared` (carol, dave: results shared by the tenant), `other`
(erin) and `brief` (frank: a 3 s TTL). It keeps closed sessions that changed nothing for reuse
(`session_reuse_ttl`). A client sees a hit in the operation log
("served from sparkgate cache, age N s"), which is what these tests read.
"""
from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
import urllib.request
import uuid

import pytest
from pyhive import hive

from harness import Sparkgate
from helpers import free_port, spark_home

DB = "cache_it"
HIT = "served from sparkgate cache"


@pytest.fixture(scope="module")
def gw(sts, workdir):
    backend = f"127.0.0.1:{sts.port}"
    admin = free_port()
    tenants = "".join(f"""
[[tenants]]
name = "{name}"
users = [{", ".join(f'"{u}"' for u in users)}]
backends = ["{backend}"]
cache_ttl = "{ttl}"
cache_scope = "{scope}"
""" for name, users, ttl, scope in [
        ("cached", ["alice", "bob"], "5m", "user"),
        ("shared", ["carol", "dave"], "5m", "tenant"),
        ("other", ["erin"], "5m", "user"),
        ("brief", ["frank"], "3s", "user"),
    ])
    gateway = Sparkgate.with_config(workdir, f"""
[server]
bind = "127.0.0.1:{{port}}"
session_reuse_ttl = "60s"
[backend]
address = "{backend}"
[admin]
bind = "127.0.0.1:{admin}"
[cache]
max_result_bytes = 1048576
{tenants}""", "cache-gateway").start()
    gateway.admin_port = admin
    with hive.connect("127.0.0.1", sts.port, username="setup").cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {DB}")
        cur.execute(f"DROP TABLE IF EXISTS {DB}.types")
        cur.execute(f"""CREATE TABLE {DB}.types (
            b BOOLEAN, t TINYINT, s SMALLINT, i INT, l BIGINT, f FLOAT, d DOUBLE, dec DECIMAL(12, 3),
            str STRING, vc VARCHAR(10), dt DATE, ts TIMESTAMP, bin BINARY, arr ARRAY<INT>,
            m MAP<STRING, INT>, st STRUCT<a: INT, b: STRING>) USING parquet""")
        cur.execute(f"""INSERT INTO {DB}.types VALUES
            (true, 1, 2, 3, 4, 1.5, 2.25, 12345.678, 'ünïcode ✓', 'vc', date'2024-02-29',
             timestamp'2024-01-03 10:11:12.345678', X'00FF10', array(1, null, 3), map('k', 1),
             named_struct('a', 1, 'b', 'x')),
            (null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null),
            (false, -128, -32768, -2147483648, -9223372036854775808, -0.0, 1e300, -0.001, '', '',
             date'1970-01-01', timestamp'1969-12-31 23:59:59', X'', array(), map(), named_struct('a', null, 'b', null)),
            (true, 127, 32767, 2147483647, 9223372036854775807, 3.4e38, -1e-300, 999999999.999,
             'a\\tb\\nc', 'x', date'9999-12-31', timestamp'2262-04-11 23:47:16', X'DEADBEEF',
             array(null), map('a', null), null)""")
        for name in ("facts", "facts2"):
            cur.execute(f"DROP TABLE IF EXISTS {DB}.{name}")
            cur.execute(f"CREATE TABLE {DB}.{name} (id INT, label STRING) USING parquet")
            cur.execute(f"INSERT INTO {DB}.{name} VALUES (1, 'one'), (2, 'two')")
    try:
        yield gateway
    finally:
        gateway.stop()


def run(port: int, user: str, sql: str, configuration: dict | None = None, arraysize: int = 1000,
        cursor=None) -> tuple[list, list, bool]:
    """(rows, description, hit) of `sql` run by `user` in a new session (or on `cursor`)."""
    def on(cur):
        cur.arraysize = arraysize
        cur.execute(sql)
        rows = cur.fetchall() if cur.description else []
        hit = any(HIT in line for line in cur.fetch_logs())
        return rows, cur.description, hit
    if cursor is not None:
        return on(cursor)
    conn = hive.connect("127.0.0.1", port, username=user, configuration=configuration)
    try:
        return on(conn.cursor())
    finally:
        conn.close()


def metrics(gw) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("cache_", "sparkgate_cache_")):
            name, value = line.rsplit(" ", 1)
            out[name.removeprefix("sparkgate_").removesuffix("_total")] = float(value)
    return out


def invalidate(gw, query: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.admin_port, timeout=10)
    try:
        conn.request("POST", f"/api/v1/cache/invalidate?{query}")
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()


def test_every_column_type_reads_the_same_from_the_cache_at_any_fetch_size(gw):
    sql = f"SELECT * FROM {DB}.types"
    direct, direct_desc, _ = run(gw.port, "alice", sql, {"sparkgate.cache": "false"})
    assert len(direct) == 4 and any(v is None for v in direct[1])
    first, first_desc, first_hit = run(gw.port, "alice", sql)
    assert not first_hit
    for arraysize in (1, 3, 1000):
        again, desc, hit = run(gw.port, "alice", sql, arraysize=arraysize)
        assert hit, f"the second run (fetch size {arraysize}) is a hit"
        assert again == first == direct
        assert desc == first_desc == direct_desc


def test_jdbc_reads_the_same_from_the_cache(gw):
    def beeline(sql: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{gw.port}/default", "-n", "bob",
             "--outputformat=csv2", "--incremental=false", "-e", sql],
            check=False, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    sql = f"SELECT * FROM {DB}.types ORDER BY i"
    bypassed = beeline(f"SET sparkgate.cache=false; {sql}")
    first = beeline(sql)
    second = beeline(sql)
    assert first.returncode == second.returncode == bypassed.returncode == 0, first.stderr + second.stderr
    def table(out: str) -> str:
        return out[out.index("b,t,s,i,l,f,d,dec"):]
    assert len(table(first.stdout).splitlines()) == 5, first.stdout  # header + 4 rows
    assert table(second.stdout) == table(first.stdout) == table(bypassed.stdout)
    assert HIT not in first.stderr and HIT in second.stderr, second.stderr


def test_what_is_never_cached(gw):
    never = [
        "SELECT rand()",
        "SELECT current_timestamp()",
        "SELECT uuid()",
        f"SELECT * FROM {DB}.facts TABLESAMPLE (50 PERCENT)",
        f"SELECT id, input_file_name() FROM {DB}.facts",
        f"SHOW TABLES IN {DB}",
        f"DESCRIBE {DB}.facts",
    ]
    for sql in never:
        run(gw.port, "alice", sql)
        _, _, hit = run(gw.port, "alice", sql)
        assert not hit, f"{sql!r} must not be served from the cache"
    # A temporary view is the session's own: never cached, even in the same session.
    conn = hive.connect("127.0.0.1", gw.port, username="alice")
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY VIEW tv AS SELECT * FROM {DB}.facts")
        assert not run(gw.port, "alice", "SELECT * FROM tv", cursor=cur)[2]
        assert not run(gw.port, "alice", "SELECT * FROM tv", cursor=cur)[2]
        # A session that changed a setting gets its own results.
        cur.execute("SET spark.sql.ansi.enabled=false")
        assert not run(gw.port, "alice", f"SELECT count(*) FROM {DB}.facts2 WHERE id > 0", cursor=cur)[2]
        assert run(gw.port, "alice", f"SELECT count(*) FROM {DB}.facts2 WHERE id > 0", cursor=cur)[2]
    finally:
        conn.close()
    assert not run(gw.port, "alice", f"SELECT count(*) FROM {DB}.facts2 WHERE id > 0")[2]


def test_use_keeps_databases_apart(gw):
    with hive.connect("127.0.0.1", gw.port, username="alice").cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {DB}_b")
        cur.execute(f"CREATE OR REPLACE VIEW {DB}_b.facts AS SELECT 99 AS id, 'b' AS label")
    sql = "SELECT * FROM facts ORDER BY id"
    for _ in range(2):
        conn = hive.connect("127.0.0.1", gw.port, username="alice", database=DB)
        try:
            rows_a = run(gw.port, "alice", sql, cursor=conn.cursor())[0]
        finally:
            conn.close()
        conn = hive.connect("127.0.0.1", gw.port, username="alice", database=f"{DB}_b")
        try:
            rows_b = run(gw.port, "alice", sql, cursor=conn.cursor())[0]
        finally:
            conn.close()
        assert rows_b == [(99, "b")] and rows_a != rows_b


def test_a_write_in_another_session_of_the_tenant_drops_what_read_its_table(gw):
    sql = f"SELECT id, label FROM {DB}.facts ORDER BY id"
    before, _, _ = run(gw.port, "alice", sql)
    assert run(gw.port, "alice", sql)[2]
    # Per-user scope: bob has his own, and erin's tenant its own.
    assert not run(gw.port, "bob", sql)[2]
    assert not run(gw.port, "erin", sql)[2]
    assert run(gw.port, "erin", sql)[2]
    run(gw.port, "bob", f"INSERT INTO {DB}.facts VALUES (3, 'three')")
    after, _, hit = run(gw.port, "alice", sql)
    assert not hit and after == before + [(3, "three")]
    # Another tenant's write is not this tenant's: erin's result stays (stale until its TTL:
    # sparkgate keeps tenants apart, also in what they invalidate).
    assert run(gw.port, "erin", sql)[2]
    # A write to another table leaves it cached.
    assert run(gw.port, "alice", sql)[2]
    run(gw.port, "alice", f"INSERT INTO {DB}.facts2 VALUES (9, 'nine')")
    assert run(gw.port, "alice", sql)[2]


def test_tenant_scope_shares_results_and_refresh_drops_them(gw):
    sql = f"SELECT max(id) FROM {DB}.facts2"
    assert not run(gw.port, "carol", sql)[2]
    assert run(gw.port, "dave", sql)[2], "a tenant-scoped result is shared by the tenant's users"
    run(gw.port, "dave", f"REFRESH TABLE {DB}.facts2")
    assert not run(gw.port, "carol", sql)[2]


def test_writes_made_around_sparkgate_show_after_the_admin_invalidates(gw, sts):
    sql = f"SELECT count(*) FROM {DB}.facts2"
    (count,), = run(gw.port, "carol", sql)[0]
    with hive.connect("127.0.0.1", sts.port, username="setup").cursor() as cur:
        cur.execute(f"INSERT INTO {DB}.facts2 VALUES (10, 'ten')")
    stale, _, hit = run(gw.port, "carol", sql)
    assert hit and stale == [(count,)], "sparkgate did not see that write: the cached result stays"
    assert invalidate(gw, "tenant=shared&table=other_table")[0] == 200
    assert run(gw.port, "carol", sql)[2]
    status, body = invalidate(gw, f"tenant=shared&table={DB}.FACTS2")
    assert status == 200, body
    fresh, _, hit = run(gw.port, "carol", sql)
    assert not hit and fresh == [(count + 1,)]
    assert invalidate(gw, "tenant=shared")[0] == 200
    assert not run(gw.port, "carol", sql)[2]
    assert invalidate(gw, "tenant=nosuch")[0] == 404
    assert invalidate(gw, "bogus")[0] == 400


def test_results_expire_after_the_tenants_ttl(gw):
    sql = f"SELECT label FROM {DB}.facts WHERE id = 1"
    assert not run(gw.port, "frank", sql)[2]
    assert run(gw.port, "frank", sql)[2]
    time.sleep(3.5)
    assert not run(gw.port, "frank", sql)[2]


def test_the_bypass_switch(gw):
    sql = f"SELECT label FROM {DB}.facts WHERE id = 2"
    run(gw.port, "alice", sql)
    assert run(gw.port, "alice", sql)[2]
    assert not run(gw.port, "alice", sql, {"sparkgate.cache": "false"})[2]
    with hive.connect("127.0.0.1", gw.port, username="alice").cursor() as cur:
        cur.execute("SET sparkgate.cache=false")
        assert not run(gw.port, "alice", sql, cursor=cur)[2]


def test_identical_statements_arriving_together_run_once(gw, sts):
    tag = uuid.uuid4().hex[:8]
    # A few seconds of work, so the twenty arrive while the first runs.
    sql = (f"SELECT '{tag}' AS tag, count(*) AS n FROM range(0, 300000000, 1, 8) "
           "WHERE hash(id) % 1000 = 1")
    before = metrics(gw)
    results: list = []
    errors: list = []

    def one():
        try:
            results.append(run(gw.port, "carol", sql)[0])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(results) == 20 and all(r == results[0] for r in results)
    with urllib.request.urlopen(sts.ui_url + "/api/v1/applications", timeout=10) as r:
        app = json.load(r)[0]["id"]
    with urllib.request.urlopen(f"{sts.ui_url}/api/v1/applications/{app}/jobs", timeout=10) as r:
        jobs = [j for j in json.load(r) if tag in (j.get("description") or "")]
    # One statement may run several jobs (adaptive execution): its job group is the statement.
    statements = {j.get("jobGroup") for j in jobs}
    assert len(statements) == 1, f"{len(statements)} statements ran on Spark for twenty identical ones: {jobs}"
    after = metrics(gw)
    assert after["cache_coalesced_waits"] > before.get("cache_coalesced_waits", 0)


def test_a_result_too_large_to_keep_is_streamed_from_the_driver(gw):
    sql = "SELECT id, repeat('x', 64) AS pad FROM range(0, 40000)"
    before = metrics(gw)
    rows, _, hit = run(gw.port, "alice", sql, arraysize=5000)
    assert not hit and len(rows) == 40000 and rows[0] == (0, "x" * 64) and rows[-1][0] == 39999
    assert [r[0] for r in rows] == list(range(40000)), "the client read every row once, in order"
    rows, _, hit = run(gw.port, "alice", sql, arraysize=5000)
    assert not hit and len(rows) == 40000
    after = metrics(gw)
    assert after["cache_too_large"] >= before.get("cache_too_large", 0) + 2


def test_metrics_count_hits_misses_and_bytes(gw):
    m = metrics(gw)
    for name in ("cache_hits", "cache_misses", "cache_stored", "cache_evictions", "cache_invalidations",
                 "cache_coalesced_waits", "cache_entries", "cache_bytes"):
        assert name in m, (name, m)
    assert m["cache_hits"] > 0 and m["cache_misses"] > 0 and m["cache_bytes"] > 0


def reused(gw) -> int:
    return gw.log_text().count("a kept driver session reused")


def test_a_session_that_changed_nothing_is_reused_one_that_did_is_not(gw):
    user = "dave"
    conn = hive.connect("127.0.0.1", gw.port, username=user)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]
    conn.close()
    before = reused(gw)
    conn = hive.connect("127.0.0.1", gw.port, username=user)
    try:
        cur = conn.cursor()
        assert reused(gw) == before + 1, "the second OpenSession took the kept driver session"
        cur.execute("SELECT 2")
        assert cur.fetchall() == [(2,)]
        # This session changes state: it must not be handed to anyone after it.
        cur.execute("SET spark.sql.shuffle.partitions=7")
        cur.execute("CREATE TEMPORARY VIEW reuse_tv AS SELECT 1 AS x")
    finally:
        conn.close()
    with hive.connect("127.0.0.1", gw.port, username=user).cursor() as cur:
        cur.execute("SET spark.sql.shuffle.partitions")
        assert cur.fetchall() != [("spark.sql.shuffle.partitions", "7")]
        with pytest.raises(Exception, match="TABLE_OR_VIEW_NOT_FOUND|not found"):
            cur.execute("SELECT * FROM reuse_tv")
    # Another user's OpenSession never takes dave's kept session.
    before = reused(gw)
    with hive.connect("127.0.0.1", gw.port, username="carol").cursor() as cur:
        cur.execute("SELECT current_user()")
        assert cur.fetchall() == [("carol",)]
    assert reused(gw) == before
