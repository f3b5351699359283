"""stegjax.main: config errors are one clear line and a non-zero exit."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return subprocess.run([sys.executable, "-m", "stegjax.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


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
