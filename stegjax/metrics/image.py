"""Image quality metrics in jnp: PSNR and SSIM on [..., H, W, C], jittable and batched.

SSIM is Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, population (co)variances, averaged over the valid window positions and over
channels; it equals ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=max_val)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _check_pair(a, b, what):
  """Leading (batch) axes broadcast; the image axes [H, W, C] must agree."""
  a, b = jnp.asarray(a), jnp.asarray(b)
  if a.ndim < 3 or b.ndim < 3:
    raise ValueError(f"{what}: images must be [..., H, W, C], got shapes {a.shape} and {b.shape}")
  try:
    shape = np.broadcast_shapes(a.shape, b.shape)
  except ValueError:
    shape = None
  if a.shape[-3:] != b.shape[-3:] or shape is None:
    raise ValueError(
      f"{what}: images must have the same [H, W, C] and broadcastable batch axes, "
      f"got shapes {a.shape} and {b.shape}"
    )
  return (
    jnp.broadcast_to(a, shape).astype(jnp.float32),
    jnp.broadcast_to(b, shape).astype(jnp.float32),
  )


def psnr_from_mse(mse, max_val=1.0):
  """PSNR in dB of a mean squared error on a signal of peak ``max_val`` (0 gives +inf)."""
  mse = jnp.asarray(mse, jnp.float32)
  return 10.0 * jnp.log10(jnp.square(jnp.asarray(max_val, jnp.float32)) / mse)


def psnr(a, b, max_val=1.0):
  """Peak signal-to-noise ratio in dB over the last three axes: [..., H, W, C] -> [...].

  Leading axes of ``a`` and ``b`` broadcast against each other.

  Identical images give +inf.
  """
  a, b = _check_pair(a, b, "psnr")
  return psnr_from_mse(jnp.mean(jnp.square(a - b), axis=(-3, -2, -1)), max_val)


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
  r = np.arange(size, dtype=np.float64) - (size - 1) / 2
  w = np.exp(-0.5 * (r / sigma) ** 2)
  return (w / w.sum()).astype(np.float32)


def _blur_valid(x, w):
  """Separable 'valid' Gaussian filtering of [..., H, W, C] over H and W (depthwise convs)."""
  *lead, h, wd, c = x.shape
  y = jnp.moveaxis(x.reshape(-1, h, wd, c), -1, 1).reshape(-1, h, wd, 1)  # [N*C, H, W, 1]
  k = jnp.asarray(w)
  dn = ("NHWC", "HWIO", "NHWC")
  hp = jax.lax.Precision.HIGHEST
  y = jax.lax.conv_general_dilated(
    y, k.reshape(-1, 1, 1, 1), (1, 1), "VALID", dimension_numbers=dn, precision=hp
  )
  y = jax.lax.conv_general_dilated(
    y, k.reshape(1, -1, 1, 1), (1, 1), "VALID", dimension_numbers=dn, precision=hp
  )
  ho, wo = y.shape[1], y.shape[2]
  return jnp.moveaxis(y.reshape(-1, c, ho, wo), 1, -1).reshape(*lead, ho, wo, c)


def ssim(
  a, b, max_val=1.0, window_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03
):
  """Structural similarity over the last three axes: [..., H, W, C] -> [...]."""
  a, b = _check_pair(a, b, "ssim")
  h, w = a.shape[-3], a.shape[-2]
  if h < window_size or w < window_size:
    raise ValueError(f"ssim needs H, W >= window_size={window_size}, got {h}x{w}")
  win = _gaussian_window(window_size, sigma)

  def blur(x):
    return _blur_valid(x, win)

  c1 = (k1 * max_val) ** 2
  c2 = (k2 * max_val) ** 2
  mu_a, mu_b = blur(a), blur(b)
  var_a = blur(a * a) - mu_a * mu_a
  var_b = blur(b * b) - mu_b * mu_b
  cov = blur(a * b) - mu_a * mu_b
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
  return jnp.mean(s, axis=(-3, -2, -1))
