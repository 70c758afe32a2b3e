#!/usr/bin/env bash
# Make sure Python's pika client is importable by /usr/bin/python3, for the
# test that runs docs/control-protocol.md's pika signing example against a
# real host (host/internal/daemon: TestPikaSigningExample), as
# ensure-rabbitmq.sh does for the broker.
#
# Installs Debian's python3-pika when it is missing and we are root (PyPI is
# not used). Exit status: 0 when `import pika` works. When it cannot be had it
# exits 1 if CI is set (the test must fail there, not skip), else it warns and
# exits 0 so that the test reports itself as skipped.
set -uo pipefail

py="${PIKA_PYTHON:-/usr/bin/python3}"

give_up() {
	echo "ensure-pika: $*" >&2
	if [ -n "${CI:-}" ]; then exit 1; fi
	echo "ensure-pika: continuing without pika; the pika example test will be skipped (set CI=1 to make that an error)" >&2
	exit 0
}

imports() { "$py" -c 'import pika' >/dev/null 2>&1; }

if imports; then exit 0; fi
[ -x "$py" ] || give_up "$py is not an executable (install python3, or set PIKA_PYTHON)"
if [ "$(id -u)" != 0 ]; then give_up "pika is not importable by $py and I am not root to install it (apt-get install python3-pika)"; fi
echo "ensure-pika: installing python3-pika" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q python3-pika >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-pika >/dev/null; } || give_up "installing python3-pika failed"
imports || give_up "python3-pika is installed but $py cannot import pika"
