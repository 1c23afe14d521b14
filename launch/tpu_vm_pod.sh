#!/usr/bin/env bash
# Pretrain on a Cloud TPU VM pod slice: create it, copy the code, install, run on all workers.
#   TPU_NAME=csvr ZONE=us-central2-b ACCELERATOR=v4-32 DATASET=gs://BUCKET/kinetics400 \
#     WORKDIR=gs://BUCKET/runs/k400 bash launch/tpu_vm_pod.sh [--config.x=y ...]
# The dataset built by data_prep.build is copied to a bucket (gsutil -m cp -r); TFDS reads gs:// paths
# directly. Every worker runs the same command; jax.distributed.initialize() discovers the pod by itself.
# DRY_RUN=1 prints the gcloud commands and checks the command line through the CLI locally (--dry_run).
set -euo pipefail
cd "$(dirname "$0")/.."
TPU_NAME=${TPU_NAME:-csvr}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR=${ACCELERATOR:-v4-32}
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
CONFIG=${CONFIG:-configs/k400.py}
DATASET=${DATASET:-gs://YOUR_BUCKET/kinetics400}
WORKDIR=${WORKDIR:-gs://YOUR_BUCKET/runs/k400}
args=(--config="$CONFIG" --workdir="$WORKDIR" --config.data.dataset_dir="$DATASET" "$@")
remote="mkdir -p csvr_jax && tar -xzf csvr_jax.tgz -C csvr_jax && cd csvr_jax && pip install -q -e '.[tpu]' && python3 -m csvr_jax.main ${args[*]}"
steps=(
  "gcloud compute tpus tpu-vm create $TPU_NAME --zone=$ZONE --accelerator-type=$ACCELERATOR --version=$RUNTIME"
  "git archive --format=tar.gz -o /tmp/csvr_jax.tgz HEAD"
  "gcloud compute tpus tpu-vm scp --zone=$ZONE --worker=all /tmp/csvr_jax.tgz $TPU_NAME:csvr_jax.tgz"
  "gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --worker=all --command=\"$remote\""
)
for s in "${steps[@]}"; do
  echo "+ $s"
  [ "${DRY_RUN:-0}" = 1 ] || eval "$s"
done
if [ "${DRY_RUN:-0}" = 1 ]; then
  JAX_PLATFORMS=cpu "${PYTHON:-python}" -m csvr_jax.main "${args[@]}" --dry_run
fi
