"""Driver pools with the local launcher: sparkgate starts real Spark Thrift Server processes per
tenant, scales them with load, replaces dead ones and adopts them after a restart."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pyhive import hive

from harness import Sparkgate
from helpers import free_port, session_tenant, wait_for


def pool_toml(work: Path, first_port: int, *, min_drivers: int, max_drivers: int, idle_ttl: str = "10m",
              target: int = 4, stop_on_exit: bool = True, extra_tenants: str = "", admin_port: int = 0,
              tenant_keys: str = "") -> str:
    admin = f'[admin]\nbind = "127.0.0.1:{admin_port}"\n' if admin_port else ""
    return f"""
{admin}
[server]
bind = "127.0.0.1:{{port}}"
shutdown_grace = "3s"
[local]
work_dir = "{work}"
first_port = {first_port}
startup_timeout = "180s"
stop_grace = "15s"
[pools]
wait_timeout = "240s"
stop_drivers_on_exit = {"true" if stop_on_exit else "false"}
[[tenants]]
name = "pooled"
users = ["*"]
launcher = "local"
driver_memory = "600m"
{tenant_keys}
[tenants.scaling]
min_drivers = {min_drivers}
max_drivers = {max_drivers}
target_operations_per_driver = {target}
scale_up_after = "2s"
idle_ttl = "{idle_ttl}"
max_concurrent_launches = 2
{extra_tenants}
"""


def first_driver_port(count: int = 40) -> int:
    """`local.first_port` for a test: `count` free ports below the kernel's ephemeral range
    (32768 up here). Inside it, the ports sparkgate hands to drivers and catalogs could be taken
    by any outgoing connection, or Spark's own random ports, before the JVM binds them."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(21000, 32000 - count)
        free = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base
    raise AssertionError(f"no {count} free loopback ports below 32000")


def driver_pids(work: Path) -> list[int]:
    """Driver JVMs whose work dir is under `work` (not spark-submit's short-lived launcher JVM)."""
    out = subprocess.run(["pgrep", "-af", f"spark.sparkgate.tenant=.*{work}"], check=False, capture_output=True, text=True)
    return sorted(int(line.split()[0]) for line in out.stdout.splitlines()
                  if "org.apache.spark.launcher.Main" not in line)


def driver_pid_on(work: Path, address: str) -> int:
    """The driver JVM serving `address` (127.0.0.1:PORT)."""
    port = address.rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-af", f"spark.sparkgate.tenant=.*{work}"], check=False, capture_output=True, text=True)
    (pid,) = [int(line.split()[0]) for line in out.stdout.splitlines()
              if "org.apache.spark.launcher.Main" not in line and f"hive.server2.thrift.port={port}" in line]
    return pid


def session_driver(gw: Sparkgate, user: str) -> str:
    """The driver address sparkgate last opened (or moved) a session of `user` on, from its log."""
    found = [line.split(" driver=")[1].split()[0] for line in gw.log_text().splitlines()
             if "session opened" in line and f"user={user} " in line and " driver=" in line]
    return found[-1]


def run_sql(port: int, *statements: str, user: str = "carl") -> list:
    """Runs the statements in one session; returns the rows of the last one (if it has any)."""
    conn = hive.connect("127.0.0.1", port, username=user, auth="NONE")
    try:
        cur = conn.cursor()
        rows = []
        for statement in statements:
            cur.execute(statement)
            rows = cur.fetchall() if cur.description else []
        return rows
    finally:
        conn.close()


def catalog_state(work: Path, tenant: str) -> dict:
    return json.loads((work / "tenants" / tenant / "catalog.json").read_text())


def catalog_pid(work: Path, tenant: str) -> int | None:
    """The tenant's running catalog process (sparkgate's loopback Hive metastore), if any."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sparkgate.LoopbackMetastore" in args and any(f"{work}/tenants/{tenant}/catalog".encode() in a for a in args):
            return int(cmdline.parent.name)
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.timeout(600)
def test_scale_to_zero_cold_start_and_back(workdir):
    work = workdir / "pool-zero"
    work.mkdir()
    # A driver dir as an earlier sparkgate left it: its own Derby catalog and warehouse.
    old = work / "drivers" / "pooled-20100-0badc0de"
    (old / "warehouse" / "old_sales").mkdir(parents=True)
    (old / "warehouse" / "old_sales" / "part-0.parquet").write_bytes(b"PAR1")
    (old / "metastore_db").mkdir()
    gw = Sparkgate.with_config(work, pool_toml(work, first_driver_port(), min_drivers=0, max_drivers=1, idle_ttl="3s"), "gw")
    gw.start()
    try:
        log = gw.log_text()
        assert "kept tables in its own catalog" in log and str(old / "warehouse") in log and "old_sales" in log, log
        assert driver_pids(work) == [] and catalog_pid(work, "pooled") is None, "min_drivers = 0: nothing runs before the first session"
        # The catalog starts with the first driver, in parallel: time until it serves.
        catalog_up: list[float] = []
        started = time.monotonic()

        def watch_catalog():
            while time.monotonic() - started < 200 and not catalog_up:
                try:
                    with socket.create_connection(("127.0.0.1", catalog_state(work, "pooled")["port"]), timeout=0.5):
                        catalog_up.append(time.monotonic() - started)
                except (OSError, ValueError, KeyError):
                    time.sleep(0.1)

        watcher = threading.Thread(target=watch_catalog)
        watcher.start()
        assert session_tenant(gw.port, "carl", check_query=False) == "pooled", \
            "the first session waits for a cold start, then runs"
        cold = time.monotonic() - started
        watcher.join(200)
        assert "waiting for one to start (cold start)" in gw.log_text()
        pid = catalog_pid(work, "pooled")
        assert pid is not None and catalog_up, "the tenant's catalog runs"
        rss = rss_mib(pid)
        run_sql(gw.port, "create table kept (id int, name string)", "insert into kept values (1, 'one'), (2, 'two')")
        assert (work / "tenants" / "pooled" / "warehouse" / "kept").is_dir(), "the table's files are in the tenant's warehouse"
        assert [p.parent for p in (work / "drivers").glob("*/metastore_db")] == [old], "no new driver has a catalog of its own"
        # Idle: the driver is drained, its process ends, and the catalog with it.
        wait_for("the idle driver to stop", lambda: driver_pids(work) == [], 90, every=0.5)
        assert "scaling down" in gw.log_text()
        wait_for("the tenant's catalog to stop with its last driver",
                 lambda: catalog_pid(work, "pooled") is None, 60, every=0.5)
        # And back: the table is still there.
        assert run_sql(gw.port, "select id, name from kept order by id") == [(1, "one"), (2, "two")]
        print(f"\n[pools] cold start {cold:.1f} s; catalog serving {catalog_up[0]:.1f} s after the first session "
              f"asked (started in parallel with the driver), catalog RSS {rss:.0f} MiB")
    finally:
        gw.stop()
    wait_for("no driver process left after sparkgate stopped", lambda: driver_pids(work) == [], 60, every=0.5)
    wait_for("no catalog process left after sparkgate stopped",
             lambda: catalog_pid(work, "pooled") is None, 60, every=0.5)


@pytest.mark.timeout(600)
def test_killed_driver_gives_a_clear_error_and_is_replaced(workdir):
    """With replay off, a session ends with its driver: its client learns at once."""
    work = workdir / "pool-kill"
    work.mkdir()
    gw = Sparkgate.with_config(work, pool_toml(work, first_driver_port(), min_drivers=1, max_drivers=1,
                                               tenant_keys="replay_sessions = false"), "gw")
    gw.start()
    try:
        run_sql(gw.port, "create table survivor as select id from range(0, 1000)")
        conn = hive.connect("127.0.0.1", gw.port, username="carl", auth="NONE")
        cur = conn.cursor()
        cur.execute("select count(*) from range(0, 20000000000, 1, 4)", async_=True)
        time.sleep(2)
        victims = driver_pids(work)
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            while True:
                state = cur.poll().operationState
                assert state in (0, 1, 7), state  # initialized, running, pending
                time.sleep(0.2)
        assert time.monotonic() - started < 15, "the client learns within seconds"
        assert "Spark Thrift Server" in str(raised.value) or "sparkgate" in str(raised.value), raised.value
        conn.close()
        # A new driver replaces it; the next session succeeds there.
        assert session_tenant(gw.port, "carl", check_query=False) == "pooled"
        log = gw.log_text()
        # Whichever notices first: the reconcile pass (the process exited) or a call (refused).
        assert "driver lost" in log or "driver refused a connection" in log, log[-3000:]
        new = driver_pids(work)
        assert len(new) == 1 and new != victims
        assert run_sql(gw.port, "select count(*), sum(id) from survivor") == [(1000, 499500)], \
            "the table outlives the killed driver"
        # The catalog itself killed: sparkgate restarts it on the same port; queries go on.
        catalog = catalog_pid(work, "pooled")
        port = catalog_state(work, "pooled")["port"]
        os.kill(catalog, signal.SIGKILL)
        wait_for("the catalog to be restarted",
                 lambda: catalog_pid(work, "pooled") not in (None, catalog), 30, every=0.5)
        assert catalog_state(work, "pooled")["port"] == port
        assert run_sql(gw.port, "select count(*) from survivor") == [(1000,)]
        assert "tenant catalog died while drivers use it" in gw.log_text()
    finally:
        gw.stop()
    wait_for("no driver process left", lambda: driver_pids(work) == [], 60, every=0.5)


@pytest.mark.timeout(600)
def test_a_session_survives_its_killed_driver_with_its_state(workdir):
    """kill -9 under a session that chose a database, set configs and made a temporary view: the
    statement in flight fails saying the session moved; the next ones see all of it. A replay
    that cannot succeed ends the session with a clear error."""
    work = workdir / "pool-replay"
    work.mkdir()
    gw = Sparkgate.with_config(work, pool_toml(work, first_driver_port(), min_drivers=2, max_drivers=2), "gw")
    gw.start()
    try:
        run_sql(gw.port, "create database if not exists replay_db",
                "create table replay_db.facts as select id from range(0, 10)")
        wait_for("two drivers", lambda: len(driver_pids(work)) == 2, 200, every=0.5)
        conn = hive.connect("127.0.0.1", gw.port, username="rita", auth="NONE")
        cur = conn.cursor()
        for statement in ["USE replay_db", "SET spark.sql.shuffle.partitions=3", "SET replay.marker=kept",
                          "CREATE TEMPORARY VIEW evens AS SELECT id FROM facts WHERE id % 2 = 0",
                          "CREATE TEMPORARY VIEW dropped AS SELECT 1 AS one", "DROP VIEW dropped"]:
            cur.execute(statement)
        cur.execute("SELECT count(*) FROM evens")
        assert cur.fetchall() == [(5,)]
        first = session_driver(gw, "rita")
        cur.execute("SELECT reflect('java.lang.Thread', 'sleep', cast(60000 as bigint))", async_=True)
        time.sleep(1)
        os.kill(driver_pid_on(work, first), signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(hive.OperationalError) as raised:
            while True:
                assert cur.poll().operationState in (0, 1, 7)
                time.sleep(0.2)
        failover = time.monotonic() - killed
        message = str(raised.value)
        assert "moved to another driver" in message and "retry" in message, message
        assert failover < 15, f"the in-flight statement failed {failover:.1f} s after the kill"
        # The next statements: same database, settings and temporary views, on the other driver.
        cur.execute("SELECT count(*) FROM evens")
        assert cur.fetchall() == [(5,)]
        cur.execute("SELECT current_database()")
        assert cur.fetchall() == [("replay_db",)]
        cur.execute("SET replay.marker")
        assert cur.fetchall() == [("replay.marker", "kept")]
        cur.execute("SET spark.sql.shuffle.partitions")
        assert cur.fetchall() == [("spark.sql.shuffle.partitions", "3")]
        with pytest.raises(hive.OperationalError, match="TABLE_OR_VIEW_NOT_FOUND"):
            cur.execute("SELECT * FROM dropped")
        (moved,) = [line for line in gw.log_text().splitlines() if "with its state replayed" in line]
        assert f"from={first}" in moved and "replayed=5" in moved, moved
        conn.close()
        print(f"\n[pools] driver killed under a session: in-flight statement failed and the session moved "
              f"(state replayed on the other ready driver) in {failover:.1f} s")

        # A replay that cannot succeed (the file it added is gone) ends the session, saying why.
        extra = work / "lookup.csv"
        extra.write_text("a,b\n")
        conn = hive.connect("127.0.0.1", gw.port, username="ulla", auth="NONE")
        cur = conn.cursor()
        cur.execute(f"ADD FILE {extra}")
        extra.unlink()
        wait_for("a second driver again", lambda: len(driver_pids(work)) == 2, 200, every=0.5)
        os.kill(driver_pid_on(work, session_driver(gw, "ulla")), signal.SIGKILL)
        with pytest.raises(hive.OperationalError) as raised:
            cur.execute("SELECT 1")
        message = str(raised.value)
        assert "could not move to another driver" in message and "ADD FILE" in message, message
        with pytest.raises(hive.OperationalError, match="Invalid session handle"):
            cur.execute("SELECT 1")
    finally:
        gw.stop()
    wait_for("no driver process left", lambda: driver_pids(work) == [], 60, every=0.5)


@pytest.mark.timeout(600)
def test_restarted_sparkgate_adopts_its_drivers(workdir):
    work = workdir / "pool-adopt"
    work.mkdir()
    first_port = first_driver_port()
    admin_port = free_port()
    config = pool_toml(work, first_port, min_drivers=1, max_drivers=1, stop_on_exit=False, admin_port=admin_port)
    gw = Sparkgate.with_config(work, config, "gw1")
    gw.start()
    try:
        assert session_tenant(gw.port, "carl", check_query=False) == "pooled"
        run_sql(gw.port, "create table across_runs (v string)", "insert into across_runs values ('first run')")
        before = driver_pids(work)
        assert len(before) == 1
        catalog_before = catalog_pid(work, "pooled")
    finally:
        gw.stop()
    assert driver_pids(work) == before, "stop_drivers_on_exit = false keeps the driver running"
    assert catalog_pid(work, "pooled") == catalog_before, "and its catalog"
    gw2 = Sparkgate.with_config(work, config.replace("stop_drivers_on_exit = false", "stop_drivers_on_exit = true"), "gw2")
    gw2.start()
    try:
        started = time.monotonic()
        assert session_tenant(gw2.port, "carl", check_query=False) == "pooled"
        assert time.monotonic() - started < 10, "an adopted driver needs no cold start"
        assert "adopted a driver" in gw2.log_text()
        assert driver_pids(work) == before, "adopted, not duplicated"
        assert catalog_pid(work, "pooled") == catalog_before, "the catalog adopted too"
        assert run_sql(gw2.port, "select v from across_runs") == [("first run",)]
        # The admin port shows it, and can drain it.
        admin = f"http://127.0.0.1:{admin_port}"
        assert urllib.request.urlopen(f"{admin}/healthz", timeout=5).read() == b"ok\n"
        assert urllib.request.urlopen(f"{admin}/readyz", timeout=5).status == 200
        drivers = json.loads(urllib.request.urlopen(f"{admin}/api/v1/drivers", timeout=5).read())
        assert [(d["tenant"], d["state"]) for d in drivers] == [("pooled", "ready")], drivers
        metrics = urllib.request.urlopen(f"{admin}/metrics", timeout=5).read().decode()
        assert 'sparkgate_drivers{tenant="pooled",state="ready"} 1' in metrics, metrics
        assert "sparkgate_sessions" in metrics and "sparkgate_queue_wait_seconds" in metrics
        assert 'sparkgate_running_operations{tenant="pooled"}' in metrics, metrics
        assert f'sparkgate_backend_connections{{driver="{drivers[0]["address"]}"}}' in metrics, metrics
        held = hive.connect("127.0.0.1", gw2.port, username="carl", auth="NONE")
        sessions = json.loads(urllib.request.urlopen(f"{admin}/api/v1/sessions", timeout=5).read())
        assert [(s["user"], s["tenant"]) for s in sessions] == [("carl", "pooled")], sessions
        held.close()
        drain = urllib.request.Request(f"{admin}/api/v1/drivers/{drivers[0]['id']}/drain", method="POST")
        assert urllib.request.urlopen(drain, timeout=5).status == 202
        missing = urllib.request.Request(f"{admin}/api/v1/drivers/nope/drain", method="POST")
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(missing, timeout=5)
        assert raised.value.code == 404
        wait_for("the drained driver to stop", lambda: before[0] not in driver_pids(work), 60, every=0.5)
    finally:
        gw2.stop()
    wait_for("no orphan driver after the second run stopped", lambda: driver_pids(work) == [], 60, every=0.5)
    wait_for("no catalog left after the second run stopped", lambda: catalog_pid(work, "pooled") is None, 60, every=0.5)
    # A third run starts everything afresh: new driver, new catalog process, the same tables.
    gw3 = Sparkgate.with_config(work, config.replace("stop_drivers_on_exit = false", "stop_drivers_on_exit = true"), "gw3")
    gw3.start()
    try:
        assert run_sql(gw3.port, "insert into across_runs values ('third run')",
                       "select v from across_runs order by v") == [("first run",), ("third run",)]
    finally:
        gw3.stop()
    wait_for("nothing left after the third run",
             lambda: driver_pids(work) == [] and catalog_pid(work, "pooled") is None, 60, every=0.5)


@pytest.mark.timeout(900)
def test_step_load_grows_the_pool_and_idle_shrinks_it(workdir):
    work = workdir / "pool-step"
    work.mkdir()
    gw = Sparkgate.with_config(
        work, pool_toml(work, first_driver_port(), min_drivers=1, max_drivers=2, idle_ttl="8s", target=2), "gw"
    )
    gw.start()
    try:
        assert session_tenant(gw.port, "carl", check_query=False) == "pooled"  # the first driver is up
        drivers_seen = set()
        errors = []
        queries = []
        enough = threading.Event()

        # Load until the pool has grown, then stop: the test is about the pool following the
        # load, not about how fast a busy machine runs a fixed amount of work. Each query is
        # short, so a client stops soon after it is told to.
        def client():
            try:
                conn = hive.connect("127.0.0.1", gw.port, username="load", auth="NONE")
                cur = conn.cursor()
                while not enough.is_set():
                    cur.execute("select count(*) from range(0, 50000000, 1, 2)")
                    cur.fetchall()
                    queries.append(1)
                conn.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        clients = [threading.Thread(target=client) for _ in range(6)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and not errors:
                drivers_seen.add(len(driver_pids(work)))
                if max(drivers_seen) >= 2 and "scaling up" in gw.log_text():
                    break
                time.sleep(1)
        finally:
            enough.set()
            for c in clients:
                c.join(300)
        print(f"[pools] {len(queries)} load queries ran; drivers seen: {sorted(drivers_seen)}")
        assert not any(c.is_alive() for c in clients), "load clients finished"
        assert not errors, errors
        assert queries, "load queries ran"
        assert max(drivers_seen) >= 2, f"the pool grew under load: {sorted(drivers_seen)}"
        assert "scaling up" in gw.log_text()
        # Load gone: back to min_drivers after the idle TTL.
        wait_for("the pool to shrink back to 1 driver", lambda: len(driver_pids(work)) == 1, 120, every=0.5)
    finally:
        gw.stop()
    wait_for("no driver process left", lambda: driver_pids(work) == [], 60, every=0.5)


@pytest.mark.timeout(600)
def test_two_tenants_each_run_on_their_own_drivers(workdir):
    work = workdir / "pool-two"
    work.mkdir()
    admin_port = free_port()
    config = pool_toml(work, first_driver_port(), min_drivers=1, max_drivers=1, admin_port=admin_port).replace(
        'users = ["*"]', 'users = ["alice"]'
    ) + """
[[tenants]]
name = "second"
users = ["bob"]
launcher = "local"
driver_memory = "600m"
[tenants.scaling]
min_drivers = 1
max_drivers = 1
"""
    gw = Sparkgate.with_config(work, config, "gw")
    gw.start()
    try:
        def tenant_of(user: str, ask: str | None = None) -> str:
            conf = {"sparkgate.tenant": ask} if ask else None
            conn = hive.connect("127.0.0.1", gw.port, username=user, auth="NONE", configuration=conf)
            try:
                cur = conn.cursor()
                cur.execute("SET spark.sparkgate.tenant")
                return cur.fetchall()[0][1]
            finally:
                conn.close()

        for _ in range(3):
            assert tenant_of("alice") == "pooled"
            assert tenant_of("bob") == "second"
        # Asking for the other tenant is refused, not routed.
        with pytest.raises(Exception) as raised:
            tenant_of("alice", ask="second")
        assert "may not use tenant" in str(raised.value)
        drivers = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/api/v1/drivers", timeout=5).read())
        by_tenant = {d["tenant"]: d for d in drivers}
        assert sorted(by_tenant) == ["pooled", "second"], drivers
        assert by_tenant["pooled"]["address"] != by_tenant["second"]["address"]
        assert len(driver_pids(work)) == 2
        # Each tenant its own catalog and warehouse: one's tables are not the other's.
        run_sql(gw.port, "create table mine_a as select 'a' as owner", user="alice")
        run_sql(gw.port, "create table mine_b as select 'b' as owner", user="bob")
        # A Python (PyHive) session gets Hive's one-column SHOW TABLES shape through sparkgate.
        tables = lambda user: sorted(r[0] for r in run_sql(gw.port, "show tables", user=user))
        assert "mine_a" in tables("alice") and "mine_b" not in tables("alice")
        assert "mine_b" in tables("bob") and "mine_a" not in tables("bob")
        with pytest.raises(Exception) as raised:
            run_sql(gw.port, "select * from mine_a", user="bob")
        assert "TABLE_OR_VIEW_NOT_FOUND" in str(raised.value) or "not found" in str(raised.value).lower()
        assert (work / "tenants" / "pooled" / "warehouse" / "mine_a").is_dir()
        assert (work / "tenants" / "second" / "warehouse" / "mine_b").is_dir()
        assert not (work / "tenants" / "second" / "warehouse" / "mine_a").exists()
        assert catalog_state(work, "pooled")["port"] != catalog_state(work, "second")["port"]
        assert catalog_pid(work, "pooled") != catalog_pid(work, "second")
    finally:
        gw.stop()
    wait_for("no driver process left", lambda: driver_pids(work) == [], 60, every=0.5)


@pytest.mark.timeout(600)
def test_a_tenants_drivers_share_its_tables(workdir):
    """Two drivers of one tenant (one session each): a table made on one is read on the other,
    and rows one driver adds are seen by the other at once (no stale per-driver cache)."""
    work = workdir / "pool-shared"
    work.mkdir()
    admin_port = free_port()
    config = pool_toml(work, first_driver_port(), min_drivers=2, max_drivers=2, admin_port=admin_port).replace(
        "[pools]\n", "[pools]\nmax_sessions_per_driver = 1\n")
    gw = Sparkgate.with_config(work, config, "gw")
    gw.start()
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        wait_for("two ready drivers",
                 lambda: [d["state"] for d in json.loads(urllib.request.urlopen(f"{admin}/api/v1/drivers", timeout=5).read())]
                 == ["ready", "ready"], 240, every=0.5)
        first = hive.connect("127.0.0.1", gw.port, username="ann", auth="NONE")
        second = hive.connect("127.0.0.1", gw.port, username="ben", auth="NONE")
        try:
            sessions = json.loads(urllib.request.urlopen(f"{admin}/api/v1/sessions", timeout=5).read())
            drivers = {s["user"]: s["driver"] for s in sessions}
            assert drivers["ann"] != drivers["ben"], f"one session per driver: {sessions}"
            a, b = first.cursor(), second.cursor()
            a.execute("create table shared_t (id bigint, who string) using parquet")
            a.execute("insert into shared_t values (1, 'ann')")
            b.execute("select id, who from shared_t")
            assert b.fetchall() == [(1, "ann")], "made on one driver, read on the other"
            b.execute("insert into shared_t values (2, 'ben')")
            a.execute("select id, who from shared_t order by id")
            assert a.fetchall() == [(1, "ann"), (2, "ben")], "rows the other driver wrote are seen at once"
            b.execute("create table made_by_ben as select 42 as answer")
            a.execute("select answer from made_by_ben")
            assert a.fetchall() == [(42,)]
        finally:
            first.close()
            second.close()
    finally:
        gw.stop()
    wait_for("nothing left running",
             lambda: driver_pids(work) == [] and catalog_pid(work, "pooled") is None, 60, every=0.5)
