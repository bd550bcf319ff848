#!/usr/bin/env bash
# The one script to run on a machine with a GPU. It builds nbsgd with CUDA for the
# GPU present, runs every gpu-labelled test, then the GPU benches, and writes logs,
# JSON and a summary table under $OUT (default: ./gpu-check-out).
# It never changes clocks, power limits or modes of the card.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
status=0
note() { echo "$*" | tee -a "$summary"; }

note "== nbsgd GPU check $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt" | tee -a "$summary"

# Set-up and build: CUDA for this GPU's architecture only (fast), Release.
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then ./scripts/setup.sh > "$OUT/setup.log" 2>&1 || note "setup.sh failed (see setup.log); trying to build anyway"; fi
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
arch=${arch:-native}
note "== build (CUDA arch $arch)"
if ! { cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DNBSGD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" &&
       cmake --build build/gpu -j "$(nproc)"; } > "$OUT/build.log" 2>&1; then
  note "BUILD FAILED (see build.log)"; tail -30 "$OUT/build.log"; exit 1
fi
./build/gpu/nbsgd devices --json > "$OUT/devices.json" 2>&1; cat "$OUT/devices.json" >> "$summary"

note "== gpu-labelled tests"
(cd build/gpu && ctest -L gpu --output-on-failure --output-junit "$OUT/gpu-tests.xml") > "$OUT/gpu-tests.log" 2>&1 || status=1
grep -E "tests passed|tests failed|Skipped|Failed" "$OUT/gpu-tests.log" | tee -a "$summary"

note "== benches"
for b in build/gpu/bench/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b")
  note "-- $name"
  if ! "$b" --json "$OUT/$name.json" > "$OUT/$name.log" 2>&1; then status=1; note "$name FAILED (see $name.log)"; fi
  tail -25 "$OUT/$name.log" >> "$summary"
done

note "== done, status $status"
exit $status
