#!/usr/bin/env bash
# The release bundle's runner (packed as run.sh at the top of the archive; see
# scripts/bundle.sh). It finds the CUDA libraries the bundle leaves out, sets the
# library path, says what it found and where, and runs the GPU check.
#
#   run.sh ARCHIVE.tar.gz [CMD...]  unpack (into $NBSGD_BUNDLE_DIR, default
#                                   ./nbsgd-bundle) and run CMD there
#   run.sh [check]                  the GPU check (bench/gpu_check.sh on the bundle's
#                                   binaries; results in $OUT, default ./gpu-check-out)
#   run.sh env                      only find the libraries and print what was found
#   run.sh exec PROGRAM [ARGS...]   run one bundled program (bin/PROGRAM) with the path set
#   run.sh ldd-check                every bundled binary and library resolves only to the
#                                   bundle, glibc, libstdc++/libgcc and the CUDA libraries
#
# cuBLAS, cuDNN and NCCL are looked for beside the CUDA toolkit ($CUDA_HOME,
# /usr/local/cuda), else in the Python wheels' folders (nvidia-cublas,
# nvidia-cudnn-cu13, nvidia-nccl-cu13, as PyTorch installs them; python3 is asked
# where they live), else in the folders of NBSGD_CUDA_LIBS (colon-separated).
set -uo pipefail

if [ $# -gt 0 ] && [[ "$1" == *.tar.gz ]] && [ -f "$1" ]; then
  archive=$1
  shift
  dest=${NBSGD_BUNDLE_DIR:-$PWD/nbsgd-bundle}
  mkdir -p "$dest"
  echo "run.sh: unpacking $archive into $dest"
  tar -xzf "$archive" -C "$dest" --strip-components=1 || { echo "run.sh: cannot unpack $archive" >&2; exit 1; }
  exec "$dest/run.sh" "$@"
fi

BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export NBSGD_BUNDLE=$BUNDLE

# find_lib SONAME WHEEL: prints "DIR<tab>WHERE" for the first place holding SONAME.
find_lib() {
  local so=$1 wheel=$2 d
  for d in ${CUDA_HOME:+"$CUDA_HOME/lib64" "$CUDA_HOME/lib"} /usr/local/cuda/lib64 /usr/local/cuda/lib \
           /usr/lib/x86_64-linux-gnu; do
    if [ -e "$d/$so" ]; then printf '%s\t%s\n' "$d" "beside the CUDA toolkit"; return 0; fi
  done
  if command -v python3 >/dev/null 2>&1; then
    d=$(python3 -c "import os, $wheel as m; p = list(getattr(m, '__path__', [])) or [os.path.dirname(m.__file__)]; print(os.path.join(p[0], 'lib'))" 2>/dev/null)
    if [ -n "$d" ] && [ -e "$d/$so" ]; then printf '%s\t%s\n' "$d" "python3 wheel $wheel"; return 0; fi
  fi
  local IFS=:
  for d in ${NBSGD_CUDA_LIBS:-}; do
    if [ -n "$d" ] && [ -e "$d/$so" ]; then printf '%s\t%s\n' "$d" "NBSGD_CUDA_LIBS"; return 0; fi
  done
  return 1
}

libpath=$BUNDLE/lib
missing=0
echo "== nbsgd bundle $(cat "$BUNDLE/VERSION" 2>/dev/null) at $BUNDLE"
echo "loader: $(ldd --version 2>&1 | head -1)"
for spec in "cuBLAS libcublas.so.13 nvidia.cublas" "cuBLASLt libcublasLt.so.13 nvidia.cublas" \
            "cuDNN libcudnn.so.9 nvidia.cudnn" "NCCL libnccl.so.2 nvidia.nccl"; do
  read -r label so wheel <<< "$spec"
  if found=$(find_lib "$so" "$wheel"); then
    dir=${found%%$'\t'*}
    echo "$label: $dir/$so ($(printf '%s' "$found" | cut -f2))"
    case ":$libpath:" in *":$dir:"*) ;; *) libpath=$libpath:$dir ;; esac
  else
    echo "$label: $so NOT FOUND (looked beside the CUDA toolkit, in the python3 wheel $wheel, in NBSGD_CUDA_LIBS)"
    missing=1
  fi
done
echo "CUDA runtime: $BUNDLE/lib/libcudart.so.13 (bundled: the version nbsgd was built against)"
if command -v nvidia-smi >/dev/null 2>&1; then
  echo "GPUs: $(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>&1 | paste -sd';' -)"
else
  echo "GPUs: no nvidia-smi"
fi
export LD_LIBRARY_PATH=$libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NBSGD_BINARY=$BUNDLE/bin/nbsgd NBSGD_DATA_DIR=$BUNDLE/data/fashion-mnist NBSGD_PROFILES_DIR=$BUNDLE/profiles
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

cmd=${1:-check}
[ $# -gt 0 ] && shift
if [ "$missing" = 1 ] && [ "$cmd" != env ]; then
  echo "run.sh: CUDA libraries missing (see above): install the wheels, or point NBSGD_CUDA_LIBS at their lib folders" >&2
  exit 1
fi

# Whether a resolved library path may lie outside the bundle.
allowed_outside() {
  case "$(basename "$1")" in
    ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libutil.so*) return 0 ;;
    libstdc++.so*|libgcc_s.so*) return 0 ;;
    libcuda.so*|libcublas.so*|libcublasLt.so*|libcudnn*.so*|libnccl.so*) return 0 ;;
  esac
  return 1
}

case "$cmd" in
  env) exit 0 ;;
  exec)
    prog=$1
    shift
    [ -x "$BUNDLE/bin/$prog" ] || { echo "run.sh: no bundled program $prog" >&2; exit 1; }
    exec "$BUNDLE/bin/$prog" "$@"
    ;;
  ldd-check)
    bad=0
    n=0
    for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do
      [ -f "$f" ] && [ ! -L "$f" ] || continue
      head -c 4 "$f" | grep -q ELF || continue
      n=$((n + 1))
      while read -r line; do
        case "$line" in
          *"not found"*) echo "ldd: $(basename "$f"): $line"; bad=1 ;;
          *"=> /"*)
            p=${line#*=> }
            p=${p%% (*}
            case "$p" in "$BUNDLE"/*) ;; *) allowed_outside "$p" || { echo "ldd: $(basename "$f"): $p is outside the bundle"; bad=1; } ;; esac
            ;;
        esac
      done < <(ldd "$f" 2>&1)
    done
    if [ "$bad" = 0 ]; then
      echo "ldd-check: $n binaries and libraries resolve only to the bundle, glibc, libstdc++/libgcc and the CUDA libraries"
    fi
    exit $bad
    ;;
  check)
    exec "$BUNDLE/gpu_check.sh" "$@"
    ;;
  *)
    echo "run.sh: unknown command '$cmd' (check, env, exec PROGRAM, ldd-check)" >&2
    exit 2
    ;;
esac
