"""The paper's shapes end to end on CPU: LlamaGen GPT-B + VQ-16 at 384 x 384 (576 tokens).

Random-weight checkpoints are written in LlamaGen's published layout (its state-dict keys
and PyTorch shapes, from the converter's reverse mapping, as .safetensors; nothing is
downloaded), converted with the command-line converter, then ``configs/cmsteg.py:paper_smoke``
(top-k 2000, CFG 4, one image, a few M2 steps, one JPEG channel) runs evaluate, and embed ->
PIL JPEG -> extract. Random weights make noise images, so the receiver may not recover the
message after JPEG; what must hold is that every shape, dtype and path runs: evaluate writes
its report, embed writes 384 x 384 images, and extract ends with the message or with one
clean stegjax error line (exit 2), never a traceback.
"""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import safetensors.numpy
from PIL import Image

from stegjax.models import convert_llamagen as cv
from stegjax.models import presets
from stegjax.train import sharding

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_llamagen_state_dict(model, seed: int) -> dict:
  """LlamaGen-layout tensors (torch keys and shapes) of random weights for ``model``."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = sharding.path_str(path)
    if name.endswith(("/scale", "/weight")):
      return np.ones(s.shape, np.float32)
    if name.endswith("/bias"):
      return np.zeros(s.shape, np.float32)
    return (0.02 * rng.standard_normal(s.shape, np.float32)).astype(np.float32)

  import jax  # pylint: disable=g-import-not-at-top

  params = jax.tree_util.tree_map_with_path(fill, presets.abstract_params(model))
  return {k: np.ascontiguousarray(v) for k, v in cv.to_torch_state_dict(params).items()}


def _run(args, timeout=7200):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  env.pop("XLA_FLAGS", None)
  t0 = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
  )
  print(f"{args[:3]}: rc {proc.returncode}, {time.perf_counter() - t0:.0f} s")
  return proc


def _ok(proc):
  assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


def _main(workdir, *overrides):
  return _run(
    [
      "-m",
      "stegjax.main",
      "--config=configs/cmsteg.py:paper_smoke",
      f"--workdir={workdir}",
      "--cpu_devices=1",
      *overrides,
    ]
  )


def write_converted_checkpoints(tmp_path) -> str:
  """Random GPT-B + VQ-16 in LlamaGen's layout, converted by the CLI; the converted folder."""
  vq, gpt = presets.vq_model("VQ-16"), presets.gpt_model("GPT-B", image_size=384)
  vq_sd = random_llamagen_state_dict(vq, seed=0)
  gpt_sd = random_llamagen_state_dict(gpt, seed=1)
  assert gpt_sd["tok_embeddings.weight"].shape == (16384, 768)
  assert gpt_sd["cls_embedding.embedding_table.weight"].shape[0] == 1001  # + the null class
  assert vq_sd["quantize.embedding.weight"].shape == (16384, 8)
  vq_path, gpt_path = str(tmp_path / "vq_ds16_c2i.safetensors"), str(tmp_path / "c2i_B.safetensors")
  safetensors.numpy.save_file(vq_sd, vq_path)
  safetensors.numpy.save_file(gpt_sd, gpt_path)
  del vq_sd, gpt_sd
  ckpt = str(tmp_path / "llamagen_b384")
  _ok(
    _run(
      [
        "-m",
        "stegjax.models.convert_llamagen",
        f"--vq={vq_path}",
        f"--gpt={gpt_path}",
        "--image_size=384",
        f"--out={ckpt}",
      ]
    )
  )
  with open(os.path.join(ckpt, "config.json")) as f:
    converted = json.load(f)
  assert tuple(converted["gpt"]["model"]["grid"]) == (24, 24)
  return ckpt


def embed_jpeg_extract(tmp_path, wd, models):
  """embed -> PIL JPEG (quality 85, the channel M3 was prepared for) -> extract."""
  key, msg = tmp_path / "a.key", tmp_path / "secret.txt"
  msg.write_bytes(b"paper shape 384!")
  out = tmp_path / "out"
  _ok(
    _main(
      wd,
      *models,
      "--config.mode=embed",
      f"--config.message_file={msg}",
      f"--config.key_file={key}",
      f"--config.out={out}",
    )
  )
  _ok(
    _main(
      wd,
      "--config.mode=share",
      f"--config.key_file={key}",
      "--config.party=b",
      f"--config.out={tmp_path / 'b.key'}",
    )
  )
  pngs = sorted(glob.glob(str(out / "*.png")))
  assert pngs, os.listdir(out)
  jpgs = []
  for p in pngs:
    im = Image.open(p)
    assert im.size == (384, 384)
    jpgs.append(os.path.splitext(p)[0] + ".jpg")
    im.convert("RGB").save(jpgs[-1], format="JPEG", quality=85)
  got = tmp_path / "got"
  proc = _main(
    wd,
    *models,
    "--config.mode=extract",
    f"--config.image={','.join(jpgs)}",
    f"--config.key_file={tmp_path / 'b.key'}",
    f"--config.out={got}",
  )
  return proc, msg, got


@pytest.mark.slow
def test_paper_shape_end_to_end(tmp_path):
  t0 = time.perf_counter()
  ckpt = write_converted_checkpoints(tmp_path)
  models = (f"--config.checkpoints.vq={ckpt}", f"--config.checkpoints.gpt={ckpt}")
  wd = tmp_path / "wd"
  _ok(_main(wd, *models))
  with open(wd / "report.json") as f:
    rep = json.load(f)
  assert rep["num_images"] == 1
  assert "jpeg85" in json.dumps(rep)
  proc, msg, got = embed_jpeg_extract(tmp_path, wd, models)
  if proc.returncode == 0:
    recovered = [open(p, "rb").read() for p in glob.glob(str(got / "*"))]
    assert msg.read_bytes() in recovered, os.listdir(got)
  else:  # random weights: a clean user error, not a crash
    assert proc.returncode == 2, proc.stderr[-5000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]
    assert "stegjax: error:" in proc.stderr
  print(f"paper shape end to end: {time.perf_counter() - t0:.0f} s, extract rc {proc.returncode}")
