#!/usr/bin/env bash
# Builds the portable release bundle: one relocatable .tar.gz (as llama.cpp ships
# its releases) that runs on a GPU container which has the NVIDIA driver, CUDA and
# PyTorch but none of the build's Debian packages, no network and no data set.
#
#   scripts/bundle.sh [--arch "90"] [--out DIR] [--build-dir DIR] [--data DIR]
#
#   --arch       CUDA architectures (CMake list); default: the project's defaults
#                (75-real;80-real;86-real;89-real;90). Only "90" for an H100/H200.
#   --out        where the archive goes (default build/bundle)
#   --build-dir  the CUDA build tree (default build/bundle-<arch tag>)
#   --data       full Fashion-MNIST, gzipped IDX (default /usr/share/datasets/fashion-mnist)
#
# The archive holds bin/ (nbsgd, the gpu-labelled test binaries, the host twins of
# their bodies, the GPU benches), lib/ (every shared library they need that such a
# container lacks: oneDNN, OpenBLAS, the OpenMP runtime, fmt, spdlog, toml++, ...,
# found with ldd), data/fashion-mnist (10,000 training and 2,000 test images, IDX),
# profiles/ (the straggler profiles),
# run.sh (the runner: scripts/bundle_run.sh), gpu_check.sh and torch_throughput.py.
# RPATHs are $ORIGIN-relative (patchelf), so the tree works wherever it is unpacked.
#
# Left out, found at run time by run.sh: cuBLAS, cuDNN, NCCL (the PyTorch wheels
# nvidia-cublas, nvidia-cudnn-cu13, nvidia-nccl-cu13 carry them; together about a
# gigabyte), the driver's libcuda, glibc, libstdc++ and libgcc. The CUDA runtime
# libcudart.so.13 IS bundled (under 1 MB): it is the exact version nbsgd was built
# against, it is redistributable, it needs only a driver at least as new as itself
# (the same condition as the toolkit's), and bundling it removes any dependence on
# where (or whether) a container keeps the toolkit's or the wheel's copy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

arch="75-real;80-real;86-real;89-real;90"
out=$ROOT/build/bundle
build=""
data=/usr/share/datasets/fashion-mnist
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build-dir) build=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    *) echo "bundle.sh: unknown option $1 (--arch, --out, --build-dir, --data)" >&2; exit 2 ;;
  esac
done
tag=$(printf '%s' "$arch" | sed 's/-real//g; s/;/-/g')
build=${build:-$ROOT/build/bundle-$tag}
name=nbsgd-bundle-sm$tag
for tool in cmake nvcc patchelf python3 ldd tar; do
  command -v "$tool" >/dev/null || [ -x "/usr/local/cuda/bin/$tool" ] ||
    { echo "bundle.sh: $tool is missing (scripts/setup.sh installs patchelf)" >&2; exit 1; }
done
export PATH=$PATH:/usr/local/cuda/bin

# ---------------------------------------------------------------- build
GPU_TESTS=(gpu_comm gpu_delay gpu_gossip gpu_green gpu_kernels gpu_layers gpu_optim gpu_runtime)
HOST_TESTS=(test_runtime test_kernels test_layers test_optim test_comm test_gpu_setup)
BENCHES=(bench_update bench_throughput bench_delay bench_green)
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
echo "== bundle: build (CUDA architectures $arch) in $build"
mkdir -p "$out"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DNBSGD_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" "${launcher[@]}" > "$out/configure.log" 2>&1 ||
  { tail -20 "$out/configure.log"; exit 1; }
cmake --build "$build" -j "${BUNDLE_JOBS:-$(nproc)}" --target nbsgd_cli "${GPU_TESTS[@]}" "${HOST_TESTS[@]}" "${BENCHES[@]}"

# ---------------------------------------------------------------- stage
stage=$out/stage/$name
rm -rf "$out/stage"
mkdir -p "$stage/bin" "$stage/lib" "$stage/data"
cp "$build/nbsgd" "$stage/bin/"
for t in "${GPU_TESTS[@]}" "${HOST_TESTS[@]}"; do cp "$build/tests/$t" "$stage/bin/"; done
for b in "${BENCHES[@]}"; do cp "$build/bench/$b" "$stage/bin/"; done
cp scripts/bundle_run.sh "$stage/run.sh"
cp bench/gpu_check.sh "$stage/gpu_check.sh"
cp bench/torch_throughput.py "$stage/torch_throughput.py"
cp -r profiles "$stage/profiles"
chmod +x "$stage/run.sh" "$stage/gpu_check.sh"
python3 scripts/bundle_data.py "$data" "$stage/data/fashion-mnist" --train 10000 --test 2000
printf 'nbsgd %s (git %s), CUDA architectures %s, built %s on %s\n' \
  "$(sed -n 's/^project(nbsgd VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)" \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo +dirty)" \
  "$arch" "$(date -u +%FT%TZ)" "$(. /etc/os-release && echo "$PRETTY_NAME")" > "$stage/VERSION"

# ---------------------------------------------------------------- libraries
# What stays outside: glibc, libstdc++/libgcc, the driver, and the CUDA libraries
# that the GPU box has as wheels (see the header). Everything else ldd resolves is
# copied, symlinks followed, under its soname.
left_out() {
  case "$1" in
    ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libutil.so*) return 0 ;;
    libstdc++.so*|libgcc_s.so*|linux-vdso*) return 0 ;;
    libcuda.so*|libcublas.so*|libcublasLt.so*|libcudnn*.so*|libnccl.so*) return 0 ;;
  esac
  return 1
}
manifest=$stage/lib/MANIFEST
: > "$manifest"
for f in "$stage"/bin/*; do
  while read -r so arrow path _; do
    [ "$arrow" = "=>" ] || continue
    left_out "$so" && continue
    if [ "$path" = "not" ]; then echo "bundle.sh: $(basename "$f") needs $so, which is not found here" >&2; exit 1; fi
    if [ ! -e "$stage/lib/$so" ]; then
      cp -L "$path" "$stage/lib/$so"
      echo "$so <- $(readlink -f "$path") ($(dpkg -S "$(readlink -f "$path")" 2>/dev/null | cut -d: -f1 | head -1 || true))" >> "$manifest"
    fi
  done < <(ldd "$f")
done
sort -o "$manifest" "$manifest"

# RPATHs relative to where the tree lies: binaries look in ../lib, libraries beside
# themselves (their own dependencies are resolved through their own RUNPATH).
for f in "$stage"/bin/*; do
  strip --strip-unneeded "$f"
  patchelf --set-rpath '$ORIGIN/../lib' "$f"
done
for f in "$stage"/lib/*.so*; do
  chmod u+w "$f"
  strip --strip-unneeded "$f" 2>/dev/null || true
  patchelf --set-rpath '$ORIGIN' "$f"
done

# ---------------------------------------------------------------- archive
archive=$out/$name.tar.gz
tar -C "$out/stage" -cf - "$name" | gzip -9 > "$archive.tmp"
mv "$archive.tmp" "$archive"
cp scripts/bundle_run.sh "$out/run.sh"
bytes=$(stat -c %s "$archive")
limit=$((60 * 1024 * 1024))
echo "== bundle: $archive"
echo "bundle size: $bytes bytes ($(awk "BEGIN{printf \"%.1f\", $bytes/1048576}") MiB compressed; limit 60 MiB), unpacked $(du -sh "$stage" | cut -f1)"
echo "bundled libraries:"
sed 's/^/  /' "$manifest"
if [ "$bytes" -gt "$limit" ]; then
  echo "bundle.sh: the archive is over the 60 MiB limit" >&2
  exit 1
fi
