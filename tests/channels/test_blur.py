"""blurS: PIL's Gaussian blur, and an exact differentiable Gaussian that tracks it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from stegjax import channels, errors
from stegjax.channels import blur


def _psnr(a, b):
  return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def _scipy_blur(x01, sigma):
  """The exact Gaussian (scipy) over H, W; same truncation and half-sample symmetric edges."""
  sigmas = (0.0,) * (x01.ndim - 3) + (sigma, sigma)
  out = [
    ndimage.gaussian_filter(x01[..., c], sigmas, mode="reflect", truncate=blur.TRUNCATE)
    for c in range(x01.shape[-1])
  ]
  return np.stack(out, -1)


def test_names():
  ch = channels.image_channel("blur1.5")
  assert ch == blur.Blur(1.5) and ch.name == "blur1.5" and not ch.stochastic
  assert channels.get("BLUR2").name == "blur2.0"
  for bad in ("blur", "blur-1", "blurx"):
    with pytest.raises(errors.ConfigError, match="blurS"):
      channels.image_channel(bad)


def test_real_blur_is_the_gaussian_and_removes_detail(crops64):
  _, x = crops64
  ch = channels.image_channel("blur1.0")
  y = ch.apply(x)
  assert y.dtype == np.uint8 and y.shape == x.shape
  np.testing.assert_array_equal(ch.apply(x[2]), y[2])
  np.testing.assert_array_equal(channels.image_channel("blur0").apply(x), x)
  for i in range(len(x)):  # PIL's three box passes approximate the true Gaussian closely
    assert _psnr(y[i] / 255.0, _scipy_blur(x[i] / 255.0, 1.0)) > 45.0
  # High-frequency energy drops, more with a larger std.
  hf = lambda im: np.mean(np.abs(np.diff(im.astype(np.float64), axis=1)))
  y2 = channels.image_channel("blur2.0").apply(x)
  assert hf(y2) < hf(y) < 0.8 * hf(x)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_stand_in_is_the_exact_gaussian_and_tracks_pil(sigma, crops64):
  _, x = crops64
  ch = channels.image_channel(f"blur{sigma}")
  xf = jnp.asarray(x, jnp.float32) / 255.0
  out = np.asarray(jax.jit(ch.differentiable())(xf))
  assert out.shape == x.shape
  np.testing.assert_allclose(out, _scipy_blur(np.asarray(xf, np.float64), sigma), atol=2e-6)
  assert _psnr(out, ch.apply(x) / 255.0) > 45.0


def test_stand_in_traces_sigma_and_has_gradients(crops64):
  _, x = crops64
  xf = jnp.asarray(x[:2], jnp.float32) / 255.0
  a, b = channels.image_channel("blur0.9").stand_in(), channels.image_channel("blur1.0").stand_in()
  assert a.form == b.form and (a.param, b.param) == (0.9, 1.0)  # one compiled function
  g = jax.grad(lambda v: jnp.sum(a(v) ** 2))(xf)
  assert np.all(np.isfinite(np.asarray(g))) and float(jnp.max(jnp.abs(g))) > 0
  np.testing.assert_array_equal(channels.image_channel("blur0").stand_in()(xf), xf)
