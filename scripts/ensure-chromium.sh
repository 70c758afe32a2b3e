#!/usr/bin/env bash
# Make sure Chromium is installed for the dashboard's browser tests
# (host/internal/web), as ensure-rabbitmq.sh does for the broker.
#
# Uses `chromium` (or $CHROMIUM) when it runs; otherwise installs Debian's
# chromium package when we are root. Exit status: 0 when Chromium runs. When
# it cannot be had it exits 1 if CI is set (the browser tests must fail there,
# not skip), else it warns and exits 0 so that those tests report themselves
# as skipped.
set -uo pipefail

exe="${CHROMIUM:-chromium}"

give_up() {
	echo "ensure-chromium: $*" >&2
	if [ -n "${CI:-}" ]; then exit 1; fi
	echo "ensure-chromium: continuing without Chromium; the dashboard's browser tests will be skipped (set CI=1 to make that an error)" >&2
	exit 0
}

# runs reports whether Chromium starts and prints its version. Debian's
# launcher script prints a harmless shell warning on stderr, which is dropped.
runs() { "$exe" --version 2>/dev/null | grep -qi chrom; }

if command -v "$exe" >/dev/null 2>&1; then
	runs || give_up "$exe is installed but \`$exe --version\` fails"
	exit 0
fi
if [ -n "${CHROMIUM:-}" ]; then give_up "CHROMIUM=$CHROMIUM is not an executable"; fi

if [ "$(id -u)" != 0 ]; then give_up "chromium is not installed and I am not root to install it (apt-get install chromium)"; fi
command -v apt-get >/dev/null 2>&1 || give_up "chromium is not installed and there is no apt-get to install it"
echo "ensure-chromium: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; } || give_up "installing chromium failed"
command -v "$exe" >/dev/null 2>&1 && runs || give_up "chromium was installed but \`$exe --version\` fails"
echo "ensure-chromium: $("$exe" --version 2>/dev/null)" >&2
exit 0
