"""PSNR and SSIM in jnp agree with scikit-image on real photographs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from stegjax.metrics import image

_psnr = jax.jit(image.psnr, static_argnames="max_val")
_ssim = jax.jit(image.ssim, static_argnames="max_val")


@pytest.fixture(scope="module")
def pairs():
  """Clean photos and degraded versions (noise, blur-ish, saturating shift), float [0, 1]."""
  photos = [
    skimage.data.astronaut()[100:196, 150:246],
    skimage.data.coffee()[100:196, 200:296],
    skimage.data.chelsea()[50:146, 100:196],
  ]
  a = np.stack(photos).astype(np.float32) / 255.0
  noise = np.asarray(jax.random.normal(jax.random.key(0), a.shape)) * 0.05
  b = np.clip(a + noise, 0, 1)
  c = np.clip(0.5 * (a + np.roll(a, 2, axis=1)) + 0.1, 0, 1)
  return a, np.stack([b, c])  # [3, ...] and [2, 3, ...]


def test_psnr_matches_skimage(pairs):
  a, degraded = pairs
  got = np.asarray(_psnr(a, degraded))
  assert got.shape == (2, 3)
  for i in range(2):
    for j in range(3):
      ref = peak_signal_noise_ratio(
        a[j].astype(np.float64), degraded[i, j].astype(np.float64), data_range=1.0
      )
      assert abs(got[i, j] - ref) < 1e-3, (i, j, got[i, j], ref)
  # max_val scales: uint8-range inputs with max_val=255 give the same numbers.
  np.testing.assert_allclose(
    np.asarray(_psnr(a * 255, degraded * 255, max_val=255.0)), got, atol=1e-3
  )
  assert np.isinf(float(image.psnr(a[0], a[0])))
  # From an MSE: images in [-1, 1] have peak-to-peak 2.
  mse = np.mean((a - degraded[0]) ** 2, axis=(-3, -2, -1))
  np.testing.assert_allclose(np.asarray(image.psnr_from_mse(mse)), got[0], atol=1e-3)
  np.testing.assert_allclose(
    np.asarray(image.psnr_from_mse(4 * mse, max_val=2.0)), got[0], atol=1e-3
  )


def test_ssim_matches_skimage(pairs):
  a, degraded = pairs
  got = np.asarray(_ssim(a, degraded))
  assert got.shape == (2, 3)
  for i in range(2):
    for j in range(3):
      ref = structural_similarity(
        a[j].astype(np.float64),
        degraded[i, j].astype(np.float64),
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
      )
      assert abs(got[i, j] - ref) < 2e-4, (i, j, got[i, j], ref)
  np.testing.assert_allclose(np.asarray(_ssim(a, a)), 1.0, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(_ssim(a * 255, degraded * 255, max_val=255.0)), got, atol=1e-4
  )


def test_ssim_is_differentiable_and_checks_input():
  x = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3))
  y = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
  g = jax.jit(jax.grad(lambda v: jnp.sum(image.ssim(v, y))))(x)
  assert np.all(np.isfinite(np.asarray(g))) and float(jnp.max(jnp.abs(g))) > 0
  with pytest.raises(ValueError, match="window_size"):
    image.ssim(x[:, :8], y[:, :8])
  with pytest.raises(ValueError, match="same"):
    image.psnr(x, y[:, :15])
  with pytest.raises(ValueError, match="broadcastable"):
    image.psnr(x, jnp.concatenate([y, y[:1]]))  # batch 2 vs 3
  with pytest.raises(ValueError, match=r"\[..., H, W, C\]"):
    image.psnr(x[0, 0], y[0, 0])
