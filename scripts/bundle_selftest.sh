#!/usr/bin/env bash
# Proves the release bundle self-contained: builds it (scripts/bundle.sh, sm_90 by
# default), then, inside a minimal Debian root made by debootstrap (no -dev package,
# no data set, nothing of the build machine), runs through the bundle's runner:
#   - ldd-check: every bundled binary and library resolves only to the bundle,
#     glibc, libstdc++/libgcc and the CUDA libraries named in bundle.sh;
#   - nbsgd devices, and a short nbsgd train on the bundled Fashion-MNIST;
#   - the bundled host test binaries;
#   - a gpu test binary, which without a GPU skips, and fails under NBSGD_REQUIRE_GPU=1.
# The CUDA libraries a GPU box has as Python wheels (cuBLAS, cuDNN, NCCL) are put in
# the root as hard links of the toolkit's, in a folder named by NBSGD_CUDA_LIBS, as a
# stand-in for the wheels' lib folders.
#
#   scripts/bundle_selftest.sh [--arch 90] [--root DIR]
#
# Root and network: debootstrap and chroot need root; debootstrap needs the Debian
# mirror once. The root is cached (build/bundle-root/rootfs), so reruns are offline
# and fast. Registered as the ctest Bundle.SelfContained (label bundle) only when
# configured with -DNBSGD_BUNDLE_TEST=ON, so neither scripts/test.sh nor CI runs it:
#   cmake --preset default -DNBSGD_BUNDLE_TEST=ON
#   ctest --test-dir build/default -L bundle --output-on-failure
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
arch=90
rootdir=$ROOT/build/bundle-root
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --root) rootdir=$2; shift 2 ;;
    *) echo "bundle_selftest.sh: unknown option $1 (--arch, --root)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bundle_selftest.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "bundle_selftest.sh: debootstrap missing (scripts/setup.sh installs it)" >&2; exit 1; }

out=$ROOT/build/bundle-selftest
./scripts/bundle.sh --arch "$arch" --out "$out"
tag=$(printf '%s' "$arch" | sed 's/-real//g; s/;/-/g')
archive=$out/nbsgd-bundle-sm$tag.tar.gz

# ---------------------------------------------------------------- the minimal root
fs=$rootdir/rootfs
if [ ! -x "$fs/usr/bin/ldd" ] || [ ! -f "$rootdir/.complete" ]; then
  echo "== minimal root: debootstrap --variant=minbase bookworm $fs"
  rm -rf "$fs"
  mkdir -p "$rootdir"
  debootstrap --variant=minbase bookworm "$fs" http://deb.debian.org/debian > "$rootdir/debootstrap.log" 2>&1 ||
    { tail -20 "$rootdir/debootstrap.log"; exit 1; }
  touch "$rootdir/.complete"
fi
echo "== minimal root: $(cat "$fs/etc/debian_version") minbase, $(chroot "$fs" dpkg-query -W -f '.\n' | wc -l) packages"
dev=$(chroot "$fs" dpkg-query -W -f '${Package}\n' | grep -- '-dev$' || true)
[ -z "$dev" ] || { echo "the minimal root has -dev packages: $dev" >&2; exit 1; }
[ ! -e "$fs/usr/share/datasets" ] || { echo "the minimal root has /usr/share/datasets" >&2; exit 1; }
[ ! -e "$fs/usr/local/cuda" ] || { echo "the minimal root has a CUDA toolkit" >&2; exit 1; }
echo "no -dev package, no /usr/share/datasets, no CUDA toolkit, no python3: $( [ -e "$fs/usr/bin/python3" ] && echo PRESENT || echo absent)"

# Stand-in for the wheels' lib folders: cuBLAS, cuDNN, NCCL only.
libs=$fs/opt/cuda-wheels/lib
rm -rf "$fs/opt/cuda-wheels"
mkdir -p "$libs"
cuda_lib=$(readlink -f /usr/local/cuda/lib64)
for pat in 'libcublas.so*' 'libcublasLt.so*' 'libcudnn*.so*' 'libnccl.so*'; do
  for f in "$cuda_lib"/$pat; do cp -a --link "$f" "$libs/" 2>/dev/null || cp -a "$f" "$libs/"; done
done

# The bundle, unpacked by its own runner.
rm -rf "$fs/opt/nbsgd" "$fs/opt/bundle"
mkdir -p "$fs/opt/bundle"
cp "$archive" "$out/run.sh" "$fs/opt/bundle/"
mounted=0
cleanup() { [ "$mounted" = 1 ] && umount "$fs/proc" 2>/dev/null || true; }
trap cleanup EXIT
if mount -t proc proc "$fs/proc" 2>/dev/null; then mounted=1; fi

inroot() {  # inroot CMD...: in the chroot, with only the wheels' stand-in named
  chroot "$fs" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root TMPDIR=/tmp NBSGD_CUDA_LIBS=/opt/cuda-wheels/lib \
    NBSGD_BUNDLE_DIR=/opt/nbsgd "$@"
}
fail=0
check() {  # check NAME CMD...
  local name=$1 rc
  shift
  echo "== $name"
  set +e
  inroot "$@" 2>&1 | sed 's/^/   /'
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" = 0 ]; then echo "   -> ok"; else echo "   -> FAILED (exit $rc)"; fail=1; fi
}

check "unpack and find the CUDA libraries" /opt/bundle/run.sh "/opt/bundle/$(basename "$archive")" env
check "ldd on every bundled binary and library" /opt/nbsgd/run.sh ldd-check
check "nbsgd devices" /opt/nbsgd/run.sh exec nbsgd devices
rm -rf "$fs/tmp/selftest-run"
check "nbsgd train on the bundled data" /opt/nbsgd/run.sh exec nbsgd train --net lenet \
  --data-dir /opt/nbsgd/data/fashion-mnist --steps 20 --batch 64 --split 4 --test-limit 1000 --out /tmp/selftest-run
for t in "$fs"/opt/nbsgd/bin/test_*; do
  check "host tests: $(basename "$t")" /opt/nbsgd/run.sh exec "$(basename "$t")" --gtest_brief=1
done
check "a gpu test without a GPU: skips" /opt/nbsgd/run.sh exec gpu_runtime --gtest_brief=1
echo "== a gpu test without a GPU under NBSGD_REQUIRE_GPU=1: must fail"
set +e
inroot NBSGD_REQUIRE_GPU=1 /opt/nbsgd/run.sh exec gpu_runtime --gtest_brief=1 > "$out/require.log" 2>&1
rc=$?
set -e
grep -m 2 "NBSGD_REQUIRE_GPU is set" "$out/require.log" | sed 's/^/   /'
if [ "$rc" != 0 ]; then echo "   -> ok (exit $rc)"; else echo "   -> FAILED (it passed)"; fail=1; fi

if [ "$fail" = 0 ]; then
  echo "== bundle self-test passed: $(basename "$archive"), $(stat -c %s "$archive") bytes"
else
  echo "== bundle self-test FAILED"
fi
exit $fail
