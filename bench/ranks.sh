#!/bin/sh
# bench_ranks (synthetic: a close-like round trip, the accumulator all-gather), then
# the real coordinator (below), on 2, 4 and 8 ranks, over shared memory (Open MPI's vader BTL) and TCP
# (--mca btl tcp,self: the path that crosses nodes, here over loopback). One table;
# JSON lines into ${1:-bench_ranks.json}. On a box with fewer cores than ranks the
# ranks are oversubscribed and the times are mostly scheduling: say so when quoting.
set -e
B=${BENCH_RANKS:-build/host/bench/bench_ranks}
OUT=${1:-bench_ranks.json}
: > "$OUT"
for btl in vader tcp; do
  for np in 2 4 8; do
    mpirun --oversubscribe --allow-run-as-root -np $np --mca btl $btl,self "$B" --btl $btl --json "$OUT" ${ITERS:+--iters $ITERS}
  done
done | awk 'NR == 1 || $1 != "ranks"'

# The real clock's coordinator itself (real_driver.cpp): `nbsgd train --clock real
# --window fastest` with one host worker per rank, every worker at the same speed,
# NBSGD_MPI_STATS=1. Each rank other than 0 reports how long after rank 0 closed a
# window it knew of the close (one machine: one steady clock); the row is the worst
# rank's median and p99, and every rank's messages divided by the steps.
NB=${BENCH_NBSGD:-build/host/nbsgd}
STEPS=${STEPS:-200}
DATA=$(mktemp -d)
python3 - "$DATA" <<'PY'
import sys, numpy as np
d = sys.argv[1]
for split, n in (("train", 4096), ("test", 256)):
    y = (np.arange(n) * 7) % 10
    x = np.random.default_rng(0).integers(0, 255, (n, 1, 28, 28), dtype=np.uint8)
    np.save(f"{d}/x_{split}.npy", x); np.save(f"{d}/y_{split}.npy", y.astype(np.int64))
PY
printf '%-12s %-6s %5s %14s %11s %13s\n' coordinator btl ranks close_med_us close_p99_us msgs_per_step
for btl in vader tcp; do
  for np in 2 4 8; do
    mpirun --oversubscribe --allow-run-as-root -np $np --mca btl $btl,self -x NBSGD_MPI_STATS=1 -x OMP_NUM_THREADS=1 \
      "$NB" train --net mlp --data "npy:$DATA" --batch 32 --split 4 --clock real --window fastest \
      --host-workers 1 --steps "$STEPS" --quiet 2>&1 | grep '^nbsgd-stats:' |
      awk -v btl=$btl -v np=$np -v steps="$STEPS" -v out="$OUT" '
        { for (i = 2; i < NF; i += 2) v[$i] = $(i + 1)
          if (v["rank"] != 0) { if (v["close_known_us_median"] > med) med = v["close_known_us_median"]
                                if (v["close_known_us_p99"] > p99) p99 = v["close_known_us_p99"] }
          msgs += v["messages"] }
        END { printf "%-12s %-6s %5d %14.1f %11.1f %13.1f\n", "window", btl, np, med, p99, msgs / steps
              printf "{\"bench\":\"coordinator\",\"btl\":\"%s\",\"ranks\":%d,\"steps\":%d,\"close_known_us_median\":%.1f,\"close_known_us_p99\":%.1f,\"messages_per_step\":%.1f}\n", btl, np, steps, med, p99, msgs / steps >> out }'
  done
done
rm -rf "$DATA"
