#!/usr/bin/env bash
# The README's main command: set up, build, and run the demo job (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cmake --preset default > /dev/null
cmake --build --preset default -j "$(nproc)" --target nbsgd_cli
./build/default/nbsgd devices
