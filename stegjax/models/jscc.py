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

from stegjax.channels import wireless

DOWNSAMPLE = 4  # two stride-2 convolutions


def latent_channels_for_ratio(ratio: float) -> int:
  """Latent channels c such that k/n = c/96 equals ``ratio`` exactly (1/6 -> 16, 1/12 -> 8)."""
  frac = Fraction(ratio).limit_denominator(1000)
  c = frac * 2 * 3 * DOWNSAMPLE * DOWNSAMPLE
  if c.denominator != 1 or c <= 0 or abs(float(frac) - float(ratio)) > 1e-9:
    raise ValueError(f"bandwidth ratio {ratio} is not c/96 for a positive integer c "
                     "(e.g. 1/6 -> 16 latent channels, 1/12 -> 8)")
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
