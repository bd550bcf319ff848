#!/usr/bin/env bash
# The README's test command: set up a fresh machine, build everything (the CUDA
# backend too when nvcc is present: it compiles here even without a GPU), run all
# tests. GPU-labelled tests skip, with a reason, when no GPU is usable.
# Extra arguments go to ctest (e.g. -L host, -R Kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
jobs=$(nproc)
cmake --preset default
cmake --build --preset default -j "$jobs"
ctest --preset default -j "$jobs" "$@"
