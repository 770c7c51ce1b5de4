# Sourced by setup.sh and setup_superset.sh: apt_install PACKAGE...
# apt-get install, with `apt-get update` only when the package lists are missing or stale (the
# install fails on them). Quiet; on failure apt's own output is shown.
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: $*" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "setup: installing $* (Debian)"
  export DEBIAN_FRONTEND=noninteractive
  local log
  log="$(mktemp)"
  if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null \
      && "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
    rm -f "$log"
    return
  fi
  if ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq >"$log" 2>&1 \
      || ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >>"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: could not install $*" >&2
    exit 1
  fi
  rm -f "$log"
}
