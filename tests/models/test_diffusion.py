"""Class-conditional UNet: shapes, the condition reaches the output, one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
