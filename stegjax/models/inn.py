"""Haar DWT and HiNet-style invertible affine-coupling blocks for image hiding.

Hiding (forward) takes cover and secret images, moves both to the Haar wavelet
domain (3 channels -> 12, band-major [LL, HL, LH, HH]) and runs a stack of
couplings (DESIGN.md, HiNet eqs. 1-2):

    y1 = x1 + phi(x2)
    y2 = x2 * exp(clamp * (2 sigmoid(rho(y1)) - 1)) + eta(y1)

x1 = cover branch, x2 = secret branch. The inverse of y1 is the stego image, y2 the
"lost" part r. Revealing is the exact inverse pass with an auxiliary z (zeros) in
place of r. With ``high_freq_only`` phi's LL outputs are masked, so the stego's LL
band equals the cover's exactly (hide only in the high bands).

``hinet_config()`` is HiNet's published size: 16 blocks x 3 dense subnets of 5
convs (growth 32), 4,050,240 parameters.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

HINET_PARAMS = 4_050_240


def haar_dwt(x: jax.Array) -> jax.Array:
  """Orthonormal 2x2 Haar: [B,H,W,C] -> [B,H/2,W/2,4C] as [LL, HL, LH, HH] (C channels each)."""
  chex.assert_rank(x, 4)
  if x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"haar_dwt needs even height and width, got {x.shape[1:3]}")
  a = x[:, 0::2, 0::2]
  b = x[:, 1::2, 0::2]
  c = x[:, 0::2, 1::2]
  d = x[:, 1::2, 1::2]
  ll = (a + b + c + d) * 0.5
  hl = (-a - b + c + d) * 0.5
  lh = (-a + b - c + d) * 0.5
  hh = (a - b - c + d) * 0.5
  return jnp.concatenate([ll, hl, lh, hh], axis=-1)


def haar_iwt(y: jax.Array) -> jax.Array:
  """Exact inverse of ``haar_dwt`` (the transform is orthonormal: inverse = transpose)."""
  chex.assert_rank(y, 4)
  if y.shape[-1] % 4:
    raise ValueError(f"haar_iwt needs 4*C channels, got {y.shape[-1]}")
  ll, hl, lh, hh = jnp.split(y, 4, axis=-1)
  a = (ll - hl - lh + hh) * 0.5
  b = (ll - hl + lh - hh) * 0.5
  c = (ll + hl - lh - hh) * 0.5
  d = (ll + hl + lh + hh) * 0.5
  bsz, h, w, ch = a.shape
  row0 = jnp.stack([a, c], axis=3)  # [B,h,w,2(col),C], row offset 0
  row1 = jnp.stack([b, d], axis=3)  # row offset 1
  full = jnp.stack([row0, row1], axis=2)  # [B,h,2(row),w,2(col),C]
  return full.reshape(bsz, 2 * h, 2 * w, ch)


class DenseSubnet(nn.Module):
  """HiNet's ResidualDenseBlock_out: 4 densely connected 3x3 convs + a zero-initialized output conv."""

  out_channels: int
  growth: int = 32
  num_convs: int = 5

  @nn.compact
  def __call__(self, x):
    feats = [x]
    for _ in range(self.num_convs - 1):
      h = nn.Conv(self.growth, (3, 3))(jnp.concatenate(feats, axis=-1))
      feats.append(nn.leaky_relu(h, 0.01))
    # Zero init: every coupling starts as the identity, so stego == cover at step 0.
    return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(
      jnp.concatenate(feats, axis=-1)
    )


class InvBlock(nn.Module):
  channels: int = 12  # per branch
  growth: int = 32
  num_convs: int = 5
  clamp: float = 2.0
  high_freq_only: bool = False

  def setup(self):
    self.phi = DenseSubnet(self.channels, self.growth, self.num_convs)
    self.rho = DenseSubnet(self.channels, self.growth, self.num_convs)
    self.eta = DenseSubnet(self.channels, self.growth, self.num_convs)

  def _phi(self, x2):
    t = self.phi(x2)
    if self.high_freq_only:  # LL is the first quarter of the band-major channels
      ll = self.channels // 4
      t = t.at[..., :ll].set(0.0)
    return t

  def _scale(self, y1):
    return jnp.exp(self.clamp * (2.0 * nn.sigmoid(self.rho(y1)) - 1.0))

  def __call__(self, x1, x2):
    y1 = x1 + self._phi(x2)  # eq. (1)
    y2 = x2 * self._scale(y1) + self.eta(y1)  # eq. (2)
    return y1, y2

  def inverse(self, y1, y2):
    x2 = (y2 - self.eta(y1)) / self._scale(y1)
    x1 = y1 - self._phi(x2)
    return x1, x2


class HidingINN(nn.Module):
  """hide(cover, secret) -> (stego, lost); reveal(stego, z) -> (cover_rec, secret_rec)."""

  num_blocks: int = 16
  growth: int = 32
  num_convs: int = 5
  clamp: float = 2.0
  image_channels: int = 3
  high_freq_only: bool = False

  def setup(self):
    self.blocks = [
      InvBlock(
        4 * self.image_channels, self.growth, self.num_convs, self.clamp, self.high_freq_only
      )
      for _ in range(self.num_blocks)
    ]

  def __call__(self, cover, secret):
    return self.hide(cover, secret)

  def hide(self, cover, secret):
    chex.assert_equal_shape([cover, secret])
    chex.assert_rank(cover, 4)
    if cover.shape[-1] != self.image_channels:
      raise ValueError(f"HidingINN expects {self.image_channels} channels, got {cover.shape[-1]}")
    x1, x2 = haar_dwt(cover), haar_dwt(secret)
    for blk in self.blocks:
      x1, x2 = blk(x1, x2)
    return haar_iwt(x1), haar_iwt(x2)

  def reveal(self, stego, z=None):
    chex.assert_rank(stego, 4)
    if z is None:
      z = jnp.zeros_like(stego)
    chex.assert_equal_shape([stego, z])
    y1, y2 = haar_dwt(stego), haar_dwt(z)
    for blk in reversed(self.blocks):
      y1, y2 = blk.inverse(y1, y2)
    return haar_iwt(y1), haar_iwt(y2)


def hinet_config() -> dict:
  """HiNet (Jing et al. 2021) size: 4,050,240 parameters at 3 image channels."""
  return dict(num_blocks=16, growth=32, num_convs=5, clamp=2.0)
