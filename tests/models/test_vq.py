"""Tests for the LlamaGen-style VQ tokenizer: shapes, nearest-entry quantization, STE, losses."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.models import vq

CFG = dict(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=32, codebook_size=64, codebook_dim=8)


def _random_params(model, seed, *args):
  """Random weights of the model's shape; skips init, whose threefry program compiles slowly."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(s.shape[:-1]))
      return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(fan_in), jnp.float32)
    if name == "scale":
      return jnp.asarray(1.0 + 0.1 * rng.normal(size=s.shape), jnp.float32)
    return jnp.asarray(0.1 * rng.normal(size=s.shape), jnp.float32)  # biases, codebook

  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def setup():
  model = vq.VQModel(**CFG)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1.0, maxval=1.0)
  params = _random_params(model, 0, x)
  fns = dict(
    call=jax.jit(lambda p, x: model.apply(p, x)),
    encode=jax.jit(lambda p, x: model.apply(p, x, method=model.encode)),
    quantize=jax.jit(lambda p, z: model.apply(p, z, method=model.quantize)),
    decode=jax.jit(lambda p, z: model.apply(p, z, method=model.decode)),
    decode_indices=jax.jit(lambda p, i: model.apply(p, i, method=model.decode_indices)),
  )
  return model, params, x, fns


def test_shapes_and_parameter_layout(setup):
  model, params, x, f = setup
  z = f["encode"](params, x)
  chex.assert_shape(z, (2, 8, 8, 8))
  idx, z_q = f["quantize"](params, z)
  chex.assert_shape(idx, (2, 8, 8))
  assert idx.dtype == jnp.int32
  chex.assert_shape(z_q, (2, 8, 8, 8))
  img = f["decode_indices"](params, idx)
  chex.assert_shape(img, x.shape)
  x_rec, aux = f["call"](params, x)
  chex.assert_shape(x_rec, x.shape)
  # The full forward is exactly encode -> quantize -> decode_indices.
  chex.assert_trees_all_close(x_rec, img, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(aux["indices"]), np.asarray(idx))
  for k in ("codebook_loss", "commit_loss", "perplexity", "usage"):
    chex.assert_shape(aux[k], ())
  flat = flax.traverse_util.flatten_dict(params["params"], sep="/")
  shapes = {k: v.shape for k, v in flat.items()}
  assert shapes["quantizer/embedding"] == (64, 8)
  assert shapes["quant_conv/kernel"] == (1, 1, 32, 8)
  assert shapes["post_quant_conv/kernel"] == (1, 1, 8, 32)
  assert shapes["encoder/conv_blocks_0/downsample/conv/kernel"] == (3, 3, 32, 32)
  assert shapes["encoder/conv_blocks_1/res_0/nin_shortcut/kernel"] == (1, 1, 32, 64)
  assert shapes["encoder/conv_blocks_1/attn_0/q/kernel"] == (1, 1, 64, 64)
  assert shapes["decoder/conv_blocks_0/attn_1/proj_out/kernel"] == (
    1,
    1,
    64,
    64,
  )  # lowest res first
  assert shapes["decoder/conv_blocks_0/upsample/conv/kernel"] == (3, 3, 64, 64)
  assert shapes["decoder/conv_blocks_1/res_1/conv2/kernel"] == (3, 3, 32, 32)
  assert shapes["decoder/mid_1/norm/scale"] == (64,)
  assert not any("conv_blocks_1/attn" in k for k in shapes if k.startswith("decoder"))


@pytest.mark.parametrize("l2_norm", [True, False])
def test_quantize_picks_nearest_entry(l2_norm):
  q = vq.VectorQuantizer(codebook_size=50, codebook_dim=6, l2_norm=l2_norm)
  rng = np.random.default_rng(3)
  z = jnp.asarray(rng.normal(size=(4, 5, 7, 6)), jnp.float32)
  emb = rng.normal(size=(50, 6)).astype(np.float32)
  params = {"params": {"embedding": jnp.asarray(emb)}}
  idx, z_q, _ = q.apply(params, z)
  zz, ee = np.asarray(z, np.float64), emb.astype(np.float64)
  if l2_norm:
    zz = zz / np.linalg.norm(zz, axis=-1, keepdims=True)
    ee = ee / np.linalg.norm(ee, axis=-1, keepdims=True)
  d = np.sum((zz[..., None, :] - ee) ** 2, axis=-1)
  best = np.argmin(d, axis=-1)
  chosen = np.take_along_axis(d, np.asarray(idx)[..., None], -1)[..., 0]
  # Exact up to float32 rounding: the chosen entry is at least as near as any other.
  assert np.all(chosen <= d.min(-1) + 1e-5)
  gap = np.sort(d, -1)[..., 1] - d.min(-1)
  np.testing.assert_array_equal(np.asarray(idx)[gap > 1e-4], best[gap > 1e-4])
  assert (gap > 1e-4).mean() > 0.9
  np.testing.assert_allclose(np.asarray(z_q), ee[np.asarray(idx)], atol=1e-6)


def test_straight_through_gradient_reaches_encoder(setup):
  model, params, x, f = setup
  w = jax.random.normal(jax.random.key(1), x.shape)
  z = f["encode"](params, x)

  def through_quantizer(z):
    _, z_q = model.apply(params, z, method=model.quantize)
    return jnp.sum(model.apply(params, z_q, method=model.decode) * w)

  def from_codes(q):
    return jnp.sum(model.apply(params, q, method=model.decode) * w)

  @jax.jit
  def grads(z):
    g_st = jax.grad(through_quantizer)(z)
    # STE: d/dz = (d normalize / dz)^T applied to the decoder's gradient at the chosen codes.
    _, z_q = model.apply(params, z, method=model.quantize)
    g_codes = jax.grad(from_codes)(jax.lax.stop_gradient(z_q))
    _, vjp = jax.vjp(vq._l2_normalize, z)
    return g_st, vjp(g_codes)[0]

  g_st, expected = grads(z)
  chex.assert_trees_all_close(g_st, expected, atol=1e-4, rtol=1e-3)
  assert float(jnp.max(jnp.abs(g_st))) > 1e-3


def test_vq_losses_and_codebook_statistics(setup):
  model, params, x, f = setup
  _, aux = f["call"](params, x)
  z = f["encode"](params, x)
  _, z_q = f["quantize"](params, z)
  zn = np.asarray(vq._l2_normalize(z))
  mse = np.mean((np.asarray(z_q) - zn) ** 2)
  np.testing.assert_allclose(aux["codebook_loss"], mse, rtol=1e-5)
  np.testing.assert_allclose(aux["commit_loss"], 0.25 * mse, rtol=1e-5)
  idx = np.asarray(aux["indices"]).ravel()
  counts = np.bincount(idx, minlength=64)
  np.testing.assert_allclose(aux["usage"], np.mean(counts > 0), rtol=1e-6)
  p = counts[counts > 0] / idx.size
  np.testing.assert_allclose(aux["perplexity"], np.exp(-np.sum(p * np.log(p))), rtol=1e-5)

  # codebook_loss trains exactly the used codebook rows; commit_loss trains the encoder.
  def loss_grads(p):
    out = lambda p: model.apply(p, x)
    rec = jax.grad(lambda p: jnp.mean((out(p)[0] - x) ** 2))(p)["params"]
    return (
      rec,
      jax.grad(lambda p: out(p)[1]["codebook_loss"])(p)["params"],
      jax.grad(lambda p: out(p)[1]["commit_loss"])(p)["params"],
    )

  g_rec, g_cb, g_cm = jax.jit(loss_grads)(params)
  # The reconstruction gradient reaches the encoder through the straight-through estimator,
  # and alone never moves the codebook (only codebook_loss does).
  assert float(jnp.max(jnp.abs(g_rec["encoder"]["conv_in"]["kernel"]))) > 1e-6
  assert float(jnp.max(jnp.abs(g_rec["quant_conv"]["kernel"]))) > 1e-6
  np.testing.assert_array_equal(np.asarray(g_rec["quantizer"]["embedding"]), 0.0)
  used = np.any(np.asarray(g_cb["quantizer"]["embedding"]) != 0, axis=-1)
  np.testing.assert_array_equal(used, counts > 0)
  np.testing.assert_array_equal(np.asarray(g_cb["encoder"]["conv_in"]["kernel"]), 0.0)
  np.testing.assert_array_equal(np.asarray(g_cm["quantizer"]["embedding"]), 0.0)
  assert float(jnp.max(jnp.abs(g_cm["encoder"]["conv_in"]["kernel"]))) > 0


def test_patch_discriminator_and_hinge_losses():
  d = vq.PatchDiscriminator(ndf=8, n_layers=2)
  x = jnp.zeros((2, 32, 32, 3))
  params = _random_params(d, 0, x)
  out = jax.jit(d.apply)(
    params, jax.random.uniform(jax.random.key(0), x.shape, minval=-1, maxval=1)
  )
  chex.assert_shape(out, (2, 6, 6, 1))  # 4x4 convs: 32 -> 16 -> 8 -> 7 -> 6 (PatchGAN)
  real, fake = jnp.array([2.0, 0.5]), jnp.array([-3.0, 0.0])
  # 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) = 0.5 * (0.25 + 0.5)
  np.testing.assert_allclose(vq.hinge_d_loss(real, fake), 0.375)
  np.testing.assert_allclose(vq.hinge_g_loss(fake), 1.5)


def test_bad_inputs_raise(setup):
  model, params, x, f = setup
  with pytest.raises(ValueError, match="multiple of the downsampling factor"):
    model.apply(params, jnp.zeros((1, 15, 16, 3)))
  with pytest.raises(ValueError, match="NHWC"):
    model.apply(params, jnp.zeros((1, 16, 16, 1)))
  with pytest.raises(ValueError, match="quantize expects"):
    model.apply(params, jnp.zeros((1, 4, 4, 3)), method=model.quantize)
  with pytest.raises(ValueError, match="integer"):
    model.apply(params, jnp.zeros((1, 4, 4)), method=model.decode_indices)
  with pytest.raises(ValueError, match="norm_groups"):
    bad = vq.VQModel(**{**CFG, "ch": 24})
    jax.eval_shape(bad.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


@pytest.mark.slow
def test_vq16_layout_round_trip():
  # The VQ-16 level structure (5 levels, downsampling 16) at small width.
  model = vq.VQModel(**{**CFG, "ch_mult": (1, 1, 2, 2, 4), "num_res_blocks": 2})
  x = jax.random.uniform(jax.random.key(2), (2, 64, 64, 3), minval=-1.0, maxval=1.0)
  params = _random_params(model, 1, x)
  x_rec, aux = jax.jit(model.apply)(params, x)
  chex.assert_shape(aux["indices"], (2, 4, 4))
  img = jax.jit(lambda p, i: model.apply(p, i, method=model.decode_indices))(params, aux["indices"])
  chex.assert_trees_all_close(img, x_rec, atol=1e-5)
  flat = flax.traverse_util.flatten_dict(params["params"], sep="/")
  assert (
    "decoder/conv_blocks_0/attn_2/q/kernel" in flat
    and "decoder/conv_blocks_3/upsample/conv/kernel" in flat
  )
  assert "decoder/conv_blocks_4/upsample/conv/kernel" not in flat
  assert (
    "encoder/conv_blocks_4/attn_1/q/kernel" in flat
    and "encoder/conv_blocks_4/downsample/conv/kernel" not in flat
  )
