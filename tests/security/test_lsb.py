"""Keyed LSB matching: payload size, +-1 changes on the keyed path only, round trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.security import lsb


def test_embed_extract_round_trip_and_change_structure():
  key = jax.random.key(0)
  img = jax.random.randint(jax.random.key(1), (16, 16, 3), 0, 256).astype(jnp.uint8)
  img = img.at[0, 0].set(0).at[0, 1].set(255)  # both clipping ends present
  m = lsb.num_bits(img.shape, 0.4)
  assert m == round(0.4 * 16 * 16 * 3)
  bits = jax.random.bernoulli(jax.random.key(2), 0.5, (m,)).astype(jnp.uint8)
  stego = lsb.embed(key, img, bits)
  np.testing.assert_array_equal(lsb.extract(key, stego, m), bits)
  d = np.asarray(stego, np.int32) - np.asarray(img, np.int32)
  assert set(np.unique(d)) <= {-1, 0, 1}
  # Exactly the path samples whose LSB disagreed changed.
  pos = np.asarray(jax.random.permutation(jax.random.split(key)[0], img.size)[:m])
  mismatch = (np.asarray(img).reshape(-1)[pos] & 1) != np.asarray(bits)
  assert np.count_nonzero(d) == mismatch.sum()
  off_path = np.ones(img.size, bool)
  off_path[pos] = False
  assert np.all(d.reshape(-1)[off_path] == 0)
  # About half the changes go up and half down (matching, not replacement).
  assert 0.35 < np.mean(d[d != 0] > 0) < 0.65
  # A different key reads different bits.
  assert np.mean(np.asarray(lsb.extract(jax.random.key(9), stego, m)) == np.asarray(bits)) < 0.6


def test_embed_random_batch_and_errors():
  imgs = jax.random.randint(jax.random.key(3), (4, 8, 8, 1), 0, 256).astype(jnp.uint8)
  st = lsb.embed_random(jax.random.key(4), imgs, 0.5)
  changed = np.count_nonzero(np.asarray(st) != np.asarray(imgs), axis=(1, 2, 3))
  assert np.all((changed > 16 - 12) & (changed < 16 + 12))  # ~ m/2 = 16 of 64 each
  assert len({c.tobytes() for c in np.asarray(st)}) == 4
  np.testing.assert_array_equal(lsb.embed_random(jax.random.key(4), imgs, 0.0), imgs)
  with pytest.raises(ValueError):
    lsb.embed_random(jax.random.key(4), imgs, 1.5)
  with pytest.raises(ValueError):
    lsb.embed_random(jax.random.key(4), imgs.astype(jnp.float32), 0.4)
