#!/usr/bin/env bash
# Make sure promtool is installed for promexport's TestPromtool (promtool
# check metrics, Prometheus's own parser and linter of the /metrics
# exposition), as ensure-chromium.sh does for the browser tests.
#
# Uses `promtool` when it runs; otherwise installs Debian's prometheus
# package (which ships it) when we are root, without its recommends (the
# node exporter, smartmontools, ...): 12 packages, about 19 MB to download,
# 15 s here. The package's service is not started: while the install runs,
# a policy-rc.d that denies starts is in place (unless one already is), and
# a prometheus server found running afterwards that was not before is
# stopped. Exit status: 0 when promtool runs. When it cannot be had it exits
# 1 if CI is set (TestPromtool must fail there, not skip), else it warns and
# exits 0 so that the test reports itself as skipped.
set -uo pipefail

give_up() {
	echo "ensure-promtool: $*" >&2
	if [ -n "${CI:-}" ]; then exit 1; fi
	echo "ensure-promtool: continuing without promtool; TestPromtool will be skipped (set CI=1 to make that an error)" >&2
	exit 0
}

runs() { promtool --version >/dev/null 2>&1; }

if command -v promtool >/dev/null 2>&1; then
	runs || give_up "promtool is installed but \`promtool --version\` fails"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then give_up "promtool is not installed and I am not root to install it (apt-get install --no-install-recommends prometheus)"; fi
command -v apt-get >/dev/null 2>&1 || give_up "promtool is not installed and there is no apt-get to install it"

servers() { pgrep -x prometheus | sort; }
before=$(servers)
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
	# 101: "action not allowed" (invoke-rc.d): the package's postinst does
	# not start the server.
	printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "ensure-promtool: installing prometheus (for promtool)" >&2
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1; }
install || { apt-get update -q >/dev/null 2>&1 && install; } || give_up "installing prometheus failed"

# No Prometheus server may be left running by the install.
for pid in $(comm -13 <(echo "$before") <(servers)); do
	echo "ensure-promtool: stopping the prometheus server (pid $pid) the package started" >&2
	kill "$pid" 2>/dev/null
done

command -v promtool >/dev/null 2>&1 && runs || give_up "prometheus was installed but \`promtool --version\` fails"
echo "ensure-promtool: $(promtool --version 2>&1 | head -1)" >&2
exit 0
