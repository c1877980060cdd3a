#!/usr/bin/env bash
# The one test command: installs what the tests need (apt-get, cargo), then
# runs every test: formatting, lints, unit and integration tests (the fuzz
# corpus replay included), end-to-end DNS checks with dig and dnsperf, and
# short smoke runs of the fuzzer and the benchmarks.
#
#   scripts/test.sh                 everything
#   TIMEPOOL_FUZZ_SECONDS=0 ...     skip the fuzz smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }

step "install test dependencies"
# dig and dnsperf for the DNS checks, PostgreSQL for the database tests,
# Chromium for the browser test, chrony for real NTP servers in the
# monitor's test, pip for the GeoLite2 download.
packages=()
command -v dig >/dev/null || packages+=(bind9-dnsutils)
command -v dnsperf >/dev/null || packages+=(dnsperf)
command -v python3 >/dev/null || packages+=(python3)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
command -v chromium >/dev/null || packages+=(chromium)
command -v chronyd >/dev/null || packages+=(chrony)
if [ "${#packages[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  echo "installed: ${packages[*]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# The real 2018 GeoLite2-City: the GeoIP tests compare our table with
# maxminddb's own lookups over it.
scripts/geoip.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "start a throwaway PostgreSQL cluster"
# Each run its own cluster state, so a stale or parallel run cannot clash.
TIMEPOOL_PG_STATE="$(mktemp -u "${TMPDIR:-/tmp}/timepool-pg-test.XXXXXX.state")"
export TIMEPOOL_PG_STATE
eval "$(scripts/pg-test-cluster.sh start)"
trap 'scripts/pg-test-cluster.sh stop >/dev/null 2>&1 || true' EXIT
echo "PostgreSQL at $TIMEPOOL_TEST_PG_URL"

step "cargo test (unit, integration on SQLite and PostgreSQL, browser, chronyd, corpus replay, benchmark smoke runs)"
# --all-targets also runs every criterion benchmark once, as a smoke test.
TIMEPOOL_E2E_REQUIRED=1 TIMEPOOL_CHRONY_REQUIRED=1 cargo test --all-targets
cargo test --doc

step "snapshot check"
cargo run --quiet -- check-snapshot zones/example.json

step "end-to-end DNS checks (dig, dnsperf with snapshot swaps)"
scripts/dns-check.sh target/debug/timepool 8

fuzz_seconds="${TIMEPOOL_FUZZ_SECONDS:-30}"
if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz smoke run (${fuzz_seconds}s)"
  scripts/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed"
