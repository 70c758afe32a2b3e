#!/usr/bin/env bash
# Make sure a RabbitMQ broker answers for the tests.
#
# Uses the broker at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/) if
# it answers; otherwise starts rabbitmq-server, installing the Debian package
# first when it is missing and we are root, and waits until it answers.
# Exit status: 0 when a broker answers. When none can be had it exits 1 if CI
# is set (AMQP tests must fail there, not skip), else it warns and exits 0 so
# that the tests needing AMQP report themselves as skipped.
set -uo pipefail

url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"
[ "$port" = "$hostport" ] && port=5672

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

give_up() {
	echo "ensure-rabbitmq: $*" >&2
	if [ -n "${CI:-}" ]; then exit 1; fi
	echo "ensure-rabbitmq: continuing without a broker; tests that need AMQP will be skipped (set CI=1 to make that an error)" >&2
	exit 0
}

if answers; then exit 0; fi
case "$host" in 127.0.0.1|localhost|::1) ;; *) give_up "no broker answers at $host:$port and it is not local, so I cannot start one";; esac

if ! command -v rabbitmq-server >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then give_up "rabbitmq-server is not installed and I am not root to install it (apt-get install rabbitmq-server)"; fi
	echo "ensure-rabbitmq: installing rabbitmq-server" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q rabbitmq-server >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q rabbitmq-server >/dev/null; } || give_up "installing rabbitmq-server failed"
fi

if ! answers; then
	echo "ensure-rabbitmq: starting rabbitmq-server" >&2
	rabbitmq-server -detached >/dev/null 2>&1 || true
fi
for _ in $(seq 1 120); do
	if answers && { ! command -v rabbitmq-diagnostics >/dev/null || rabbitmq-diagnostics -q check_running >/dev/null 2>&1; }; then
		echo "ensure-rabbitmq: broker answers at $host:$port" >&2
		exit 0
	fi
	sleep 1
done
give_up "rabbitmq-server did not answer at $host:$port within 120 s"
