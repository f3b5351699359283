#!/usr/bin/env bash
# Runs N stegjax processes on this machine over loopback (for testing multi-host code paths).
#   launch/local.sh 2 --config=configs/ar_prior.py:smoke --workdir=/tmp/mp
#   launch/local.sh 2 --cpu_devices=2 --config=configs/cmsteg.py:smoke --workdir=/tmp/mp2
# Each process splits its CPU into --cpu_devices JAX devices (default here 1; a later
# --cpu_devices flag wins, an XLA_FLAGS device count wins over both). Only process 0 writes
# reports; the first failure stops the other processes and is the exit status.
set -euo pipefail
N=${1:?usage: launch/local.sh N [absl flags...]}; shift
PORT=${PORT:-$((20000 + RANDOM % 20000))}
pids=()
for ((i = 0; i < N; i++)); do
  python -m stegjax.main --num_processes="$N" --process_id="$i" \
    --coordinator_address="localhost:$PORT" --cpu_devices="${DEVICES_PER_PROC:-1}" "$@" &
  pids+=($!)
done
# The first process to fail stops the others (they would wait on its collectives).
status=0
for ((k = 0; k < N; k++)); do
  wait -n || { status=$?; kill "${pids[@]}" 2>/dev/null || true; break; }
done
wait || true
exit $status
