#!/usr/bin/env bash
# A Spark Thrift Server in local mode on a loopback port, for tests and manual experiments.
#
#   integration/sts.sh start PORT WORKDIR [NONE|NOSASL]   prints the server's pid once an HS2
#                                                         OpenSession succeeds (PORT 0 = any free)
#   integration/sts.sh stop WORKDIR                       SIGTERM, then SIGKILL after 20 s
#
# NONE (default) = SASL PLAIN with any password; NOSASL = raw Thrift. Everything lives in WORKDIR:
# sts.log, sts.pid, metastore_db, warehouse, tmp. Needs integration/setup.sh (Java 17, the venv).
# The same from Python: integration/harness.py start_sts(port, workdir, auth) / stop_sts(...).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="$repo/.venv/bin/python"
usage() { sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ -x "$python" ] || { echo "sts.sh: no $python: run integration/setup.sh first" >&2; exit 1; }

case "${1:-}" in
  start)
    [ $# -ge 3 ] && [ $# -le 4 ] || usage
    auth="$(echo "${4:-NONE}" | tr '[:lower:]' '[:upper:]')"
    case "$auth" in NONE|NOSASL) ;; *) echo "sts.sh: auth must be NONE or NOSASL, not $4" >&2; exit 2 ;; esac
    [[ "$2" =~ ^[0-9]+$ ]] || { echo "sts.sh: PORT must be a number, not $2" >&2; exit 2; }
    mkdir -p "$3"
    exec "$python" "$repo/integration/harness.py" sts-start "$2" "$3" "$auth"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    exec "$python" "$repo/integration/harness.py" sts-stop "$2"
    ;;
  *) usage ;;
esac
