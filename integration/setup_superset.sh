#!/usr/bin/env bash
# Installs what integration/tests/test_superset.py drives, idempotently:
#   - Debian's chromium (the browser Playwright drives; Playwright never downloads one of its own:
#     the Python package comes from integration/requirements.txt, into .venv, via setup.sh);
#   - Apache Superset 6.1.0 in a venv of its own (it pins SQLAlchemy 1.4 and an old Flask stack
#     that cannot share .venv), cached outside the repo in
#     ${SPARKGATE_CACHE:-~/.cache/sparkgate}/superset-<first 12 hex of sha256(superset-requirements.txt)>
#     (~0.8 GB; ~55 s from PyPI without pip's cache), so a fresh clone or work tree reuses it;
#   - Superset's initialized metadata DB (`superset db upgrade`, the admin user, `superset init`:
#     25-45 s), kept in that venv dir as a template that integration/superset_server.py copies for
#     each run.
# Quiet when everything is there; works as root on a fresh Debian 12. Called at the end of setup.sh.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
req="$repo/integration/superset-requirements.txt"
cache="${SPARKGATE_CACHE:-$HOME/.cache/sparkgate}"
hash="$(sha256sum "$req" | cut -c1-12)"
venv="$cache/superset-$hash"
started=$SECONDS

# apt_install: as in setup.sh.
source "$repo/integration/apt.sh"

# /usr/bin/chromium is Debian's shell wrapper; superset_server.py launches the binary behind it.
[ -x /usr/lib/chromium/chromium ] || apt_install chromium

python="$(command -v python3 || true)"
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3 python3-venv
  python="$(command -v python3)"
fi

# The venv is complete when its stamp is there (written last); parallel runs take turns.
if [ ! -f "$venv/.installed" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.superset.lock"
  flock 9
  if [ ! -f "$venv/.installed" ]; then
    echo "setup-superset: installing Superset (integration/superset-requirements.txt) into $venv (~1-2 min)"
    t0=$SECONDS
    rm -rf "$venv"
    "$python" -m venv "$venv"
    pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
    "${pip[@]}" install --upgrade pip
    "${pip[@]}" install -r "$req"
    "$venv/bin/python" -c 'import superset, pyhive.hive' >/dev/null
    touch "$venv/.installed"
    # Venvs of other requirements stay (another work tree may still use one): ~0.8 GB each.
    echo "setup-superset: Superset installed in $((SECONDS - t0)) s" \
      "($(ls -d "$cache"/superset-* | wc -l) Superset venvs in $cache)"
  fi
  exec 9>&-
fi

# The metadata DB template (superset_server.py makes it when missing, under the same lock).
if [ ! -f "$venv/metadata-template/superset.db" ]; then
  echo "setup-superset: initializing Superset's metadata DB template (~30 s)"
  # (superset_server.py needs only the standard library for that.)
  "$python" "$repo/integration/superset_server.py" template
fi
if [ $((SECONDS - started)) -gt 2 ]; then
  echo "setup-superset: ready in $((SECONDS - started)) s (Superset venv $venv)"
fi
