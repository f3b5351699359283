"""DeepJSCC encoder/decoder (Bourtsoulatze et al. 2019 shape) and power normalization.

The encoder maps an image [B,H,W,3] in [0,1] to a latent [B,H/4,W/4,c] of real
channel symbols; consecutive pairs of reals are the I/Q parts of one complex
channel use, so the bandwidth ratio is

    k / n = (H/4 * W/4 * c / 2) / (H * W * 3) = c / 96,

i.e. c = 16 gives k/n = 1/6 and c = 8 gives 1/12. The channel itself lives in
``stegjax.channels.wireless``; this module holds only the networks.
"""

from __future__ import annotations

from fractions import Fraction

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stegjax.channels import wireless

DOWNSAMPLE = 4  # two stride-2 convolutions


def latent_channels_for_ratio(ratio: float) -> int:
  """Latent channels c such that k/n = c/96 equals ``ratio`` exactly (1/6 -> 16, 1/12 -> 8)."""
  frac = Fraction(ratio).limit_denominator(1000)
  c = frac * 2 * 3 * DOWNSAMPLE * DOWNSAMPLE
  if c.denominator != 1 or c <= 0 or abs(float(frac) - float(ratio)) > 1e-9:
    raise ValueError(
      f"bandwidth ratio {ratio} is not c/96 for a positive integer c "
      "(e.g. 1/6 -> 16 latent channels, 1/12 -> 8)"
    )
  return int(c)


def bandwidth_ratio(image_shape, latent_shape) -> float:
  """k/n for an image [.., H, W, C] and its latent [.., h, w, c] (complex symbols = reals / 2)."""
  n = image_shape[-3] * image_shape[-2] * image_shape[-1]
  k = latent_shape[-3] * latent_shape[-2] * latent_shape[-1] / 2
  return k / n


def power_normalize(z: jax.Array) -> jax.Array:
  """Per-example unit average power per real symbol (``stegjax.channels.wireless`` convention).

  The channel's SNR is then 1 / sigma^2 per real symbol; a complex symbol (I/Q pair)
  has power 2 and Rayleigh noise 2 sigma^2, so the average SNR is the same.
  """
  chex.assert_rank(z, 4)
  return wireless.power_normalize(z)


class JSCCEncoder(nn.Module):
  """Conv encoder with PReLU; output is NOT power-normalized (see ``power_normalize``)."""

  features: int = 64
  latent_channels: int = 16
  kernel: int = 5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    b, h, w, _ = x.shape
    if h % DOWNSAMPLE or w % DOWNSAMPLE:
      raise ValueError(f"JSCC image size {h}x{w} must be a multiple of {DOWNSAMPLE}")
    k = (self.kernel, self.kernel)
    x = 2.0 * x - 1.0
    x = nn.PReLU()(nn.Conv(self.features, k, strides=2)(x))
    x = nn.PReLU()(nn.Conv(self.features, k, strides=2)(x))
    x = nn.PReLU()(nn.Conv(self.features, k)(x))
    x = nn.PReLU()(nn.Conv(self.features, k)(x))
    z = nn.Conv(self.latent_channels, k)(x)
    chex.assert_shape(z, (b, h // DOWNSAMPLE, w // DOWNSAMPLE, self.latent_channels))
    return z


class JSCCDecoder(nn.Module):
  """Mirror of the encoder with transposed convs; sigmoid output in [0,1]."""

  features: int = 64
  out_channels: int = 3
  kernel: int = 5

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    chex.assert_rank(z, 4)
    b, h, w, _ = z.shape
    k = (self.kernel, self.kernel)
    x = nn.PReLU()(nn.ConvTranspose(self.features, k)(z))
    x = nn.PReLU()(nn.ConvTranspose(self.features, k)(x))
    x = nn.PReLU()(nn.ConvTranspose(self.features, k)(x))
    x = nn.PReLU()(nn.ConvTranspose(self.features, k, strides=(2, 2))(x))
    x = nn.ConvTranspose(self.out_channels, k, strides=(2, 2))(x)
    chex.assert_shape(x, (b, h * DOWNSAMPLE, w * DOWNSAMPLE, self.out_channels))
    return nn.sigmoid(x)


class DeepJSCC(nn.Module):
  """Encoder + decoder; ``channel(z) -> z_hat`` is passed in so the module stays channel-free."""

  features: int = 64
  latent_channels: int = 16

  def setup(self):
    self.encoder = JSCCEncoder(self.features, self.latent_channels)
    self.decoder = JSCCDecoder(self.features)

  def encode(self, x):
    return power_normalize(self.encoder(x))

  def decode(self, z):
    return self.decoder(z)

  def __call__(self, x, channel=None):
    z = self.encode(x)
    if channel is not None:
      z = channel(z)
    return self.decode(z)


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
  """[B,H,W,C] -> [B,H/b,W/b,b*b*C] (each b x b pixel block becomes one vector)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // block, block, w // block, block, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // block, w // block, block * block * c)


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
  """Inverse of ``space_to_depth``."""
  b, h, w, cc = x.shape
  c = cc // (block * block)
  x = x.reshape(b, h, w, block, block, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * block, w * block, c)


class PilotJSCC(nn.Module):
  """DeepJSCC with an analog linear path, a conv residual path and a pilot channel.

  Encoder: the image's 4x4 blocks (48 values) -> a linear map to ``latent_channels - 1``
  symbols per block (``pca_init`` sets it to the blocks' principal components with
  SoftCast power allocation) plus a conv (PReLU) residual, zero-initialized; the last
  latent channel is a learned constant pilot. Per-example power normalization scales
  every symbol by the same unknown factor s; the decoder estimates s from the received
  pilot (64 symbols at 32x32), divides it out, and applies the mirrored linear map plus
  a conv residual. The pilot lets a linear decoder undo the per-example normalization,
  which a plain conv autoencoder has to learn slowly; the latent shape, bandwidth ratio
  and power constraint are those of ``DeepJSCC``.
  """

  features: int = 64
  latent_channels: int = 16
  depth: int = 3

  def setup(self):
    c = self.latent_channels - 1
    if c < 1:
      raise ValueError("PilotJSCC needs at least 2 latent channels (one is the pilot)")
    n_in = 3 * DOWNSAMPLE * DOWNSAMPLE
    self.e_lin = nn.Dense(c)
    self.e_convs = [nn.Conv(self.features, (3, 3)) for _ in range(self.depth)]
    self.e_acts = [nn.PReLU() for _ in range(self.depth)]
    self.e_out = nn.Conv(c, (3, 3), kernel_init=nn.initializers.zeros)
    self.pilot = self.param("pilot", nn.initializers.constant(1.0), ())
    self.d_lin = nn.Dense(n_in)
    self.d_convs = [nn.Conv(self.features, (3, 3)) for _ in range(self.depth)]
    self.d_acts = [nn.PReLU() for _ in range(self.depth)]
    self.d_out = nn.Conv(n_in, (3, 3), kernel_init=nn.initializers.zeros)

  def encode(self, x):
    chex.assert_rank(x, 4)
    _, h, w, ch = x.shape
    if h % DOWNSAMPLE or w % DOWNSAMPLE:
      raise ValueError(f"JSCC image size {h}x{w} must be a multiple of {DOWNSAMPLE}")
    if ch != 3:
      raise ValueError(f"PilotJSCC expects 3 colour channels, got {ch}")
    blocks = space_to_depth(x, DOWNSAMPLE)
    hdn = blocks * 2.0 - 1.0
    for conv, act in zip(self.e_convs, self.e_acts):
      hdn = act(conv(hdn))
    coef = self.e_lin(blocks) + self.e_out(hdn)
    pilot = jnp.broadcast_to(jnp.abs(self.pilot) + 1e-3, coef.shape[:-1] + (1,))
    return power_normalize(jnp.concatenate([coef, pilot], axis=-1))

  def decode(self, y):
    chex.assert_rank(y, 4)
    pilot = jnp.abs(self.pilot) + 1e-3
    scale = jnp.mean(y[..., -1:], axis=(1, 2, 3), keepdims=True) / pilot
    y = y / jnp.maximum(scale, 0.05)  # a deep fade can make the estimate tiny or negative
    hdn = y
    for conv, act in zip(self.d_convs, self.d_acts):
      hdn = act(conv(hdn))
    out = self.d_lin(y[..., :-1]) + self.d_out(hdn)
    return jnp.clip(depth_to_space(out, DOWNSAMPLE), 0.0, 1.0)

  def __call__(self, x, channel=None):
    z = self.encode(x)
    if channel is not None:
      z = channel(z)
    return self.decode(z)


def pca_init(params, images: np.ndarray, latent_channels: int):
  """Data-dependent init of ``PilotJSCC``'s linear paths: principal components of the
  images' 4x4 blocks with SoftCast power allocation (gain lambda^-1/4), decoder = inverse.

  ``images``: uint8 or float [N,H,W,3] training images. Returns new params.
  """
  arr = np.asarray(images)
  x = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
  n, h, w, c3 = x.shape  # numpy throughout: this runs inside the trainer's jitted init
  b = DOWNSAMPLE
  blocks = (
    x.reshape(n, h // b, b, w // b, b, c3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, b * b * c3)
  )
  mu = blocks.mean(0)
  _, sv, vt = np.linalg.svd(blocks - mu, full_matrices=False)
  c = latent_channels - 1
  v = vt[:c].T
  lam = np.maximum(sv[:c] ** 2 / len(blocks), 1e-8)
  gain = lam**-0.25
  gain = gain / np.sqrt(np.sum(gain**2 * lam) / np.sum(lam))  # same total power as plain PCA
  enc, dec = v * gain[None], (v / gain[None]).T
  inner = dict(params["params"])
  inner["e_lin"] = {
    "kernel": jnp.asarray(enc, jnp.float32),
    "bias": jnp.asarray(-mu @ enc, jnp.float32),
  }
  inner["d_lin"] = {"kernel": jnp.asarray(dec, jnp.float32), "bias": jnp.asarray(mu, jnp.float32)}
  # Pilot at the coefficients' average power per symbol.
  inner["pilot"] = jnp.asarray(np.sqrt(np.mean(gain**2 * lam)), jnp.float32)
  return {**params, "params": inner}
