"""``sharding.batched_apply``: the same rows in, the same rows out, on any job layout.

Every process of a multi-process job gets every output row, bit-identical to a one-process
run with the same number of devices, with params that are global arrays of the whole job
(the layout the trainer returns; moving them with a cross-host ``device_put`` crashed).
"""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from stegjax.train import sharding

WORKER = os.path.join(os.path.dirname(__file__), "_batched_worker.py")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(nproc, devices, out, rules="replicate"):
  env = dict(
    os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}"
  )
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  port = str(_free_port())
  procs = [
    subprocess.Popen(
      [sys.executable, WORKER, str(i), str(nproc), port, str(out), rules],
      env=env,
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(nproc)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (o, e) in zip(procs, outs):
    assert p.returncode == 0, f"worker failed:\n{o}\n{e[-3000:]}"
  return outs[0][0], dict(np.load(str(out) + ".npz"))


def test_rows_in_order_and_padding_dropped():
  fn = jax.jit(lambda p, b: {"y": b["x"] * p + b["i"][:, None], "i": b["i"]})
  x = np.arange(23 * 3, dtype=np.float32).reshape(23, 3)
  i = np.arange(23, dtype=np.int32)
  for bs in (1, 5, 64):
    out = sharding.batched_apply(fn, np.float32(2.0), {"x": x, "i": i}, batch_size=bs)
    np.testing.assert_array_equal(out["i"], i)
    np.testing.assert_array_equal(out["y"], 2 * x + i[:, None])


def test_geometry():
  d = jax.device_count()
  assert sharding.apply_geometry(0, 8) == (1, 0)
  assert sharding.apply_geometry(10 * d, 4) == (4, 3)  # 10 rows per device in calls of 4
  assert sharding.apply_geometry(3 * d, 64) == (3, 1)  # never more padding than one call
  with pytest.raises(ValueError):
    sharding.apply_geometry(5, 0)


# fsdp: the params are sharded across the processes (gathered by to_host); replicated params
# (each process reads its own copy) are what every trained model is, and the launcher test
# covers them in the fast suite.
@pytest.mark.parametrize("rules", [pytest.param("replicate", marks=pytest.mark.slow), "fsdp"])
def test_two_processes_equal_one(tmp_path, rules):
  log2, two = _launch(2, 1, tmp_path / "two", rules)  # 2 processes x 1 device
  _, one = _launch(1, 2, tmp_path / "one", rules)  # 1 process x 2 devices
  assert "OK 2 2" in log2
  if rules == "fsdp":
    assert "data" in log2  # the params really were sharded across the two processes
  for bs in (1, 4, 64):
    np.testing.assert_array_equal(two[f"feats_{bs}"], one[f"feats_{bs}"])
    np.testing.assert_array_equal(two[f"arg_{bs}"], one[f"arg_{bs}"])
    assert len(two[f"rows_{bs}_0"]) < 37  # process 0 computed only its share
