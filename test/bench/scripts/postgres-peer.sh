#!/bin/sh
# postgres-peer.sh runs runlog's durable create and checkpoint benchmarks
# side by side with the same work on Postgres (BENCHMARKS.md §5.11).
#
# It installs Debian's postgresql if it is missing (as root), starts a
# private cluster on loopback (synchronous_commit on, fsync on: every
# commit durable before it is acknowledged), points the benchmarks at it
# with RUNLOG_PG_URL, runs them, and stops the cluster. Arguments are
# passed to go test (default: -count 3).
#
#   test/bench/scripts/postgres-peer.sh
#   test/bench/scripts/postgres-peer.sh -count 1 -benchtime 2s
set -eu

cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		echo "postgres-peer: postgresql is not installed; run as root to install it (apt-get install postgresql)" >&2
		exit 2
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

DATA=$(mktemp -d /tmp/runlog-pg.XXXXXX)
PORT=${RUNLOG_PG_PORT:-55432}
# initdb and postgres refuse to run as root: run them as the postgres user.
as_pg() { "$@"; }
if [ "$(id -u)" = 0 ]; then
	chown postgres "$DATA"
	as_pg() { runuser -u postgres -- "$@"; }
fi
cleanup() {
	as_pg "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

as_pg "$BIN/initdb" -D "$DATA" -U runlog --auth=trust -E UTF8 >/dev/null
as_pg "$BIN/pg_ctl" -D "$DATA" -w -l "$DATA/log" \
	-o "-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DATA -c synchronous_commit=on -c fsync=on -c max_connections=200" start >/dev/null
"$BIN/psql" -h 127.0.0.1 -p "$PORT" -U runlog -d postgres -qc "create database bench" >/dev/null

export RUNLOG_PG_URL="postgres://runlog@127.0.0.1:$PORT/bench?sslmode=disable"
[ $# -gt 0 ] || set -- -count 3
go test -run '^$' -bench 'Postgres|PrepareRunFreshParallelDurable|RawPublishCASParallelDurable|GroupCommitDurable|PrepareRunFreshSyncAlways|CheckpointSyncAlways' "$@" .
