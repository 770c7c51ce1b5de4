"""A real Apache Superset 6.1 on 127.0.0.1 for the end-to-end tests, and what drives it: its REST API
(setup: databases, datasets, charts, dashboards) and real headless Chromium through Playwright (what a
user sees: the database modal, dashboards, SQL Lab).

Superset lives in a venv of its own, cached outside the repo by integration/setup_superset.sh:
${SPARKGATE_CACHE:-~/.cache/sparkgate}/superset-<hash of superset-requirements.txt>. Its initialized
metadata DB (`superset db upgrade` + admin user + `superset init`: 25-45 s) is kept there once as a
template; each SupersetServer copies it into its own dir and starts gunicorn on it in ~5 s.

SQL Lab config, read from Superset 6.1.0's sources (sql_lab.py, sqllab/sql_json_executer.py,
db_engine_specs/hive.py and the built SQL Lab bundle): no Celery is needed for live progress or Stop.
A database with allow_run_async off (the default) runs SQL Lab queries in the web request, and that
path still goes through HiveEngineSpec.execute (cursor.execute(async_=True)) and handle_cursor, which
polls every DB_POLL_INTERVAL_SECONDS (5 s for hive) and commits query.progress to the metadata DB.
The page marks every query it starts "pending" whatever runAsync is, and while any query is pending
or running it polls /api/v1/query/updated_since every 2 s, so the step "Running (N%)" and the Stop
button show up as in an async deployment. Stop posts /api/v1/query/stop, which marks the query
STOPPED in the metadata DB; handle_cursor sees that at its next poll and calls cursor.cancel()
(HS2 CancelOperation). Checked in the browser: a progress written to a running query's row shows
as "Running (37%)" within 2 s, and Stop cancels the Spark job within one poll. The one sync limit,
SQLLAB_TIMEOUT, is a SIGALRM that only arms on the main thread, never in gunicorn's worker threads;
it is raised anyway, and so is the page's request timeout. So: gunicorn, one gthread worker with
threads for the browser's concurrent requests, SQLite metadata, no results backend.

Seen here: on SQLite metadata, a second dataset of the same table name (in another database) fails
with "UNIQUE constraint failed: tables.table_name", so one Superset holds one dataset per table name.

`python superset_server.py template` makes the metadata template (setup_superset.sh calls it);
`python superset_server.py bench [ROUNDS]` prints dashboard and SQL Lab timings, through sparkgate vs
directly (bench_superset() is the same for integration/bench.py, with its own parts).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, Sparkgate, SparkThriftServer, stop_process
from helpers import free_port, wait_for, wait_for_port

REQUIREMENTS = REPO / "integration" / "superset-requirements.txt"
ADMIN_USER = "admin"
# A fixed password and key are fine: the server listens on loopback only and lives for one test run.
ADMIN_PASSWORD = "sparkgate-it-admin"
SECRET_KEY = "sparkgate-it-superset-secret-key-not-a-secret-0123456789"
# The browser the tests drive: Debian's chromium (/usr/bin/chromium is a shell wrapper around it).
CHROMIUM_PATHS = (Path("/usr/lib/chromium/chromium"), Path("/usr/bin/chromium"))

CONFIG_TEMPLATE = '''\
# Written by integration/superset_server.py for one test run.
SECRET_KEY = {secret!r}
SQLALCHEMY_DATABASE_URI = {db_uri!r}
DATA_DIR = {home!r}
# SQL Lab runs in the web request (no Celery, see superset_server.py's docstring): the page's
# request timeout (60 s by default) must outlast a slow query; the sync timeout is a main-thread
# SIGALRM that never fires in gunicorn threads, raised anyway.
SQLLAB_TIMEOUT = 600
SUPERSET_WEBSERVER_TIMEOUT = 600
'''


# ---- the venv, the metadata template -------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("SPARKGATE_CACHE") or Path.home() / ".cache" / "sparkgate")


def superset_venv() -> Path:
    """The venv setup_superset.sh installs, named by the requirements' hash (as the script does)."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return cache_dir() / f"superset-{digest}"


def require_venv() -> Path:
    venv = superset_venv()
    if not (venv / ".installed").exists():
        raise RuntimeError(f"Superset is not installed in {venv}: run integration/setup_superset.sh")
    return venv


def chromium_path() -> Path:
    for path in CHROMIUM_PATHS:
        if path.exists():
            return path
    raise RuntimeError("Debian's chromium is missing: run integration/setup_superset.sh")


def write_config(home: Path) -> Path:
    config = home / "superset_config.py"
    db_uri = f"sqlite:///{home / 'superset.db'}?check_same_thread=false"
    config.write_text(CONFIG_TEMPLATE.format(secret=SECRET_KEY, db_uri=db_uri, home=str(home)))
    return config


def superset_env(venv: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FLASK_"))}
    env.update(SUPERSET_CONFIG_PATH=str(home / "superset_config.py"), SUPERSET_HOME=str(home),
               FLASK_APP="superset", PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
    return env


def _run_cli(venv: Path, home: Path, *args: str) -> None:
    out = subprocess.run([str(venv / "bin" / "superset"), *args], env=superset_env(venv, home), cwd=home,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"`superset {' '.join(args[:2])}` failed ({out.returncode}):\n{out.stderr[-4000:]}")


def ensure_metadata_template() -> Path:
    """The SQLite metadata DB after `db upgrade`, the admin user and `init` (25-45 s), made once per
    venv under a lock that parallel runs share, then only copied."""
    venv = require_venv()
    template = venv / "metadata-template" / "superset.db"
    if template.exists():
        return template
    with open(cache_dir() / ".superset.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if template.exists():
            return template
        started = time.monotonic()
        build = Path(tempfile.mkdtemp(prefix="metadata-build-", dir=venv))
        try:
            write_config(build)
            _run_cli(venv, build, "db", "upgrade")
            _run_cli(venv, build, "fab", "create-admin", "--username", ADMIN_USER, "--firstname", "Ada",
                     "--lastname", "Admin", "--email", "admin@example.invalid", "--password", ADMIN_PASSWORD)
            _run_cli(venv, build, "init")
            # Only the DB is the template: each run writes its own config.
            (build / "superset_config.py").unlink()
            shutil.rmtree(build / "__pycache__", ignore_errors=True)
            build.rename(template.parent)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        print(f"[superset] metadata DB template made in {time.monotonic() - started:.1f} s", flush=True)
    return template


# ---- the server ----------------------------------------------------------------------------------

class SupersetServer:
    """Superset under gunicorn on a loopback port, with its own dir (config, SQLite DB, log)."""

    def __init__(self, home: Path, port: int | None = None):
        self.home = Path(home).resolve()
        self.port = port or free_port()
        self.log = self.home / "superset.log"
        self.proc: subprocess.Popen | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> SupersetServer:
        started = time.monotonic()
        venv = require_venv()
        template = ensure_metadata_template()
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, self.home / "superset.db")
        write_config(self.home)
        # One worker (SQL Lab's sync queries and the page's polls share its threads), as Superset's
        # own docker image runs it: gthread, no limit on request line size.
        argv = [str(venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
                "--worker-class", "gthread", "--threads", "16", "--timeout", "600", "--graceful-timeout", "5",
                "--limit-request-line", "0", "--limit-request-field_size", "0", "superset.app:create_app()"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.home, env=superset_env(venv, self.home), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(self.port, timeout, self.proc, self.log)
            wait_for("Superset /health", self._healthy, timeout=timeout, every=0.2)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10.0)


# ---- REST API ------------------------------------------------------------------------------------

def rison(value: Any) -> str:
    """Rison, the URL-friendly JSON Superset's list endpoints take in `?q=` (only what we send)."""
    if isinstance(value, bool):
        return "!t" if value else "!f"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        plain = value and all(c.isalnum() or c in "-_./~" for c in value) and not value[0].isdigit()
        return value if plain else "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, list):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    if isinstance(value, dict):
        return "(" + ",".join(f"{k}:{rison(v)}" for k, v in value.items()) + ")"
    raise TypeError(f"no rison for {value!r}")


class SupersetApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path}: HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


class SupersetApi:
    """Superset's REST API as a logged-in user: a JWT from /api/v1/security/login, and the CSRF
    token (bound to the session cookie) that every write needs."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self._token: str | None = None
        self._csrf: str | None = None

    def login(self, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> SupersetApi:
        answer = self.call("POST", "/api/v1/security/login",
                           {"username": username, "password": password, "provider": "db", "refresh": True})
        self._token = answer["access_token"]
        self._csrf = self.call("GET", "/api/v1/security/csrf_token/")["result"]
        return self

    def call(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> Any:
        headers = {"Accept": "application/json", "Referer": self.base_url + "/"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if self._csrf:
            headers["X-CSRFToken"] = self._csrf
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise SupersetApiError(method, path, e.code, e.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else None

    def list(self, resource: str, **query: Any) -> list[dict]:
        query.setdefault("page_size", 100)
        path = f"/api/v1/{resource}/?q={urllib.parse.quote(rison(query))}"
        return self.call("GET", path)["result"]

    # -- setup helpers: what a test needs in place, made the quick way -----------------------------

    def database_id(self, name: str) -> int | None:
        found = [d["id"] for d in self.list("database") if d["database_name"] == name]
        return found[0] if found else None

    def add_database(self, name: str, uri: str, **extra: Any) -> int:
        """The API way (setup for other tests); test_superset adds its own through the UI."""
        body = {"database_name": name, "sqlalchemy_uri": uri, "expose_in_sqllab": True, **extra}
        return self.call("POST", "/api/v1/database/", body)["id"]

    def test_connection(self, uri: str) -> Any:
        return self.call("POST", "/api/v1/database/test_connection/", {"sqlalchemy_uri": uri})

    def create_dataset(self, database_id: int, schema: str, table: str) -> int:
        body = {"database": database_id, "schema": schema, "table_name": table}
        return self.call("POST", "/api/v1/dataset/", body)["id"]

    def datasets(self, database_id: int | None = None) -> list[dict]:
        rows = self.list("dataset")
        return [d for d in rows if database_id is None or d["database"]["id"] == database_id]

    def create_chart(self, name: str, viz_type: str, dataset_id: int, params: dict[str, Any]) -> int:
        form_data = {"viz_type": viz_type, "datasource": f"{dataset_id}__table", "time_range": "No filter",
                     **params}
        body = {"slice_name": name, "viz_type": viz_type, "datasource_id": dataset_id,
                "datasource_type": "table", "params": json.dumps(form_data)}
        return self.call("POST", "/api/v1/chart/", body)["id"]

    def create_dashboard(self, title: str, charts: list[tuple[int, str]], per_row: int = 3) -> int:
        """A published dashboard with `charts` ((id, name) pairs) laid out `per_row` to a row."""
        layout: dict[str, Any] = {
            "DASHBOARD_VERSION_KEY": "v2",
            "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
            "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
            "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
        }
        for start in range(0, len(charts), per_row):
            row_id = f"ROW-{start // per_row}"
            layout["GRID_ID"]["children"].append(row_id)
            layout[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                              "meta": {"background": "BACKGROUND_TRANSPARENT"}}
            for chart_id, name in charts[start:start + per_row]:
                key = f"CHART-{chart_id}"
                layout[row_id]["children"].append(key)
                layout[key] = {"type": "CHART", "id": key, "children": [],
                               "parents": ["ROOT_ID", "GRID_ID", row_id],
                               "meta": {"chartId": chart_id, "sliceName": name, "width": 12 // per_row,
                                        "height": 50}}
        body = {"dashboard_title": title, "published": True, "position_json": json.dumps(layout),
                "json_metadata": json.dumps({"refresh_frequency": 0, "color_scheme": ""})}
        dashboard_id = self.call("POST", "/api/v1/dashboard/", body)["id"]
        for chart_id, _ in charts:
            self.call("PUT", f"/api/v1/chart/{chart_id}", {"dashboards": [dashboard_id]})
        return dashboard_id

    def queries(self, limit: int = 25) -> list[dict]:
        """SQL Lab's query log, newest first (status, progress, client_id, sql, error_message)."""
        columns = ["id", "client_id", "status", "progress", "sql", "error_message", "tracking_url", "start_time",
                   "end_time", "database.database_name"]
        return self.list("query", columns=columns, order_column="start_time", order_direction="desc",
                         page_size=limit)


# ---- the test data and the dashboard on it -------------------------------------------------------

TEST_SCHEMA = "superset_test"
# A fact table whose timestamps span six weeks (2024-01-01 .. 2024-02-11, one sale per 30 min), a
# dimension table, and a view joining them: what a BI user points Superset at.
TEST_TABLES = ("sales", "regions")
TEST_VIEW = "sales_enriched"
TEST_DDL = (
    f"DROP SCHEMA IF EXISTS {TEST_SCHEMA} CASCADE",
    f"CREATE SCHEMA {TEST_SCHEMA}",
    f"""CREATE TABLE {TEST_SCHEMA}.regions USING parquet AS SELECT * FROM VALUES
        (1, 'North', 'NO'), (2, 'South', 'ES'), (3, 'East', 'PL'), (4, 'West', 'PT')
        AS t(region_id, region_name, country)""",
    f"""CREATE TABLE {TEST_SCHEMA}.sales USING parquet AS SELECT id AS sale_id,
        timestamp_seconds(unix_timestamp(timestamp'2024-01-01 00:00:00') + id * 1800) AS sold_at,
        cast(id % 4 + 1 AS int) AS region_id,
        element_at(array('tea', 'coffee', 'cocoa'), cast(id % 3 + 1 AS int)) AS product,
        cast(round((id % 97) * 1.25 + 3, 2) AS decimal(10, 2)) AS amount, cast(id % 5 + 1 AS int) AS qty
        FROM range(2000)""",
    f"""CREATE VIEW {TEST_SCHEMA}.{TEST_VIEW} AS SELECT s.*, r.region_name, r.country
        FROM {TEST_SCHEMA}.sales s JOIN {TEST_SCHEMA}.regions r ON s.region_id = r.region_id""",
)


def create_test_data(host: str, port: int, username: str = "superset") -> None:
    """TEST_DDL through PyHive (run it against the Spark Thrift Server itself)."""
    from pyhive import hive

    conn = hive.connect(host, port, username=username)
    try:
        cursor = conn.cursor()
        for sql in TEST_DDL:
            cursor.execute(sql)
    finally:
        conn.close()


REVENUE = {"expressionType": "SQL", "sqlExpression": "SUM(amount)", "label": "revenue"}
# (name, viz type, dataset (table or view), form data): seven kinds of chart, the time series with
# a time column and a time grain, as Explore saves them.
TEST_CHARTS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("Revenue by region", "table", TEST_VIEW,
     {"query_mode": "aggregate", "groupby": ["region_name"], "metrics": [REVENUE, "count"], "row_limit": 100}),
    ("Total revenue", "big_number_total", "sales", {"metric": REVENUE}),
    ("Sales per day", "echarts_timeseries_line", "sales",
     {"x_axis": "sold_at", "time_grain_sqla": "P1D", "metrics": ["count"], "groupby": [], "row_limit": 1000}),
    ("Revenue per month by product", "echarts_timeseries_bar", "sales",
     # Not P1W: Superset's Hive week grain formats with pattern 'u', which Spark >= 3 rejects
     # (INCONSISTENT_BEHAVIOR_CROSS_VERSION.DATETIME_PATTERN_RECOGNITION), directly and through sparkgate.
     {"x_axis": "sold_at", "time_grain_sqla": "P1M", "metrics": [REVENUE], "groupby": ["product"],
      "row_limit": 1000}),
    ("Sales by product", "pie", "sales", {"groupby": ["product"], "metric": "count", "row_limit": 10}),
    ("Revenue trend", "big_number", "sales",
     {"x_axis": "sold_at", "granularity_sqla": "sold_at", "time_grain_sqla": "P1D", "metric": REVENUE}),
    ("Regions", "table", "regions",
     {"query_mode": "raw", "all_columns": ["region_id", "region_name", "country"], "row_limit": 100}),
)


def create_test_dashboard(api: SupersetApi, database_id: int, title: str) -> tuple[int, dict[str, int]]:
    """Datasets on the test tables and view (existing ones reused), TEST_CHARTS on them and a
    dashboard of those charts. Returns (dashboard id, {table: dataset id})."""
    existing = {d["table_name"]: d["id"] for d in api.datasets(database_id) if d["schema"] == TEST_SCHEMA}
    datasets = {t: existing.get(t) or api.create_dataset(database_id, TEST_SCHEMA, t)
                for t in (*TEST_TABLES, TEST_VIEW)}
    charts = [(api.create_chart(f"{name} ({title})", viz, datasets[table], params), f"{name} ({title})")
              for name, viz, table, params in TEST_CHARTS]
    return api.create_dashboard(title, charts), datasets


# ---- the browser ---------------------------------------------------------------------------------

class SupersetBrowser:
    """ONE headless Chromium (Debian's, never a Playwright download) with ONE context logged in to
    Superset through its login form; pages come from new_page()."""

    def __init__(self, base_url: str, artifacts: Path | None = None):
        self.base_url = base_url
        self.artifacts = artifacts
        self._playwright = None
        self.browser = None
        self.context = None

    def start(self) -> SupersetBrowser:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self.browser = self._playwright.chromium.launch(
                executable_path=str(chromium_path()), headless=True,
                # No sandbox as root; /dev/shm is small in containers.
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            self.context = self.browser.new_context(base_url=self.base_url, viewport={"width": 1400, "height": 900})
            self.context.set_default_timeout(30_000)
            page = self.context.new_page()
            ui_login(page)
            page.close()
        except BaseException:
            self.close()
            raise
        return self

    def new_page(self):
        return self.context.new_page()

    def screenshot(self, page, name: str) -> Path | None:
        """A PNG of `page` under the artifacts dir (for a failing test's report); never raises."""
        if self.artifacts is None:
            return None
        path = self.artifacts / f"{name}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(path), full_page=True)
            return path
        except Exception:  # noqa: BLE001 - a screenshot is a diagnostic, never the failure
            return None

    def close(self) -> None:
        # Closing after a crash may fail too; what is left dies with its process group.
        if self.browser is not None:
            with suppress(Exception):
                self.browser.close()
        if self._playwright is not None:
            with suppress(Exception):
                self._playwright.stop()
        self.browser = self._playwright = self.context = None


def ui_login(page, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> None:
    page.goto("/login/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.keyboard.press("Enter")
    page.wait_for_url("**/superset/welcome/**")


def toasts(page) -> list[str]:
    return [t.strip() for t in page.locator('[data-test="toast-container"]').all_inner_texts() if t.strip()]


def ui_add_database(page, name: str, uri: str) -> tuple[str, list[str]]:
    """Settings > Database Connections > + Database > "Other" > display name and SQLAlchemy URI >
    Test connection > Connect, the way a user does. Returns (the test's toast, all toasts at the end)."""
    page.goto("/databaseview/list/")
    page.get_by_role("button", name="Database").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    page.locator(".ant-select-item-option", has_text="Other").click()
    dialog.locator('[data-test="database-name-input"]').fill(name)
    dialog.locator('[data-test="sqlalchemy-uri-input"]').fill(uri)
    with page.expect_response("**/api/v1/database/test_connection/**", timeout=120_000):
        dialog.get_by_role("button", name="Test connection").click()
    toast = page.locator('[data-test="toast-container"]').last
    toast.wait_for()
    test_message = toast.inner_text().strip()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/database/") and r.request.method == "POST",
                              timeout=120_000) as created:
        dialog.locator('[data-test="btn-submit-connection"]').click()
    if not created.value.ok:
        raise AssertionError(f"creating the database failed: {created.value.status} {created.value.text()[:1000]}")
    page.get_by_role("dialog").wait_for(state="hidden")
    return test_message, toasts(page)


# -- dashboards --

CHART_DONE_JS = """() => {
  const holders = [...document.querySelectorAll('[data-test="dashboard-component-chart-holder"]')];
  return holders.map(h => ({
    loading: !!h.querySelector('[data-test="loading-indicator"], .loading'),
    error: (h.querySelector('[role="alert"], .alert-danger, [data-test="error-tooltip"]') || {}).innerText || null,
    drawn: !!h.querySelector('svg, canvas, table, .header-line, .big-number-total'),
  }));
}"""


def open_dashboard(page, dashboard_id: int, charts: int, timeout: float = 240.0) -> float:
    """Opens the dashboard and waits until all `charts` are drawn, their data requests answered and
    no spinner is left; returns the seconds that took (what a user waits for). Raises
    AssertionError naming the charts that show an error or never finished."""
    answered: list[int] = []

    def on_response(resp) -> None:
        if "/api/v1/chart/data" in resp.url and resp.request.method == "POST":
            answered.append(resp.status)

    page.on("response", on_response)
    started = time.monotonic()
    try:
        page.goto(f"/superset/dashboard/{dashboard_id}/")
        state: list[dict] = []

        def all_done() -> bool:
            nonlocal state
            state = page.evaluate(CHART_DONE_JS)
            if any(c["error"] for c in state):
                return True
            return (len(state) >= charts and len(answered) >= charts
                    and all(c["drawn"] and not c["loading"] for c in state))

        try:
            wait_for(f"{charts} charts on dashboard {dashboard_id}", all_done, timeout=timeout, every=0.1)
        except AssertionError:
            raise AssertionError(f"dashboard {dashboard_id} not done after {timeout} s: {len(state)} charts, "
                                 f"{sum(c['loading'] for c in state)} loading, "
                                 f"{sum(not c['drawn'] for c in state)} not drawn; data answers {answered}") from None
        elapsed = time.monotonic() - started
    finally:
        page.remove_listener("response", on_response)
    # Errors cut short: a chart shows the driver's whole stack trace (30 kB) when it gets one.
    errors = [c["error"][:800] for c in state if c["error"]]
    if errors or any(s != 200 for s in answered):
        raise AssertionError(f"dashboard {dashboard_id}: chart errors {errors}, data answers {answered}")
    return elapsed


# -- SQL Lab (6.1: a database/schema popover, a tree of schemas > tables and views > columns) --

TREE_JS = """() => [...document.querySelectorAll('[role="treeitem"]')].map(t => {
  const icon = t.querySelector('.tree-node-icon [aria-label]');
  const title = t.querySelector('.tree-node-title');
  return {level: Number(t.getAttribute('aria-level')), expanded: t.getAttribute('aria-expanded') === 'true',
          name: (title ? title.innerText : t.innerText).trim(), icon: icon ? icon.getAttribute('aria-label') : null};
})"""

# The latest query's status area (its state tag, the step titles: "Running (37%)", an error), which
# SQL Lab replaces by the result table ("N rows") once the query succeeded.
STATUS_JS = """() => {
  const label = [...document.querySelectorAll('span')].find(s => s.innerText.trim() === 'Query State:');
  let state = label && label.nextElementSibling ? label.nextElementSibling.innerText.trim() : null;
  const steps = [...document.querySelectorAll('.ant-steps-item-title')]
    .map(s => s.innerText.replace(/\\s+/g, ' ').trim());
  const alert = document.querySelector('.ant-tabs-tabpane-active .ant-alert-error');
  const rows = [...document.querySelectorAll('.ant-tabs-tabpane-active .ant-tag')]
    .map(t => t.innerText.trim()).find(t => /^[0-9.,]+[kM]? rows?$/.test(t)) || null;
  if (!state && rows) state = 'success';
  return {state, steps, rows, error: alert ? alert.innerText : null};
}"""


def _pick(page, data_test: str, value: str) -> None:
    """Types `value` into the antd select marked data-test=`data_test` and clicks its option."""
    page.locator(f'div.ant-select[data-test="{data_test}"]').click()
    page.keyboard.type(value)
    page.locator(".ant-select-dropdown:visible .ant-select-item-option", has_text=value).first.click()


def sqllab_open(page, database: str, schema: str) -> None:
    """SQL Lab with an editor tab (a new user has none), `database` and `schema` picked."""
    page.goto("/sqllab/")
    editor = page.locator(".ace_editor")
    new_tab = page.get_by_text("Add a new tab", exact=True)
    editor.or_(new_tab).first.wait_for()
    if not editor.count():
        new_tab.click()
        editor.first.wait_for()
    page.locator('[data-test="DatabaseSelector"]').click()
    _pick(page, "select-database", database)
    _pick(page, "Select schema", schema)
    page.get_by_role("button", name="Select", exact=True).click()


def sqllab_tree(page) -> list[dict[str, Any]]:
    """The left pane's tree: level (1 schema, 2 table or view, 3 column), name, expanded, icon
    (folder/folder-open for schemas, "table" for a table, "function" for a view, none for columns)."""
    return page.evaluate(TREE_JS)


def sqllab_expand(page, level: int, name: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Clicks the tree node `name` at `level` open (if it is not) and returns the nodes below it
    once they have loaded."""
    node = page.locator(f'[role="treeitem"][aria-level="{level}"]').filter(
        has=page.locator(".tree-node-title", has_text=re.compile(f"^{re.escape(name)}$")))
    if node.get_attribute("aria-expanded") != "true":
        node.click()

    def children() -> list[dict[str, Any]] | None:
        tree = sqllab_tree(page)
        at = next((i for i, n in enumerate(tree) if n["level"] == level and n["name"] == name), None)
        if at is None or not tree[at]["expanded"] or tree[at]["icon"] == "loading":
            return None
        below = []
        for n in tree[at + 1:]:
            if n["level"] <= level:
                break
            if n["level"] == level + 1:
                below.append(n)
        return below or None

    try:
        return wait_for(f"the tree under {name!r}", children, timeout=timeout, every=0.2)
    except AssertionError:
        return []


def sqllab_set_sql(page, sql: str) -> None:
    page.locator(".ace_editor").first.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    # insert_text: no key events, so Ace's autocomplete cannot change what is typed.
    page.keyboard.insert_text(sql)


def sqllab_run(page, sql: str) -> None:
    """Types `sql` and presses Run; returns once the page has sent it (the status area then shows
    this query, not the one before)."""
    sqllab_set_sql(page, sql)
    with page.expect_request("**/api/v1/sqllab/execute/**"):
        page.locator('[data-test="run-query-action"]', has_text="Run").click()


def sqllab_stop(page) -> None:
    page.locator('[data-test="run-query-action"]', has_text="Stop").click()


def sqllab_status(page) -> dict[str, Any]:
    """{state: "pending"|"running"|"success"|"failed"|"stopped"|None, steps: [...], rows: "N rows"|None,
    error: text|None}."""
    return page.evaluate(STATUS_JS)


def sqllab_progress(status: dict[str, Any]) -> int:
    """The percentage SQL Lab shows on its "Running" step (0 when it shows none)."""
    for step in status["steps"]:
        found = re.match(r"Running \((\d+)%", step)
        if found:
            return int(found.group(1))
    return 0


def sqllab_wait_done(page, timeout: float = 300.0) -> dict[str, Any]:
    done = ("success", "failed", "stopped", "timed_out")
    return wait_for("the SQL Lab query to end", lambda: (s := sqllab_status(page))["state"] in done and s,
                    timeout=timeout, every=0.2)


# ---- bench: Superset through sparkgate vs directly ------------------------------------------------

BENCH_SQL = ("SELECT region_name, product, count(*) AS sales, sum(amount) AS revenue "
             f"FROM {TEST_SCHEMA}.{TEST_VIEW} GROUP BY region_name, product ORDER BY revenue DESC")


def bench_superset(sts_port: int, gateway_port: int, workdir: Path,
                   rounds: int = 3) -> dict[str, dict[str, dict[str, float]]]:
    """Prints and returns, through sparkgate and directly (alternating, best and median of `rounds`
    after a warm-up round): the load time of a dashboard of len(TEST_CHARTS) charts, and of a SQL Lab query
    in the browser (BENCH_SQL over the view). Starts its own Superset and Chromium; makes the test
    data on the Spark Thrift Server. ONE database, dashboard and set of datasets, whose URI is
    switched between the two: the same charts run the same SQL (and Superset's SQLite metadata
    keeps a unique index on a dataset's table name alone, so a second set could not be made)."""
    create_test_data("127.0.0.1", sts_port)
    uris = {name: f"hive://superset@127.0.0.1:{port}/default"
            for name, port in (("direct", sts_port), ("sparkgate", gateway_port))}
    samples: dict[str, dict[str, list[float]]] = {name: {"dashboard": [], "sqllab": []} for name in uris}
    with superset_running(Path(workdir) / "superset-bench") as server:
        api = SupersetApi(server.url).login()
        database = api.add_database("bench", uris["direct"])
        dashboard = create_test_dashboard(api, database, "bench")[0]
        browser = SupersetBrowser(server.url).start()
        try:
            page = browser.new_page()
            print(f"Superset started in {server.startup_seconds:.1f} s", flush=True)
            for r in range(rounds + 1):  # round 0 warms both paths up (JIT, caches) and is not counted
                for name in list(uris) if r % 2 == 0 else list(reversed(uris)):
                    api.call("PUT", f"/api/v1/database/{database}", {"sqlalchemy_uri": uris[name]})
                    dash = open_dashboard(page, dashboard, len(TEST_CHARTS))
                    sqllab_open(page, "bench", TEST_SCHEMA)
                    started = time.monotonic()
                    sqllab_run(page, BENCH_SQL)
                    status = sqllab_wait_done(page)
                    sql = time.monotonic() - started
                    if status["state"] != "success":
                        raise RuntimeError(f"{name}: SQL Lab query ended {status}")
                    if r:
                        samples[name]["dashboard"].append(dash)
                        samples[name]["sqllab"].append(sql)
                    print(f"  round {r}{' (warm-up)' if not r else ''} {name}: dashboard {dash:.2f} s, "
                          f"SQL Lab query {sql:.2f} s", flush=True)
        finally:
            browser.close()
    # Best and median: a SQL Lab query that outlasts sparkgate's status poll (backend.status_poll)
    # waits for Superset's next poll, 5 s later, so its times are bimodal.
    figures = {name: {what: {"best": min(v), "median": statistics.median(v)} for what, v in kinds.items()}
               for name, kinds in samples.items()}
    for what, title in (("dashboard", f"dashboard ({len(TEST_CHARTS)} charts)"), ("sqllab", "SQL Lab query")):
        d, g = figures["direct"][what], figures["sparkgate"][what]
        print(f"Superset {title}, best / median of {rounds}: direct {d['best']:.2f} / {d['median']:.2f} s | "
              f"sparkgate {g['best']:.2f} / {g['median']:.2f} s", flush=True)
    return figures


@contextmanager
def superset_running(home: Path, port: int | None = None) -> Iterator[SupersetServer]:
    server = SupersetServer(home, port).start()
    try:
        yield server
    finally:
        server.stop()


def _bench_main(rounds: int) -> None:
    """A Spark Thrift Server and a sparkgate of our own, then bench_superset."""
    with tempfile.TemporaryDirectory(prefix="sparkgate-superset-bench-") as d:
        work = Path(d)
        # As test_superset.py runs them: the Spark UI on, sparkgate reading progress there.
        sts = SparkThriftServer(work / "sts", conf={"spark.ui.port": str(free_port())}).start()
        gateway = Sparkgate.with_config(work, f'[server]\nbind = "127.0.0.1:{{port}}"\n[backend]\n'
                                        f'address = "127.0.0.1:{sts.port}"\nspark_ui = "{sts.ui_url}"\n', "gateway")
        try:
            gateway.start()
            print(f"Spark Thrift Server on {sts.port} (started in {sts.startup_seconds:.1f} s); sparkgate on "
                  f"{gateway.port}", flush=True)
            bench_superset(sts.port, gateway.port, work, rounds)
        finally:
            gateway.stop()
            sts.stop()


def _main() -> None:
    if sys.argv[1:] == ["template"]:
        ensure_metadata_template()
        return
    if sys.argv[1:2] == ["bench"]:
        _bench_main(int(sys.argv[2]) if len(sys.argv) > 2 else 3)
        return
    print(__doc__)
    sys.exit(2)


if __name__ == "__main__":
    _main()
