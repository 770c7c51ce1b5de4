#!/usr/bin/env bash
# Regenerates hive-thrift/src/generated/tcliservice.rs from hive-thrift/thrift/TCLIService.thrift.
#
# Uses Debian's thrift-compiler 0.17 (installed if missing); the `thrift` crate is pinned to the
# matching runtime (=0.17.0). Idempotent: running it twice leaves the same file.
#
# Changes made to the compiler's output: the line `#![cfg_attr(rustfmt, rustfmt_skip)]` is
# deleted so that rustfmt formats the file (readable diffs, `cargo fmt --check` stays clean), and
# a union holding only an unknown field is an error instead of a panic (see below).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
idl="$here/thrift/TCLIService.thrift"
target="$here/src/generated/tcliservice.rs"

if ! command -v thrift >/dev/null; then
  echo "installing Debian's thrift-compiler"
  # apt may briefly hold the dpkg lock (another install running): wait for it.
  for _ in $(seq 60); do
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq thrift-compiler >/dev/null; then
      break
    fi
    sleep 5
  done
  command -v thrift >/dev/null || { echo "could not install thrift-compiler" >&2; exit 1; }
fi

version="$(thrift --version)"
case "$version" in
  *" 0.17."*) ;;
  *) echo "expected thrift-compiler 0.17, found: $version" >&2; exit 1 ;;
esac

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

thrift -out "$out" --gen rs "$idl"
# The compiler names the file after the IDL in snake case.
generated="$out/t_c_l_i_service.rs"

# Let rustfmt in (see above); fail loudly if the compiler stops emitting that line.
grep -qxF '#![cfg_attr(rustfmt, rustfmt_skip)]' "$generated" \
  || { echo "compiler output changed: no rustfmt_skip line to remove" >&2; exit 1; }
sed -i '/^#!\[cfg_attr(rustfmt, rustfmt_skip)\]$/d' "$generated"

# A union that holds one field this code does not know makes the compiler's output panic
# (`ret.expect(..)` on `None`; found by the message fuzz target): make it a protocol error.
union_panic='Ok(ret.expect("return value should have been constructed"))'
grep -qF "$union_panic" "$generated" \
  || { echo "compiler output changed: no union expect() to replace" >&2; exit 1; }
sed -i 's/Ok(ret\.expect("return value should have been constructed"))/ret.ok_or_else(|| thrift::Error::Protocol(ProtocolError::new(ProtocolErrorKind::InvalidData, "received a union field this code does not know")))/' "$generated"

# Format with the workspace's toolchain and rustfmt settings.
(cd "$here" && rustfmt --edition 2021 "$generated")

# The workspace forbids unsafe code; the generated code must not need any.
if grep -qw unsafe "$generated"; then
  echo "generated code contains \`unsafe\`" >&2
  exit 1
fi

mv "$generated" "$target"
echo "regenerated $target with $version"
