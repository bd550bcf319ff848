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

# The GPU benches, each bounded so that the whole script stays under 10 minutes on
# an H100-class GPU (the host-only benches bench_engine, bench_model and bench_paper
# run on the virtual clock or measure the host; they are not part of this check).
bench() {  # bench NAME SECONDS ARGS...: runs build/gpu/bench/NAME, its table into the summary
  local name=$1 limit=$2; shift 2
  note "-- $name $*"
  if ! timeout "$limit" "build/gpu/bench/$name" --json "$OUT/$name.json" "$@" > "$OUT/$name.log" 2>&1; then
    status=1; note "$name FAILED or timed out after ${limit}s (see $name.log)"
  fi
  tail -25 "$OUT/$name.log" >> "$summary"
}
note "== benches"
bench bench_update 120                       # fused update bandwidth against a d2d copy
bench bench_throughput 180 --seconds 0.5     # lenet / resnet20 samples/s, host and CUDA
bench bench_delay 90                         # delay-kernel accuracy, idle and busy
bench bench_green 90                         # SM-partition throughput ratio

# PyTorch eager on the same nets and batches, where torch is installed; the ratio.
note "-- PyTorch eager (bench/torch_throughput.py)"
timeout 180 python3 bench/torch_throughput.py --json "$OUT/torch_throughput.json" --seconds 0.5 \
  > "$OUT/torch_throughput.log" 2>&1 || note "torch_throughput failed (see torch_throughput.log)"
cat "$OUT/torch_throughput.log" >> "$summary"
python3 - "$OUT" <<'PY' 2>&1 | tee -a "$summary"
import json, sys, os
out = sys.argv[1]
try:
    nb = json.load(open(os.path.join(out, "bench_throughput.json")))
    pt = json.load(open(os.path.join(out, "torch_throughput.json")))
except Exception as e:
    print(f"ratio: not available ({e})"); sys.exit(0)
if "rows" not in pt:
    print(f"ratio: not available ({pt.get('skipped')})"); sys.exit(0)
torch_rate = {r["net"]: r["samples_per_s"] for r in pt["rows"]}
print(f"{'net':10} {'nbsgd cuda':>12} {'torch eager':>12} {'ratio':>7}")
for r in nb["rows"]:
    if r["backend"] == "cuda" and r["net"] in torch_rate:
        a, b = r["samples_per_s"]["median"], torch_rate[r["net"]]
        print(f"{r['net']:10} {a:12.1f} {b:12.1f} {a / b:7.2f}")
PY

# Four virtual devices (SM partitions of GPU 0), one of them 4x slower (one-slow):
# sync against fastest on the same data, seed and profile.
note "-- 4 virtual devices, one-slow: ring/sync vs ring/fastest"
if ! timeout 240 ./build/gpu/nbsgd compare --runs ring/sync,ring/fastest --devices 0:0.25,0:0.25,0:0.25,0:0.25 \
     --profile one-slow --net lenet --data fashion-mnist --batch 128 --split 8 --epochs 1 --target-loss 0.6 \
     --seed 1 --out "$OUT/compare-one-slow" > "$OUT/compare-one-slow.log" 2>&1; then
  status=1; note "compare FAILED or timed out (see compare-one-slow.log)"
fi
tail -12 "$OUT/compare-one-slow.log" >> "$summary"

# The same four workers, decentralised: D-PSGD and MATCHA, blocking and non-blocking.
note "-- 4 virtual devices, one-slow: dpsgd and matcha, sync vs fastest"
if ! timeout 300 ./build/gpu/nbsgd compare --runs dpsgd/sync,dpsgd/fastest,matcha/sync,matcha/fastest \
     --devices 0:0.25,0:0.25,0:0.25,0:0.25 --profile one-slow --net lenet --data fashion-mnist --batch 128 --split 8 \
     --epochs 1 --target-loss 0.6 --seed 1 --out "$OUT/compare-gossip" > "$OUT/compare-gossip.log" 2>&1; then
  status=1; note "gossip compare FAILED or timed out (see compare-gossip.log)"
fi
tail -12 "$OUT/compare-gossip.log" >> "$summary"

note "== done, status $status"
exit $status
