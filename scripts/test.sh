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
# Chromium and CJK fonts for the browser test, chrony for real NTP servers in the
# monitor's test, pip for the GeoLite2 download.
. scripts/packages.sh
need bind9-dnsutils command -v dig
need dnsperf command -v dnsperf
need python3 command -v python3
need python3-pip python3 -m pip --version
need postgresql compgen -G '/usr/lib/postgresql/*/bin/initdb'
need chromium command -v chromium
# The browser test's Chinese and Japanese screenshots need CJK glyphs.
need fonts-noto-cjk test -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
need chrony command -v chronyd
# A real SMTP server for the mail tests (Debian's, run with /usr/bin/python3).
need python3-aiosmtpd /usr/bin/python3 -c 'import aiosmtpd'
# ip: the DNS edge and XDP tests make network namespaces with addresses of
# their own (setpriv, for the XDP drop-in's capabilities, is util-linux:
# always there).
need iproute2 command -v ip
install_needed
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# The real 2018 GeoLite2-City: the GeoIP tests compare our table with
# maxminddb's own lookups over it.
scripts/geoip.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo clippy for each wing alone (dns, control, monitor)"
# A DNS node is built with `--no-default-features --features dns`; each
# wing's build is linted so that none of them rots.
for wing in dns control monitor; do
  cargo clippy --no-default-features --features "$wing" --lib --bins -- -D warnings
done

step "start a throwaway PostgreSQL cluster"
# Each run its own cluster state, so a stale or parallel run cannot clash.
TIMEPOOL_PG_STATE="$(mktemp -u "${TMPDIR:-/tmp}/timepool-pg-test.XXXXXX.state")"
export TIMEPOOL_PG_STATE
eval "$(scripts/pg-test-cluster.sh start)"
trap 'scripts/pg-test-cluster.sh stop >/dev/null 2>&1 || true' EXIT
echo "PostgreSQL at $TIMEPOOL_TEST_PG_URL"

step "cargo test (unit, integration on SQLite and PostgreSQL, browser, chronyd, corpus replay, benchmark smoke runs)"
# --all-targets also runs every criterion benchmark once, as a smoke test.
# Every TIMEPOOL_*_REQUIRED=1: a missing component fails its test instead
# of skipping it (PostgreSQL above included).
TIMEPOOL_E2E_REQUIRED=1 TIMEPOOL_CHRONY_REQUIRED=1 TIMEPOOL_NETNS_REQUIRED=1 TIMEPOOL_XDP_REQUIRED=1 TIMEPOOL_SMTP_REQUIRED=1 \
    TIMEPOOL_PG_REQUIRED=1 TIMEPOOL_MOUNT_REQUIRED=1 cargo test --all-targets
cargo test --doc

step "snapshot check"
# The binary `cargo test` built: `cargo run` would build it again without
# the dev-dependencies' features (3 minutes for nothing).
target/debug/timepool check-snapshot zones/example.json

step "end-to-end DNS checks (dig, dnsperf with snapshot swaps)"
scripts/dns-check.sh target/debug/timepool 8

fuzz_seconds="${TIMEPOOL_FUZZ_SECONDS:-10}"
if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz smoke run (${fuzz_seconds}s per target)"
  scripts/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed"
