#!/usr/bin/env bash
# The one script to run on a machine with a GPU. It runs every gpu-labelled test,
# the GPU benches, PyTorch on the same nets, and two short comparisons on four SM
# partitions, and writes logs, JSON and a summary table under $OUT (default
# ./gpu-check-out). It never changes clocks, power limits or modes of the card.
#
# Two ways to run it:
#   - from the release bundle (scripts/bundle.sh): run.sh sets NBSGD_BUNDLE and the
#     library path and calls this copy; nothing is built;
#   - from a source tree: it builds with CUDA for every distinct compute capability
#     nvidia-smi lists (a mixed box needs kernels for each), into build/gpu.
#
# Fails loudly: NBSGD_REQUIRE_GPU=1 turns every "no GPU" skip into a failure.
# CUDA_DEVICE_ORDER=PCI_BUS_ID numbers the GPUs as nvidia-smi does (CUDA's default
# is fastest first). Each test gets 90 s (GPU_CHECK_TEST_LIMIT_S), and the whole run a hard 8-minute limit
# (GPU_CHECK_LIMIT_S): every step's timeout is cut to what is left, and a step
# that no longer fits is recorded as skipped. The summary table comes last, with
# summary.json beside it.
set -uo pipefail
start=$(date +%s)
LIMIT=${GPU_CHECK_LIMIT_S:-480}
deadline=$((start + LIMIT - 10))  # 10 s for the summary
TEST_LIMIT=${GPU_CHECK_TEST_LIMIT_S:-90}
export CUDA_DEVICE_ORDER=PCI_BUS_ID NBSGD_REQUIRE_GPU=1
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
status=0
rows=()  # "name<TAB>status<TAB>seconds<TAB>detail"

# step NAME LIMIT CMD...: runs CMD under min(LIMIT, time left), output in NAME.log.
step() {
  local name=$1 limit=$2 t0 rc secs left st log detail
  shift 2
  log=$OUT/$(printf '%s' "$name" | tr '/: ()' '_____').log
  left=$((deadline - $(date +%s)))
  if [ "$left" -le 0 ]; then
    rows+=("$name"$'\t'"SKIPPED"$'\t'"0"$'\t'"no time left of the ${LIMIT}s limit")
    status=1
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - t0))
  case $rc in
    0) st=ok ;;
    124|137) st=TIMEOUT; status=1 ;;
    *) st="FAILED($rc)"; status=1 ;;
  esac
  # The line that says why: a gtest failure's message, else the log's last line.
  detail=$(awk '/: Failure$/ { getline; if ($0 == "Failed") getline; print; exit }' "$log")
  [ -n "$detail" ] || detail=$(tail -1 "$log")
  if [ "$st" = ok ] && grep -q '"skipped"' "$OUT/$name.json" 2>/dev/null; then st=SKIPPED; fi
  rows+=("$name"$'\t'"$st"$'\t'"$secs"$'\t'"$(printf '%s' "$detail" | tr '\t' ' ' | cut -c1-110)")
  return $rc
}

summary() {
  local ok=0 bad=0 r name st secs detail
  {
    echo "== nbsgd GPU check: summary ($(($(date +%s) - start)) s of the ${LIMIT}s limit; logs in $OUT)"
    printf '%-58s %-11s %6s  %s\n' "step" "status" "s" "last line"
    for r in "${rows[@]}"; do
      IFS=$'\t' read -r name st secs detail <<< "$r"
      if [[ "$name" == test:* ]] && [ "$st" = ok ]; then ok=$((ok + 1)); continue; fi
      [[ "$name" == test:* ]] && bad=$((bad + 1))
      printf '%-58s %-11s %6s  %s\n' "$name" "$st" "$secs" "$detail"
    done
    printf '%-58s %-11s\n' "gpu tests: $ok passed, $bad not" "$([ "$bad" = 0 ] && echo ok || echo FAILED)"
    echo "== status $status"
  } | tee "$OUT/summary.txt"
  {
    printf '{"status": %d, "seconds": %d, "limit_s": %d, "steps": [' "$status" "$(($(date +%s) - start))" "$LIMIT"
    local first=1
    for r in "${rows[@]}"; do
      IFS=$'\t' read -r name st secs detail <<< "$r"
      [ $first = 1 ] || printf ', '
      first=0
      printf '{"name": "%s", "status": "%s", "seconds": %s, "detail": "%s"}' \
        "$(printf '%s' "$name" | sed 's/["\\]/\\&/g')" "$st" "$secs" "$(printf '%s' "$detail" | sed 's/["\\]/\\&/g')"
    done
    printf ']}\n'
  } > "$OUT/summary.json"
}
trap summary EXIT

echo "== nbsgd GPU check $(date -u +%FT%TZ), CUDA_DEVICE_ORDER=$CUDA_DEVICE_ORDER"
nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total,pci.bus_id --format=csv 2>&1 |
  tee "$OUT/nvidia-smi.txt"

# ---------------------------------------------------------------- binaries
if [ -n "${NBSGD_BUNDLE:-}" ] && [ -d "$NBSGD_BUNDLE/bin" ]; then
  BIN=$NBSGD_BUNDLE/bin
  BENCH=$NBSGD_BUNDLE/bin
  TORCH=$NBSGD_BUNDLE/torch_throughput.py
  DATA=${NBSGD_DATA_DIR:-$NBSGD_BUNDLE/data/fashion-mnist}
  echo "== binaries from the bundle $NBSGD_BUNDLE ($(cat "$NBSGD_BUNDLE/VERSION" 2>/dev/null))"
else
  cd "$(dirname "$0")/.."
  BIN=$PWD/build/gpu/tests
  BENCH=$PWD/build/gpu/bench
  TORCH=$PWD/bench/torch_throughput.py
  DATA=${NBSGD_DATA_DIR:-/usr/share/datasets/fashion-mnist}
  # Every distinct compute capability present: one fatbin per architecture.
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u | paste -sd';' -)
  if [ -z "$archs" ]; then
    rows+=("build"$'\t'"FAILED"$'\t'"0"$'\t'"nvidia-smi lists no GPU: nothing to build for")
    status=1
    exit 1
  fi
  step "build for sm $archs" "$LIMIT" bash -c "cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DNBSGD_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES='$archs' && cmake --build build/gpu -j $(nproc)" || exit 1
fi
NBSGD=$BIN/nbsgd
[ -x "$NBSGD" ] || NBSGD=$(dirname "$BIN")/nbsgd
export NBSGD_BINARY=$NBSGD NBSGD_DATA_DIR=$DATA
step devices 30 "$NBSGD" devices --json
cp "$OUT/devices.log" "$OUT/devices.json"

# ---------------------------------------------------------------- gpu tests
# One process per test case, each with its own 90 s: a hang costs one case.
for bin in "$BIN"/gpu_*; do
  [ -x "$bin" ] || continue
  suite=""
  while IFS= read -r line; do
    case "$line" in
      "  "*) case_name=${line#  }; case_name=${case_name%%  #*}
             step "test:$(basename "$bin"):$suite$case_name" "$TEST_LIMIT" "$bin" --gtest_filter="$suite$case_name" \
               --gtest_output="xml:$OUT/$(basename "$bin")-$(printf '%s' "$suite$case_name" | tr '/.' '__').xml" ;;
      *) suite=${line%%  #*} ;;
    esac
  done < <("$bin" --gtest_list_tests 2>/dev/null | grep -v '^Running main')
done

# ---------------------------------------------------------------- benches
step bench_update 60 "$BENCH/bench_update" --json "$OUT/bench_update.json"
step bench_throughput 120 "$BENCH/bench_throughput" --json "$OUT/bench_throughput.json" --seconds 0.5
step bench_delay 60 "$BENCH/bench_delay" --json "$OUT/bench_delay.json"
step bench_green 60 "$BENCH/bench_green" --json "$OUT/bench_green.json"
# bench_throughput prints "cuda: skipped" and exits 0 without a GPU: no CUDA row is a failure.
if ! grep -q '"cuda"' "$OUT/bench_throughput.json" 2>/dev/null; then
  rows+=("bench_throughput has CUDA rows"$'\t'"FAILED"$'\t'"0"$'\t'"no CUDA rows in bench_throughput.json")
  status=1
fi

# PyTorch eager on the same nets and batches (TF32 off: nbsgd's FP32 is not TF32).
step torch_throughput 90 python3 "$TORCH" --json "$OUT/torch_throughput.json" --seconds 0.5
python3 - "$OUT" <<'PY' > "$OUT/ratio.txt" 2>&1
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
print(f"{'net':10} {'nbsgd cuda':>12} {'torch eager':>12} {'ratio':>7}   (samples/s, real clock, CUDA; torch TF32 off)")
for r in nb["rows"]:
    if r["backend"] == "cuda" and r["net"] in torch_rate:
        a, b = r["samples_per_s"]["median"], torch_rate[r["net"]]
        print(f"{r['net']:10} {a:12.1f} {b:12.1f} {a / b:7.2f}")
PY

# ---------------------------------------------------------------- four partitions
# Four virtual devices (SM partitions of GPU 0), one of them 4x slower (one-slow):
# the blocking baseline against the non-blocking window, same data, seed, profile.
parts=0:0.25,0:0.25,0:0.25,0:0.25
step compare-ring 75 "$NBSGD" compare --runs ring/sync,ring/fastest --devices $parts --profile one-slow \
  --net lenet --data fashion-mnist --data-dir "$DATA" --batch 128 --split 8 --epochs 1 --seed 1 --out "$OUT/compare-ring"
step compare-gossip 90 "$NBSGD" compare --runs dpsgd/sync,dpsgd/fastest,matcha/sync,matcha/fastest --devices $parts \
  --profile one-slow --net lenet --data fashion-mnist --data-dir "$DATA" --batch 128 --split 8 --epochs 1 --seed 1 \
  --out "$OUT/compare-gossip"

# The in-flight depth on CUDA (issue 11): the same ring/fastest run with one
# mini-batch in flight per stream, beside compare-ring's default of 2.
step compare-inflight1 60 "$NBSGD" compare --runs ring/fastest --inflight 1 --devices $parts --profile one-slow \
  --net lenet --data fashion-mnist --data-dir "$DATA" --batch 128 --split 8 --epochs 1 --seed 1 \
  --out "$OUT/compare-inflight1"

for f in bench_update bench_throughput bench_delay bench_green torch_throughput; do
  [ -f "$OUT/$f.log" ] && { echo "-- $f"; tail -25 "$OUT/$f.log"; }
done
echo "-- nbsgd / PyTorch"; cat "$OUT/ratio.txt"
for f in compare-ring compare-gossip compare-inflight1; do
  [ -f "$OUT/$f.log" ] && { echo "-- $f"; tail -12 "$OUT/$f.log"; }
done
exit $status
