#!/usr/bin/env bash
# The README's main command: set up a fresh machine, build, and run the demo:
# LeNet on Fashion-MNIST on 4 workers, one of them 4x slower, trained with
# --window sync and with --window fastest on the same data, seed and profile, then a
# table of both (time to the target training loss, samples/s, and the ratio).
# Workers: all GPUs when there are any (the last one slowed 4x; one GPU is split
# into 4 SM partitions), otherwise 4 host workers on the virtual clock.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# With a GPU driver present, the CUDA build (preset default); without one, the host
# build, which skips compiling CUDA kernels for five architectures nobody can run here.
if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then preset=default; else preset=host; fi
echo "demo: building (cmake preset $preset)"
cmake --preset "$preset" > /dev/null
cmake --build --preset "$preset" -j "$(nproc)" --target nbsgd_cli
nbsgd=./build/$preset/nbsgd

devices=$($nbsgd devices --json)
if grep -q '"backend": "cuda"' <<< "$devices"; then
  n=$(grep -c '"index"' <<< "$devices")
  if [ "$n" -eq 1 ]; then
    workers=(--devices 0:0.25,0:0.25,0:0.25,0:0.25); n=4
  else
    workers=()
  fi
else
  workers=(--host-workers 4); n=4
fi
slowdown=$(printf '1,%.0s' $(seq 2 "$n"))4

out=${OUT_DIR:-out/demo-$(date +%Y%m%d-%H%M%S)}
$nbsgd compare --runs ring/sync,ring/fastest "${workers[@]}" --slowdown "$slowdown" \
  --net lenet --data fashion-mnist --batch 128 --split 8 --epochs 1 --target-loss 0.6 --seed 1 \
  --out "$out" "$@"
echo "demo: results in $out: report.md, plots/*.png (nbsgd plot $out redraws them), compare.json;"
echo "demo: each run's config.json, metrics.jsonl, summary.json and trace.json (open it in ui.perfetto.dev or chrome://tracing)"
