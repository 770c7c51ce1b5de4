"""Admission control against the suite's real Spark Thrift Server: statements past a tenant's
`max_running_per_driver` wait in sparkgate (PENDING, their place in the operation log), run
when a place frees, never reach the driver when cancelled while queued, are served round robin
across users, and fail with errors naming `queue_timeout` / `max_queued`.

One sparkgate of its own in front of the shared server (a fixed backend: one "driver"), with
four tenants, each one statement at a time per driver and its results cached: `one` (60 s queue
timeout), `brief` (a 2 s queue timeout), `tiny` (one statement queued at most) and `cached`.
"""
from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from pyhive import hive
from TCLIService.ttypes import TOperationState

from harness import Sparkgate

# A statement that holds its place for a known time (one Spark task sleeping).
SLEEP = "SELECT reflect('java.lang.Thread', 'sleep', cast({ms} as bigint)), '{tag}'"


def tagged(tag: str) -> str:
    """A statement that runs a Spark job whose description carries `tag`."""
    return f"SELECT count(*), '{tag}' FROM range(1000)"


@pytest.fixture(scope="module")
def gw(sts, workdir):
    backend = f"127.0.0.1:{sts.port}"
    tenants = "".join(f"""
[[tenants]]
name = "{name}"
users = [{", ".join(f'"{u}"' for u in users)}]
backends = ["{backend}"]
max_running_per_driver = 1
max_queued = {queued}
queue_timeout = "{timeout}"
cache_ttl = "5m"
""" for name, users, queued, timeout in [
        ("one", ["ann", "bob", "heavy", "light"], 50, "60s"),
        ("brief", ["cy"], 10, "2s"),
        ("tiny", ["dee"], 1, "60s"),
        ("cached", ["eve"], 10, "60s"),
    ])
    gateway = Sparkgate.with_config(workdir, f"""
[server]
bind = "127.0.0.1:{{port}}"
[backend]
address = "{backend}"
{tenants}""", "admission-gateway").start()
    yield gateway
    gateway.stop()


def connect(gw, user, jdbc=False):
    # PyHive asks for protocol V6 and is a Python client to sparkgate, which reports a waiting
    # statement as RUNNING to it (PyHive and Superset take PENDING for the end); as a JDBC
    # client it sees PENDING, as beeline does.
    conf = {"sparkgate.client": "jdbc"} if jdbc else None
    return hive.connect("127.0.0.1", gw.port, username=user, configuration=conf)


def state(cursor):
    return cursor.poll().operationState


def wait_final(cursor, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = state(cursor)
        if s not in (TOperationState.INITIALIZED_STATE, TOperationState.PENDING_STATE,
                     TOperationState.RUNNING_STATE):
            return s
        time.sleep(0.2)
    raise AssertionError("statement did not end in time")


def spark_jobs(sts, tag):
    with urllib.request.urlopen(sts.ui_url + "/api/v1/applications", timeout=10) as r:
        app = json.load(r)[0]["id"]
    with urllib.request.urlopen(f"{sts.ui_url}/api/v1/applications/{app}/jobs", timeout=10) as r:
        return [j for j in json.load(r) if tag in (j.get("description") or "")]


def test_second_statement_waits_pending_until_the_first_ends_then_runs(gw, sts):
    tag = f"second-{uuid.uuid4().hex[:8]}"
    with connect(gw, "ann") as a, connect(gw, "bob", jdbc=True) as b:
        first, second = a.cursor(), b.cursor()
        first.execute(SLEEP.format(ms=4000, tag=f"blocker-{tag[::-1]}"), async_=True)
        time.sleep(0.5)
        submitted = time.time()
        second.execute(tagged(tag), async_=True)
        assert time.time() - submitted < 1.0, "an asynchronous statement is answered at once"
        assert state(second) == TOperationState.PENDING_STATE
        log = "\n".join(second.fetch_logs())
        assert "waits in tenant \"one\"'s queue" in log and "0 of 1 queued" in log, log
        assert not spark_jobs(sts, tag), "a queued statement must not reach the driver"
        assert wait_final(first) == TOperationState.FINISHED_STATE
        assert wait_final(second) == TOperationState.FINISHED_STATE
        assert second.fetchall() == [(1000, tag)]
        jobs = spark_jobs(sts, tag)
        assert jobs, "the statement ran on Spark once its turn came"
        # It started after the first ended (Spark's times, same format: they sort as text).
        first_end = max(j["completionTime"] for j in spark_jobs(sts, f"blocker-{tag[::-1]}"))
        assert min(j["submissionTime"] for j in jobs) >= first_end


def test_python_clients_see_running_and_a_synchronous_statement_waits_in_its_call(gw):
    with connect(gw, "ann") as a, connect(gw, "bob") as b:
        blocker, waiting, sync = a.cursor(), b.cursor(), b.cursor()
        blocker.execute(SLEEP.format(ms=3000, tag="blocker"), async_=True)
        time.sleep(0.5)
        waiting.execute("SELECT 2", async_=True)
        # PyHive and Superset stop polling on PENDING: they are told RUNNING.
        assert state(waiting) == TOperationState.RUNNING_STATE
        began = time.time()
        sync.execute("SELECT 3")
        assert sync.fetchall() == [(3,)]
        assert time.time() - began > 1.5, "the synchronous statement waited for its place"
        # Nobody polls the blocker: sparkgate itself saw it end and freed its place.
        assert wait_final(waiting) == TOperationState.FINISHED_STATE
        assert waiting.fetchall() == [(2,)]


def test_a_queued_statement_cancelled_never_reaches_the_driver(gw, sts):
    tag = f"cancelled-{uuid.uuid4().hex[:8]}"
    closed_tag = f"closed-{uuid.uuid4().hex[:8]}"
    with connect(gw, "ann") as a, connect(gw, "bob", jdbc=True) as b:
        blocker, cancelled, closed = a.cursor(), b.cursor(), b.cursor()
        blocker.execute(SLEEP.format(ms=3000, tag="blocker"), async_=True)
        time.sleep(0.5)
        cancelled.execute(tagged(tag), async_=True)
        closed.execute(tagged(closed_tag), async_=True)
        assert state(cancelled) == TOperationState.PENDING_STATE
        cancelled.cancel()
        assert state(cancelled) == TOperationState.CANCELED_STATE
        closed.close()
        assert wait_final(blocker) == TOperationState.FINISHED_STATE
        # The places they held in the queue are gone: the next statement runs at once.
        after = b.cursor()
        began = time.time()
        after.execute("SELECT 4")
        assert after.fetchall() == [(4,)]
        assert time.time() - began < 3.0
    time.sleep(1.0)
    assert not spark_jobs(sts, tag), "a statement cancelled in the queue ran on Spark"
    assert not spark_jobs(sts, closed_tag), "a statement closed in the queue ran on Spark"


def test_one_users_burst_does_not_starve_another(gw, sts):
    run = uuid.uuid4().hex[:8]
    with connect(gw, "ann") as a, connect(gw, "heavy") as h, connect(gw, "light") as lt:
        blocker = a.cursor()
        blocker.execute(SLEEP.format(ms=2000, tag="blocker"), async_=True)
        time.sleep(0.5)
        heavy = []
        for i in range(20):
            cur = h.cursor()
            cur.execute(SLEEP.format(ms=200, tag=f"heavy-{run}-{i:02}"), async_=True)
            heavy.append(cur)
        light = lt.cursor()
        light.execute(SLEEP.format(ms=200, tag=f"light-{run}"), async_=True)
        for cur in [blocker, light, *heavy]:
            assert wait_final(cur, timeout=120) == TOperationState.FINISHED_STATE
    jobs = spark_jobs(sts, run)

    def submitted(prefix):
        return sorted(j["submissionTime"] for j in jobs if f"{prefix}-{run}" in j["description"])
    light_at = submitted("light")[0]
    heavy_before = [t for t in submitted("heavy") if t < light_at]
    assert len(heavy_before) <= 1, f"{len(heavy_before)} of the burst ran before the single statement"
    assert len(submitted("heavy")) >= 20


def test_queue_timeout_and_full_queue_errors_name_the_setting(gw):
    with connect(gw, "cy") as c:
        blocker, waiting = c.cursor(), c.cursor()
        blocker.execute(SLEEP.format(ms=5000, tag="blocker"), async_=True)
        time.sleep(0.5)
        began = time.time()
        with pytest.raises(Exception, match="queue_timeout"):
            waiting.execute("SELECT 5")
        assert 1.5 < time.time() - began < 5.0
        queued = c.cursor()
        queued.execute("SELECT 6", async_=True)
        assert wait_final(queued) == TOperationState.ERROR_STATE
        assert "queue_timeout" in (queued.poll().errorMessage or "")
        assert wait_final(blocker) == TOperationState.FINISHED_STATE
    with connect(gw, "dee") as d:
        blocker, queued, refused = d.cursor(), d.cursor(), d.cursor()
        blocker.execute(SLEEP.format(ms=3000, tag="blocker"), async_=True)
        time.sleep(0.5)
        queued.execute("SELECT 7", async_=True)
        with pytest.raises(Exception, match="max_queued"):
            refused.execute("SELECT 8", async_=True)
        assert wait_final(queued) == TOperationState.FINISHED_STATE
        assert queued.fetchall() == [(7,)]


def test_metadata_calls_cached_results_and_session_settings_never_wait(gw):
    from TCLIService.ttypes import TGetSchemasReq, TGetTablesReq
    with connect(gw, "eve") as warm_conn:
        warm = warm_conn.cursor()
        warm.execute("SELECT 40 + 2 AS warm")
        assert warm.fetchall() == [(42,)]
    with connect(gw, "eve") as a, connect(gw, "eve") as b:
        blocker = a.cursor()
        blocker.execute(SLEEP.format(ms=4000, tag="blocker-meta"), async_=True)
        time.sleep(0.5)
        began = time.time()
        cur = b.cursor()
        cur.execute("SELECT 40 + 2 AS warm")  # a cached result
        assert cur.fetchall() == [(42,)]
        cur.execute("SET spark.sql.shuffle.partitions=3")
        cur.execute("USE default")
        schemas = b.client.GetSchemas(TGetSchemasReq(sessionHandle=b._sessionHandle))
        tables = b.client.GetTables(TGetTablesReq(sessionHandle=b._sessionHandle, schemaName="default"))
        assert schemas.status.statusCode == 0 and tables.status.statusCode == 0
        assert time.time() - began < 2.0, "none of these waited for the blocker's place"
        assert state(blocker) in (TOperationState.RUNNING_STATE, TOperationState.FINISHED_STATE)
        assert wait_final(blocker) == TOperationState.FINISHED_STATE
