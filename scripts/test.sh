#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine as root: installs the system packages
# the tests drive for real (etcd, containerd, …), then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in protobuf-compiler libprotobuf-dev etcd-server containerd runc containernetworking-plugins docker-registry busybox-static iproute2 iptables; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  mkdir -p /usr/sbin
  # Keep Debian's init scripts from starting etcd and the registry on their own ports.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
command -v kubectl >/dev/null || { echo "kubectl is required (stock kubectl on PATH)"; exit 1; }

# Debian's etcd 3.4 refuses to start on arm64 without this; harmless elsewhere.
export ETCD_UNSUPPORTED_ARCH="${ETCD_UNSUPPORTED_ARCH:-$(dpkg --print-architecture)}"

cargo test --workspace --no-fail-fast -- --test-threads="${RKUBE_TEST_THREADS:-2}"
