"""M2 latent optimization: what it starts from, that it lowers the loss, batching, compiles."""

import json
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.channels import jpeg, real
from stegjax.cmsteg import recover
from stegjax.models import vq as vq_lib
from stegjax.cmsteg.recipes import Trained, encode_tokens

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def vq():
  model = vq_lib.VQModel(
    ch=8,
    ch_mult=(1, 2),
    num_res_blocks=1,
    z_channels=8,
    codebook_size=32,
    codebook_dim=4,
    norm_groups=4,
  )
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))["params"]
  return Trained(model, params, {})


@pytest.fixture(scope="module")
def images():
  return np.random.RandomState(0).randint(0, 256, (3, 16, 16, 3)).astype(np.uint8)


# One step count and lr everywhere: every test reuses a few compiled loops.
STEPS, LR = 10, 0.05


@pytest.fixture(scope="module")
def png(vq, images):
  return recover.recover(vq, images, "png", steps=STEPS, lr=LR)


def test_m1_tokens_are_plain_reencoding(vq, images, png):
  np.testing.assert_array_equal(png["tokens_m1"], encode_tokens(vq, images))
  assert png["steps"] == STEPS


def _loss_of(vq, tokens, images):
  x = vq.model.apply({"params": vq.params}, jnp.asarray(tokens), method="decode_indices")
  return np.mean(np.square((np.asarray(x) + 1) / 2 - images / 255.0), axis=(1, 2, 3))


def test_m2_keeps_the_best_iterate(vq, images, png):
  out = png
  before = _loss_of(vq, out["tokens_m1"], images)
  after = _loss_of(vq, out["tokens"], images)
  np.testing.assert_allclose(after, out["loss"], rtol=1e-4)
  assert np.all(after <= before + 1e-7)  # never worse than where it started
  assert np.any(after < before - 1e-6)  # and it does move


def test_latents_are_the_kept_iterate(vq, png):
  """List decoding ranks alternatives at M2's latent: its nearest vectors are the tokens."""
  z = png["latents"]
  assert z.shape[:3] == png["tokens"].shape and z.dtype == np.float32
  idx, _ = vq.model.apply({"params": vq.params}, jnp.asarray(z), method="quantize")
  np.testing.assert_array_equal(np.asarray(idx), png["tokens"])
  # ... and not the plain encoding's (M2 moved some tokens, so the latent moved too).
  assert np.any(png["tokens"] != png["tokens_m1"])


def _same_bits(a, b, rows_a=slice(None), rows_b=slice(None)):
  for k in ("tokens_m1", "tokens", "loss", "steps_each", "latents"):
    np.testing.assert_array_equal(a[k][rows_a], b[k][rows_b], err_msg=k)


def test_an_image_gets_the_same_bits_in_any_batch(vq, images):
  """The sender simulates M2 on one image, the receiver may run it among others."""
  many = np.concatenate([images, np.random.RandomState(1).randint(0, 256, (14, 16, 16, 3))])
  many = many.astype(np.uint8)
  alone = recover.recover(vq, images[1:2], "jpeg75", steps=STEPS, lr=LR)
  three = recover.recover(vq, images, "jpeg75", steps=STEPS, lr=LR)
  seventeen = recover.recover(vq, many, "jpeg75", steps=STEPS, lr=LR)
  _same_bits(alone, three, rows_b=slice(1, 2))
  _same_bits(three, seventeen, rows_b=slice(0, 3))


def test_early_stop_is_per_image(vq, images):
  """An image stops once its tokens settle, exactly as if it had run only that many steps."""
  lr = 3e-3  # small enough that tokens settle within the budget
  out = recover.recover(vq, images, "png", steps=40, lr=lr, patience=3)
  assert np.all(out["steps_each"] < 40) and out["steps"] == out["steps_each"].max()
  for i, n in enumerate(out["steps_each"]):
    alone = recover.recover(vq, images[i : i + 1], "png", steps=int(n), lr=lr)
    _same_bits(out, alone, rows_a=slice(i, i + 1))


def test_one_compiled_loop_for_every_default_channel(vq, images):
  recover.recover(vq, images[:1], "jpeg90", steps=STEPS, lr=LR)
  size = recover._optimize._cache_size()
  for name in real.CHANNELS + ("jpeg30",):
    recover.recover(vq, images[:1], name, steps=STEPS, lr=LR)
  recover.recover(vq, images[:1], "jpeg75", steps=3, lr=0.01, patience=2)
  assert recover._optimize._cache_size() == size
  assert tuple(recover.stand_in("jpeg60")) == (real.DiffJpeg("ss"), 60.0)
  forms, i = recover.forms_for("jpeg60")
  assert forms == recover.forms_for("png")[0] and forms[i] == real.DiffJpeg("ss")
  forms_blur, j = recover.forms_for("blur1.0")  # another form: one more compiled loop
  assert forms_blur[: len(forms)] == forms and j == len(forms)


def test_traced_quality_matches_the_named_channel(vq, images):
  x = jnp.asarray(images, jnp.float32) / 255.0
  want = real.differentiable("jpeg60")(x)
  got = jax.jit(lambda x, q: jpeg.diff_jpeg(x, q, "ss"))(x, jnp.float32(60.0))
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_bad_input(vq, images):
  with pytest.raises(ValueError, match="channel"):
    recover.recover(vq, images, "jpeg-ish", steps=1)
  with pytest.raises(ValueError, match="uint8"):
    recover.recover(vq, images.astype(np.float32), "png", steps=1)


_SHARDED = """
import json, os, sys
import jax
if len(sys.argv) > 1:  # PROCESS_ID NUM_PROCESSES PORT: one process of a loopback job
  jax.distributed.initialize(f"localhost:{sys.argv[3]}", int(sys.argv[2]), int(sys.argv[1]))
import jax.numpy as jnp, numpy as np
from stegjax.cmsteg import recover
from stegjax.models import vq as vq_lib
from stegjax.cmsteg.recipes import Trained
recover.SPREAD_ON_CPU = True  # deal images out over the fake devices, as on accelerators
model = vq_lib.VQModel(ch=8, ch_mult=(1, 2), num_res_blocks=1, z_channels=8, codebook_size=32,
                       codebook_dim=4, norm_groups=4)
params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))["params"]
images = np.random.RandomState(0).randint(0, 256, (5, 16, 16, 3)).astype(np.uint8)
out = recover.recover(Trained(model, params, {}), images, "jpeg75", steps=10, lr=0.05)
print(json.dumps(dict(devices=len(jax.devices()), processes=jax.process_count(),
                      tokens=out["tokens"].tolist(), loss=out["loss"].astype(float).tolist(),
                      steps=out["steps_each"].tolist())))
"""


def _two_processes(code, devices):
  """``code`` as a loopback job of 2 processes x ``devices``; every process's last line."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = str(s.getsockname()[1])
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  procs = [
    subprocess.Popen(
      [sys.executable, "-c", code, str(i), "2", port],
      env=env,
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (o, e) in zip(procs, outs):
    assert p.returncode == 0, f"process failed:\n{o}\n{e[-3000:]}"
  return [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]


def test_same_bits_on_any_job_layout(python_subprocess):
  """The receiver's devices and processes do not change M2's bits (float32 losses exactly).

  1 process x 1 device against 2 processes x 2 devices: each process runs its block of the
  5 images (3 and 2), deals it out over its two devices, and the blocks are gathered.
  """
  one = json.loads(python_subprocess(_SHARDED, n_devices=1).strip().splitlines()[-1])
  job = _two_processes(_SHARDED, devices=2)
  assert (one["devices"], one["processes"]) == (1, 1)
  for got in job:  # every process holds the whole result
    assert (got["devices"], got["processes"]) == (4, 2)
    assert len(got["tokens"]) == 5
    for k in ("tokens", "loss", "steps"):
      assert got[k] == one[k], k
