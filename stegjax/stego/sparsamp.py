"""SparSamp (Wang et al., USENIX Security 2025): provably secure sampling with message-derived
random numbers, O(1) work per token on top of inverse-CDF sampling. Exact integers.

The message is cut into blocks of ``block_bits`` bits. A block starts with ``n = 2**block_bits``
candidate values, the sender's at index ``k``. Each step draws ``R`` uniform on
``[0, 2**precision)`` (ChaCha20 word ``(nonce, t, 0)``) and places candidate ``j`` at
``(R + floor(j * 2**precision / n)) mod 2**precision`` on the circle of the step's integer
frequencies; the token is the one whose interval holds the sender's point. Since ``R`` is
uniform and fresh, that point is uniform for any fixed ``k``: the token follows the
frequencies exactly. The candidates whose points fall in the same token form a cyclic window
``[lo, lo + n')`` of indices (``lo = ceil(a * n / 2**precision)`` with ``a`` the token's start
relative to ``R``); the sender continues with ``k - lo`` among ``n'`` candidates. When ``n'``
reaches 1 the block is decided, and the next one starts. The receiver repeats the windows;
it keeps the map from current indices back to block values as a table of ``2**block_bits``
entries (a window of a window wraps, so the map is a rotation table, not one offset), and
emits the block when one candidate is left. Sampling is sparse: few candidates, far apart.

Positions are ranks of the step's candidates (``stego.sampler.Dist``), so the integers and
the order are the same on both sides.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from stegjax.errors import ConfigError
from stegjax.stego import prf
from stegjax.stego.common import broadcast_nonce, init_embed_state, message_window, mulhi
from stegjax.stego.sampler import Dist, Sampler

__all__ = ["SparSampSampler", "SparState", "SparExtractState", "window_start", "offset"]

MAX_BLOCK_BITS = 16


class SparState(NamedTuple):
  """Sender state: the message (as ``common.EmbedState``) plus the block in progress."""

  bits: jax.Array  # uint8[B, L]
  bit_len: jax.Array  # int32[B]
  cursor: jax.Array  # int32[B]  first bit of the block in progress
  nonce: jax.Array  # uint32[B]
  n: jax.Array  # int32[B]   candidates left in the block
  k: jax.Array  # int32[B]   the sender's index among them


class SparExtractState(NamedTuple):
  nonce: jax.Array  # uint32[B]
  n: jax.Array  # int32[B]
  table: jax.Array  # int32[B, 2**block_bits]: block value of each current index


def window_start(x, n, precision: int):
  """ceil(x * n / 2**precision) for uint32 ``x < 2**31`` and ``n <= 2**16``: the first index
  whose point lies at or after ``x`` (64-bit product from 32-bit words)."""
  x, n = x.astype(jnp.uint32), n.astype(jnp.uint32)
  lo, hi = x * n, mulhi(x, n)
  add = jnp.uint32(2**precision - 1)
  s = lo + add
  hi = hi + (s < lo).astype(jnp.uint32)
  out = (hi << jnp.uint32(32 - precision)) | (s >> jnp.uint32(precision))
  return out.astype(jnp.int32)


def offset(k, n, precision: int):
  """floor(k * 2**precision / n) for ``0 <= k < n <= 2**16`` (binary long division)."""
  r = k.astype(jnp.int32)
  n = n.astype(jnp.int32)
  q = jnp.zeros_like(r)
  for _ in range(precision):
    r = r * 2
    bit = r >= n
    q = q * 2 + bit.astype(jnp.int32)
    r = r - jnp.where(bit, n, 0)
  return q


def _word(key, nonce, t):
  return prf.draw(key, nonce, t, 0)


def _step(d: Dist, word, n, precision, k=None, pos=None):
  """One step with the PRF ``word`` uint32[B] (its top ``precision`` bits are R):
  (position [B], lo [B], n' [B]). The sender passes ``k``, the receiver ``pos``."""
  f = d.freqs
  c = jax.lax.associative_scan(jnp.add, f, axis=1)  # inclusive, < 2**31
  r = jnp.broadcast_to(word >> jnp.uint32(32 - precision), (f.shape[0],)).astype(jnp.int32)
  mask = 2**precision - 1
  if pos is None:
    u = (r + offset(k, n, precision)) & mask
    pos = jax.vmap(lambda cc, v: jnp.searchsorted(cc, v, side="right"))(c, u).astype(jnp.int32)
  hi = jnp.take_along_axis(c, pos[:, None], axis=1)[:, 0]
  width = jnp.take_along_axis(f, pos[:, None], axis=1)[:, 0]
  a = (hi - width - r) & mask  # the token's start, relative to R
  lo = window_start(a, n, precision)
  n_new = window_start(a + width, n, precision) - lo
  return pos, lo, n_new


@dataclasses.dataclass(frozen=True)
class SparSampSampler(Sampler):
  """SparSamp through the ``stego.sampler`` protocol (field ``block_bits``: bits per block,
  at most 16; the receiver's table has ``2**block_bits`` entries per row)."""

  block_bits: int = 12

  name: ClassVar[str] = "sparsamp"
  secure: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    if not isinstance(self.block_bits, int) or not 1 <= self.block_bits <= MAX_BLOCK_BITS:
      raise ConfigError(
        f"block_bits must be an int in [1, {MAX_BLOCK_BITS}], got {self.block_bits!r}"
      )
    if self.block_bits > self.precision:
      raise ConfigError(
        f"block_bits ({self.block_bits}) must not exceed precision ({self.precision})"
      )

  def _width(self, k: int) -> int:
    return self.block_bits

  def _block(self, bits, bit_len, cursor):
    w = message_window(SparState(bits, bit_len, cursor, None, None, None), self.block_bits)
    shifts = jnp.arange(self.block_bits - 1, -1, -1, dtype=jnp.int32)
    return (w << shifts).sum(1).astype(jnp.int32)

  def init_state(self, bits, nonce, bit_len=None):
    st = init_embed_state(bits, nonce, bit_len)
    b = st.cursor.shape[0]
    n = jnp.full((b,), 2**self.block_bits, jnp.int32)
    return SparState(*st, n, self._block(st.bits, st.bit_len, st.cursor))

  def init_extract_state(self, nonce, batch=None):
    nn = Sampler.init_extract_state(self, nonce, batch)
    size = 2**self.block_bits
    table = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32), (nn.shape[0], size))
    return SparExtractState(nn, jnp.full(nn.shape, size, jnp.int32), table)

  def _choose(self, d: Dist, t, state: SparState, key):
    pos, lo, n_new = _step(d, _word(key, state.nonce, t), state.n, self.precision, k=state.k)
    k_ext = jnp.where(state.k >= lo, state.k, state.k + state.n)
    done = n_new <= 1
    cursor = state.cursor + jnp.where(done, self.block_bits, 0)
    nxt = self._block(state.bits, state.bit_len, cursor)
    state = state._replace(
      cursor=cursor,
      n=jnp.where(done, 2**self.block_bits, n_new),
      k=jnp.where(done, nxt, k_ext - lo),
    )
    return pos, state

  def _extract(self, d: Dist, pos, found, t, key, xs: SparExtractState):
    _, lo, n_new = _step(d, _word(key, xs.nonce, t), xs.n, self.precision, pos=pos)
    size = 2**self.block_bits
    j = jnp.arange(size, dtype=jnp.int32)[None]
    src = (lo[:, None] + j) % xs.n[:, None]
    table = jnp.take_along_axis(xs.table, src, axis=1)
    done = (n_new <= 1) & found
    value = table[:, 0]
    shifts = jnp.arange(self.block_bits - 1, -1, -1, dtype=jnp.int32)
    bits = ((value[:, None] >> shifts[None]) & 1).astype(jnp.uint8)
    fresh = jnp.broadcast_to(j, table.shape)
    xs = SparExtractState(
      xs.nonce,
      jnp.where(done, size, jnp.maximum(n_new, 1)),
      jnp.where(done[:, None], fresh, table),
    )
    n = jnp.where(done, self.block_bits, 0)
    return bits, n, found & (n_new >= 1), xs

  def sample(self, x, t, key, nonce):
    """Plain inverse-CDF sampling with the same draw ``R``: the first step of every block of
    an all-zero message (k = 0) is exactly this."""
    d = self.dist(x)
    b = d.freqs.shape[0]
    nn = broadcast_nonce(nonce, (b,))
    zero = jnp.zeros((b,), jnp.int32)
    pos, _, _ = _step(
      d, _word(jnp.asarray(key, jnp.uint32), nn, t), zero + 1, self.precision, k=zero
    )
    return d.token(pos)
