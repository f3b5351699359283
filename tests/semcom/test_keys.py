"""Keyed scramble: exact inverse with the key, failure without it, squared error preserved."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data

from stegjax.semcom import keys


@pytest.fixture(scope="module")
def photos():
  img = data.astronaut()[:256:4, :256:4].astype(np.float32) / 255.0  # 64x64 real photo
  return jnp.stack([img[:32, :32], img[32:, 32:]])


def test_round_trip_and_wrong_key(photos):
  k = keys.message_keys(jax.random.key(0), 0, 2)
  wrong = keys.message_keys(jax.random.key(1), 0, 2)
  y = keys.scramble(photos, k, 4)
  # Exact up to the float round-off of 1 - (1 - x).
  np.testing.assert_allclose(keys.unscramble(y, k, 4), photos, atol=1e-6)
  # The scramble destroys the image; a wrong key does not undo it.
  mse_scr = float(jnp.mean((y - photos) ** 2))
  mse_wrong = float(jnp.mean((keys.unscramble(y, wrong, 4) - photos) ** 2))
  assert mse_scr > 0.03 and mse_wrong > 0.03
  # Per-transmission keys differ, so the two images get different scrambles.
  assert not np.array_equal(
    keys.scramble(photos[:1], k[:1], 4), keys.scramble(photos[:1], k[1:], 4)
  )


def test_preserves_squared_error(photos):
  k = keys.message_keys(jax.random.key(3), 5, 2)
  noisy = photos + 0.05 * jax.random.normal(jax.random.key(4), photos.shape)
  a = jnp.sum((keys.scramble(noisy, k) - keys.scramble(photos, k)) ** 2)
  np.testing.assert_allclose(a, jnp.sum((noisy - photos) ** 2), rtol=1e-5)


def test_bad_inputs(photos):
  k = keys.message_keys(jax.random.key(0), 0, 2)
  with pytest.raises(ValueError, match="typed"):
    keys.scramble(photos, jax.random.PRNGKey(0)[None].repeat(2, 0))
  with pytest.raises(ValueError, match="one key per image"):
    keys.scramble(photos, k[:1])
  with pytest.raises(ValueError, match="multiple of the scramble block"):
    keys.scramble(photos[:, :30, :30], k, 4)
