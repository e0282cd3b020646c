#!/usr/bin/env bash
# Installs rkube on a fresh Debian machine (run as root from a checkout of the repo):
# Debian packages for the runtime, Rust if cargo is missing, a release build of the binary
# into /usr/local/bin, then (unless --no-start) `rkube server` in the background.
#
#   scripts/install.sh [--no-start] [-- extra args for `rkube server`]
#
# Safe to run again: installed packages are skipped, the binary is replaced atomically and a
# server that already answers /readyz is left alone. There is no systemd on the target
# machines, so the server is a plain background process logging to /var/log/rkube.log.
set -euo pipefail

readonly PACKAGES=(
    containerd runc containernetworking-plugins etcd-server docker-registry
    busybox-static iproute2 iptables ca-certificates curl protobuf-compiler libprotobuf-dev build-essential pkg-config
)
readonly BIN=/usr/local/bin/rkube
readonly LOG=/var/log/rkube.log
readonly PIDFILE=/run/rkube.pid
readonly KUBECONFIG_PATH=/etc/rkube/rkube.yaml
readonly READYZ=https://127.0.0.1:6443/readyz
readonly READY_TIMEOUT=60

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO

start=1
server_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-start) start=0 ;;
        -h | --help)
            sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        --) shift; server_args=("$@"); break ;;
        *) echo "install.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0)"
command -v apt-get >/dev/null || die "apt-get not found; this script supports Debian (and derivatives) only"

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- packages --------------------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
# ring and the bundled SQLite compile C code.
if ! command -v cc >/dev/null; then
    missing+=(build-essential)
fi
# ~/.cargo/bin is where rustup puts cargo; a previous run may have installed it there.
export PATH="$HOME/.cargo/bin:$PATH"
need_rust=0
command -v cargo >/dev/null || need_rust=1

if [ ${#missing[@]} -gt 0 ] || [ "$need_rust" -eq 1 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
fi

if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    # Without systemd, maintainer scripts would start etcd and the registry through init.d
    # and take ports rkube manages itself; a policy-rc.d that denies starts prevents that.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [ "$own_policy" -eq 1 ]; then
        rm -f "$policy"
        trap - EXIT
    fi
else
    log "Debian packages already installed"
fi

# --- Rust ------------------------------------------------------------------------------------
if [ "$need_rust" -eq 1 ]; then
    if apt-cache show rustup >/dev/null 2>&1; then
        log "installing Rust via the Debian rustup package"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q rustup
        rustup default stable
    else
        die "cargo is not installed and this Debian release has no 'rustup' package.
Install Rust yourself (https://rustup.rs, or the Debian 'cargo' package if it is recent
enough for this workspace), make sure 'cargo' is on PATH, and run this script again."
    fi
    command -v cargo >/dev/null || die "rustup installed but cargo is still not on PATH"
fi

# --- build and install -----------------------------------------------------------------------
log "building rkube (cargo build --release -p rkube)"
(cd "$REPO" && cargo build --release -p rkube)
# Copy then rename: replacing a running binary in place would fail with "Text file busy".
install -m 0755 "$REPO/target/release/rkube" "$BIN.new"
mv -f "$BIN.new" "$BIN"
log "installed $BIN"

if [ "$start" -eq 0 ]; then
    log "--no-start given; start the server with: rkube server"
    exit 0
fi

# --- start -----------------------------------------------------------------------------------
ready() { curl -fsk --max-time 2 "$READYZ" >/dev/null 2>&1; }

running_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE")"
    # A stale pid file may name a recycled pid; only count it if that process is rkube.
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'rkube server' \
        && echo "$pid"
}

if ready; then
    log "rkube server is already running and ready (restart it yourself to pick up the new binary)"
elif pid="$(running_pid)"; then
    log "rkube server is already running (pid $pid); waiting for it to become ready"
else
    log "starting rkube server (logs: $LOG)"
    mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: the server survives this shell and the terminal closing.
    setsid nohup "$BIN" server "${server_args[@]}" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
fi

deadline=$((SECONDS + READY_TIMEOUT))
until ready; do
    if ! running_pid >/dev/null; then
        echo "rkube server exited; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "rkube server not ready after ${READY_TIMEOUT}s; last lines of $LOG:" >&2
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    sleep 1
done

log "rkube server is ready"
cat <<MSG

Use kubectl with:

    export KUBECONFIG=$KUBECONFIG_PATH
    kubectl get nodes

Logs: $LOG    Stop: kill \$(cat $PIDFILE)
MSG
if ! command -v kubectl >/dev/null; then
    echo "kubectl is not installed; on Debian: apt-get install kubernetes-client"
fi
