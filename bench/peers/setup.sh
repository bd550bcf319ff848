#!/usr/bin/env bash
# Installs PyTorch from PyPI into bench/peers/.venv for the peer benchmark (peers.py).
# Not part of CI nor of scripts/setup.sh: the project itself never needs torch.
#
# PyPI's Linux x86_64 torch wheel is the CUDA build; it pulls the nvidia-* runtime
# wheels (several GB) even on a machine with no GPU. A CPU-only wheel exists only on
# PyTorch's own index, which is tried first and may be unreachable (it is from the
# project's build machines). Override with TORCH_SPEC (e.g. TORCH_SPEC=torch==2.15.0).
#
# Usage: bench/peers/setup.sh            (idempotent; re-run to repair the venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
spec="${TORCH_SPEC:-torch}"
cpu_index="https://download.pytorch.org/whl/cpu"

# Debian's interpreter: /usr/bin/python3 (a pyenv python3 on PATH may lack venv/ensurepip).
py=/usr/bin/python3
[[ -x $py ]] || py="$(command -v python3)"
if ! "$py" -c "import venv, ensurepip" 2>/dev/null; then
  echo "setup.sh: python3-venv is missing; installing it with apt-get"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
fi

if [[ ! -x $venv/bin/python ]]; then
  "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup.sh: torch already installed in $venv"
else
  cache="$(mktemp -d)"
  trap 'rm -rf "$cache"' EXIT
  # Download first (into a throw-away dir) so that the wheel sizes can be reported.
  if timeout 20 "$venv/bin/python" -c "import urllib.request as u; u.urlopen('$cpu_index/torch/', timeout=15)" 2>/dev/null; then
    echo "setup.sh: PyTorch's CPU index is reachable: installing the CPU-only build"
    "$venv/bin/python" -m pip download --disable-pip-version-check -d "$cache" --index-url "$cpu_index" \
      --extra-index-url https://pypi.org/simple "$spec"
  else
    echo "setup.sh: PyTorch's CPU index is unreachable: installing $spec from PyPI (the CUDA-bundled build)"
    "$venv/bin/python" -m pip download --disable-pip-version-check -d "$cache" "$spec"
  fi
  echo "setup.sh: downloaded wheels:"
  du -ch "$cache"/*.whl | sort -h | tail -n 6
  "${pip[@]}" --no-index --find-links "$cache" "$spec"
fi
"${pip[@]}" numpy >/dev/null 2>&1 || true  # torch warns without numpy; peers.py does not need it
"$venv/bin/python" -c "import torch; print('setup.sh: torch', torch.__version__, 'threads', torch.get_num_threads(), \
'gloo', torch.distributed.is_gloo_available())"
echo "setup.sh: venv size: $(du -sh "$venv" | cut -f1)"
