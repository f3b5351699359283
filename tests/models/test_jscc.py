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
  np.testing.assert_allclose(jnp.mean(y**2, axis=(1, 2, 3)), 1.0, rtol=1e-5)
  # Direction is kept: y is a positive multiple of z.
  ratio = (y / z).reshape(3, -1)
  np.testing.assert_allclose(ratio, ratio[:, :1] * jnp.ones_like(ratio), rtol=1e-4)
  assert bool(jnp.all(ratio > 0))
  # The encoder output of DeepJSCC is normalized the same way.
  model = jscc.DeepJSCC(features=4, latent_channels=8)
  x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
  params = model.init(jax.random.key(0), x)
  zz = model.apply(params, x, method=model.encode)
  np.testing.assert_allclose(jnp.mean(zz**2, axis=(1, 2, 3)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("ratio,c", [(1 / 6, 16), (1 / 12, 8)])
def test_bandwidth_ratio(ratio, c):
  assert jscc.latent_channels_for_ratio(ratio) == c
  model = jscc.DeepJSCC(features=8, latent_channels=c)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  z = jax.eval_shape(
    lambda x: model.init_with_output(jax.random.key(0), x, method=model.encode)[0], x
  )
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


@pytest.fixture(scope="module")
def photo_patches():
  from skimage import data

  img = data.astronaut()
  return np.stack(
    [img[y : y + 32, x : x + 32] for y in range(0, 480, 32) for x in range(0, 480, 32)]
  )


def test_space_to_depth_round_trip():
  x = jax.random.uniform(jax.random.key(0), (2, 8, 12, 3))
  y = jscc.space_to_depth(x, 4)
  chex.assert_shape(y, (2, 2, 3, 48))
  np.testing.assert_array_equal(y[0, 0, 0], np.asarray(x[0, :4, :4]).reshape(-1))
  np.testing.assert_array_equal(jscc.depth_to_space(y, 4), x)


def test_pilot_jscc_power_ratio_and_pca_init(photo_patches):
  model = jscc.PilotJSCC(features=8, latent_channels=16)
  # The PCA init is numpy-only, so it runs inside a jitted init as the trainer does.
  params = jax.jit(
    lambda r: jscc.pca_init(model.init(r, jnp.zeros((1, 32, 32, 3))), photo_patches, 16)
  )(jax.random.key(0))
  x = jnp.asarray(photo_patches[:40], jnp.float32) / 255.0
  z = model.apply(params, x, method=model.encode)
  chex.assert_shape(z, (40, 8, 8, 16))
  assert jscc.bandwidth_ratio(x.shape, z.shape) == pytest.approx(1 / 6)
  np.testing.assert_allclose(jnp.mean(z**2, axis=(1, 2, 3)), 1.0, rtol=1e-5)
  # Noiseless, the PCA-initialized analog path alone reconstructs the photo patches well
  # (15 of 48 block components), and the pilot undoes any per-example gain.
  psnr = lambda y: float(jnp.mean(10 * jnp.log10(1 / jnp.mean((y - x) ** 2, axis=(1, 2, 3)))))
  assert psnr(model.apply(params, z, method=model.decode)) > 33.0
  np.testing.assert_allclose(
    model.apply(params, 3.0 * z, method=model.decode),
    model.apply(params, z, method=model.decode),
    atol=1e-5,
  )
  # Noise degrades it gracefully rather than at a cliff.
  noisy = [
    psnr(
      model.apply(
        params, z + s * jax.random.normal(jax.random.key(1), z.shape), method=model.decode
      )
    )
    for s in (0.1, 0.3, 1.0)
  ]
  assert noisy[0] > noisy[1] > noisy[2] > 15.0


def test_pilot_jscc_bad_inputs():
  with pytest.raises(ValueError, match="multiple of 4"):
    jscc.PilotJSCC(4, 8).init(jax.random.key(0), jnp.zeros((1, 30, 32, 3)))
  with pytest.raises(ValueError, match="2 latent channels"):
    jscc.PilotJSCC(4, 1).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
