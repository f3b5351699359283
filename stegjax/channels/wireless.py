"""Wireless channels for stego-JSCC: power normalization, AWGN and Rayleigh block fading.

Conventions (as in DeepJSCC): the channel input ``x`` is real, [B, ...]; axis 0 is the
batch and every other axis holds channel symbols of that example. After
``power_normalize`` each example has average power 1 per real symbol, so the SNR is
``1 / sigma**2`` with ``sigma**2`` the noise variance per real symbol. For Rayleigh
fading consecutive real symbols (in row-major order over the non-batch axes) are
paired into one complex symbol ``x[2i] + j x[2i+1]``; each example sees one complex
gain ``h ~ CN(0, 1)`` (block fading, ``E|h|^2 = 1``) and complex noise of variance
``2 sigma**2`` (``sigma**2`` per real part, so the average SNR equals the AWGN one).

``snr_db`` is a scalar or a per-example array [B], and may be traced. All functions
are jittable and differentiable with respect to ``x``.

The registered channels (``registry.wireless_channel(name).apply(z, snr_db, key)``):

  awgn      additive white Gaussian noise
  rayleigh  block fading, one h ~ CN(0, 1) per example, perfect-CSI zero-forcing equalization
  mixed     a per-example fair coin between the two (a training distribution)
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from stegjax.channels import base
from stegjax.channels import registry


def _check(x):
  x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(
      f"wireless channels take x [B, ...] with at least one symbol axis, got shape {x.shape}"
    )
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"wireless channels take real float symbols, got dtype {x.dtype}")
  return x


def _per_example(v, x, what):
  """Broadcasts a scalar or [B] value against x [B, ...]."""
  v = jnp.asarray(v, jnp.float32)
  if v.ndim == 0:
    return v
  if v.shape != (x.shape[0],):
    raise ValueError(
      f"{what} must be a scalar or per-example [B]={x.shape[0]}, got shape {v.shape}"
    )
  return v.reshape((x.shape[0],) + (1,) * (x.ndim - 1))


def power_normalize(x, power: float = 1.0, eps: float = 1e-12):
  """Scales each example so its mean squared value over all non-batch axes is ``power``.

  z = sqrt(k * P) * x / ||x||, k the number of real symbols per example.
  """
  x = _check(x)
  axes = tuple(range(1, x.ndim))
  mean_sq = jnp.mean(jnp.square(x), axis=axes, keepdims=True)
  return x * jnp.sqrt(power / (mean_sq + eps))


def noise_std(snr_db, signal_power: float = 1.0):
  """Noise std per real symbol for the given SNR in dB: sqrt(P / 10**(snr/10))."""
  return jnp.sqrt(signal_power / jnp.power(10.0, jnp.asarray(snr_db, jnp.float32) / 10.0))


def awgn(x, snr_db, key, signal_power: float = 1.0):
  """y = x + n, n ~ N(0, sigma^2) with sigma^2 = signal_power / 10**(snr_db/10).

  ``x`` is assumed to have average power ``signal_power`` per real symbol (as after
  ``power_normalize``); ``snr_db`` is a scalar or per-example [B].
  """
  x = _check(x)
  sigma = noise_std(_per_example(snr_db, x, "snr_db"), signal_power)
  return (x + sigma * jax.random.normal(key, x.shape, x.dtype)).astype(x.dtype)


def _to_complex(x):
  """[B, ...] real with an even number of symbols per example -> [B, n/2] complex."""
  b = x.shape[0]
  n = x.size // b if b else 0
  if n % 2:
    raise ValueError(
      f"rayleigh pairs real symbols into complex ones: the number of symbols "
      f"per example must be even, got {n} (shape {x.shape})"
    )
  pairs = x.reshape(b, n // 2, 2)
  return jax.lax.complex(pairs[..., 0], pairs[..., 1])


def _to_real(z, shape):
  return jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1).reshape(shape)


def rayleigh_gain(key, batch: int):
  """Per-example complex gains h ~ CN(0, 1) [B] (E|h|^2 = 1)."""
  re_im = jax.random.normal(key, (batch, 2), jnp.float32) / jnp.sqrt(2.0)
  return jax.lax.complex(re_im[:, 0], re_im[:, 1])


def rayleigh(
  x, snr_db, key, equalize: bool = True, signal_power: float = 1.0, return_gain: bool = False
):
  """Rayleigh block fading: y = h * z + n on complex pairs z of x, one h ~ CN(0, 1) per example.

  n ~ CN(0, 2 sigma^2), sigma^2 = signal_power / 10**(snr_db/10) per real part. With
  ``equalize`` the receiver knows h (perfect CSI) and returns y / h (zero forcing);
  without, it returns y. The result is real with x's shape; with ``return_gain`` the
  pair (result, h [B] complex64) is returned.
  """
  x = _check(x)
  k_h, k_n = jax.random.split(key)
  z = _to_complex(x)
  h = rayleigh_gain(k_h, x.shape[0])
  sigma = noise_std(_per_example(snr_db, z, "snr_db"), signal_power)
  noise = jax.random.normal(k_n, z.shape + (2,), jnp.float32) * sigma[..., None]
  y = h[:, None] * z + jax.lax.complex(noise[..., 0], noise[..., 1])
  if equalize:
    y = y / h[:, None]
  out = _to_real(y, x.shape).astype(x.dtype)
  chex.assert_shape(out, x.shape)
  return (out, h) if return_gain else out


# ----------------------------------------------------------------------------- registered channels


@registry.register
@dataclasses.dataclass(frozen=True)
class Awgn(base.WirelessChannel):
  """Additive white Gaussian noise at ``snr_db``."""

  FORM = "awgn"
  fading = False

  @property
  def name(self) -> str:
    return "awgn"

  @classmethod
  def parse(cls, name):
    return cls() if name == "awgn" else None

  def apply(self, z, snr_db, key):
    return awgn(z, snr_db, key)


@registry.register
@dataclasses.dataclass(frozen=True)
class Rayleigh(base.WirelessChannel):
  """Rayleigh block fading with perfect-CSI zero-forcing equalization at the receiver."""

  FORM = "rayleigh (block fading, perfect-CSI equalization)"
  fading = True

  @property
  def name(self) -> str:
    return "rayleigh"

  @classmethod
  def parse(cls, name):
    return cls() if name == "rayleigh" else None

  def apply(self, z, snr_db, key):
    return rayleigh(z, snr_db, key, equalize=True)


@registry.register
@dataclasses.dataclass(frozen=True)
class Mixed(base.WirelessChannel):
  """Per example, a fair coin picks Rayleigh or AWGN (training over both channels)."""

  FORM = "mixed (per-example coin between awgn and rayleigh)"
  fading = None

  @property
  def name(self) -> str:
    return "mixed"

  @classmethod
  def parse(cls, name):
    return cls() if name == "mixed" else None

  def apply(self, z, snr_db, key):
    k_a, k_r, k_c = jax.random.split(key, 3)
    pick = jax.random.bernoulli(k_c, 0.5, (z.shape[0],)).reshape((-1,) + (1,) * (z.ndim - 1))
    return jnp.where(pick, Rayleigh().apply(z, snr_db, k_r), Awgn().apply(z, snr_db, k_a))
