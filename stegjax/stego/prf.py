"""Keyed counter-based randomness shared by sender and receiver.

The draw for message nonce ``n``, token step ``t`` and tree node / word ``j`` is a
pure function ``draw(key, n, t, j)``; it never depends on previously decoded
tokens, so one wrong token cannot shift the randomness of later steps.

The construction is the ChaCha20 block function (RFC 8439) written with jnp
uint32 operations: key = the 256-bit sampling key, 32-bit block counter =
``j // 16``, 96-bit nonce = ``(t, n, domain)``; the draw is word ``j % 16`` of that
keystream block. ``threefry_draw`` is offered as a faster, NON-cryptographic
alternative (jax.random threefry is a good PRNG but not a vetted PRF).
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
  "SAMPLING_INFO",
  "make_key",
  "chacha20_block",
  "draw",
  "draw_words",
  "threefry_draw",
  "threefry_draw_words",
  "words_to_bytes",
]

# HKDF `info` label of the sampling key; framing.py derives the encryption key
# from the same secret with a different label.
SAMPLING_INFO = b"stegjax/v1/sampling-key"
_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_DOMAIN = 0x53544547  # "STEG": third nonce word, separates stegjax draws from other uses


def make_key(secret: bytes, info: bytes = SAMPLING_INFO) -> np.ndarray:
  """HKDF-SHA256 of ``secret`` (any length) -> 256-bit key as uint32[8] (little endian)."""
  if not isinstance(secret, (bytes, bytearray)):
    raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
  if len(secret) == 0:
    raise ValueError("secret must not be empty")
  raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(bytes(secret))
  return np.frombuffer(raw, dtype="<u4").astype(np.uint32)


def words_to_bytes(words) -> bytes:
  """uint32 words -> little-endian bytes (ChaCha20's serialization)."""
  return np.asarray(words, dtype=np.uint32).astype("<u4").tobytes()


def _rotl(x, n: int):
  return (x << jnp.uint32(n)) | (x >> jnp.uint32(32 - n))


def _quarter(a, b, c, d):
  a = a + b
  d = _rotl(d ^ a, 16)
  c = c + d
  b = _rotl(b ^ c, 12)
  a = a + b
  d = _rotl(d ^ a, 8)
  c = c + d
  b = _rotl(b ^ c, 7)
  return a, b, c, d


def _check_key(key):
  key = jnp.asarray(key)
  if key.shape[-1:] != (8,):
    raise ValueError(
      f"key must have last dimension 8 (uint32[8] from make_key), got shape {key.shape}"
    )
  return key.astype(jnp.uint32)


@jax.jit
def chacha20_block(key, counter, nonce):
  """RFC 8439 section 2.3 block function, vectorized.

  Args:
    key: uint32[..., 8]; counter: uint32[...]; nonce: uint32[..., 3]; leading dims broadcast.
  Returns:
    uint32[..., 16], the keystream block as little-endian words.
  """
  key = _check_key(key)
  nonce = jnp.asarray(nonce).astype(jnp.uint32)
  if nonce.shape[-1:] != (3,):
    raise ValueError(f"nonce must have last dimension 3, got shape {nonce.shape}")
  counter = jnp.asarray(counter).astype(jnp.uint32)
  shape = jnp.broadcast_shapes(key.shape[:-1], counter.shape, nonce.shape[:-1])
  bc = lambda x: jnp.broadcast_to(x, shape)
  init = (
    [bc(jnp.uint32(c)) for c in _CONSTANTS]
    + [bc(key[..., i]) for i in range(8)]
    + [bc(counter)]
    + [bc(nonce[..., i]) for i in range(3)]
  )

  def double_round(_, s):
    s = list(s)
    for a, b, c, d in (
      (0, 4, 8, 12),
      (1, 5, 9, 13),
      (2, 6, 10, 14),
      (3, 7, 11, 15),
      (0, 5, 10, 15),
      (1, 6, 11, 12),
      (2, 7, 8, 13),
      (3, 4, 9, 14),
    ):
      s[a], s[b], s[c], s[d] = _quarter(s[a], s[b], s[c], s[d])
    return tuple(s)

  out = jax.lax.fori_loop(0, 10, double_round, tuple(init))
  return jnp.stack([o + i for o, i in zip(out, init)], axis=-1)


def _uint32(x, name):
  x = jnp.asarray(x)
  if not (jnp.issubdtype(x.dtype, jnp.integer)):
    raise ValueError(f"{name} must be an integer array, got dtype {x.dtype}")
  return x.astype(jnp.uint32)


@functools.partial(jax.jit, static_argnums=3)
def draw_words(key, nonce, step, n_words: int):
  """Draws for nodes ``0..n_words-1`` at once: uint32[..., n_words].

  ``draw_words(key, n, t, W)[..., j] == draw(key, n, t, j)``; computes
  ``ceil(n_words / 16)`` ChaCha20 blocks per (nonce, step).
  """
  key = _check_key(key)
  nonce, step = _uint32(nonce, "nonce"), _uint32(step, "step")
  n_blocks = -(-int(n_words) // 16)
  shape = jnp.broadcast_shapes(key.shape[:-1], nonce.shape, step.shape)
  nonce3 = jnp.stack(
    [
      jnp.broadcast_to(step, shape),
      jnp.broadcast_to(nonce, shape),
      jnp.full(shape, _DOMAIN, jnp.uint32),
    ],
    axis=-1,
  )
  ctr = jnp.arange(n_blocks, dtype=jnp.uint32)
  blocks = chacha20_block(key[..., None, :], ctr, nonce3[..., None, :])  # [..., n_blocks, 16]
  return blocks.reshape(shape + (n_blocks * 16,))[..., :n_words]


@jax.jit
def draw(key, nonce, step, node):
  """uint32 draw = prf(key, nonce, step, node); broadcasting over nonce/step/node; jittable."""
  key = _check_key(key)
  nonce, step, node = _uint32(nonce, "nonce"), _uint32(step, "step"), _uint32(node, "node")
  shape = jnp.broadcast_shapes(key.shape[:-1], nonce.shape, step.shape, node.shape)
  nonce3 = jnp.stack(
    [
      jnp.broadcast_to(step, shape),
      jnp.broadcast_to(nonce, shape),
      jnp.full(shape, _DOMAIN, jnp.uint32),
    ],
    axis=-1,
  )
  block = chacha20_block(key, node >> jnp.uint32(4), nonce3)
  word = jnp.broadcast_to(node & jnp.uint32(15), shape).astype(jnp.int32)
  return jnp.take_along_axis(block, word[..., None], axis=-1)[..., 0]


def _threefry_key(key, nonce, step):
  k = jax.random.wrap_key_data(
    jnp.stack([key[0] ^ key[2] ^ key[4] ^ key[6], key[1] ^ key[3] ^ key[5] ^ key[7]]),
    impl="threefry2x32",
  )
  return jax.random.fold_in(jax.random.fold_in(k, nonce), step)


def threefry_draw(key, nonce, step, node):
  """NON-cryptographic variant of ``draw``: jax.random threefry2x32 folded with (nonce, step, node).

  Faster than ChaCha20 but offers no PRF security claim; for experiments only.
  """
  key = _check_key(key)
  if key.ndim != 1:
    raise ValueError("threefry_draw takes a single key uint32[8]")
  nonce, step, node = _uint32(nonce, "nonce"), _uint32(step, "step"), _uint32(node, "node")
  shape = jnp.broadcast_shapes(nonce.shape, step.shape, node.shape)
  f = jax.vmap(
    lambda a, b, c: jax.random.bits(jax.random.fold_in(_threefry_key(key, a, b), c), (), jnp.uint32)
  )
  args = [jnp.broadcast_to(x, shape).reshape(-1) for x in (nonce, step, node)]
  return f(*args).reshape(shape)


def threefry_draw_words(key, nonce, step, n_words: int):
  """``threefry_draw`` for nodes ``0..n_words-1``: uint32[..., n_words]."""
  nonce, step = _uint32(nonce, "nonce"), _uint32(step, "step")
  return threefry_draw(
    key, nonce[..., None], step[..., None], jnp.arange(n_words, dtype=jnp.uint32)
  )
