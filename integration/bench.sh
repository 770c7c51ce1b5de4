#!/usr/bin/env bash
# Benchmarks with real parts (see integration/bench.py); prints figures, asserts nothing.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
./integration/setup.sh >/dev/null
cargo build --release -p sparkgate
exec .venv/bin/python integration/bench.py "$@"
