#!/usr/bin/env bash
# A real Kubernetes control plane for sparkgate's tests, from Debian packages only (no registry we
# reach ships Kubernetes binaries; see shared KUBERNETES-TESTING.md):
#
#   control-plane.sh build       kube-apiserver + kube-controller-manager v1.20.2, built once from
#                                Debian bookworm's `kubernetes` source package into
#                                ${SPARKGATE_CACHE:-~/.cache/sparkgate}/k8s-v1.20.2/bin (~5 min on 2
#                                cores, ~3 GB disk while building); etcd (Debian etcd-server) and
#                                openssl. Skips what is there; quiet unless it works or fails.
#   control-plane.sh start DIR   CA + certs + tokens in DIR, then etcd, kube-apiserver and
#                                kube-controller-manager on 127.0.0.1 (ETCD_PORT=2379, peer port
#                                ETCD_PORT+1, APISERVER_PORT=6443, CONTROLLER_PORT=6444); writes
#                                DIR/admin.kubeconfig and DIR/pids; returns once /readyz answers and
#                                namespace `default` has its ServiceAccount (60 s deadline).
#   control-plane.sh stop DIR    stops what `start DIR` started.
#
# What it is NOT: a whole cluster. Kubernetes 1.20 is end of life, and there is no scheduler and no
# kubelet, so Pods stay Pending unless the test harness plays the node (integration/k8s_node.py).
set -euo pipefail

K8S_VERSION=v1.20.2
ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
cache="${SPARKGATE_CACHE:-$HOME/.cache/sparkgate}/k8s-$K8S_VERSION"
bin="$cache/bin"

die() { echo "control-plane: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else
    command -v sudo >/dev/null || die "need root (or sudo) to run: $*"
    sudo "$@"
  fi
}

# apt-get install, updating the package lists only when the install fails on them. Quiet.
apt_install() {
  echo "control-plane: installing $* (Debian)"
  local log
  log="$(mktemp)"
  export DEBIAN_FRONTEND=noninteractive
  if as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >"$log" 2>&1 \
      || { as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >>"$log" 2>&1 \
           && as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >>"$log" 2>&1; }; then
    rm -f "$log"
    return
  fi
  tail -n 40 "$log" >&2
  rm -f "$log"
  die "could not install $*"
}

# etcd: the binary of Debian's etcd-server, unpacked into the cache (not installed: the package
# would register a system service; the tests want their own etcd on their own port).
ensure_etcd() {
  [ -x "$bin/etcd" ] && return
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download -qq etcd-server >/dev/null 2>&1) \
    || { as_root apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1; (cd "$tmp" && apt-get download -qq etcd-server); } \
    || { rm -rf "$tmp"; die "could not download Debian etcd-server"; }
  dpkg-deb -x "$tmp"/etcd-server_*.deb "$tmp/root"
  mkdir -p "$bin"
  cp "$tmp/root/usr/bin/etcd" "$bin/etcd.tmp.$$"
  mv "$bin/etcd.tmp.$$" "$bin/etcd"
  rm -rf "$tmp"
}

build() {
  local started=$SECONDS
  command -v openssl >/dev/null || apt_install openssl
  ensure_etcd
  if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ]; then
    return
  fi
  # One build at a time (parallel test runs share the cache); the winner's binaries serve all.
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ]; then
    return
  fi
  rm -rf "$cache"/build.* "$cache/bin.old"  # what an interrupted (SIGKILLed) build left
  local missing=()
  [ -x /usr/lib/go-1.19/bin/go ] || missing+=(golang-1.19-go)
  [ -d /usr/share/go-1.19/src/runtime ] || missing+=(golang-1.19-src)
  command -v rsync >/dev/null || missing+=(rsync libpopt0)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || missing+=(golang-github-modern-go-reflect2-dev)
  command -v make >/dev/null || missing+=(make)
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

  echo "control-plane: building kube-apiserver and kube-controller-manager $K8S_VERSION from Debian's source package (~5 min, once)"
  local work log
  # The temp dir sits next to the cache so the final mv is a rename on one file system.
  work="$(mktemp -d "$cache/build.XXXXXX")"
  log="$work/build.log"
  # The source tree is ~3 GB: whatever happens, only the binaries survive.
  trap 'rm -rf "$work"' EXIT
  if ! build_in "$work" >"$log" 2>&1; then
    echo "control-plane: build failed after $((SECONDS - started)) s; the log's end:" >&2
    tail -n 60 "$log" >&2
    exit 1
  fi
  mv "$work/out" "$work/bin.new"
  # Atomic: bin/ holds either no Kubernetes binaries or both (etcd may already be there).
  cp -p "$bin"/etcd "$work/bin.new/" 2>/dev/null || true
  rm -rf "$cache/bin.old"
  [ -d "$bin" ] && mv "$bin" "$cache/bin.old"
  mv "$work/bin.new" "$bin"
  rm -rf "$cache/bin.old" "$work"
  trap - EXIT
  echo "control-plane: built kube-apiserver and kube-controller-manager $K8S_VERSION into $bin in $((SECONDS - started)) s"
}

# The build itself, in a subshell (it cds and exports), all output to the caller's log.
# $1: an empty work dir.
build_in() (
  work="$1"
  set -x
  # A private apt configuration whose sources are the machine's Debian entry with deb-src added.
  apt="$work/apt"
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/archives/partial"
  src=/etc/apt/sources.list.d/debian.sources
  [ -f "$src" ] || die "no $src to copy the Debian entry from"
  sed -E 's/^Types:.*/Types: deb deb-src/' "$src" >"$apt/sources.list.d/debian.sources"
  cat >"$apt/apt.conf" <<CONF
Dir::Etc::sourcelist "/dev/null";
Dir::Etc::sourceparts "$apt/sources.list.d";
Dir::State::lists "$apt/lists";
Dir::Cache "$apt/cache";
Dir::Cache::archives "$apt/archives";
Debug::NoLocking "true";
CONF
  export APT_CONFIG="$apt/apt.conf"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  mkdir -p "$work/src"
  (cd "$work/src" && apt-get source --download-only kubernetes)
  unset APT_CONFIG
  orig="$(ls "$work"/src/kubernetes_*.orig.tar.* | head -1)"
  echo "$ORIG_SHA256  $orig" | sha256sum -c -
  mkdir -p "$work/tree"
  tar -xf "$orig" -C "$work/tree" --strip-components=1
  rm -rf "$work/src" "$apt"
  cd "$work/tree"
  # Required fix: the vendored reflect2 1.0.1 panics on every Pod create under Go >= 1.18.
  rm -rf vendor/github.com/modern-go/reflect2
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
  rm -rf vendor/github.com/modern-go/reflect2/.git* vendor/github.com/modern-go/reflect2/debian
  export PATH="/usr/lib/go-1.19/bin:$PATH" GOROOT=/usr/lib/go-1.19
  export GOPROXY=off GOFLAGS=-mod=vendor GOTOOLCHAIN=local KUBE_GIT_VERSION="$K8S_VERSION"
  export GOCACHE="$work/gocache" GOPATH="$work/gopath" HOME="$work/home"
  mkdir -p "$HOME"
  go version
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
  mkdir -p "$work/out"
  cp _output/local/go/bin/kube-apiserver _output/local/go/bin/kube-controller-manager "$work/out/"
  "$work/out/kube-apiserver" --version
)

# ---- start / stop ----------------------------------------------------------------------------

tails() {
  local dir="$1" f
  for f in etcd kube-apiserver kube-controller-manager; do
    [ -s "$dir/$f.log" ] || continue
    echo "---- last lines of $dir/$f.log" >&2
    tail -n 25 "$dir/$f.log" >&2
  done
}

# Whether pid $1 is alive and still one of ours (its command line names DIR $2; pids get reused).
ours() {
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

stop() {
  local dir
  dir="$(cd "${1:?usage: $0 stop DIR}" && pwd)"
  [ -f "$dir/pids" ] || return 0
  local name pid pids=()
  while read -r name pid; do
    if ours "$pid" "$dir"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done <"$dir/pids"
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while ours "$pid" "$dir" && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
    done
  done
  rm -f "$dir/pids"
}

# Runs "$@" in the background, in its own session, logging to DIR/NAME.log; records its pid.
launch() {
  local dir="$1" name="$2"
  shift 2
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo "$name $!" >>"$dir/pids"
}

# GET https://127.0.0.1:APISERVER_PORT$1 as admin; prints the body, fails on HTTP >= 400.
api_get() {
  curl -sf --max-time 2 --cacert "$dir/ca.crt" -H "Authorization: Bearer $token" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

start() {
  local started=$SECONDS
  dir="${1:?usage: $0 start DIR}"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  ETCD_PORT="${ETCD_PORT:-2379}"
  APISERVER_PORT="${APISERVER_PORT:-6443}"
  CONTROLLER_PORT="${CONTROLLER_PORT:-6444}"
  local peer_port=$((ETCD_PORT + 1)) f
  for f in kube-apiserver kube-controller-manager etcd; do
    [ -x "$bin/$f" ] || die "$bin/$f is missing: run \`$0 build\` first"
  done
  command -v openssl >/dev/null || die "openssl is missing: run \`$0 build\` first"
  if [ -f "$dir/pids" ]; then stop "$dir"; fi

  # Certificates and keys: a CA, the API server's serving cert, the service-account signing key.
  local issuer=https://kubernetes.default.svc.cluster.local
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=sparkgate-test-ca"
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
      -days 30 -extfile apiserver.ext
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl failed"; }
  token="$(openssl rand -hex 24)"
  echo "$token,admin,admin,\"system:masters\"" >"$dir/tokens.csv"
  chmod 600 "$dir/tokens.csv" "$dir"/*.key
  cat >"$dir/admin.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: sparkgate-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$dir/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: admin
  context: {cluster: sparkgate-test, user: admin, namespace: default}
current-context: admin
KUBECONFIG
  chmod 600 "$dir/admin.kubeconfig"
  : >"$dir/pids"

  launch "$dir" etcd "$bin/etcd" --name sparkgate-test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "sparkgate-test=http://127.0.0.1:$peer_port" --unsafe-no-fsync --logger=zap

  launch "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" --insecure-port=0 \
    --cert-dir="$dir/apiserver-certs" \
    --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" --client-ca-file="$dir/ca.crt" \
    --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$dir/sa.pub" --service-account-signing-key-file="$dir/sa.key" \
    --service-account-issuer="$issuer" --api-audiences="$issuer" \
    --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
    --profiling=false --v=1

  launch "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/admin.kubeconfig" --leader-elect=false \
    --controllers=serviceaccount,serviceaccount-token,garbagecollector,namespace \
    --service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/ca.crt" \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_PORT" --port=0 --cert-dir="$dir/kcm-certs" \
    --profiling=false --v=1

  # Ready: /readyz answers, and namespace `default` has its ServiceAccount with a token secret
  # (before that, the ServiceAccount admission plugin refuses Pods there).
  local deadline=$((SECONDS + 60)) name pid
  while :; do
    while read -r name pid; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tails "$dir"
        stop "$dir"
        die "$name exited during start (logs in $dir)"
      fi
    done <"$dir/pids"
    if api_get /readyz >/dev/null 2>&1 \
        && api_get /api/v1/namespaces/default/serviceaccounts/default 2>/dev/null | grep -q '"secrets"'; then
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      tails "$dir"
      stop "$dir"
      die "not ready after 60 s (/readyz and the default ServiceAccount in namespace default; logs in $dir)"
    fi
    sleep 0.25
  done
  echo "control-plane: kube-apiserver $K8S_VERSION ready on https://127.0.0.1:$APISERVER_PORT in $((SECONDS - started)) s (kubeconfig $dir/admin.kubeconfig)"
}

case "${1:-}" in
  build) build ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac
