#!/usr/bin/env bash
# Run the `answer` fuzz target (parse -> answer -> the response must parse
# with `domain` and fit its buffer) for a bounded time.
#
#   scripts/fuzz.sh [SECONDS]     default 600
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly compiler flags:
# the nightly toolchain is used when rustup has it, else the stable one with
# RUSTC_BOOTSTRAP=1. New crashes land in fuzz/artifacts/answer/; a crash
# makes this script fail. Interesting new inputs go to a scratch corpus, not
# to the committed seeds (fuzz/corpus/answer), which `cargo test` replays.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"

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

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp fuzz/corpus/answer/* "$scratch/"
cargo "${toolchain[@]}" fuzz run answer "$scratch" -- \
  -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
echo "fuzz.sh: ${seconds}s without a crash"
