"""DeepJSCC: power normalization, bandwidth ratio, shapes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.models import jscc


def test_power_normalize_unit_power_per_example():
  scale = jnp.array([0.1, 1.0, 7.0])[:, None, None, None]
  z = jax.random.normal(jax.random.key(0), (3, 4, 4, 16)) * scale + 0.3
  y = jscc.power_normalize(z)
  # Mean squared value per real symbol is 1 for every example, whatever its scale.
  np.testing.assert_allclose(jnp.mean(y ** 2, axis=(1, 2, 3)), 1.0, rtol=1e-5)
  # Direction is kept: y is a positive multiple of z.
  ratio = (y / z).reshape(3, -1)
  np.testing.assert_allclose(ratio, ratio[:, :1] * jnp.ones_like(ratio), rtol=1e-4)
  assert bool(jnp.all(ratio > 0))
  # The encoder output of DeepJSCC is normalized the same way.
  model = jscc.DeepJSCC(features=4, latent_channels=8)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  params = model.init(jax.random.key(0), x)
  zz = model.apply(params, x, method=model.encode)
  np.testing.assert_allclose(jnp.mean(zz ** 2, axis=(1, 2, 3)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("ratio,c", [(1 / 6, 16), (1 / 12, 8)])
def test_bandwidth_ratio(ratio, c):
  assert jscc.latent_channels_for_ratio(ratio) == c
  model = jscc.DeepJSCC(features=8, latent_channels=c)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  z = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, method=model.encode)[0], x)
  chex.assert_shape(z, (2, 8, 8, c))
  assert jscc.bandwidth_ratio(x.shape, z.shape) == pytest.approx(ratio)


def test_bad_ratio_and_size():
  with pytest.raises(ValueError, match="bandwidth ratio"):
    jscc.latent_channels_for_ratio(1 / 7)
  model = jscc.DeepJSCC(features=4, latent_channels=8)
  with pytest.raises(ValueError, match="multiple of 4"):
    model.init(jax.random.key(0), jnp.zeros((1, 30, 32, 3)))


def test_forward_shapes_and_range():
  model = jscc.DeepJSCC(features=8, latent_channels=8)
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  params = model.init(jax.random.key(0), x)
  y = model.apply(params, x, channel=lambda z: z + 0.1)
  chex.assert_shape(y, x.shape)
  assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
