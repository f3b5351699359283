"""Key-conditioned hiding: a keyed, invertible scramble of the secret image.

The sender scrambles the secret with a key shared with the legitimate receiver
before hiding it; the hiding/revealing networks never see the key, so an
eavesdropper holding the same (public) networks recovers only the scrambled
secret and must guess the key to unscramble it. The scramble works on
``block x block`` pixel blocks so the secret stays locally smooth (it must still
pass through a lossy JSCC):

  1. each block is either kept or inverted (x -> 1 - x), per a keyed bit;
  2. each block's colour channels are permuted by one of the 6 keyed orders;
  3. the blocks are permuted by a keyed permutation.

For 32x32 images and 4x4 blocks that is 64! * 2^64 * 6^64 keys. Each step keeps
squared errors, so MSE(scramble(a), scramble(b)) == MSE(a, b) and the
hiding loss can be computed in the scrambled domain.
"""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np

_COLOR_PERMS = np.array(list(itertools.permutations(range(3))), np.int32)  # (6, 3)
_COLOR_INV = np.argsort(_COLOR_PERMS, axis=1).astype(np.int32)


def _to_blocks(x, block):
  h, w, c = x.shape
  if h % block or w % block:
    raise ValueError(f"image size {h}x{w} is not a multiple of the scramble block {block}")
  if c != 3:
    raise ValueError(f"keyed scramble expects 3 colour channels, got {c}")
  x = x.reshape(h // block, block, w // block, block, c).transpose(0, 2, 1, 3, 4)
  return x.reshape(-1, block, block, c)


def _from_blocks(b, h, w, block):
  c = b.shape[-1]
  b = b.reshape(h // block, w // block, block, block, c).transpose(0, 2, 1, 3, 4)
  return b.reshape(h, w, c)


def _key_material(key, num_blocks):
  kp, kf, kc = jax.random.split(key, 3)
  perm = jax.random.permutation(kp, num_blocks)
  flip = jax.random.bernoulli(kf, 0.5, (num_blocks,))
  color = jax.random.randint(kc, (num_blocks,), 0, 6)
  return perm, flip, color


def _scramble_one(x, key, block, inverse):
  h, w, _ = x.shape
  blocks = _to_blocks(x, block)
  n = blocks.shape[0]
  perm, flip, color = _key_material(key, n)
  flip = flip[:, None, None, None]
  if not inverse:
    blocks = jnp.where(flip, 1.0 - blocks, blocks)
    idx = jnp.asarray(_COLOR_PERMS)[color]  # (n, 3)
    blocks = jnp.take_along_axis(blocks, idx[:, None, None, :], axis=-1)
    blocks = blocks[perm]
  else:
    blocks = blocks[jnp.argsort(perm)]
    idx = jnp.asarray(_COLOR_INV)[color]
    blocks = jnp.take_along_axis(blocks, idx[:, None, None, :], axis=-1)
    blocks = jnp.where(flip, 1.0 - blocks, blocks)
  return _from_blocks(blocks, h, w, block)


def _check_keys(x, keys):
  chex.assert_rank(x, 4)
  if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
    raise ValueError("keys must be typed jax.random keys (jax.random.key), one per image")
  if keys.shape != (x.shape[0],):
    raise ValueError(f"need one key per image: {x.shape[0]} images, keys of shape {keys.shape}")


def scramble(x: jax.Array, keys: jax.Array, block: int = 4) -> jax.Array:
  """Keyed scramble of images [B,H,W,3] in [0,1] with one typed key per image."""
  _check_keys(x, keys)
  return jax.vmap(lambda xi, ki: _scramble_one(xi, ki, block, False))(x, keys)


def unscramble(x: jax.Array, keys: jax.Array, block: int = 4) -> jax.Array:
  """Inverse of ``scramble`` with the same keys."""
  _check_keys(x, keys)
  return jax.vmap(lambda xi, ki: _scramble_one(xi, ki, block, True))(x, keys)


def message_keys(secret_key: jax.Array, start: int, count: int) -> jax.Array:
  """Per-transmission keys fold_in(secret_key, index): one shared key, a fresh scramble per image."""
  return jax.vmap(lambda i: jax.random.fold_in(secret_key, i))(
    jnp.arange(start, start + count, dtype=jnp.uint32)
  )
