"""stegjax.main: user errors are one clear line and exit 2, bugs keep their traceback, and the
default verbosity shows stegjax's own lines without other libraries' INFO chatter."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, code=None):
  """``python -m stegjax.main ARGS``, or ``python -c CODE ARGS`` (CODE ends by calling main)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run(
    [sys.executable, *(["-c", code] if code else ["-m", "stegjax.main"]), *args],
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
  # Default verbosity: stegjax's own lines, no INFO from orbax or other libraries.
  info = [line for line in p.stderr.splitlines() if re.match(r"I\d{4} ", line)]
  assert any(" tokenizer.py:" in x and "held-out PSNR" in x for x in info)  # its summary
  assert not [x for x in info if _ORBAX.search(x) or " xla_bridge.py:" in x]


@pytest.mark.slow
def test_verbosity_flag_brings_library_info_back(tmp_path):
  """Positive control of the check above: with --verbosity=0 orbax's INFO lines do show."""
  args = ("--config=configs/vq_tokenizer.py:smoke", f"--workdir={tmp_path}")
  p = _run(*args, "--config.vq.train.num_steps=1", "--verbosity=0")
  assert p.returncode == 0, p.stderr[-2000:]
  assert [x for x in p.stderr.splitlines() if _ORBAX.search(x)]


def test_default_filter_keeps_stegjax_lines_and_warnings_only():
  import logging

  from stegjax import main

  def record(path, level=logging.INFO):
    return logging.LogRecord("absl", level, path, 1, "msg", None, None)

  keep = main._StegjaxOrWarnings().filter
  here = os.path.join(os.path.dirname(main.__file__), "train", "trainer.py")
  orbax = "/usr/lib/python3/site-packages/orbax/checkpoint/checkpoint_manager.py"
  assert keep(record(here)) and keep(record(orbax, logging.WARNING))
  assert not keep(record(orbax)) and not keep(record(orbax, logging.DEBUG))
  # A file beside the package whose name merely starts with "stegjax" is not stegjax's.
  assert not keep(record(os.path.dirname(main.__file__) + "_extra/x.py"))


_ORBAX = re.compile(r"^I\d{4} .*(checkpoint_manager|checkpointer|orbax)", re.I)

# Runs stegjax.main with an experiment whose run() raises EXC (a user error or a bug).
_RAISING = textwrap.dedent(
  """
  import sys, types
  from stegjax import errors, main
  def run(config, workdir):
    raise {exc}
  main._experiment = lambda config: ("fake", types.SimpleNamespace(run=run))
  sys.argv = ["stegjax"] + sys.argv[1:]
  main.run()
  """
)


def test_user_error_is_one_line_and_exit_2(tmp_path):
  exc = "errors.InputError('bad image x.png\\nsecond line')"
  p = _run(
    "--config=configs/vq_tokenizer.py:smoke", f"--workdir={tmp_path}", code=_RAISING.format(exc=exc)
  )
  assert p.returncode == 2
  errs = [x for x in p.stderr.splitlines() if not re.match(r"[IW]\d{4} ", x)]
  assert errs == ["stegjax: error: InputError: bad image x.png"], p.stderr
  assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
  "exc", ["RuntimeError('kaboom')", "ValueError('backend does not support cross-host transfers')"]
)
def test_other_errors_keep_their_traceback(tmp_path, exc):
  p = _run(
    "--config=configs/vq_tokenizer.py:smoke", f"--workdir={tmp_path}", code=_RAISING.format(exc=exc)
  )
  assert p.returncode not in (0, 2)
  assert "Traceback (most recent call last)" in p.stderr and "stegjax: error" not in p.stderr
  assert exc.split("(")[0] + ": " in p.stderr
