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
packages=()
command -v dig >/dev/null || packages+=(bind9-dnsutils)
command -v dnsperf >/dev/null || packages+=(dnsperf)
command -v python3 >/dev/null || packages+=(python3)
if [ "${#packages[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  echo "installed: ${packages[*]}"
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit, integration, corpus replay, benchmark smoke runs)"
# --all-targets also runs every criterion benchmark once, as a smoke test.
cargo test --all-targets
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
