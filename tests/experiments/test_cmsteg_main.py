"""The main command end to end (:smoke): evaluate, then embed/extract a real file, and errors.

The smoke models are barely trained, so M1/M2 recover few tokens; the smoke caption is long
enough for M3 to correct every token of a deterministic channel, so the AEAD-verified
message must come back exactly: a failure anywhere in M1 -> channel -> M2 -> M3 ->
extraction breaks it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stegjax.channels import real

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _main(args, workdir, check=True):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "stegjax.main",
      "--config=configs/cmsteg.py:smoke",
      f"--workdir={workdir}",
    ]
    + args,
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=1200,
  )
  if check and proc.returncode != 0:
    raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
  return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  wd = tmp_path_factory.mktemp("cmsteg")
  _main([], wd)
  return wd


def test_evaluate_writes_report_and_round_trips(workdir):
  rep = json.load(open(workdir / "report.json"))
  assert os.path.exists(workdir / "report.md") and os.path.exists(workdir / "stego_grid.png")
  assert rep["message_fits"] == 1.0
  for name in ("png", "jpeg85"):
    st = rep["channels"][name]["stages"]
    assert st["M1+M2+M3"]["R_q"]["min"] == 1.0, (name, st["M1+M2+M3"]["R_q"])
    assert st["M1+M2+M3"]["message_ok"] == 1.0
    assert st["M1+M2+M3"]["R_q"]["mean"] >= st["M1+M2"]["R_q"]["mean"]
    # Cap counts bits up to the first error: with every token right, all embedded bits.
    assert st["M1+M2+M3"]["Cap"]["min"] >= rep["framed_bits"]


def test_embed_extract_real_file(workdir, tmp_path):
  msg = tmp_path / "msg.txt"
  msg.write_bytes(b"hi!")
  key = tmp_path / "k.json"
  out = tmp_path / "out"
  p = _main(
    [
      "--config.mode=embed",
      f"--config.message_file={msg}",
      f"--config.key_file={key}",
      f"--config.out={out}",
    ],
    workdir,
  )
  assert "hid 3 bytes" in p.stdout
  assert json.load(open(key))["counter"] == 1  # advanced
  # The real channel the sender prepared for (the config's cmsteg.channel): PIL JPEG at QF 85.
  stego = np.asarray(Image.open(out / "stego.png").convert("RGB"))
  (tmp_path / "received.jpg").write_bytes(real.jpeg_bytes(stego, 85))
  got = tmp_path / "got.bin"
  _main(
    [
      "--config.mode=extract",
      f"--config.image={tmp_path}/received.jpg",
      f"--config.caption={out}/caption.txt",
      f"--config.key_file={key}",
      f"--config.out={got}",
    ],
    workdir,
  )
  assert got.read_bytes() == b"hi!"

  # A wrong key: one clear line, non-zero exit, nothing written.
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps({"secret": "00" * 32, "counter": 1}))
  got2 = tmp_path / "got2.bin"
  p = _main(
    [
      "--config.mode=extract",
      f"--config.image={out}/stego.png",
      f"--config.caption={out}/caption.txt",
      f"--config.key_file={bad}",
      f"--config.out={got2}",
    ],
    workdir,
    check=False,
  )
  assert p.returncode != 0 and not got2.exists()
  assert "no message could be recovered" in p.stderr.strip().splitlines()[-1]


def test_errors_are_one_line(workdir, tmp_path):
  p = _main(
    [
      "--config.mode=extract",
      "--config.image=/nonexistent.png",
      f"--config.key_file={tmp_path}/none.json",
    ],
    workdir,
    check=False,
  )
  assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("stegjax: error:")
  p = _main(["--config.mode=sideways"], workdir, check=False)
  assert p.returncode == 2 and "unknown --config.mode" in p.stderr


def test_acceptance_verdicts():
  from stegjax.experiments import cmsteg

  rq = lambda m1, m2, m3: {
    "M1": {"R_q": {"mean": m1}},
    "M1+M2": {"R_q": {"mean": m2}},
    "M1+M2+M3": {"R_q": {"mean": m3}, "message_ok": 1.0},
  }
  res = {
    "channels": {
      "png": {"stages": rq(0.8, 0.9, 0.995)},
      "jpeg95": {"stages": rq(0.8, 0.9, 0.985)},
      "jpeg75": {"stages": rq(0.7, 0.7, 0.98)},
    }
  }
  res["channels"]["jpeg95"]["stages"]["M1+M2+M3"]["message_ok"] = 0.875
  got = {c: ok for c, _, ok in cmsteg.acceptance(res)}
  assert got["R_q after M1+M2+M3 >= 99% on png"]
  assert not got["R_q after M1+M2+M3 >= 99% on jpeg95"]
  assert got["R_q after M1+M2+M3 >= 97% on jpeg75"]
  assert got["message extracted and authenticated on >= 90% of images on png"]
  assert not got["message extracted and authenticated on >= 90% of images on jpeg95"]
  assert not got["M2 raises R_q over M1 on every lossy channel"]  # jpeg75: 0.7 -> 0.7
  assert got["M3 raises R_q over M1+M2 on every lossy channel"]
  assert not any("scale0.5" in c for c in got)  # not measured: no verdict
