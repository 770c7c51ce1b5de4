"""Benchmarks that need real parts; prints figures, asserts nothing.

1. `cargo bench -p sparkgate --bench proxy -- --real 127.0.0.1:STS`: per-call latency, large
   fetch and status polls, direct vs through sparkgate, with the in-process fake backend and with
   the real Spark Thrift Server, all in one run.
2. beeline (Hive JDBC 2.3.10, one GetOperationStatus per fetched row) fetching N rows directly and
   through sparkgate, alternating, best of R runs.
3. Progress lookups: a statement polled as Superset does (status + operation log), through
   sparkgate with progress (the driver's Spark UI read) and without, alternating, best of R; the
   latency of one status call with and without a progress update; and the driver calls a waiting
   status call costs (JDBC clients' long poll, answered from short driver polls).
4. The result cache and session reuse (integration/bench_cache.py): a dashboard's six queries
   direct, cold and warm; OpenSession with reuse; twenty identical queries at once; memory.
5. Superset (real, in Chromium): a dashboard's load time and a SQL Lab query's, directly and
   through sparkgate (integration/superset_server.py bench_superset).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import REPO, Sparkgate, SparkThriftServer
from helpers import free_port, spark_home


def beeline_fetch(port: int, rows: int) -> tuple[float, int]:
    sql = f"select id, cast(id * 7 as string) as s from range({rows})"
    cmd = [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{port}/default", "-n", "bench",
           "--outputformat=csv2", "--silent=true", "-e", sql]
    started = time.monotonic()
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return elapsed, sum(1 for line in out.stdout.splitlines() if re.fullmatch(r"\d+,\d+", line))


PROGRESS_SQL = "SELECT count(*) FROM range(0, 600000000, 1, 32) WHERE hash(id) % 7 = 1"


def driver_status_calls(admin_port: int) -> int:
    """GetOperationStatus calls sparkgate has sent to drivers (its metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.search(r'backend_calls_total\{method="GetOperationStatus"\} (\d+)', text)
    return int(found[1]) if found else 0


def polled_run(port: int, every: float) -> float:
    """Runs PROGRESS_SQL asynchronously, polling status and the operation log every `every` s
    (Superset: 5 s); returns its wall time."""
    from pyhive import hive
    from TCLIService import ttypes
    with hive.connect("127.0.0.1", port, username="bench").cursor() as cur:
        started = time.monotonic()
        cur.execute(PROGRESS_SQL, async_=True)
        while cur.poll().operationState in (ttypes.TOperationState.INITIALIZED_STATE,
                                            ttypes.TOperationState.RUNNING_STATE):
            cur.fetch_logs()
            time.sleep(every)
        cur.fetchall()
        return time.monotonic() - started


def progress_bench(sts: SparkThriftServer, plain_port: int, work: Path, rounds: int) -> None:
    from pyhive import hive
    from TCLIService import ttypes
    admin = free_port()
    gw = Sparkgate.with_config(work, f"""
[server]
bind = "127.0.0.1:{{port}}"
[admin]
bind = "127.0.0.1:{admin}"
[backend]
address = "127.0.0.1:{sts.port}"
spark_ui = "{sts.ui_url}"
""", "gw-progress").start()
    try:
        print("\n== progress lookups (Spark UI REST) ==", flush=True)
        best = {"without progress": float("inf"), "with progress": float("inf")}
        for r in range(rounds):
            order = [("without progress", plain_port), ("with progress", gw.port)]
            for name, p in order if r % 2 == 0 else reversed(order):
                elapsed = polled_run(p, 1.0)
                best[name] = min(best[name], elapsed)
                print(f"  {name}: statement polled every 1 s: {elapsed:.2f} s", flush=True)
        print(f"statement wall time, polled every 1 s: without progress {best['without progress']:.2f} s | "
              f"with progress {best['with progress']:.2f} s | ratio "
              f"{best['with progress'] / best['without progress']:.3f}", flush=True)

        def status_latency(configuration: dict, progress: bool, calls: int = 10) -> tuple[float, float, int]:
            """Status calls on a running statement (calls after it ended are not counted)."""
            conn = hive.connect("127.0.0.1", gw.port, username="bench", configuration=configuration)
            cur = conn.cursor()
            cur.execute(PROGRESS_SQL.replace("600000000", "6000000000"), async_=True)
            time.sleep(6)  # past the first status_wait, in which a status call is held
            before = driver_status_calls(admin)
            took = []
            for _ in range(calls):
                started = time.monotonic()
                status = conn.client.GetOperationStatus(ttypes.TGetOperationStatusReq(
                    operationHandle=cur._operationHandle, getProgressUpdate=progress))
                if status.operationState != ttypes.TOperationState.RUNNING_STATE:
                    break
                took.append(time.monotonic() - started)
            driver_calls = driver_status_calls(admin) - before
            cur.cancel()
            conn.close()
            took.sort()
            return took[len(took) // 2] * 1000, sum(took), driver_calls

        plain_ms, _, _ = status_latency({}, False)
        progress_ms, _, _ = status_latency({}, True)
        print(f"status call while running (Python client: one driver poll, which the driver holds up to "
              f"backend.status_poll = 500 ms while the statement runs): "
              f"p50 {plain_ms:.1f} ms without progress update, {progress_ms:.1f} ms with one "
              f"(+{progress_ms - plain_ms:.1f} ms for the Spark UI lookup)", flush=True)
        _, waited, driver_calls = status_latency({"sparkgate.client": "jdbc"}, False, calls=2)
        print(f"JDBC client's long-polled status calls: {waited:.1f} s waited, {driver_calls} driver status calls "
              f"= {driver_calls / waited:.2f} driver polls per second per waiting client", flush=True)
    finally:
        gw.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beeline-rows", type=int, default=int(os.environ.get("BENCH_BEELINE_ROWS", "200000")))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sparkgate-bench-") as d:
        work = Path(d)
        sts = SparkThriftServer(work / "sts", conf={"spark.ui.port": str(free_port())}).start()
        port = free_port()
        gw = Sparkgate(["--backend", f"127.0.0.1:{sts.port}", "--bind", f"127.0.0.1:{port}"], port, work / "gw.log")
        try:
            gw.start()
            print(f"Spark Thrift Server on {sts.port} (started in {sts.startup_seconds:.1f} s); sparkgate on {port}",
                  flush=True)
            subprocess.run(
                ["cargo", "bench", "-p", "sparkgate", "--bench", "proxy", "--", "--real", f"127.0.0.1:{sts.port}"],
                cwd=REPO, check=True,
            )
            print(f"\n== beeline fetch of {args.beeline_rows} rows (Hive JDBC 2.3.10), best of {args.rounds} ==",
                  flush=True)
            best = {"direct": float("inf"), "sparkgate": float("inf")}
            for r in range(args.rounds):
                order = [("direct", sts.port), ("sparkgate", port)]
                for name, p in order if r % 2 == 0 else reversed(order):
                    elapsed, n = beeline_fetch(p, args.beeline_rows)
                    if n != args.beeline_rows:
                        raise RuntimeError(f"{name}: beeline printed {n} rows, expected {args.beeline_rows}")
                    best[name] = min(best[name], elapsed)
                    print(f"  {name}: {elapsed:.2f} s", flush=True)
            per_row = {k: v / args.beeline_rows * 1e6 for k, v in best.items()}
            print(f"beeline {args.beeline_rows} rows: direct {best['direct']:.2f} s ({per_row['direct']:.1f} us/row) | "
                  f"sparkgate {best['sparkgate']:.2f} s ({per_row['sparkgate']:.1f} us/row) | "
                  f"speed-up {best['direct'] / best['sparkgate']:.2f}x", flush=True)
            progress_bench(sts, port, work, args.rounds)
            from bench_cache import cache_bench
            cache_bench(sts, work, max(args.rounds, 3))
            from superset_server import bench_superset
            print("\n== Superset: dashboard (charts) and SQL Lab query in Chromium, direct vs sparkgate ==",
                  flush=True)
            bench_superset(sts.port, port, work / "superset", max(args.rounds, 3))
        finally:
            gw.stop()
            sts.stop()


if __name__ == "__main__":
    main()
