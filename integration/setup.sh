#!/usr/bin/env bash
# Installs the real parts the end-to-end tests and the embedded default need, idempotently:
# Java 17 from Debian, and a venv under the repo (.venv, git-ignored) with pyspark (Spark jars,
# spark-submit, beeline), PyHive and SQLAlchemy. Safe to run again: it skips what is there.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv"
req="$repo/integration/requirements.txt"
started=$SECONDS

java_ok() {
  command -v java >/dev/null && java -version 2>&1 | grep -q 'version "17\.'
}
if ! java_ok; then
  echo "setup: installing openjdk-17-jre-headless (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
java_ok || { echo "setup: Java 17 is required and could not be installed" >&2; exit 1; }

# A real OpenLDAP server for the LDAP tests; openssl makes their TLS certificates.
if ! [ -x /usr/sbin/slapd ] || ! command -v ldapadd >/dev/null || ! command -v openssl >/dev/null; then
  echo "setup: installing slapd, ldap-utils, openssl (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slapd ldap-utils openssl >/dev/null
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating $venv (pyspark, PyHive, SQLAlchemy, pytest; ~1 min the first time)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$req"
  echo "$want" > "$stamp"
fi
echo "setup: ready in $((SECONDS - started)) s (Java: $(java -version 2>&1 | head -1); Spark home: $("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))'))"
