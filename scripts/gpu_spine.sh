#!/usr/bin/env bash
# The one command a lent GPU machine runs for the spine check (device tool, carry .whl): every pipeline through
# the one train() on the GPU (bf16) and on the host's CPU, exported and parity-checked; writes gpu_spine.json to
# $OUT (or reports/). That machine has torch, Lightning, onnxruntime, pandas and scikit-learn but no Hydra, W&B,
# LightGBM or pandera: carry them as wheels in .whl (see /work/.library/device/README.md for the download line).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -m fulqrun_ml.benchmarks.gpu_spine --out "${OUT:-reports}" "$@"
