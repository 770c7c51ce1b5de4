"""Superset's client (PyHive) and JDBC's through sparkgate, against the suite's real Spark Thrift
Server: answer shapes per client family, statements that can be stopped, progress, time limits,
readable errors and Superset's time grains. The browser side is test_superset.py.

One sparkgate of its own in front of the shared server, with two tenants on it: `capped` (user
"capped": max_query_time 4 s, error_detail "full") and `bi` (everyone else). Its Spark UI
(`sts.ui_url`) is where sparkgate reads progress, and where these tests check that a statement
really stopped running on the driver.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from pyhive import hive
from TCLIService import ttypes

from harness import Sparkgate
from helpers import spark_home, wait_for

SCHEMA = "bi_shapes"
# Many small tasks, so a job's progress moves in steps; about 30 s on the suite's local[2] (tests
# that stop it do so within seconds).
SLOW_SQL = ("SELECT /*{tag}*/ count(*) FROM range(0, 2000000000, 1, 64) a "
            "WHERE hash(a.id, 'x') % 1000 = 7 AND sha2(cast(a.id AS string), 256) > 'f'")
# Superset's own patterns (superset/db_engine_specs/hive.py, 6.1).
LAUNCHING_JOB = re.compile(r".*INFO.*Launching Job (?P<job_number>[0-9]+) out of (?P<max_jobs>[0-9]+)")
STAGE_PROGRESS = re.compile(
    r".*INFO.*Stage-(?P<stage_number>[0-9]+).*map = (?P<map_progress>[0-9]+)%.*reduce = (?P<reduce_progress>[0-9]+)%.*")


@pytest.fixture(scope="module")
def bi(sts, workdir):
    assert sts.ui_url, "the shared Spark Thrift Server must have its UI on"
    backend = f"127.0.0.1:{sts.port}"
    gateway = Sparkgate.with_config(workdir, f"""
[server]
bind = "127.0.0.1:{{port}}"
[backend]
address = "{backend}"
[[tenants]]
name = "capped"
users = ["capped"]
backends = ["{backend}"]
spark_ui = {{ "{backend}" = "{sts.ui_url}" }}
max_query_time = "4s"
error_detail = "full"
[[tenants]]
name = "bi"
users = ["*"]
backends = ["{backend}"]
spark_ui = {{ "{backend}" = "{sts.ui_url}" }}
""", "bi-gateway").start()
    with hive.connect("127.0.0.1", gateway.port, username="setup").cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.facts (id INT, ts TIMESTAMP) USING parquet")
        cur.execute(f"INSERT OVERWRITE {SCHEMA}.facts VALUES (1, timestamp'2024-01-03 10:11:12')")
        cur.execute(f"CREATE OR REPLACE VIEW {SCHEMA}.recent AS SELECT * FROM {SCHEMA}.facts")
    try:
        yield gateway
    finally:
        gateway.stop()


def running_jobs(sts, tag: str) -> list[dict]:
    """The jobs running on the driver now for the statement carrying `tag` (from Spark's UI)."""
    def get(path: str):
        with urllib.request.urlopen(sts.ui_url + path, timeout=10) as r:
            return json.load(r)
    app = get("/api/v1/applications")[0]["id"]
    jobs = get(f"/api/v1/applications/{app}/jobs?status=running")
    return [j for j in jobs if tag in (j.get("description") or "")]


def wait_running(sts, tag: str, timeout: float = 60.0) -> None:
    wait_for(f"a Spark job of {tag} running on the driver", lambda: running_jobs(sts, tag), timeout)


def wait_stopped(sts, tag: str, within: float) -> float:
    """Seconds until no job of `tag` runs on the driver; fails past `within`."""
    started = time.monotonic()
    wait_for(f"the Spark jobs of {tag} to stop", lambda: not running_jobs(sts, tag), within, every=0.2)
    return time.monotonic() - started


def beeline(port: int, sql: str, *args: str, user: str = "jdbc") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/default", "-n", user,
         *args, "-e", sql],
        check=False, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)


def test_python_clients_read_table_and_view_names_jdbc_gets_sparks_shape(bi):
    with hive.connect("127.0.0.1", bi.port, username="analyst").cursor() as cur:
        cur.execute(f"SHOW TABLES IN `{SCHEMA}`")
        assert [d[0] for d in cur.description] == ["tableName"]
        assert sorted(cur.fetchall()) == [("facts",), ("recent",)]
        # Superset's own view list: row[0] of SHOW VIEWS.
        cur.execute(f"SHOW VIEWS IN `{SCHEMA}`")
        assert cur.fetchall() == [("recent",)]
        # Everything else keeps Spark's shape.
        cur.execute("SHOW SCHEMAS")
        assert (SCHEMA,) in cur.fetchall()
        cur.execute(f"DESCRIBE {SCHEMA}.facts")
        assert [r[0] for r in cur.fetchall()][:2] == ["id", "ts"]

    # What Superset calls: SQLAlchemy's hive:// dialect (PyHive) lists names, not namespaces.
    from sqlalchemy import create_engine, inspect
    engine = create_engine(f"hive://analyst@127.0.0.1:{bi.port}/default")
    try:
        names = inspect(engine).get_table_names(schema=SCHEMA)
    finally:
        engine.dispose()
    assert sorted(names) == ["facts", "recent"]

    jdbc = beeline(bi.port, f"SHOW TABLES IN {SCHEMA}", "--outputformat=csv2")
    assert jdbc.returncode == 0, jdbc.stderr[-2000:]
    assert "namespace,tableName,isTemporary" in jdbc.stdout
    assert f"{SCHEMA},facts,false" in jdbc.stdout


def test_a_client_may_name_its_family(bi):
    conn = hive.connect("127.0.0.1", bi.port, username="analyst", configuration={"sparkgate.client": "jdbc"})
    with conn.cursor() as cur:
        cur.execute(f"SHOW TABLES IN {SCHEMA}")
        assert [d[0] for d in cur.description] == ["namespace", "tableName", "isTemporary"]
    with pytest.raises(Exception, match="unknown sparkgate.client"):
        hive.connect("127.0.0.1", bi.port, username="analyst", configuration={"sparkgate.client": "odbc"})


def test_a_synchronous_statement_answers_as_the_driver_would(bi, sts):
    # Same rows, same failure shape as the Spark Thrift Server itself (for everything the
    # client reads: status, SQLSTATE and the message's start).
    for port in (bi.port, sts.port):
        with hive.connect("127.0.0.1", port, username="analyst").cursor() as cur:
            cur.execute(f"SELECT id, ts FROM {SCHEMA}.facts")
            assert [(i, str(ts)) for i, ts in cur.fetchall()] == [(1, "2024-01-03 10:11:12")]
            with pytest.raises(hive.OperationalError) as failed:
                cur.execute("SELECT * FROM bi_shapes.no_such_table")
            status = failed.value.args[0].status
            assert status.statusCode == ttypes.TStatusCode.ERROR_STATUS
            assert status.sqlState == "42P01"
            assert "TABLE_OR_VIEW_NOT_FOUND" in status.errorMessage


def test_errors_are_concise_for_python_clients_full_for_jdbc_and_by_tenant(bi):
    # Superset shows the sync reply's text (charts) and the status call's (SQL Lab).
    with hive.connect("127.0.0.1", bi.port, username="analyst").cursor() as cur:
        with pytest.raises(hive.OperationalError) as failed:
            cur.execute("SELECT * FROM bi_shapes.no_such_table")
        status = failed.value.args[0].status
        assert status.errorMessage.startswith("[TABLE_OR_VIEW_NOT_FOUND] The table or view"), status.errorMessage
        assert "SQLSTATE: 42P01" in status.errorMessage
        assert "\tat " not in status.errorMessage and not status.infoMessages
        assert len(status.errorMessage) < 1000
        cur.execute("SELECT * FROM bi_shapes.no_such_table", async_=True)
        polled = wait_for("the statement to fail", lambda: (
            p := cur.poll()).operationState == ttypes.TOperationState.ERROR_STATE and p, 30)
        assert polled.errorMessage.startswith("[TABLE_OR_VIEW_NOT_FOUND]"), polled.errorMessage
        assert "\tat " not in polled.errorMessage and len(polled.errorMessage) < 1000
    # The capped tenant says error_detail = "full": Spark's whole text, frames included.
    with hive.connect("127.0.0.1", bi.port, username="capped").cursor() as cur:
        cur.execute("SELECT * FROM bi_shapes.no_such_table", async_=True)
        polled = wait_for("the statement to fail", lambda: (
            p := cur.poll()).operationState == ttypes.TOperationState.ERROR_STATE and p, 30)
        assert "\tat org.apache.spark" in polled.errorMessage
    # JDBC keeps the detail it prints.
    jdbc = beeline(bi.port, "SELECT * FROM bi_shapes.no_such_table")
    assert "HiveSQLException" in jdbc.stderr + jdbc.stdout
    assert "Caused by: org.apache.spark.sql.AnalysisException" in jdbc.stderr + jdbc.stdout


def test_status_answers_python_clients_at_once_and_stop_reaches_the_driver(bi, sts):
    tag = f"stop-{uuid.uuid4().hex[:8]}"
    with hive.connect("127.0.0.1", bi.port, username="analyst").cursor() as cur:
        started = time.monotonic()
        cur.execute(SLOW_SQL.format(tag=tag), async_=True)
        wait_running(sts, tag)
        # Polls in a statement's first 5 s are held (a short one ends within them); past that,
        # Superset sleeps 5 s between polls: each poll must not hold it another 5 s.
        time.sleep(max(0.0, 5.5 - (time.monotonic() - started)))
        took = []
        for _ in range(3):
            started = time.monotonic()
            state = cur.poll().operationState
            took.append(time.monotonic() - started)
            assert state == ttypes.TOperationState.RUNNING_STATE
        assert max(took) < 1.5, took
        cur.cancel()
        print(f"\n[bi] status call while running: {max(took):.2f} s at most;", end=" ")
        print(f"cancel -> driver job gone in {wait_stopped(sts, tag, 10):.1f} s")


def test_closing_the_operation_or_disconnecting_cancels_the_statement(bi, sts):
    tag = f"close-{uuid.uuid4().hex[:8]}"
    conn = hive.connect("127.0.0.1", bi.port, username="analyst")
    cur = conn.cursor()
    cur.execute(SLOW_SQL.format(tag=tag), async_=True)
    wait_running(sts, tag)
    cur.close()
    print(f"\n[bi] CloseOperation -> driver job gone in {wait_stopped(sts, tag, 10):.1f} s")
    conn.close()

    # A synchronous statement (a Superset chart) whose client goes away mid-query.
    tag = f"gone-{uuid.uuid4().hex[:8]}"
    conn = hive.connect("127.0.0.1", bi.port, username="analyst")
    failure: list[BaseException] = []

    def run():
        try:
            conn.cursor().execute(SLOW_SQL.format(tag=tag))
        except Exception as e:  # noqa: BLE001 - the socket is shut under it: any failure will do
            failure.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_running(sts, tag)
    conn._transport._trans.handle.shutdown(socket.SHUT_RDWR)  # the client is gone
    print(f"[bi] client disconnect mid-statement -> driver job gone in {wait_stopped(sts, tag, 10):.1f} s")
    thread.join(30)
    assert failure, "the statement should not have completed"


def test_a_tenants_max_query_time_cancels_and_names_the_limit(bi, sts):
    tag = f"cap-{uuid.uuid4().hex[:8]}"
    with hive.connect("127.0.0.1", bi.port, username="capped").cursor() as cur:
        started = time.monotonic()
        with pytest.raises(hive.OperationalError) as failed:
            cur.execute(SLOW_SQL.format(tag=tag))
        took = time.monotonic() - started
        message = failed.value.args[0].status.errorMessage
        assert "max_query_time" in message and "capped" in message, message
        assert 4 <= took < 15, took
        assert not running_jobs(sts, tag)
        # Asynchronous: the status call reports it.
        tag = f"cap-async-{uuid.uuid4().hex[:8]}"
        cur.execute(SLOW_SQL.format(tag=tag), async_=True)
        polled = wait_for("the limit", lambda: (
            p := cur.poll()).operationState == ttypes.TOperationState.ERROR_STATE and p, 20)
        assert "max_query_time" in polled.errorMessage
        wait_stopped(sts, tag, 10)
    print(f"\n[bi] max_query_time 4 s: synchronous statement failed after {took:.1f} s")


def test_progress_shows_in_superset_log_lines_and_in_beelines_update(bi, sts):
    tag = f"progress-{uuid.uuid4().hex[:8]}"
    conn = hive.connect("127.0.0.1", bi.port, username="analyst")
    cur = conn.cursor()
    cur.execute(SLOW_SQL.format(tag=tag), async_=True)
    lines: list[str] = []
    best, updates = 0.0, []
    while cur.poll().operationState in (ttypes.TOperationState.INITIALIZED_STATE,
                                        ttypes.TOperationState.RUNNING_STATE):
        lines += cur.fetch_logs()
        # What beeline asks (getProgressUpdate) on the same operation.
        status = conn.client.GetOperationStatus(
            ttypes.TGetOperationStatusReq(operationHandle=cur._operationHandle, getProgressUpdate=True))
        if status.progressUpdateResponse is not None:
            updates.append(status.progressUpdateResponse)
        best = max(best, superset_progress(lines))
        time.sleep(1)
    cur.close()
    conn.close()
    assert any(LAUNCHING_JOB.match(line) for line in lines), lines
    assert 0 < best <= 100, (best, lines)
    tracking = [line.split("Tracking URL = ")[1] for line in lines if "Tracking URL = " in line]
    assert tracking and tracking[0].startswith(f"{sts.ui_url}/jobs/job/?id="), lines
    running = [u for u in updates if u.status == ttypes.TJobExecutionStatus.IN_PROGRESS and u.rows]
    assert running, updates
    assert len(running[0].headerNames) == 9 and len(running[0].rows[0]) == 9
    assert max(u.progressedPercentage for u in running) > 0
    print(f"\n[bi] Superset's progress from sparkgate's log lines reached {best} %;"
          f" {len(running)} progress updates for beeline")


def superset_progress(lines: list[str]) -> int:
    """Superset's HiveEngineSpec.progress, with its patterns."""
    total, current, stages = 1, 1, {}
    for line in lines:
        if m := LAUNCHING_JOB.match(line):
            current, total, stages = int(m["job_number"]), int(m["max_jobs"]) or 1, {}
        if m := STAGE_PROGRESS.match(line):
            stages[int(m["stage_number"])] = (int(m["map_progress"]) + int(m["reduce_progress"])) / 2
    stage = sum(stages.values()) / len(stages) if stages else 0
    return int(100 * (current - 1) / total + stage / total)


def superset_time_grains(home: Path) -> dict[str, str]:
    """The time grain expressions Superset 6.1 offers for hive:// (HiveEngineSpec), read from the
    installed Superset itself."""
    from superset_server import require_venv, superset_env, write_config
    venv = require_venv()
    write_config(home)
    script = ("from superset.app import create_app\n"
              "app = create_app()\n"
              "with app.app_context():\n"
              "    from superset.db_engine_specs.hive import HiveEngineSpec\n"
              "    import json\n"
              "    print('GRAINS=' + json.dumps({str(k): v for k, v in"
              " HiveEngineSpec._time_grain_expressions.items()}))\n")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", script], check=False, capture_output=True, text=True,
                         env=superset_env(venv, home), timeout=300)
    found = [line for line in out.stdout.splitlines() if line.startswith("GRAINS=")]
    assert found, out.stderr[-3000:]
    return json.loads(found[0][len("GRAINS="):])


# 2024-01-03 10:11:12 is a Wednesday.
EXPECTED_GRAINS = {
    "None": "2024-01-03 10:11:12",
    "PT1S": "2024-01-03 10:11:12",
    "PT1M": "2024-01-03 10:11:00",
    "PT1H": "2024-01-03 10:00:00",
    "P1D": "2024-01-03 00:00:00",
    # Superset's Hive expression: date_sub(ts, 7 - day-of-week), as Hive computes it.
    "P1W": "2023-12-30 00:00:00",
    "P1M": "2024-01-01 00:00:00",
    "P3M": "2024-01-01 00:00:00",
    "P1Y": "2024-01-01 00:00:00",
    "P1W/1970-01-03T00:00:00Z": "2024-01-06 00:00:00",
    "1969-12-28T00:00:00Z/P1W": "2023-12-31 00:00:00",
}


@pytest.fixture(scope="module")
def grains(tmp_path_factory) -> dict[str, str]:
    return superset_time_grains(tmp_path_factory.mktemp("superset-grains"))


def test_superset_offers_these_time_grains_and_spark_refuses_its_weekly_ones(bi, sts, grains):
    assert set(grains) == set(EXPECTED_GRAINS), sorted(grains)
    failed_directly = []
    with hive.connect("127.0.0.1", sts.port, username="analyst").cursor() as direct:
        for grain, expression in grains.items():
            try:
                direct.execute(f"SELECT {expression.format(col='ts')} FROM {SCHEMA}.facts")
            except hive.OperationalError as e:
                failed_directly.append(grain)
                # The cause: Spark's own datetime patterns refuse Hive's day-of-week 'u'.
                assert "DATETIME_PATTERN_RECOGNITION" in e.args[0].status.errorMessage
    assert "P1W" in failed_directly
    print(f"\n[bi] directly against the Spark Thrift Server these grains fail: {failed_directly}")


@pytest.mark.parametrize("grain", sorted(EXPECTED_GRAINS))
def test_each_superset_time_grain_works_through_sparkgate(bi, grains, grain):
    sql = f"SELECT {grains[grain].format(col='ts')} FROM {SCHEMA}.facts"
    with hive.connect("127.0.0.1", bi.port, username="analyst").cursor() as cur:
        cur.execute(sql)
        assert str(cur.fetchall()[0][0]) == EXPECTED_GRAINS[grain], sql
