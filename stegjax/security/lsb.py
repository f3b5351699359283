"""Keyed LSB matching (+-1 embedding): the classical positive control for steganalyzers.

The payload is given in bits per pixel value (per colour sample, "bpc" for
colour images): an (H, W, C) image carries ``round(bpp * H * W * C)`` bits in
the least significant bits of a key-chosen subset of its samples. Where a
sample's LSB already equals the bit nothing changes; otherwise the sample moves
by +1 or -1 at random (keyed), which changes its LSB either way (0 can only go
up, 255 only down). Unlike LSB replacement this leaves no pairs-of-values
asymmetry, so only a learned (or rich-model) detector finds it.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def num_bits(shape, bits_per_pixel: float) -> int:
  """Payload in bits for an image of ``shape`` (H, W, C) at ``bits_per_pixel``."""
  if len(shape) != 3:
    raise ValueError(f"image must be (H, W, C), got shape {tuple(shape)}")
  if not 0.0 <= bits_per_pixel <= 1.0:
    raise ValueError(f"bits_per_pixel must be in [0, 1] (one LSB per value), got {bits_per_pixel}")
  n = shape[0] * shape[1] * shape[2]
  return int(round(bits_per_pixel * n))


def _positions(key, n: int, m: int) -> jax.Array:
  """The first m of a keyed permutation of the n sample indices (the embedding path)."""
  return jax.random.permutation(key, n)[:m]


def embed(key: jax.Array, image: jax.Array, bits: jax.Array) -> jax.Array:
  """LSB-matching embed of ``bits`` (m,) {0,1} into a uint8 image (H, W, C).

  ``key`` fixes the path (shared with the receiver) and the +-1 signs.
  """
  if image.dtype != jnp.uint8:
    raise ValueError(f"image must be uint8, got {image.dtype}")
  if image.ndim != 3:
    raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
  n = image.size
  m = bits.shape[0]
  if m > n:
    raise ValueError(f"{m} bits do not fit in an image of {n} values")
  k_path, k_sign = jax.random.split(key)
  flat = image.reshape(-1).astype(jnp.int32)
  pos = _positions(k_path, n, m)
  x = flat[pos]
  sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (m,)), 1, -1)
  sign = jnp.where(x == 0, 1, jnp.where(x == 255, -1, sign))
  change = (x & 1) != bits.astype(jnp.int32)
  flat = flat.at[pos].set(jnp.where(change, x + sign, x))
  return flat.reshape(image.shape).astype(jnp.uint8)


def extract(key: jax.Array, image: jax.Array, m: int) -> jax.Array:
  """The m embedded bits, read from the LSBs along the keyed path."""
  k_path, _ = jax.random.split(key)
  pos = _positions(k_path, image.size, m)
  return (image.reshape(-1)[pos] & 1).astype(jnp.uint8)


def embed_random(key: jax.Array, images: jax.Array, bits_per_pixel: float) -> jax.Array:
  """Embeds a fresh random message at ``bits_per_pixel`` into each image of (B, H, W, C).

  Every image gets its own key (path, message, signs) split from ``key``.
  """
  chex.assert_rank(images, 4)
  if images.dtype != jnp.uint8:
    raise ValueError(f"images must be uint8, got {images.dtype}")
  m = num_bits(images.shape[1:], bits_per_pixel)

  def one(k, im):
    k_msg, k_emb = jax.random.split(k)
    bits = jax.random.bernoulli(k_msg, 0.5, (m,)).astype(jnp.uint8)
    return embed(k_emb, im, bits)

  keys = jax.random.split(key, images.shape[0])
  return jax.jit(jax.vmap(one))(keys, images)
