#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 30) each, one after the other, on a
# temporary copy of its checked-in seed corpus (fuzz/*/seeds/<target>), and fails on the first
# crash, panic, timeout or oversized allocation. Installs cargo-fuzz if it is missing.
#
#   FUZZ_SECONDS=60 integration/fuzz.sh            # all targets
#   integration/fuzz.sh scan cookie                # some targets
#
# Two fuzz projects (fuzz/README.md): fuzz/protocol (hive-thrift's decoders) and fuzz/gateway
# (cookie, users file, config; it depends on the whole gateway). Builds are kept in
# ${SPARKGATE_CACHE:-~/.cache/sparkgate}/fuzz-target, outside the clone, so CI's fresh clones
# rebuild only sparkgate's own crates; the corpus a run grows is thrown away. A crashing input is
# printed (hex) and kept with the log in a temp directory whose path is printed; once the library
# is fixed, add it to fuzz/<project>/seeds/<target>/ as crash-<what>.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
started=$SECONDS

# 0.13.2 builds with the pinned toolchain (rust-toolchain.toml).
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# cargo fuzz passes nightly flags (-Zsanitizer=address); the stable compiler takes them with this.
export RUSTC_BOOTSTRAP=1
target_dir="${SPARKGATE_CACHE:-$HOME/.cache/sparkgate}/fuzz-target"
seconds="${FUZZ_SECONDS:-30}"
projects=(protocol gateway)

declare -A project_of
for project in "${projects[@]}"; do
  for target in $(cargo fuzz list --fuzz-dir "fuzz/$project"); do
    project_of[$target]=$project
  done
done
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for project in "${projects[@]}"; do
    mapfile -t -O "${#targets[@]}" targets < <(cargo fuzz list --fuzz-dir "fuzz/$project")
  done
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/sparkgate-fuzz.XXXXXX")"
keep_work=0
trap '[ "$keep_work" = 1 ] || rm -rf "$work"' EXIT
built=()
for target in "${targets[@]}"; do
  project="${project_of[$target]:-}"
  [ -n "$project" ] || { echo "no fuzz target $target" >&2; exit 2; }
  if [[ ! " ${built[*]} " == *" $project "* ]]; then
    # All of a project's targets in one build; `cargo fuzz run` then finds them built.
    echo "=== build fuzz/$project ($((SECONDS - started)) s)"
    cargo fuzz build --fuzz-dir "fuzz/$project" --target-dir "$target_dir"
    built+=("$project")
  fi
  corpus="$work/corpus/$target"
  artifacts="$work/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  cp "fuzz/$project/seeds/$target/"* "$corpus/"
  echo "=== fuzz $target for ${seconds}s, $(ls "$corpus" | wc -l) seeds ($((SECONDS - started)) s)"
  # -malloc_limit_mb: no input of a few KiB should make a decoder allocate 64 MiB at once (a
  # length believed before it is checked). -timeout: one input taking 10 s is a hang.
  if ! cargo fuzz run --fuzz-dir "fuzz/$project" --target-dir "$target_dir" \
      "$target" "$corpus" -- \
      -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=64 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$work/$target.log"; then
    grep -v '^#[0-9]' "$work/$target.log" | tail -n 60 >&2
    for crash in "$artifacts"/*; do
      [ -e "$crash" ] || continue
      echo "--- crashing input $crash" >&2
      od -A x -t x1z -v "$crash" | head -n 40 >&2
    done
    echo "fuzz target $target failed; its inputs and log are kept in $work" >&2
    keep_work=1
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE' "$work/$target.log" | tail -n 1 || true
done
echo "${#targets[@]} fuzz targets ran ${seconds}s each without a crash ($((SECONDS - started)) s in all)"
