#!/usr/bin/env bash
# The embedded default: install what is missing (Java 17, Spark via pyspark), then run sparkgate
# with the local launcher, which starts Spark Thrift Server drivers itself as child processes on
# 127.0.0.1. Ctrl-C stops sparkgate and its drivers.
#
#   SPARKGATE_PORT (default 10009)  where clients connect
#   STS_PORT       (default 10000)  the first port handed to drivers
#   SPARKGATE_HOME (default ~/.local/share/sparkgate; as root /var/lib/sparkgate)  your tables
#                  (tenants/default/: catalog and warehouse, kept across drivers and runs) and the
#                  drivers' work dirs and logs. As root, sparkgate runs the drivers as the OS user
#                  sparkgate-default (created if missing), which must be able to reach this dir.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
gateway_port="${SPARKGATE_PORT:-10009}"
sts_port="${STS_PORT:-10000}"
if [ "$(id -u)" -eq 0 ]; then
  home="${SPARKGATE_HOME:-/var/lib/sparkgate}"
else
  home="${SPARKGATE_HOME:-$HOME/.local/share/sparkgate}"
fi
mkdir -p "$home"

./integration/setup.sh
cargo build --release -p sparkgate

cat > "$home/sparkgate.toml" <<TOML
# Written by integration/run-local.sh: one tenant, drivers started by sparkgate itself.
[server]
bind = "127.0.0.1:$gateway_port"

[local]
work_dir = "$home"
first_port = $sts_port

[[tenants]]
name = "default"
users = ["*"]
launcher = "local"
driver_memory = "1g"

[tenants.scaling]
min_drivers = 1
max_drivers = 2
TOML
# sparkgate's own file: no driver's OS user may read it (sparkgate checks at startup).
chmod 600 "$home/sparkgate.toml"

echo "starting sparkgate on 127.0.0.1:$gateway_port; it starts a Spark Thrift Server (~15 s; logs under $home/drivers, tables under $home/tenants/default)"
echo "  beeline -u 'jdbc:hive2://127.0.0.1:$gateway_port/default' -n \$USER"
echo "  python: hive.connect('127.0.0.1', $gateway_port, username='me')   superset: hive://me@127.0.0.1:$gateway_port/default"
exec ./target/release/sparkgate --config "$home/sparkgate.toml"
