#!/usr/bin/env bash
# The embedded default: install what is missing (Java 17, Spark via pyspark), start a local Spark
# Thrift Server on 127.0.0.1 and sparkgate in front of it. Ctrl-C stops both.
#
#   SPARKGATE_PORT (default 10009)  where clients connect
#   STS_PORT       (default 10000)  the local Spark Thrift Server
#   SPARKGATE_HOME (default ~/.local/share/sparkgate)  Spark's work dir (metastore, warehouse, logs)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
gateway_port="${SPARKGATE_PORT:-10009}"
sts_port="${STS_PORT:-10000}"
home="${SPARKGATE_HOME:-$HOME/.local/share/sparkgate}"
mkdir -p "$home/sts"

./integration/setup.sh
cargo build --release -p sparkgate

echo "starting a local Spark Thrift Server on 127.0.0.1:$sts_port (logs: $home/sts/sts.log)"
.venv/bin/python integration/harness.py sts "$home/sts" "$sts_port" > "$home/sts/harness.out" 2>&1 &
sts_pid=$!
cleanup() {
  kill "$gateway_pid" 2>/dev/null || true
  kill "$sts_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
gateway_pid=""
trap cleanup EXIT INT TERM
# harness.py prints its ready line once an HS2 session succeeds.
until grep -q "ready on" "$home/sts/harness.out" 2>/dev/null; do
  if ! kill -0 "$sts_pid" 2>/dev/null; then
    cat "$home/sts/harness.out" >&2
    echo "the Spark Thrift Server failed to start; see $home/sts/sts.log" >&2
    exit 1
  fi
  sleep 0.5
done
cat "$home/sts/harness.out"

echo "starting sparkgate on 127.0.0.1:$gateway_port"
echo "  beeline -u 'jdbc:hive2://127.0.0.1:$gateway_port/default' -n \$USER"
echo "  python: hive.connect('127.0.0.1', $gateway_port, username='me')   superset: hive://me@127.0.0.1:$gateway_port/default"
./target/release/sparkgate --backend "127.0.0.1:$sts_port" --bind "127.0.0.1:$gateway_port" &
gateway_pid=$!
wait "$gateway_pid"
