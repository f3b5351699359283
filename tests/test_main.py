"""stegjax.main: config errors are one clear line and a non-zero exit."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run(
    [sys.executable, "-m", "stegjax.main", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_unknown_experiment():
  p = _run("--config=configs/vq_tokenizer.py:smoke", "--config.experiment=nope", "--workdir=/tmp/x")
  assert p.returncode == 2
  last = p.stderr.strip().splitlines()[-1]
  assert "unknown experiment 'nope'" in last and "tokenizer" in last


def test_unknown_field():
  p = _run("--config=configs/vq_tokenizer.py:smoke", "--config.vq.no_such_field=3")
  assert p.returncode != 0 and "no_such_field" in p.stderr


def test_unknown_size():
  p = _run("--config=configs/vq_tokenizer.py:huge")
  assert p.returncode != 0 and "unknown config size 'huge'" in p.stderr


def test_cpu_split_sets_the_device_count_once(monkeypatch):
  """--cpu_devices writes XLA's host device count; an explicit count in XLA_FLAGS wins."""
  from stegjax import main

  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
  main._split_cpu(2)
  assert os.environ["XLA_FLAGS"] == (
    "--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=2"
  )
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  main._split_cpu(2)
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"
  monkeypatch.delenv("XLA_FLAGS")
  main._split_cpu(1)
  assert "XLA_FLAGS" not in os.environ


def test_default_run_uses_two_cpu_devices(tmp_path):
  """The logged environment of a real run shows the split (the data-parallel mesh uses it)."""
  env_flags = os.environ.pop("XLA_FLAGS", None)
  try:
    p = _run(
      "--config=configs/vq_tokenizer.py:smoke",
      f"--workdir={tmp_path}",
      "--config.vq.train.num_steps=1",
    )
  finally:
    if env_flags is not None:
      os.environ["XLA_FLAGS"] = env_flags
  assert p.returncode == 0, p.stderr[-2000:]
  want = min(2, os.cpu_count() or 1)
  assert f"{want} local devices" in p.stderr
