#!/usr/bin/env bash
# Builds the libFuzzer targets (preset `fuzz`, clang) and runs each for SECONDS
# (default 60) on its seed corpus in tests/fuzz/corpus/<target>. New inputs go to a
# scratch folder, never into the tree. Exits non-zero on the first crash, leak,
# sanitizer report or a unit slower than 10 s, leaving the input as
# build/fuzz/crash-<target>-*.
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 safetensors
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(idx safetensors profile topology npy)
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$(nproc)"
for t in "${targets[@]}"; do
  work=build/fuzz/corpus-$t
  mkdir -p "$work"
  echo "== fuzz_$t for ${secs} s"
  build/fuzz/tests/fuzz/fuzz_$t -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build/fuzz/crash-$t-" "$work" "tests/fuzz/corpus/$t" 2>&1 |
    grep -E "^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|ERROR|SUMMARY|Test unit written"
done
