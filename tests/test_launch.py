"""``launch/local.sh``: experiments under several processes report what one process reports.

Each run is a real ``python -m stegjax.main`` job. A job of N processes x D CPU devices is
compared with one process of N*D devices (the same global device count, so the same data
and batch geometry): every figure in ``report.json`` must be equal, except wall times and
the environment line. Only process 0 writes, so each workdir holds one report.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch", "local.sh")
# Report fields that measure this run's speed or machine, not its results.
_UNSTABLE = ("second", "minutes", "time", "environment", "load", "cached", "_s")


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  env.pop("XLA_FLAGS", None)  # --cpu_devices decides the device count
  return env


def run_job(processes: int, devices: int, config: str, workdir, *overrides, timeout=1800):
  """Runs ``config`` as ``processes`` x ``devices``; returns the comparable report."""
  flags = [f"--config={config}", f"--workdir={workdir}", f"--cpu_devices={devices}", *overrides]
  if processes > 1:
    cmd = ["bash", LAUNCH, str(processes), *flags]
  else:
    cmd = [sys.executable, "-m", "stegjax.main", *flags]
  proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
  with open(os.path.join(workdir, "report.json")) as f:
    return comparable(json.load(f))


def comparable(obj):
  """The report without timing and environment fields."""
  if isinstance(obj, dict):
    return {k: comparable(v) for k, v in obj.items() if not any(u in k.lower() for u in _UNSTABLE)}
  if isinstance(obj, list):
    return [comparable(v) for v in obj]
  return obj


def _assert_same(a, b, where="report"):
  if isinstance(a, dict) and isinstance(b, dict):
    assert sorted(a) == sorted(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
    for k in a:
      _assert_same(a[k], b[k], f"{where}.{k}")
  else:
    assert a == b, f"{where}: {a!r} (several processes) != {b!r} (one process)"


def test_comparable_drops_only_timings():
  rep = {"psnr_db": 30.1, "train_seconds": 9.0, "environment": {"time": 1}, "rows": [{"m2_s": 1}]}
  assert comparable(rep) == {"psnr_db": 30.1, "rows": [{}]}


def test_tokenizer_two_processes_equal_one(tmp_path):
  # The cheapest experiment, shortened: data, training, batched evaluation and the gather.
  short = ("--config.vq.train.num_steps=4",)
  two = run_job(2, 1, "configs/vq_tokenizer.py:smoke", tmp_path / "two", *short)
  one = run_job(1, 2, "configs/vq_tokenizer.py:smoke", tmp_path / "one", *short)
  assert two["heldout"]["num_images"] > 0
  _assert_same(two, one)


# Shortened smoke runs for the fast suite: every multi-process path still runs (data,
# tokenizer and prior training on each process's rows, tokenizing spread over the job,
# evaluation, process 0's report), with fewer steps and images.
AR_PRIOR_SHORT = ("--config.vq.train.num_steps=2", "--config.prior.train.num_steps=2")
CMSTEG_SHORT = AR_PRIOR_SHORT + (
  "--config.captioner.train.num_steps=2",
  "--config.cmsteg.num_images=2",
  "--config.cmsteg.m2_steps=2",
)


def test_ar_prior_two_processes_equal_one(tmp_path):
  two = run_job(2, 1, "configs/ar_prior.py:smoke", tmp_path / "two", *AR_PRIOR_SHORT)
  one = run_job(1, 2, "configs/ar_prior.py:smoke", tmp_path / "one", *AR_PRIOR_SHORT)
  assert two["bits_per_token"]["heldout_null_class"] > 0
  _assert_same(two, one)


@pytest.mark.slow
def test_cmsteg_two_processes_equal_one(tmp_path):
  # 2 devices per process: the job's 4 devices also spread work inside each process.
  # Slow: even shortened, the two jobs cost about 20 CPU minutes (M1/M2/M3 over two channels,
  # the caption-length table and the message evaluation compile many programs).
  two = run_job(2, 2, "configs/cmsteg.py:smoke", tmp_path / "two", *CMSTEG_SHORT)
  one = run_job(1, 4, "configs/cmsteg.py:smoke", tmp_path / "one", *CMSTEG_SHORT)
  assert two["num_images"] == 2 and set(two["channels"]) == {"png", "jpeg85"}
  _assert_same(two, one)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("config", ["configs/ar_prior.py:smoke", "configs/cmsteg.py:smoke"])
def test_smoke_two_processes_equal_one(tmp_path, config, devices):
  two = run_job(2, devices, config, tmp_path / "two")
  one = run_job(1, 2 * devices, config, tmp_path / "one")
  _assert_same(two, one)
