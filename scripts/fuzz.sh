#!/usr/bin/env bash
# Run the fuzz targets (fuzz/fuzz_targets; what each checks is in
# fuzz/checks/NAME.rs) one after another, each for a bounded time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default 600, all
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly compiler flags:
# the nightly toolchain is used when rustup has it, else the stable one with
# RUSTC_BOOTSTRAP=1. All targets are built once. Each starts from its
# committed seeds (fuzz/corpus/NAME, which `cargo test` replays) plus what
# earlier runs here found (fuzz/found/NAME, not committed); new inputs go
# to the latter. A crash lands in fuzz/artifacts/NAME/ and makes this
# script fail once every target has run. An input may allocate at most
# 512 MiB at once and run for 10 s. The last lines of each run (executions,
# coverage, corpus) are printed as a summary at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

# The longest input worth trying per target: a DNS message over UDP, a TCP
# stream of several, a snapshot or a results document, the test GeoIP
# database (5 KB) grown a little, an NTP datagram with extensions, an
# AF_XDP frame.
max_len() {
  case "$1" in
    answer | query_diff | signature) echo 4096 ;;
    ntp) echo 1024 ;;
    geoip) echo 16384 ;;
    xdp_frame) echo 2048 ;;
    *) echo 65536 ;;
  esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  export RUSTC_BOOTSTRAP=1
fi

cargo "${toolchain[@]}" fuzz build

# FUZZ_LOGS=DIR keeps each target's whole log there (an hour-long run's
# history); without it the logs live in a temporary directory.
if [ -n "${FUZZ_LOGS:-}" ]; then
  logs="$FUZZ_LOGS"
  mkdir -p "$logs"
else
  logs="$(mktemp -d)"
  trap 'rm -rf "$logs"' EXIT
fi
failed=()
for target in "${targets[@]}"; do
  found="fuzz/found/$target"
  mkdir -p "$found"
  echo "fuzz.sh: $target for ${seconds}s" >&2
  if ! cargo "${toolchain[@]}" fuzz run "$target" "$found" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len="$(max_len "$target")" \
      -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
      >"$logs/$target.log" 2>&1; then
    failed+=("$target")
    tail -n 60 "$logs/$target.log" >&2
  fi
done

echo "fuzz.sh: summary (${seconds}s per target)"
for target in "${targets[@]}"; do
  log="$logs/$target.log"
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
  cov="$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || echo 'cov: ?')"
  corpus="$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1 || echo 'corp: ?')"
  printf '  %-12s %12s executions  %-22s %s\n' "$target" "$runs" "$cov" "$corpus"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds}s each, without a crash"
