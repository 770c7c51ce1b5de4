#!/usr/bin/env bash
# Installs the real parts the end-to-end tests and the embedded default need, idempotently:
# Java 17 from Debian, and a venv under the repo (.venv, git-ignored) with pyspark (Spark jars,
# spark-submit, beeline), PyHive and SQLAlchemy (integration/requirements.txt, exact pins).
# Safe to run again: it skips what is there (a stamp in the venv holds the requirements' hash),
# and it is quiet unless it installs something or fails. Works as root on a fresh Debian 12.
# pip's cache (~/.cache/pip) speeds a re-install but is not needed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv"
req="$repo/integration/requirements.txt"
started=$SECONDS
timings=""
lap() { timings+="${timings:+, }$1 $((SECONDS - lap_start)) s"; lap_start=$SECONDS; }
lap_start=$SECONDS

# apt_install: apt-get install, quiet, `apt-get update` only when needed.
source "$repo/integration/apt.sh"

java_ok() {
  command -v java >/dev/null && java -version 2>&1 | grep -q 'version "17\.'
}
if ! java_ok; then
  apt_install openjdk-17-jre-headless
fi
java_ok || { echo "setup: Java 17 is required but \`java -version\` on PATH is: $(java -version 2>&1 | head -1)" >&2; exit 1; }
lap java

# A real OpenLDAP server for the LDAP tests; openssl makes their TLS certificates; procps gives pgrep.
missing=()
[ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapadd >/dev/null || missing+=(ldap-utils)
command -v openssl >/dev/null || missing+=(openssl)
command -v pgrep >/dev/null || missing+=(procps)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
lap debian-tools

# Python 3 with venv + ensurepip (Debian ships ensurepip separately, in python3-venv).
python="$(command -v python3 || true)"
if [ -z "$python" ] || ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  apt_install python3 python3-venv
  python="$(command -v python3)"
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
  echo "setup: creating $venv (pyspark, PyHive, SQLAlchemy, pytest; ~1 min the first time)"
  "$python" -m venv --clear "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing integration/requirements.txt into $venv"
  rm -f "$stamp"
  pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
  "${pip[@]}" install --upgrade pip
  "${pip[@]}" install -r "$req"
  echo "$want" > "$stamp"
fi
lap venv

spark_home="$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
[ -x "$spark_home/bin/spark-submit" ] && [ -x "$spark_home/bin/beeline" ] \
  || { echo "setup: $spark_home has no bin/spark-submit or bin/beeline" >&2; exit 1; }
echo "setup: ready in $((SECONDS - started)) s (${timings}; $(java -version 2>&1 | head -1); Spark home $spark_home)"
# Superset 6.1 (its own cached venv) and Debian's chromium for integration/tests/test_superset.py.
"$repo/integration/setup_superset.sh"
