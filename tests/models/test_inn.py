"""HidingINN: exact invertibility, Haar DWT, HiNet parameter count, high-frequency mask."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax import models
from stegjax.models import inn


def _images(seed, shape=(2, 16, 16, 3)):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return jax.random.uniform(k1, shape), jax.random.uniform(k2, shape)


def test_haar_round_trip_and_orthonormal():
  x, _ = _images(0, (2, 8, 12, 3))
  y = inn.haar_dwt(x)
  chex.assert_shape(y, (2, 4, 6, 12))
  chex.assert_trees_all_close(inn.haar_iwt(y), x, atol=1e-6)
  # Orthonormal: energy is preserved.
  np.testing.assert_allclose(jnp.sum(y**2), jnp.sum(x**2), rtol=1e-5)
  # LL of a constant image is 2*value; high bands are zero.
  c = jnp.full((1, 4, 4, 3), 0.25)
  yc = inn.haar_dwt(c)
  chex.assert_trees_all_close(yc[..., :3], jnp.full((1, 2, 2, 3), 0.5))
  chex.assert_trees_all_close(yc[..., 3:], jnp.zeros((1, 2, 2, 9)))
  # Band layout: a vertical edge (columns differ) lands in HL only.
  e = jnp.tile(jnp.array([0.0, 1.0])[None, None, :, None], (1, 2, 1, 1))
  ye = inn.haar_dwt(e)[0, 0, 0]
  np.testing.assert_allclose(ye, [1.0, 1.0, 0.0, 0.0], atol=1e-6)


def test_haar_rejects_odd_size():
  with pytest.raises(ValueError, match="even"):
    inn.haar_dwt(jnp.zeros((1, 5, 4, 3)))


def test_hinet_param_count_exact():
  m = inn.HidingINN(**inn.hinet_config())
  x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  shapes = jax.eval_shape(m.init, jax.random.key(0), x, x)
  assert models.param_count(shapes) == inn.HINET_PARAMS == 4_050_240


@pytest.fixture(scope="module")
def small_inn():
  m = inn.HidingINN(num_blocks=3, growth=8)
  cover, secret = _images(1)
  params = m.init(jax.random.key(2), cover, secret)
  # Zero-initialized output convs make the INN the identity; perturb every leaf (at a
  # trained-network scale) so the inverse is exercised on a non-trivial map.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree.unflatten(
    tree, [l + 0.03 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
  )
  return m, params


def test_inverse_of_forward_is_identity(small_inn):
  m, params = small_inn
  cover, secret = _images(4)
  stego, lost = m.apply(params, cover, secret, method=m.hide)
  # The map is non-trivial...
  assert float(jnp.max(jnp.abs(stego - cover))) > 1e-2
  # ...and revealing with the true lost part inverts it exactly (to float32 round-off).
  c_rec, s_rec = m.apply(params, stego, lost, method=m.reveal)
  np.testing.assert_allclose(c_rec, cover, atol=1e-5)
  np.testing.assert_allclose(s_rec, secret, atol=1e-5)


def test_identity_at_init():
  m = inn.HidingINN(num_blocks=2, growth=8)
  cover, secret = _images(5)
  params = m.init(jax.random.key(0), cover, secret)
  stego, lost = m.apply(params, cover, secret, method=m.hide)
  chex.assert_trees_all_close(stego, cover, atol=1e-6)
  chex.assert_trees_all_close(lost, secret, atol=1e-6)


def test_high_freq_only_keeps_ll_band():
  m = inn.HidingINN(num_blocks=2, growth=8, high_freq_only=True)
  cover, secret = _images(6)
  params = m.init(jax.random.key(0), cover, secret)
  params = jax.tree.map(lambda l: l + 0.03 * jax.random.normal(jax.random.key(7), l.shape), params)
  stego, lost = m.apply(params, cover, secret, method=m.hide)
  ll_s, ll_c = inn.haar_dwt(stego)[..., :3], inn.haar_dwt(cover)[..., :3]
  np.testing.assert_allclose(ll_s, ll_c, atol=1e-6)
  high = inn.haar_dwt(stego)[..., 3:] - inn.haar_dwt(cover)[..., 3:]
  assert float(jnp.max(jnp.abs(high))) > 1e-2
  _, s_rec = m.apply(params, stego, lost, method=m.reveal)
  np.testing.assert_allclose(s_rec, secret, atol=1e-5)
