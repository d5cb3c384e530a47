#!/usr/bin/env bash
# The one command a lent GPU machine runs (device tool, carry .gpu_check): train every backbone for a fixed
# number of steps on GPU and CPU and time batch-1 / batch-1024 inference; writes gpu_check.json to $OUT
# (or reports/). Prepare the data here first: .venv/bin/python scripts/gpu_check.py prepare
# That machine has torch, Lightning, onnxruntime and PyYAML but no Hydra; the script needs none of Hydra.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 scripts/gpu_check.py run --out "${OUT:-reports}" "$@"
