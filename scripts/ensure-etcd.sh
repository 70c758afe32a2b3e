#!/usr/bin/env bash
# Make sure an etcd binary is there for the cluster tests.
#
# The tests start their own etcd per test (a private data directory and
# loopback ports, so that a test can kill, restart and cut it off without
# touching any other etcd): they need the binary, not a running server. It is
# the one named by DYNWORKERS_ETCD, or etcd on the PATH; when there is none,
# this installs Debian's etcd-server package if we are root.
# Exit status: 0 when there is a binary. When none can be had it exits 1 if CI
# is set (cluster tests must fail there, not skip), else it warns and exits 0
# so that the tests needing etcd report themselves as skipped.
set -uo pipefail

give_up() {
	echo "ensure-etcd: $*" >&2
	if [ -n "${CI:-}" ]; then exit 1; fi
	echo "ensure-etcd: continuing without etcd; tests that need it will be skipped (set CI=1 to make that an error)" >&2
	exit 0
}

if [ -n "${DYNWORKERS_ETCD:-}" ]; then
	[ -x "$DYNWORKERS_ETCD" ] && exit 0
	give_up "DYNWORKERS_ETCD=$DYNWORKERS_ETCD is not an executable file"
fi
if command -v etcd >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then give_up "etcd is not installed and I am not root to install it (apt-get install etcd-server)"; fi
echo "ensure-etcd: installing etcd-server" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q etcd-server >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q etcd-server >/dev/null; } || give_up "installing etcd-server failed"
# Where systemd runs, the package also starts etcd as a service on 127.0.0.1:2379 (what
# docs/cluster.md's walkthrough uses); the tests never touch it: they run their own.
command -v etcd >/dev/null 2>&1 || give_up "etcd-server is installed but no etcd binary is on the PATH"
