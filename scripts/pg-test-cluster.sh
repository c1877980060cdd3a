#!/bin/sh
# A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, listen
# on 127.0.0.1 at a free port, trust auth. Debian's postgresql package.
#
#   eval "$(scripts/pg-test-cluster.sh start)"   # exports TIMEPOOL_TEST_PG_URL
#   cargo test
#   scripts/pg-test-cluster.sh stop
#   scripts/pg-test-cluster.sh env             # the export line of the running cluster
#   scripts/pg-test-cluster.sh pause           # stop the server, keep its data
#   scripts/pg-test-cluster.sh resume          # start it again on the same port
#
# A test that stops its own database sets TIMEPOOL_PG_STATE to a file of
# its own, so the cluster the other tests use is not touched.
#
# PostgreSQL refuses to run as root, so as root the cluster runs as the
# `postgres` user. State (the cluster dir) is kept in $TIMEPOOL_PG_STATE.
set -eu

STATE="${TIMEPOOL_PG_STATE:-${TMPDIR:-/tmp}/timepool-pg-test.state}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -x "$BIN/initdb" ] || { echo "initdb not found; apt-get install postgresql" >&2; exit 1; }

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

server_start() { # cluster dir
    as_pg "$BIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $(cat "$1/port") -k $1 -c fsync=off -c max_connections=200" start >/dev/null
}

case "${1:-}" in
start)
    if [ -f "$STATE" ]; then
        echo "a test cluster is already running ($STATE); stop it first" >&2; exit 1
    fi
    DIR="$(mktemp -d "${TMPDIR:-/tmp}/timepool-pg.XXXXXX")"
    [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
    PORT="$(free_port)"
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1
    echo "$PORT" >"$DIR/port"
    server_start "$DIR"
    echo "$DIR" >"$STATE"
    echo "export TIMEPOOL_TEST_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
    ;;
env)
    [ -f "$STATE" ] || { echo "no test cluster running" >&2; exit 1; }
    echo "export TIMEPOOL_TEST_PG_URL=postgres://postgres@127.0.0.1:$(cat "$(cat "$STATE")/port")/postgres"
    ;;
pause)
    [ -f "$STATE" ] || { echo "no test cluster running" >&2; exit 1; }
    as_pg "$BIN/pg_ctl" -D "$(cat "$STATE")/data" -m fast -w stop >/dev/null
    ;;
resume)
    [ -f "$STATE" ] || { echo "no test cluster running" >&2; exit 1; }
    server_start "$(cat "$STATE")"
    ;;
stop)
    [ -f "$STATE" ] || { echo "no test cluster running" >&2; exit 0; }
    DIR="$(cat "$STATE")"
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null || true
    rm -rf "$DIR" "$STATE"
    ;;
*)
    echo "usage: $0 start|stop|env|pause|resume" >&2; exit 2
    ;;
esac
