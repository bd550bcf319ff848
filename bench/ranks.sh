#!/bin/sh
# bench_ranks on 2, 4 and 8 ranks, over shared memory (Open MPI's vader BTL) and TCP
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
