"""Benchmarks that need real parts; prints figures, asserts nothing.

1. `cargo bench -p sparkgate --bench proxy -- --real 127.0.0.1:STS`: per-call latency, large
   fetch and status polls, direct vs through sparkgate, with the in-process fake backend and with
   the real Spark Thrift Server, all in one run.
2. beeline (Hive JDBC 2.3.10, one GetOperationStatus per fetched row) fetching N rows directly and
   through sparkgate, alternating, best of R runs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beeline-rows", type=int, default=int(os.environ.get("BENCH_BEELINE_ROWS", "200000")))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sparkgate-bench-") as d:
        work = Path(d)
        sts = SparkThriftServer(work / "sts").start()
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
        finally:
            gw.stop()
            sts.stop()


if __name__ == "__main__":
    main()
