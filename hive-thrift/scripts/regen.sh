#!/usr/bin/env bash
# Regenerates hive-thrift/src/generated/tcliservice.rs from hive-thrift/thrift/TCLIService.thrift
# with Debian's thrift-compiler 0.17 (the `thrift` crate is pinned to the matching runtime).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v thrift >/dev/null; then
  echo "installing Debian's thrift-compiler"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq thrift-compiler >/dev/null
fi
version="$(thrift --version)"
case "$version" in
  *" 0.17."*) ;;
  *) echo "expected thrift-compiler 0.17, found: $version" >&2; exit 1 ;;
esac
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
thrift -out "$out" --gen rs "$here/thrift/TCLIService.thrift"
# The compiler names the file after the IDL in snake case.
mv "$out/t_c_l_i_service.rs" "$here/src/generated/tcliservice.rs"
echo "regenerated $here/src/generated/tcliservice.rs with $version"
