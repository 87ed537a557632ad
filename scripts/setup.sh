#!/usr/bin/env bash
# Install vaekit with its dependencies into the current Python environment.
# CPU machines get the CPU build of torch 2.13.0 first, so no requirement pulls a CUDA build;
# machines with an NVIDIA driver get pip's default torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch>=2.6"
  else
    # A local CPU wheel (pip's find-links) first, then its dependencies from the index;
    # without one, PyTorch's CPU index.
    if "$PY" -m pip install --quiet --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
      "$PY" -m pip install --quiet "torch==2.13.0"
    else
      "$PY" -m pip install --quiet --timeout 30 "torch==2.13.0" \
        --index-url https://download.pytorch.org/whl/cpu
    fi
  fi
fi
"$PY" -m pip install --quiet -e ".[dev,docs]"
