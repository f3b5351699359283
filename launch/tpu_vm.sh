#!/usr/bin/env bash
# A TPU pod slice: run the same command on every worker; jax.distributed auto-detects the slice.
#   launch/tpu_vm.sh my-tpu us-central2-b --config=configs/cmsteg.py:paper --workdir=gs://bucket/run
# Assumes the repo is checked out and installed at ~/stegjax on every worker.
set -euo pipefail
TPU=${1:?usage: launch/tpu_vm.sh TPU_NAME ZONE [absl flags...]}; ZONE=${2:?zone}; shift 2
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
  --command="cd ~/stegjax && python -m stegjax.main --distributed $args"
