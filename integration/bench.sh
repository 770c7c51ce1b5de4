#!/usr/bin/env bash
# Benchmarks with real parts (see integration/bench.py), then the pool-scaling and idle-session
# benches (in-process fakes, see gateway/benches/); prints figures, asserts nothing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
./integration/setup.sh >/dev/null
cargo build --release -p sparkgate
.venv/bin/python integration/bench.py "$@"
echo
echo "== elastic pools: load traces through DriverPool + autoscaler (gateway/benches/pool.rs) =="
cargo bench -p sparkgate --bench pool
echo
echo "== admission control and the audit log: a bursty trace with and without admission; an audit line's cost (gateway/benches/admission.rs) =="
cargo bench -p sparkgate --bench admission
echo
echo "== idle sessions: sparkgate memory and backend connections (gateway/benches/idle_sessions.rs) =="
SPARKGATE_BIN="${SPARKGATE_BIN:-$repo/target/release/sparkgate}" \
  cargo bench -p sparkgate --bench idle_sessions -- --sessions "${BENCH_IDLE_SESSIONS:-10000}"
echo
echo "== login flood: memory under concurrent bad logins, unbounded vs bounded checks (gateway/benches/login_flood.rs) =="
SPARKGATE_BIN="${SPARKGATE_BIN:-$repo/target/release/sparkgate}" \
  cargo bench -p sparkgate --bench login_flood -- --logins "${BENCH_FLOOD_LOGINS:-200}"
