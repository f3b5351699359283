#!/usr/bin/env bash
# Runs N stegjax processes on this machine over loopback (for testing multi-host code paths).
#   launch/local.sh 2 --config=configs/ar_prior.py:smoke --workdir=/tmp/mp
# Each process gets DEVICES_PER_PROC fake CPU devices (default 1) unless JAX_PLATFORMS says otherwise.
set -euo pipefail
N=${1:?usage: launch/local.sh N [absl flags...]}; shift
PORT=${PORT:-$((20000 + RANDOM % 20000))}
export XLA_FLAGS="${XLA_FLAGS:---xla_force_host_platform_device_count=${DEVICES_PER_PROC:-1}}"
pids=()
for ((i = 0; i < N; i++)); do
  python -m stegjax.main --num_processes="$N" --process_id="$i" \
    --coordinator_address="localhost:$PORT" "$@" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit $status
