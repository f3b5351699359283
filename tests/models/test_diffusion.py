"""Class-conditional UNet: shapes, the condition reaches the output, one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stegjax.models import diffusion

P = 8


def _model():
  return diffusion.UNet(num_classes=3, features=(8, 16), cond_dim=8)


def test_shapes_and_condition_matters():
  model = _model()
  params = diffusion.init(model, jax.random.key(0), P)
  # conv_out is zero-initialized (the usual diffusion init): perturb it so eps depends on cond.
  params = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape), params)
  x = jax.random.normal(jax.random.key(2), (2, P, P, 3))
  t = jnp.array([10, 500])
  c = diffusion.class_conds(model, params, jnp.array([0, 3]))
  assert c.shape == (2, 8)
  eps = model.apply(params, x, t, c)
  assert eps.shape == x.shape and bool(jnp.all(jnp.isfinite(eps)))
  eps_other = model.apply(params, x, t, diffusion.class_conds(model, params, jnp.array([1, 1])))
  assert float(jnp.max(jnp.abs(eps - eps_other))) > 1e-3


def test_alpha_bars_decrease_to_noise():
  a = np.asarray(diffusion.alpha_bars(1000))
  assert a.shape == (1000,) and np.all(np.diff(a) < 0)
  assert 0.99 < a[0] < 1.0 and a[-1] < 1e-4


def test_one_training_step_lowers_nothing_nonfinite_and_moves_params():
  model = _model()
  params = diffusion.init(model, jax.random.key(0), P)
  abar = diffusion.alpha_bars(100)
  images = jax.random.uniform(jax.random.key(3), (4, P, P, 3))
  labels = jnp.array([0, 1, 2, 0])
  tx = optax.adam(1e-2)
  opt = tx.init(params)

  def lossf(p):
    return diffusion.loss(model, p, images, labels, jax.random.key(4), abar)

  l0, g = jax.value_and_grad(lossf)(params)
  upd, _ = tx.update(g, opt, params)
  new = optax.apply_updates(params, upd)
  assert np.isfinite(float(l0))
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), params, new))
  assert max(moved) > 0.0
  # The loss with the same draws goes down after the step (lr small enough, one batch).
  assert float(lossf(new)) < float(l0)


def test_soft_space_is_a_bounded_bijection():
  y = np.linspace(0.0, 1.0, 1001, dtype=np.float32)
  lin = diffusion.to_model(y, "linear")
  np.testing.assert_allclose(np.asarray(lin), 2 * y - 1, atol=1e-7)
  x = np.asarray(diffusion.to_model(y, "soft"))
  assert np.all(np.diff(x) > 0)  # strictly increasing: distinct pixels, distinct values
  # The middle of the range is untouched; pixels at 0 and 1 map to finite values.
  mid = np.abs(2 * y - 1) <= diffusion.SOFT_KNEE
  np.testing.assert_allclose(x[mid], 2 * y[mid] - 1, atol=1e-6)
  # Pixels 0 and 1 map to -/+ the tail's value at the margin (float64, from the definition),
  # and the map is odd about pixel 0.5.
  k = diffusion.SOFT_KNEE
  edge64 = k + (1 - k) * np.arctanh((1 - diffusion.SOFT_MARGIN - k) / (1 - k))
  np.testing.assert_allclose(x[-1], edge64, rtol=1e-4)
  np.testing.assert_allclose(x, -x[::-1], atol=1e-5)  # float32 rounding in the tanh tail
  # Back to pixels: exact in the middle, within the margin (a quarter level) at 0 and 1.
  back = np.asarray(diffusion.to_image(x, "soft"))
  np.testing.assert_allclose(back, y, atol=0.5 * diffusion.SOFT_MARGIN + 1e-6)
  np.testing.assert_allclose(back[1:-1], y[1:-1], atol=2e-6)
  # Any model-space value lands in [0, 1] (strictly inside where float32 can tell), and the
  # model space round trip is exact up to the margin's value (about 1.33); beyond it, pixels
  # within a quarter level of 0 or 1 come back at the margin (8 bits cannot tell them apart).
  wide = np.linspace(-50.0, 50.0, 2001, dtype=np.float32)
  img = np.asarray(diffusion.to_image(wide, "soft"))
  assert img.min() >= 0.0 and img.max() <= 1.0 and np.all(np.diff(img) >= 0)
  edge = float(diffusion.to_model(jnp.array([1.0]), "soft")[0])
  z = np.linspace(-edge, edge, 801, dtype=np.float32)
  img = diffusion.to_image(z, "soft")
  assert 0.0 < float(img.min()) and float(img.max()) < 1.0
  np.testing.assert_allclose(np.asarray(diffusion.to_model(img, "soft")), z, atol=2e-4)
  np.testing.assert_allclose(np.asarray(diffusion.to_model(jnp.array([0.99999]), "soft")), edge)
  # The linear space leaves the range (what the channel would clip).
  assert float(diffusion.to_image(jnp.array([1.5]), "linear")[0]) > 1.0
  with pytest.raises(ValueError, match="pixel space"):
    diffusion.to_model(y, "logit")
