"""Steganalyzers: forward shapes, parameter counts, fixed filters and their invariances."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax import models
from stegjax.models import steganalyzers as S


def conv_bn(k, cin, cout):
  """Parameters of a bias-free k x k conv followed by BatchNorm (scale + bias)."""
  return k * k * cin * cout + 2 * cout


SMALL_SRNET = dict(type1=(4, 2), num_type2=1, type3=(2, 4), type4=8)


def _key(seed):
  # The models accept any PRNG; 'rbg' keys compile the jitted init ~4x faster on CPU
  # than threefry (the compile dominates these tests).
  return jax.random.key(seed, impl="rbg")


def test_srm_filters_are_30_high_pass_kernels():
  f = S.srm_filters()
  assert f.shape == (30, 5, 5)
  np.testing.assert_allclose(f.sum(axis=(1, 2)), 0.0, atol=1e-6)  # kill flat regions
  np.testing.assert_allclose(np.abs(f).max(axis=(1, 2)), 1.0)
  assert len({k.tobytes() for k in f}) == 30  # all distinct
  np.testing.assert_allclose(f[25], S.KV / np.abs(S.KV).max())  # SQUARE 5x5 is KV


def _count(name, cfg, shape):
  m = S.make_steganalyzer(name, cfg)
  p, _ = jax.eval_shape(lambda k: S.init_steganalyzer(m, k, shape), jax.random.key(0))
  return models.param_count(p), p


def test_parameter_counts_match_architecture():
  # SRNet at the paper's size: 4.78M (the published figure is ~4.8M).
  assert _count("srnet", None, (32, 32, 1))[0] == 4_776_449
  # A small SRNet counted layer by layer (types 1, 2, 3, 4 and the head).
  t1 = conv_bn(3, 1, 4) + conv_bn(3, 4, 2)
  t2 = 2 * conv_bn(3, 2, 2)
  t3 = (2 * conv_bn(3, 2, 2) + conv_bn(1, 2, 2)) + (
    conv_bn(3, 2, 4) + conv_bn(3, 4, 4) + conv_bn(1, 2, 4)
  )
  t4 = conv_bn(3, 4, 8) + conv_bn(3, 8, 8)
  assert _count("srnet", SMALL_SRNET, (16, 16, 1))[0] == t1 + t2 + t3 + t4 + 8 + 1
  # XuNet: the KV filter is fixed (not a parameter), so conv1 sees C channels.
  want = (
    conv_bn(5, 3, 8)
    + conv_bn(5, 8, 16)
    + conv_bn(1, 16, 32)
    + conv_bn(1, 32, 64)
    + conv_bn(1, 64, 128)
    + 129
  )
  assert _count("xunet", None, (32, 32, 3))[0] == want
  # LWENet-style stays under 400K parameters at its default size.
  n, p = _count("lwenet", None, (32, 32, 3))
  assert 100_000 < n < 400_000
  assert p["srm"]["kernel"].shape == (5, 5, 3, 30)


@pytest.mark.parametrize(
  "name,cfg",
  [
    ("srnet", SMALL_SRNET),
    ("xunet", dict(features=(4, 4, 8))),
    ("lwenet", dict(stem=8, stages=(8, 16), blocks_per_stage=1)),
  ],
)
def test_forward_shapes_train_and_eval(name, cfg):
  m = S.make_steganalyzer(name, cfg)
  params, extra = S.init_steganalyzer(m, _key(0), (16, 16, 3))
  x = jax.random.randint(jax.random.key(1), (4, 16, 16, 3), 0, 256).astype(jnp.uint8)
  apply = jax.jit(m.apply, static_argnames=("train", "mutable"))
  logits = apply({"params": params, **extra}, x, train=False)
  chex.assert_shape(logits, (4,))
  chex.assert_tree_all_finite(logits)
  assert logits.dtype == jnp.float32
  logits_t, upd = apply({"params": params, **extra}, x, train=True, mutable=("batch_stats",))
  chex.assert_shape(logits_t, (4,))
  # Training mode moves the running statistics.
  moved = jax.tree.map(
    lambda a, b: float(jnp.max(jnp.abs(a - b))), upd["batch_stats"], extra["batch_stats"]
  )
  assert max(jax.tree.leaves(moved)) > 0
  # Float images in the uint8 range give the same result as uint8 ones.
  chex.assert_trees_all_close(
    apply({"params": params, **extra}, x.astype(jnp.float32)), logits, atol=1e-5
  )
  with pytest.raises(ValueError):
    m.apply({"params": params, **extra}, x[0])


def test_srnet_high_pass_init_keeps_the_architecture():
  hp = S.high_pass_3x3()
  assert hp.shape == (17, 3, 3) and len({k.tobytes() for k in hp}) == 17
  np.testing.assert_allclose(hp.sum(axis=(1, 2)), 0.0, atol=1e-6)
  # Same layers and parameter count with and without the high-pass start.
  n0, _ = _count("srnet", SMALL_SRNET, (16, 16, 3))
  n1, _ = _count("srnet", dict(SMALL_SRNET, hp_init=True), (16, 16, 3))
  assert n0 == n1
  # Without the tie-breaking noise every output filter is a high-pass kernel split over
  # the input channels (so a flat image gives zero response), cycling through the 17.
  k = np.asarray(S._high_pass_init(noise=0.0)(jax.random.key(0), (3, 3, 3, 20)))
  np.testing.assert_allclose(k.sum(axis=(0, 1)), 0.0, atol=1e-6)
  np.testing.assert_allclose(k[:, :, 0, 18] * 3, hp[1], atol=1e-6)
  m = S.make_steganalyzer("srnet", dict(SMALL_SRNET, hp_init=True))
  params, _ = S.init_steganalyzer(m, _key(0), (16, 16, 3))
  first = np.asarray(params["_SRNetType1_0"]["Conv_0"]["kernel"])
  # The noise is a small fraction of the kernel: the filters still nearly kill flat regions.
  assert np.abs(first.sum(axis=(0, 1))).max() < 0.5 * np.abs(first).sum(axis=(0, 1)).min()


def test_xunet_invariances_from_fixed_kv_and_abs():
  """ABS after the fixed KV filter makes x -> 255 - x (negated residuals) invisible."""
  m = S.make_steganalyzer("xunet", dict(features=(4, 4, 8)))
  params, extra = S.init_steganalyzer(m, _key(0), (16, 16, 1))
  x = jax.random.randint(jax.random.key(2), (3, 16, 16, 1), 20, 200).astype(jnp.float32)
  # Training mode (batch statistics) puts the logits on an O(1) scale.
  f = jax.jit(
    lambda im: m.apply({"params": params, **extra}, im, train=True, mutable=("batch_stats",))[0]
  )
  base = f(x)
  flipped = f(255.0 - x)
  chex.assert_trees_all_close(flipped, base, atol=1e-6)
  # ... while a +-1 change of the same size (LSB-matching-like) does move the logit.
  noisy = f(x + jax.random.randint(jax.random.key(3), x.shape, -1, 2))
  assert float(jnp.max(jnp.abs(noisy - base))) > 1e-3


def test_bad_name_raises():
  with pytest.raises(ValueError, match="unknown steganalyzer"):
    S.make_steganalyzer("resnet")
