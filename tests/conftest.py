"""Shared test helpers."""

import gc
import os
import subprocess
import sys
import textwrap

import jax
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code: str, n_devices: int = 1, timeout: int = 600, env=None) -> str:
  """Runs ``code`` in a fresh interpreter with ``n_devices`` fake CPU devices; returns stdout."""
  full_env = dict(os.environ)
  full_env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
  full_env["JAX_PLATFORMS"] = "cpu"
  full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
  if env:
    full_env.update(env)
  proc = subprocess.run(
    [sys.executable, "-c", textwrap.dedent(code)],
    capture_output=True,
    text=True,
    timeout=timeout,
    env=full_env,
    cwd=REPO,
  )
  if proc.returncode != 0:
    raise AssertionError(
      f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    )
  return proc.stdout


@pytest.fixture
def python_subprocess():
  return run_python


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops every compiled program after each test module.

  XLA:CPU maps a few memory regions for each compiled program and jax keeps every program
  alive in its caches; one process running the whole suite passed the kernel's limit on
  mappings (vm.max_map_count, 65,530) and crashed inside the compiler.
  """
  yield
  jax.clear_caches()
  gc.collect()
