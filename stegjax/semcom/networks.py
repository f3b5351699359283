"""CNN hiding/revealing networks and the GAN discriminator of the stego JSCC families.

Survey Table II sizes: the CNN family is about 0.5M parameters (hide + reveal at
``features=64, depth=8``), the GAN family adds a discriminator to exceed 1M.
The closed-box eavesdropper reuses ``RevealNet`` (same architecture as the
public revealing network, trained on intercepted pairs).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax.numpy as jnp


def _convs(x, features: int, depth: int):
  for _ in range(depth):
    x = nn.leaky_relu(nn.Conv(features, (3, 3))(x), 0.2)
  return x


class HideNet(nn.Module):
  """concat(cover, secret) -> residual added to the cover: stego = cover + r."""

  features: int = 64
  depth: int = 8

  @nn.compact
  def __call__(self, cover, secret):
    chex.assert_equal_shape([cover, secret])
    chex.assert_rank(cover, 4)
    h = _convs(jnp.concatenate([cover, secret], axis=-1) * 2.0 - 1.0, self.features, self.depth - 1)
    # Small random init: stego starts near the cover but already carries a trace of the
    # secret. (A zero init starts at an equilibrium: no residual, so nothing for the
    # revealing network to read, so no gradient to hide; the CNN never leaves it.)
    r = nn.Conv(
      cover.shape[-1],
      (3, 3),
      kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "truncated_normal"),
    )(h)
    return cover + r


class RevealNet(nn.Module):
  """stego -> secret in [0,1]."""

  features: int = 64
  depth: int = 8
  out_channels: int = 3

  @nn.compact
  def __call__(self, x):
    chex.assert_rank(x, 4)
    h = _convs(x * 2.0 - 1.0, self.features, self.depth - 1)
    return nn.sigmoid(nn.Conv(self.out_channels, (3, 3))(h))


class RefineNet(nn.Module):
  """The keyed receiver's post-filter on the unscrambled secret: x + r(x).

  A keyed run hides the secret block-scrambled, so its errors are independent block
  by block once unscrambled, and nothing upstream can use the image's smoothness
  across blocks; this net can, and only on the right key's unscrambling. Zero-init
  last layer: it starts as the identity.
  """

  features: int = 32
  depth: int = 4

  @nn.compact
  def __call__(self, x):
    chex.assert_rank(x, 4)
    h = _convs(x * 2.0 - 1.0, self.features, self.depth - 1)
    return x + nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)


class Discriminator(nn.Module):
  """Strided CNN -> one logit per image (> 0: stego). No BatchNorm so GAN state stays in params."""

  features: int = 64
  num_layers: int = 4

  @nn.compact
  def __call__(self, x):
    chex.assert_rank(x, 4)
    h = x * 2.0 - 1.0
    for i in range(self.num_layers):
      h = nn.leaky_relu(nn.Conv(self.features * 2 ** min(i, 3), (3, 3), strides=2)(h), 0.2)
    h = jnp.mean(h, axis=(1, 2))
    return nn.Dense(1)(h)[:, 0]
