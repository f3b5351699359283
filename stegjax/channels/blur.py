"""blurS: Gaussian blur of standard deviation S pixels, the way PIL applies it.

The real channel is PIL's ``ImageFilter.GaussianBlur(radius=S)`` (PIL's radius is the standard
deviation; it approximates the Gaussian with three box passes). The stand-in is the exact
separable Gaussian, truncated at 3 S, with half-sample symmetric edges; it tracks PIL to about
50 dB on photographs. S is the stand-in's traced parameter, so every S with the same kernel
radius shares one compiled function.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageFilter

from stegjax.channels import base
from stegjax.channels import real
from stegjax.channels import registry

TRUNCATE = 3.0  # kernel radius in standard deviations


def kernel_radius(sigma: float) -> int:
  return int(math.ceil(TRUNCATE * float(sigma)))


@dataclasses.dataclass(frozen=True)
class GaussianBlur:
  """Separable Gaussian of traced std ``param`` over a static ``radius``, on [..., H, W, C]."""

  radius: int

  def __call__(self, x, param, key):
    del key
    r = self.radius
    k = jnp.arange(-r, r + 1, dtype=x.dtype)
    w = jnp.exp(-jnp.square(k) / jnp.maximum(2.0 * jnp.square(param), 1e-12))
    w = w / jnp.sum(w)
    return _conv_axis(_conv_axis(x, w, x.ndim - 3), w, x.ndim - 2)


def _conv_axis(x, w, axis):
  """1-D correlation of x with the symmetric kernel w along ``axis`` (symmetric padding)."""
  r = (w.shape[0] - 1) // 2
  if r == 0:
    return x * w[0]
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (r, r)
  xp = jnp.pad(x, pad, mode="symmetric")
  taps = [jnp.take(xp, jnp.arange(i, i + n), axis=axis) * w[i] for i in range(2 * r + 1)]
  return sum(taps)


@registry.register
@dataclasses.dataclass(frozen=True)
class Blur(base.ImageChannel):
  """PIL Gaussian blur of std ``sigma`` pixels (0: identity)."""

  sigma: float
  FORM = "blurS (Gaussian blur, std S >= 0 pixels, e.g. blur1.0)"

  @property
  def name(self) -> str:
    return "blur" + base.fmt_float(self.sigma)

  @classmethod
  def parse(cls, name):
    s = real.parse_float(name, "blur")
    if s is None:
      return None
    if not np.isfinite(s):
      raise registry.bad_parameter(name, cls, "blur std must be finite")
    return cls(s)

  def _apply(self, x, key, resize_back):
    f = ImageFilter.GaussianBlur(radius=self.sigma)
    return np.stack([np.asarray(Image.fromarray(im, "RGB").filter(f)) for im in x])

  def _stand_in(self, jpeg_mode, resize_method, simulate_noise):
    return base.StandIn(GaussianBlur(kernel_radius(self.sigma)), self.sigma)
