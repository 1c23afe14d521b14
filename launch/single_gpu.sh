#!/usr/bin/env bash
# Pretrain (or any mode) on one GPU.
#   CONFIG=configs/k400.py WORKDIR=runs/k400 bash launch/single_gpu.sh [--mode=finetune] [--config.x=y ...]
# Needs the CUDA build of JAX: pip install -e ".[cuda]". DRY_RUN=1 prints the command and checks the
# config and mode through the CLI (--dry_run) without training.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/k400.py}
WORKDIR=${WORKDIR:-runs/$(basename "${CONFIG%%.py*}")}
PYTHON=${PYTHON:-python}
# Let XLA use most of the GPU memory, and keep cuDNN autotuning on (the default level) for 3D convolutions.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
cmd=("$PYTHON" -m csvr_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@")
echo "+ ${cmd[*]}"
if [ "${DRY_RUN:-0}" = 1 ]; then
  JAX_PLATFORMS=cpu "${cmd[@]}" --dry_run
else
  exec "${cmd[@]}"
fi
