"""Apache Superset 6.1 in real headless Chromium, through sparkgate to the suite's Spark Thrift Server.

ONE Superset (integration/superset_server.py: gunicorn, SQLite metadata copied from a cached
template, SQL Lab in the web request, no Celery: see that module's docstring) and ONE Chromium for
the module; a sparkgate of its own in front of the shared Spark Thrift Server (backend.spark_ui =
its Spark UI, where sparkgate reads progress), which Superset reaches as
hive://superset@127.0.0.1:PORT/default. The test data (integration/superset_server.py
TEST_DDL: schema superset_test, a fact table over six weeks, a dimension table, a view) is made on
the Spark Thrift Server directly.

What a user sees is checked in the browser: the database modal's "Test connection", a dashboard of
seven charts, SQL Lab's schema tree (tables and views with their icons, columns), a slow query's
progress, Stop, and an error. Setup that is no user story (datasets, charts, the dashboard) goes
through the REST API. On failure, a screenshot of the page is left in the Superset dir
(SPARKGATE_IT_KEEP=1 keeps it).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import Sparkgate
from helpers import wait_for
from superset_server import (
    TEST_CHARTS,
    TEST_SCHEMA,
    TEST_TABLES,
    TEST_VIEW,
    SupersetApi,
    SupersetBrowser,
    SupersetServer,
    create_test_dashboard,
    create_test_data,
    open_dashboard,
    sqllab_expand,
    sqllab_open,
    sqllab_progress,
    sqllab_run,
    sqllab_status,
    sqllab_stop,
    sqllab_wait_done,
    ui_add_database,
)

DATABASE = "sparkgate"
# 25 s on local[2] here on an idle machine (~50 s while cargo builds beside it), in several stages:
# 160M rows ranged in 16 tasks with a partial aggregation, a shuffle, the final aggregation, a top-N.
# The marker (a column alias) finds the statement in the driver's log: Superset reformats the SQL
# and drops comments.
SLOW_SQL = ("SELECT k, count(*) AS c, sum(v) AS {marker} FROM (SELECT id % 1009 AS k, id * 3 AS v "
            "FROM range(0, 160000000, 1, 16)) GROUP BY k ORDER BY {marker} DESC LIMIT 5")
MISSING_TABLE_SQL = f"SELECT * FROM {TEST_SCHEMA}.no_such_table"
# Superset's HiveEngineSpec.handle_cursor polls every 5 s; Stop takes effect at its next poll.
STOP_DEADLINE = 8.0


@dataclass(frozen=True)
class Target:
    """Where Superset's database points: sparkgate, or (SPARKGATE_SUPERSET_DIRECT=1, for baseline
    figures by hand) the Spark Thrift Server itself."""

    label: str
    port: int
    # sparkgate's log (through sparkgate): where the cache's hits are counted.
    log: Path | None = None

    @property
    def uri(self) -> str:
        return f"hive://superset@127.0.0.1:{self.port}/default"


@pytest.fixture(scope="module")
def target(sts, workdir):
    if os.environ.get("SPARKGATE_SUPERSET_DIRECT"):
        yield Target("directly", sts.port)
        return
    # sparkgate reads statements' progress from the backend's Spark UI when it is told where that is.
    ui = f'spark_ui = "{sts.ui_url}"\n' if getattr(sts, "ui_url", None) else ""
    gw = Sparkgate.with_config(workdir, f'[server]\nbind = "127.0.0.1:{{port}}"\n'
                               f'[backend]\naddress = "127.0.0.1:{sts.port}"\n{ui}'
                               # The result cache on (README "Result cache"): a dashboard's second
                               # load is served from it.
                               '[cache]\nttl = "5m"\n', "gateway-superset")
    try:
        gw.start()
        yield Target("through sparkgate", gw.port, gw.log)
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def test_data(sts):
    started = time.monotonic()
    create_test_data("127.0.0.1", sts.port)
    print(f"\n[superset] test schema {TEST_SCHEMA} made in {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="module")
def superset(workdir):
    server = SupersetServer(workdir / "superset")
    module_started = time.monotonic()
    try:
        server.start()
        print(f"\n[superset] Superset ready on {server.port} in {server.startup_seconds:.1f} s")
        yield server
    finally:
        server.stop()
        print(f"\n[superset] module wall time with Superset: {time.monotonic() - module_started:.1f} s")


@pytest.fixture(scope="module")
def api(superset) -> SupersetApi:
    return SupersetApi(superset.url).login()


@pytest.fixture(scope="module")
def browser(superset):
    started = time.monotonic()
    b = SupersetBrowser(superset.url, artifacts=superset.home / "screenshots").start()
    print(f"\n[superset] Chromium started and logged in in {time.monotonic() - started:.1f} s")
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser, superset, request):
    """A fresh tab; if the test fails, a screenshot of it is saved and named in the output, and
    what Superset logged meanwhile is shown."""
    failed_before = request.session.testsfailed
    log_offset = superset.log.stat().st_size if superset.log.exists() else 0
    p = browser.new_page()
    try:
        yield p
    finally:
        if request.session.testsfailed > failed_before:
            shot = browser.screenshot(p, request.node.name)
            if shot:
                print(f"\n[superset] screenshot of the failing page: {shot}")
            with open(superset.log, "rb") as f:
                f.seek(log_offset)
                lines = f.read().decode(errors="replace").splitlines()
            errors = [line[:300] for line in lines if "ERROR" in line or "Traceback" in line]
            print("[superset] Superset's errors during the test (last 20):\n" + "\n".join(errors[-20:]))
        p.close()


@pytest.fixture(scope="module")
def database(api, target) -> int:
    """The id of the database the first test adds through the UI; added through the API when that
    test did not run or failed before adding it, so the later tests still test their own part."""
    return api.database_id(DATABASE) or api.add_database(DATABASE, target.uri)


@pytest.fixture(scope="module")
def datasets(api, database, test_data) -> dict[str, int]:
    existing = {d["table_name"]: d["id"] for d in api.datasets(database) if d["schema"] == TEST_SCHEMA}
    return {t: existing.get(t) or api.create_dataset(database, TEST_SCHEMA, t) for t in (*TEST_TABLES, TEST_VIEW)}


# ---- the driver: is a statement's Spark job still running? --------------------------------------

def statement_id(log: str, marker: str) -> str | None:
    """The statement id (= its Spark job group) the Spark Thrift Server logged for the SQL holding `marker`."""
    for sql, sid in re.findall(r"Submitting query '(.*?)' with ([0-9a-f-]{36})", log, re.DOTALL):
        if marker in sql:
            return sid
    return None


def running_jobs(ui_url: str | None, group: str) -> list[int] | None:
    """Ids of the group's running jobs from the Spark UI's REST API; None when there is no UI."""
    if not ui_url:
        return None
    try:
        with urllib.request.urlopen(f"{ui_url}/api/v1/applications", timeout=5) as resp:
            app = json.load(resp)[0]["id"]
        with urllib.request.urlopen(f"{ui_url}/api/v1/applications/{app}/jobs?status=running", timeout=5) as resp:
            return [j["jobId"] for j in json.load(resp) if j.get("jobGroup") == group]
    except (OSError, ValueError, IndexError, KeyError):
        return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def driver_cpu(pid: int, window: float = 1.0) -> float:
    """Cores the driver JVM used over `window` seconds (two busy tasks on local[2] ≈ 2)."""
    before = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - before) / window


class DriverLog:
    """The Spark Thrift Server's log (INFO: statements, job groups, cancels) from now on."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size

    def text(self) -> str:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")


# ---- the tests, in the order a user goes --------------------------------------------------------

def test_add_database_through_the_ui(page, api, target):
    test_message, shown = ui_add_database(page, DATABASE, target.uri)
    assert test_message == "Connection looks good!", f"Test connection said {test_message!r} (toasts {shown})"
    assert "Database connected" in shown, shown
    page.goto("/databaseview/list/")
    row = page.locator('[data-test="table-row"]').filter(has_text=DATABASE)
    row.wait_for()
    assert "hive" in row.inner_text()
    assert api.database_id(DATABASE) is not None


def test_datasets_on_the_test_tables_and_view(page, api, database, datasets):
    listed = {d["table_name"]: d for d in api.datasets(database)}
    assert set(listed) >= {*TEST_TABLES, TEST_VIEW}
    assert all(listed[t]["schema"] == TEST_SCHEMA for t in datasets)
    # Superset read each one's columns from the table through the gateway.
    sales = api.call("GET", f"/api/v1/dataset/{datasets['sales']}")["result"]
    columns = {c["column_name"]: c for c in sales["columns"]}
    assert list(columns) == ["sale_id", "sold_at", "region_id", "product", "amount", "qty"]
    assert columns["sold_at"]["is_dttm"] and sales["main_dttm_col"] == "sold_at"
    view = api.call("GET", f"/api/v1/dataset/{datasets[TEST_VIEW]}")["result"]
    assert {"region_name", "country"} <= {c["column_name"] for c in view["columns"]}
    # And a user sees them in the dataset list.
    page.goto("/tablemodelview/list/")
    rows = page.locator('[data-test="table-row"]')
    for name in datasets:
        rows.get_by_role("link", name=name, exact=True).wait_for()


def test_dashboard_of_seven_charts_renders(page, api, database, datasets, target):
    dashboard, _ = create_test_dashboard(api, database, f"Sales {target.label}")
    def hits() -> int:
        return target.log.read_text(errors="replace").count("statement served from the cache") if target.log else 0
    before = hits()
    first = open_dashboard(page, dashboard, len(TEST_CHARTS))
    after_first = hits()
    second = open_dashboard(page, dashboard, len(TEST_CHARTS))
    served = hits() - after_first
    print(f"\n[superset] dashboard of {len(TEST_CHARTS)} charts {target.label}: first load {first:.2f} s "
          f"({after_first - before} charts from sparkgate's cache), second {second:.2f} s ({served} from the cache)")
    if target.log:
        assert served >= len(TEST_CHARTS), f"the second load got {served} of {len(TEST_CHARTS)} charts from the cache"


def test_sqllab_schema_browser_lists_tables_and_view(page, database, test_data):
    sqllab_open(page, DATABASE, TEST_SCHEMA)
    shown = {n["name"]: n["icon"] for n in sqllab_expand(page, 1, TEST_SCHEMA)}
    # Superset 6.1 draws a table with the "table" icon and a view with "function".
    assert shown == {"regions": "table", "sales": "table", TEST_VIEW: "function"}, (
        f"SQL Lab's tree under {TEST_SCHEMA} shows {shown} (name: icon; 'function' is the view icon)")
    columns = [n["name"].split()[0] for n in sqllab_expand(page, 2, "sales")]
    assert columns == ["sale_id", "sold_at", "region_id", "product", "amount", "qty"]


def test_sqllab_slow_query_shows_progress(page, api, database, target):
    marker = f"progress_{uuid.uuid4().hex[:8]}"
    sqllab_open(page, DATABASE, TEST_SCHEMA)
    started = time.monotonic()
    sqllab_run(page, SLOW_SQL.format(marker=marker))
    seen_ui: list[tuple[float, int]] = []
    api_progress = 0.0
    status = sqllab_status(page)
    deadline = started + 300
    while status["state"] not in ("success", "failed", "stopped") and time.monotonic() < deadline:
        shown = sqllab_progress(status)
        if shown and (not seen_ui or shown != seen_ui[-1][1]):
            seen_ui.append((round(time.monotonic() - started, 1), shown))
        mine = [q for q in api.queries(5) if marker in (q.get("sql") or "")]
        if mine and mine[0]["status"] == "running":  # Superset sets 100 when it is done
            api_progress = max(api_progress, mine[0].get("progress") or 0)
        time.sleep(0.5)
        status = sqllab_status(page)
    elapsed = time.monotonic() - started
    print(f"\n[superset] slow SQL Lab query {target.label}: {elapsed:.1f} s, progress shown (s, %): {seen_ui}, "
          f"query.progress while running peaked at {api_progress}")
    assert status["state"] == "success", f"the slow query ended {status}"
    assert elapsed > 10, f"the slow query took {elapsed:.1f} s, too short to see progress (Superset polls every 5 s)"
    assert seen_ui, (f"SQL Lab showed no progress during the {elapsed:.0f} s query (query.progress via "
                     f"/api/v1/query/ peaked at {api_progress}); Superset's HiveEngineSpec reads Hive-style "
                     "'Stage-N: map = X%, reduce = Y%' lines from the operation log every 5 s")


def test_sqllab_stop_cancels_on_the_driver(page, api, database, sts, target):
    marker = f"stop_{uuid.uuid4().hex[:8]}"
    log = DriverLog(sts.log)
    ui_url = getattr(sts, "ui_url", None)
    sqllab_open(page, DATABASE, TEST_SCHEMA)
    sqllab_run(page, SLOW_SQL.format(marker=marker))
    sid = wait_for("the driver to start the statement", lambda: statement_id(log.text(), marker), timeout=60)
    # Let its first stage get going: tasks running, CPU busy.
    wait_for("SQL Lab to show the query running", lambda: sqllab_status(page)["state"] == "running", timeout=30)
    time.sleep(2)
    # The driver logs the cancel of the statement (CancelOperation) or of its job group's jobs (also
    # after CloseOperation). With the Spark UI on, its REST API must then show no running job of the
    # group (that alone is no proof: between two stages' jobs there is none for a moment); without,
    # the log line that a job of the group was cancelled. Then the driver's CPU must be idle.
    use_ui = running_jobs(ui_url, sid) is not None
    if use_ui:
        wait_for(f"a running Spark job of group {sid}", lambda: running_jobs(ui_url, sid), timeout=30)
    busy = driver_cpu(sts.proc.pid)
    assert f"Close statement with {sid}" not in log.text(), "the slow query ended before Stop: make it slower"
    stopped_at = time.monotonic()
    sqllab_stop(page)

    def cancelled_on_driver() -> str | None:
        text = log.text()
        job_cancelled = f"cancelled part of cancelled job group {sid}" in text
        if not (job_cancelled or f"Cancel query with {sid}" in text):
            return None
        if use_ui:
            idle_group = running_jobs(ui_url, sid) == []
            return "driver log: cancel; Spark UI: no running job in the group" if idle_group else None
        return "driver log: job of the group cancelled" if job_cancelled else None

    try:
        how = wait_for(f"the Spark job of statement {sid} to stop", cancelled_on_driver, timeout=STOP_DEADLINE)
    except AssertionError:
        text = log.text()
        cancels = [line[:200] for line in text.splitlines() if sid in line and "ancel" in line]
        raise AssertionError(
            f"{STOP_DEADLINE} s after Stop the driver still runs statement {sid}: running jobs "
            f"{running_jobs(ui_url, sid)}, its cancel lines in the driver log: {cancels or 'none'}, "
            f"driver CPU {driver_cpu(sts.proc.pid):.2f} cores (before Stop {busy:.2f})") from None
    took = time.monotonic() - stopped_at
    idle = driver_cpu(sts.proc.pid)
    print(f"\n[superset] Stop -> Spark job cancelled {target.label} in {took:.1f} s ({how}); driver CPU "
          f"{busy:.2f} cores before, {idle:.2f} after")
    assert idle < 0.5, f"the driver still uses {idle:.2f} cores after the cancel (it used {busy:.2f} before)"
    mine = [q for q in api.queries(5) if marker in (q.get("sql") or "")]
    assert mine and mine[0]["status"] == "stopped", mine[:1]


def test_sqllab_error_is_concise(page, database, target):
    sqllab_open(page, DATABASE, TEST_SCHEMA)
    sqllab_run(page, MISSING_TABLE_SQL)
    status = sqllab_wait_done(page, timeout=120)
    assert status["state"] == "failed", status
    text = status["error"] or ""
    print(f"\n[superset] SQL Lab error {target.label} ({len(text)} chars): {text[:300]!r}")
    assert "TABLE_OR_VIEW_NOT_FOUND" in text, text[:1000]
    frames = re.findall(r"(?:\\t|\s)at (?:org\.apache|java\.|scala\.)[\w.$]+", text)
    assert not frames, f"the error shows {len(frames)} Java stack frames, e.g. {frames[:3]}"
    assert len(text) < 1000, f"the error is {len(text)} characters: {text[:1200]!r}"
