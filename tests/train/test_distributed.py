"""Multi-process training on loopback, and checkpoints restored on other device counts."""

import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = os.path.join(os.path.dirname(__file__), "_mp_worker.py")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env(devices):
  env = dict(
    os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}"
  )
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def _launch(nproc, devices_per_proc, workdir, steps, rules):
  port = str(_free_port())
  procs = [
    subprocess.Popen(
      [sys.executable, WORKER, str(i), str(nproc), port, str(workdir), str(steps), rules],
      env=_env(devices_per_proc),
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(nproc)
  ]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, f"worker failed:\n{out}\n{err[-3000:]}"
  return outs[0][0], np.load(str(workdir) + ".npy")


def test_two_processes_equal_one(tmp_path):
  _, w2 = _launch(2, 2, tmp_path / "two", 4, "fsdp")  # 2 processes x 2 devices
  _, w1 = _launch(1, 4, tmp_path / "one", 4, "fsdp")  # 1 process x 4 devices
  np.testing.assert_allclose(w2, w1, rtol=1e-6, atol=1e-6)


def test_restore_on_other_device_counts(tmp_path):
  out8, w8 = _launch(1, 8, tmp_path / "ckpt", 4, "fsdp")
  assert "data" in out8  # really sharded on 8 devices
  # Same workdir, fewer devices: fit finds step 4 done, restores (resharding), trains nothing.
  for devices in (1, 4):
    out, w = _launch(1, devices, tmp_path / "ckpt", 4, "fsdp")
    assert "STEP 4" in out
    np.testing.assert_array_equal(w, w8)
