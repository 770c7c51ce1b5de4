"""The result cache and session reuse against a real Spark Thrift Server, in one run (called by
bench.py; prints figures, asserts nothing):

1. a dashboard of six chart queries, each in a new session as Superset sends them: directly,
   through sparkgate with an empty cache (cold) and through sparkgate again (warm);
2. the open + query + close cycle on one connection, directly and through sparkgate with session
   reuse: the OpenSession call's p50 and the whole cycle's;
3. twenty concurrent identical queries: how many statements Spark ran, and the wall time;
4. memory per cached MB: the result's Arrow buffers (sparkgate's cache_bytes) against its
   TRowSets as the driver sent them (Thrift binary encoding).
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path

from harness import Sparkgate, SparkThriftServer
from helpers import free_port

SCHEMA = "bench_cache"
DASHBOARD = [
    f"SELECT region, sum(amount) AS total FROM {SCHEMA}.sales GROUP BY region ORDER BY total DESC",
    f"SELECT product, count(*) AS n FROM {SCHEMA}.sales GROUP BY product ORDER BY n DESC LIMIT 20",
    f"SELECT date_trunc('month', day) AS month, sum(amount) AS total FROM {SCHEMA}.sales GROUP BY 1 ORDER BY 1",
    f"SELECT region, product, avg(amount) AS mean FROM {SCHEMA}.sales GROUP BY region, product ORDER BY mean DESC LIMIT 50",
    f"SELECT count(DISTINCT product) AS products, max(amount) AS top FROM {SCHEMA}.sales",
    f"SELECT percentile_approx(amount, 0.9) AS p90, region FROM {SCHEMA}.sales GROUP BY region",
]


def _run(port: int, sql: str, user: str = "bench") -> list:
    from pyhive import hive
    conn = hive.connect("127.0.0.1", port, username=user, database="default")
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        conn.close()


def _metric(admin: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            line = line.removeprefix("sparkgate_")
            if line.startswith((name + " ", name + "_total ")):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def _invalidate(admin: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    conn.request("POST", "/api/v1/cache/invalidate?tenant=default")
    conn.getresponse().read()
    conn.close()


def _cycles(port: int, n: int) -> tuple[float, float]:
    """p50 (ms) of OpenSession and of a whole open + SELECT + close cycle, on one connection."""
    from pyhive import hive
    from TCLIService import ttypes
    conn = hive.connect("127.0.0.1", port, username="bench", database="default")
    client = conn.client
    opens, cycles = [], []
    try:
        for _ in range(n):
            started = time.perf_counter()
            opened = client.OpenSession(ttypes.TOpenSessionReq(
                username="bench", client_protocol=ttypes.TProtocolVersion.HIVE_CLI_SERVICE_PROTOCOL_V6,
                configuration={}))
            opens.append(time.perf_counter() - started)
            op = client.ExecuteStatement(ttypes.TExecuteStatementReq(
                sessionHandle=opened.sessionHandle, statement="SELECT 1", runAsync=False)).operationHandle
            client.FetchResults(ttypes.TFetchResultsReq(operationHandle=op, orientation=0, maxRows=100))
            client.CloseOperation(ttypes.TCloseOperationReq(operationHandle=op))
            client.CloseSession(ttypes.TCloseSessionReq(sessionHandle=opened.sessionHandle))
            cycles.append(time.perf_counter() - started)
    finally:
        conn.close()
    return statistics.median(opens) * 1000, statistics.median(cycles) * 1000


def _wire_bytes(port: int, sql: str) -> tuple[int, int]:
    """(rows, bytes of the result's TRowSets in Thrift binary encoding) as the driver sends them."""
    from pyhive import hive
    from TCLIService import ttypes
    from thrift.TSerialization import serialize
    conn = hive.connect("127.0.0.1", port, username="bench", database="default")
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = total = 0
        while True:
            resp = conn.client.FetchResults(ttypes.TFetchResultsReq(
                operationHandle=cur._operationHandle, orientation=0, maxRows=10000))
            batch = resp.results
            col = batch.columns[0]
            kinds = (col.boolVal, col.byteVal, col.i16Val, col.i32Val, col.i64Val, col.doubleVal, col.stringVal,
                     col.binaryVal)
            n = len(next(k for k in kinds if k is not None).values)
            total += len(serialize(batch))
            rows += n
            if n == 0:
                return rows, total
    finally:
        conn.close()


def cache_bench(sts: SparkThriftServer, work: Path, rounds: int) -> None:
    admin = free_port()
    gw = Sparkgate.with_config(work, f"""
[server]
bind = "127.0.0.1:{{port}}"
session_reuse_ttl = "60s"
[admin]
bind = "127.0.0.1:{admin}"
[backend]
address = "127.0.0.1:{sts.port}"
[cache]
ttl = "10m"
max_result_bytes = 67108864
""", "gw-cache").start()
    try:
        print("\n== result cache and session reuse (real Spark Thrift Server) ==", flush=True)
        _run(sts.port, f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        _run(sts.port, f"DROP TABLE IF EXISTS {SCHEMA}.sales")
        _run(sts.port, f"""CREATE TABLE {SCHEMA}.sales USING parquet AS SELECT
            CAST(id % 7 AS STRING) AS region, CONCAT('p', CAST(id % 997 AS STRING)) AS product,
            date_add(DATE'2024-01-01', CAST(id % 365 AS INT)) AS day, (id % 1000) / 10.0 AS amount
            FROM range(0, 3000000, 1, 4)""")
        best = {"direct": float("inf"), "cold": float("inf"), "warm": float("inf")}
        for r in range(rounds):
            _invalidate(admin)
            for name, port in [("direct", sts.port), ("cold", gw.port), ("warm", gw.port)]:
                started = time.perf_counter()
                results = [_run(port, sql) for sql in DASHBOARD]
                elapsed = time.perf_counter() - started
                best[name] = min(best[name], elapsed)
                print(f"  round {r + 1}: six charts {name}: {elapsed * 1000:.1f} ms "
                      f"({sum(len(x) for x in results)} rows)", flush=True)
        print(f"dashboard of six chart queries (a session each), best of {rounds}: direct {best['direct'] * 1000:.1f} ms"
              f" | sparkgate cold {best['cold'] * 1000:.1f} ms | sparkgate warm {best['warm'] * 1000:.1f} ms"
              f" | warm speed-up {best['direct'] / best['warm']:.1f}x over direct", flush=True)

        direct_open, direct_cycle = _cycles(sts.port, 50)
        gw_open, gw_cycle = _cycles(gw.port, 50)
        print(f"open + SELECT 1 + close on one connection, p50 of 50: direct OpenSession {direct_open:.2f} ms, "
              f"cycle {direct_cycle:.2f} ms | sparkgate (session reuse, cache) OpenSession {gw_open:.2f} ms, "
              f"cycle {gw_cycle:.2f} ms", flush=True)

        tag = f"c{int(time.time())}"
        sql = f"SELECT '{tag}' AS tag, count(*) FROM range(0, 200000000, 1, 8) WHERE hash(id) % 1000 = 1"
        started = time.perf_counter()
        threads = [threading.Thread(target=_run, args=(gw.port, sql)) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        together = time.perf_counter() - started
        started = time.perf_counter()
        _run(sts.port, sql)
        one_direct = time.perf_counter() - started
        with urllib.request.urlopen(sts.ui_url + "/api/v1/applications", timeout=10) as r:
            app = json.load(r)[0]["id"]
        with urllib.request.urlopen(f"{sts.ui_url}/api/v1/applications/{app}/jobs", timeout=10) as r:
            groups = {j.get("jobGroup") for j in json.load(r) if tag in (j.get("description") or "")}
        print(f"twenty concurrent identical queries through sparkgate: {len(groups) - 1} Spark statement(s) "
              f"(+1 run directly for the baseline), {together:.2f} s for all twenty | one directly {one_direct:.2f} s",
              flush=True)

        big = "SELECT id, CONCAT('label-', CAST(id AS STRING)) AS label, id * 0.5 AS amount FROM range(0, 200000)"
        rows, wire = _wire_bytes(sts.port, big)
        before = _metric(admin, "cache_bytes")
        _run(gw.port, big)
        arrow = _metric(admin, "cache_bytes") - before
        print(f"memory per cached MB: {rows} rows, TRowSets on the wire {wire / 1e6:.2f} MB, in the cache (Arrow + key) "
              f"{arrow / 1e6:.2f} MB = {arrow / wire:.2f} bytes per wire byte", flush=True)
    finally:
        gw.stop()


if __name__ == "__main__":
    # Alone: `python integration/bench_cache.py` (bench.py calls cache_bench with its own server).
    import tempfile
    with tempfile.TemporaryDirectory(prefix="sparkgate-bench-cache-") as d:
        server = SparkThriftServer(Path(d) / "sts", conf={"spark.ui.port": str(free_port())}).start()
        try:
            cache_bench(server, Path(d), 2)
        finally:
            server.stop()
