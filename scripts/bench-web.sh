#!/bin/sh
# Benchmark of `timepool web` (issue 5): SQLite, 5 000 servers, a year of
# score history for one of them; open-loop load at RATE req/s (default 500)
# for SECONDS (default 10) on the home page, a zone page and a score page
# (HTML, and its SVG graph). Prints req/s, p50, p99 and max per page.
#
#   scripts/bench-web.sh [RATE] [SECONDS]
set -eu
cd "$(dirname "$0")/.."
RATE="${1:-500}"
SECONDS_EACH="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin timepool --example web_bench >&2
BIN="$CARGO_TARGET_DIR/release/timepool"
BENCH="$CARGO_TARGET_DIR/release/examples/web_bench"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/timepool-bench.XXXXXX")"
DB="sqlite://$WORK/timepool.db?mode=rwc"
"$BENCH" seed "$DB"

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
RUST_LOG=warn "$BIN" web --listen "127.0.0.1:$PORT" --database "$DB" &
WEB_PID=$!
trap 'kill $WEB_PID 2>/dev/null; wait $WEB_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "timepool web on SQLite, 5000 servers, 1 year of history for 8.0.0.1; $RATE req/s for ${SECONDS_EACH}s each"
for path in / /zone/de /scores/8.0.0.1 /scores/8.0.0.1/graph.svg; do
    # Warm up, then measure.
    "$BENCH" load "http://127.0.0.1:$PORT$path" 50 1 >/dev/null
    "$BENCH" load "http://127.0.0.1:$PORT$path" "$RATE" "$SECONDS_EACH"
done
