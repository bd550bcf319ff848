#!/usr/bin/env bash
# Installs every system package nbsgd's build, tests and benches need.
# Idempotent: packages already present are skipped by apt-get; safe to re-run.
# (libdnnl-dev's CMake config requires the OpenCL headers and ICD loader; patchelf
# and debootstrap serve the release bundle, scripts/bundle.sh and bundle_selftest.sh.)
# clang + libclang-rt-dev (libFuzzer, the sanitizer runtimes) + libomp-dev (OpenMP
# for clang, which the build finds even when only the fuzz targets are built): the
# `fuzz` preset. Debian 12 has clang 14.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev libdnnl-dev ocl-icd-opencl-dev opencl-headers libeigen3-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libopenmpi-dev openmpi-bin
  dataset-fashion-mnist
  python3-numpy python3-matplotlib
  patchelf debootstrap
  clang libclang-rt-dev libomp-dev
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The checkpoint interchange tests read and write safetensors files with Python's
# `safetensors` library (Debian 12 does not package it): from PyPI, for the python3
# on PATH. Without network they skip, saying why; nothing else depends on it.
if ! python3 -c 'import numpy, safetensors.numpy' >/dev/null 2>&1; then
  echo "setup: pip install safetensors numpy (for the checkpoint interchange tests)"
  python3 -m pip install -q safetensors numpy 2>/dev/null ||
    python3 -m pip install -q --break-system-packages safetensors numpy ||
    echo "setup: warning: could not install python safetensors; the interchange tests will skip"
fi
