#!/usr/bin/env bash
# Installs every system package nbsgd's build, tests and benches need.
# Idempotent: packages already present are skipped by apt-get; safe to re-run.
# (libdnnl-dev's CMake config requires the OpenCL headers and ICD loader.)
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev libdnnl-dev ocl-icd-opencl-dev opencl-headers libeigen3-dev
  libcli11-dev libtomlplusplus-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libopenmpi-dev openmpi-bin
  dataset-fashion-mnist
  python3-numpy
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
