"""Range coding with rotation: a near-entropy provably secure sampler in exact integers.

The idea (Yan & Murawaki, "Efficient Provably Secure Linguistic Steganography via Range
Coding"): the message is a point inside a coding interval that each token narrows, as in a
range decoder; before every token the point is rotated inside the interval by a fresh
pseudorandom offset, so that the token is an exact sample of the model's distribution
whatever the message is. This module is an integer, batched, streaming form of it.

**Sender.** The message is cut into blocks: the first of ``first_block_bits`` bits, each next
one twice the last up to ``block_bits`` (multiples of 16), so that a short sequence carries bits
early and a long one approaches the entropy. Within a block the sender holds an integer interval
of ``r`` candidate values and its own index ``x < r``; the block's bits are read lazily, 16 at a
time, like a range coder's renormalization: whenever ``r < 2**15`` and bits of the block are
left, ``r <- r * 2**16`` and ``x <- x * 2**16 + next 16 bits`` (so ``r < 2**31`` always). Each
step draws ``R``, the top ``precision`` bits of the ChaCha20 word ``(nonce, t, 0)``, maps the
index to the frequency circle, ``slot = floor(x * 2**precision / r)``, and picks the token whose
cumulative interval holds ``u = (R + slot) mod 2**precision``.

**Exact marginal.** ``x`` and ``r`` depend on the message and on earlier draws only, and ``R``
is uniform and fresh, so ``u`` is uniform on ``[0, 2**precision)`` for every message: token
``i`` comes out with probability exactly ``f_i / 2**precision``, at every step, given
everything before.

**Narrowing.** The indices whose slot falls in the chosen token's arc form a cyclic window
``[lo, lo + n')`` of ``Z_r``, with ``lo = ceil(a * r / 2**precision)`` and
``lo + n' = ceil((a + f_i) * r / 2**precision)`` (``a`` the token's start relative to
``R``). The sender continues with ``x <- (x - lo) mod r`` and ``r <- n'``: the rotation. Once
every bit of the block has been read and ``r`` reaches 1, the block is decided; the next
block starts with the next token.

**Receiver.** It repeats the renormalizations, the draws and the windows from the token ids
alone, and keeps one record per step of the block (``lo``, ``r``, whether 16 bits were read).
When the block is decided (``r`` = 1 after the last read) it undoes the steps from the last to
the first, ``x <- (x + lo) mod r`` and, at a read, the 16 low bits of ``x`` are the block's
bits, ``x <- x >> 16``. The rotations make the set of messages that fit the tokens so far a
union of pieces rather than an interval, so no bit of a block is decided before its last
token: **a block's bits are all decided at the token that completes it**, and the tail of a
message (its last, zero-padded block) only when that block completes; bits of a block the
sequence ends inside are not embedded (``embedded`` counts whole blocks only).

A block that has not completed within ``max_block_steps`` tokens (very low entropy) is given
up by both sides at the same step and sent again from its first bit; nothing is decided
from it, and the exact marginal is untouched (it never depends on the message).

Utilization: each step shrinks ``r`` by the chosen token's probability to within one unit in
``r >= 2**15``, so a block costs its bits plus the unused part of its last token (about one
token); bits per token approach the entropy as blocks grow (at about 6 bits a token: about
0.98 with 256-bit blocks, 0.996 with 1024-bit ones), while the block a sequence ends inside is
lost, so very large blocks only pay on long sequences. All arithmetic is exact uint32
(64-bit products from 32-bit words); the receiver's cost per decided block is one pass over
that block's step records.
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

__all__ = ["RotationSampler", "RotState", "RotExtractState", "ceil_scale", "slot_of"]

CHUNK = 16  # bits read per renormalization
LOW = 2**15  # renormalize while r < LOW (so r < 2**31 after a read)


class RotState(NamedTuple):
  """Sender state: the message (as ``common.EmbedState``) plus the block in progress."""

  bits: jax.Array  # uint8[B, L]
  bit_len: jax.Array  # int32[B]
  cursor: jax.Array  # int32[B]  first bit of the block in progress
  nonce: jax.Array  # uint32[B]
  x: jax.Array  # uint32[B]  the sender's index among the r candidates
  r: jax.Array  # uint32[B]  candidates left (1 at a block start)
  reads: jax.Array  # int32[B]  16-bit chunks of the block read so far
  steps: jax.Array  # int32[B]  tokens spent on the block
  blocks: jax.Array  # int32[B]  blocks decided so far (sets the next block's size)


class RotExtractState(NamedTuple):
  nonce: jax.Array  # uint32[B]
  r: jax.Array  # uint32[B]
  reads: jax.Array  # int32[B]
  steps: jax.Array  # int32[B]
  blocks: jax.Array  # int32[B]
  lo: jax.Array  # uint32[B, H]  window start of each step of the block
  width: jax.Array  # uint32[B, H] r at each step (after its read)
  read: jax.Array  # bool[B, H]   whether that step read 16 bits


def ceil_scale(a, r, precision: int):
  """ceil(a * r / 2**precision) for uint32 ``a < 2**(precision+1)`` and ``r < 2**31`` (the
  result is below 2**32; 64-bit product from 32-bit words)."""
  a, r = a.astype(jnp.uint32), r.astype(jnp.uint32)
  lo, hi = a * r, mulhi(a, r)
  s = lo + jnp.uint32(2**precision - 1)
  hi = hi + (s < lo).astype(jnp.uint32)
  return (hi << jnp.uint32(32 - precision)) | (s >> jnp.uint32(precision))


def slot_of(x, r, precision: int):
  """floor(x * 2**precision / r) for uint32 ``x < r < 2**31`` (binary long division)."""
  rem, r = x.astype(jnp.uint32), r.astype(jnp.uint32)
  q = jnp.zeros_like(rem)
  for _ in range(precision):
    rem = rem << jnp.uint32(1)  # rem < r < 2**31, so no overflow
    bit = rem >= r
    q = (q << jnp.uint32(1)) | bit.astype(jnp.uint32)
    rem = jnp.where(bit, rem - r, rem)
  return q


def _renorm(r, reads, chunks: int):
  """Whether this step reads 16 bits, and r after it."""
  need = (r < jnp.uint32(LOW)) & (reads < chunks)
  return need, jnp.where(need, r << jnp.uint32(CHUNK), r)


def _window(d: Dist, word, r, precision: int, x=None, pos=None):
  """(pos [B], lo uint32[B], n' uint32[B]) of one step with the PRF ``word`` uint32[B]. The
  sender passes its index ``x``, the receiver the observed ``pos``."""
  f = d.freqs
  c = jax.lax.associative_scan(jnp.add, f, axis=1).astype(jnp.uint32)  # inclusive, <= 2**30
  rr = jnp.broadcast_to(word >> jnp.uint32(32 - precision), (f.shape[0],)).astype(jnp.uint32)
  mask = jnp.uint32(2**precision - 1)
  if pos is None:
    u = (rr + slot_of(x, r, precision)) & mask
    pos = jax.vmap(lambda cc, v: jnp.searchsorted(cc, v, side="right"))(c, u).astype(jnp.int32)
  hi = jnp.take_along_axis(c, pos[:, None], axis=1)[:, 0]
  fw = jnp.take_along_axis(f, pos[:, None], axis=1)[:, 0].astype(jnp.uint32)
  a = (hi - fw - rr) & mask  # the token's start, relative to R
  lo = ceil_scale(a, r, precision)
  return pos, lo, ceil_scale(a + fw, r, precision) - lo


@dataclasses.dataclass(frozen=True)
class RotationSampler(Sampler):
  """Range coding with rotation through the ``stego.sampler`` protocol.

  Fields: ``block_bits`` (the largest block, a multiple of 16 up to 4096; larger is closer to
  the entropy on long messages), ``first_block_bits`` (the first block's size; each decided
  block doubles the next one's up to ``block_bits``, so a short sequence still carries bits;
  equal to ``block_bits`` for fixed blocks), ``max_block_steps`` (tokens after which an
  unfinished block is sent again; the receiver keeps this many step records per row).
  """

  block_bits: int = 256
  first_block_bits: int = 16
  max_block_steps: int = 1024

  name: ClassVar[str] = "rotation"
  secure: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    bb = self.block_bits
    if not isinstance(bb, int) or not CHUNK <= bb <= 4096 or bb % CHUNK:
      raise ConfigError(f"block_bits must be a multiple of {CHUNK} in [16, 4096], got {bb!r}")
    fb = self.first_block_bits
    if not isinstance(fb, int) or not CHUNK <= fb <= bb or fb % CHUNK:
      raise ConfigError(
        f"first_block_bits must be a multiple of {CHUNK} in [16, block_bits={bb}], got {fb!r}"
      )
    ms = self.max_block_steps
    if not isinstance(ms, int) or not bb // CHUNK <= ms <= 65536:
      raise ConfigError(
        f"max_block_steps must be an int in [{bb // CHUNK}, 65536] (at least one token per "
        f"16-bit chunk), got {ms!r}"
      )

  @property
  def chunks(self) -> int:
    """16-bit chunks of the largest block."""
    return self.block_bits // CHUNK

  def block_chunks(self, blocks):
    """int32[B]: 16-bit chunks of the block after ``blocks`` decided ones."""
    first = self.first_block_bits // CHUNK
    grown = first << jnp.minimum(blocks, 12)
    return jnp.where(blocks >= 12, self.chunks, jnp.minimum(grown, self.chunks)).astype(jnp.int32)

  def _width(self, k: int) -> int:
    return self.block_bits

  def _word(self, key, nonce, t):
    if self.prf_impl == "threefry":
      return prf.threefry_draw(key, nonce, t, 0)
    return prf.draw(key, nonce, t, 0)

  # ---------------------------------------------------------------- sender

  def init_state(self, bits, nonce, bit_len=None):
    st = init_embed_state(bits, nonce, bit_len)
    b = st.cursor.shape[0]
    zero = jnp.zeros((b,), jnp.int32)
    return RotState(*st, jnp.zeros((b,), jnp.uint32), jnp.ones((b,), jnp.uint32), zero, zero, zero)

  def _chunk(self, state: RotState):
    w = message_window(state._replace(cursor=state.cursor + CHUNK * state.reads), CHUNK)
    shifts = jnp.arange(CHUNK - 1, -1, -1, dtype=jnp.int32)
    return (w << shifts).sum(1).astype(jnp.uint32)

  def _choose(self, d: Dist, t, state: RotState, key):
    m = self.block_chunks(state.blocks)
    need, r = _renorm(state.r, state.reads, m)
    x = jnp.where(need, (state.x << jnp.uint32(CHUNK)) | self._chunk(state), state.x)
    reads = state.reads + need.astype(jnp.int32)
    pos, lo, n_new = _window(d, self._word(key, state.nonce, t), r, self.precision, x=x)
    x = jnp.where(x >= lo, x - lo, x + r - lo)  # x lies in the window [lo, lo + n') mod r
    steps = state.steps + 1
    done = (reads == m) & (n_new == 1)
    reset = done | (steps >= self.max_block_steps)
    state = state._replace(
      cursor=state.cursor + jnp.where(done, CHUNK * m, 0),
      blocks=state.blocks + done.astype(jnp.int32),
      x=jnp.where(reset, jnp.uint32(0), x),
      r=jnp.where(reset, jnp.uint32(1), n_new),
      reads=jnp.where(reset, 0, reads),
      steps=jnp.where(reset, 0, steps),
    )
    return pos, state

  # ---------------------------------------------------------------- receiver

  def init_extract_state(self, nonce, batch=None):
    nn = Sampler.init_extract_state(self, nonce, batch)
    b, h = nn.shape[0], self.max_block_steps
    zero = jnp.zeros((b,), jnp.int32)
    return RotExtractState(
      nn,
      jnp.ones((b,), jnp.uint32),
      zero,
      zero,
      zero,
      jnp.zeros((b, h), jnp.uint32),
      jnp.ones((b, h), jnp.uint32),
      jnp.zeros((b, h), bool),
    )

  def _decode(self, xs: RotExtractState, count, done, m_row):
    """bits uint8[B, block_bits] of the rows ``done`` (their block's ``count`` step records
    undone from the last; ``m_row`` chunks each); other rows give zeros."""
    b = count.shape[0]
    rows = jnp.arange(b)
    m = self.chunks

    def body(j, carry):
      x, ci, out = carry
      idx = count - 1 - j
      act = done & (idx >= 0)
      at = jnp.maximum(idx, 0)[:, None]
      lo = jnp.take_along_axis(xs.lo, at, axis=1)[:, 0]
      r = jnp.take_along_axis(xs.width, at, axis=1)[:, 0]
      rd = jnp.take_along_axis(xs.read, at, axis=1)[:, 0] & act
      y = x + lo
      y = jnp.where(y >= r, y - r, y)
      out = out.at[rows, jnp.where(rd, ci, m)].set(y & jnp.uint32(2**CHUNK - 1), mode="drop")
      y = jnp.where(rd, y >> jnp.uint32(CHUNK), y)
      return jnp.where(act, y, x), ci - rd.astype(jnp.int32), out

    n_iter = jnp.max(jnp.where(done, count, 0))
    init = (jnp.zeros((b,), jnp.uint32), m_row - 1, jnp.zeros((b, m), jnp.uint32))
    _, _, chunks = jax.lax.fori_loop(0, n_iter, body, init)
    shifts = jnp.arange(CHUNK - 1, -1, -1, dtype=jnp.uint32)
    bits = (chunks[:, :, None] >> shifts) & jnp.uint32(1)
    return bits.reshape(b, self.block_bits).astype(jnp.uint8)

  def _extract(self, d: Dist, pos, found, t, key, xs: RotExtractState):
    m = self.block_chunks(xs.blocks)
    need, r = _renorm(xs.r, xs.reads, m)
    reads = xs.reads + need.astype(jnp.int32)
    _, lo, n_new = _window(d, self._word(key, xs.nonce, t), r, self.precision, pos=pos)
    b = pos.shape[0]
    rows = jnp.arange(b)
    xs = xs._replace(
      lo=xs.lo.at[rows, xs.steps].set(lo),
      width=xs.width.at[rows, xs.steps].set(r),
      read=xs.read.at[rows, xs.steps].set(need),
    )
    steps = xs.steps + 1
    ok = found & (n_new >= 1)
    done = ok & (reads == m) & (n_new == 1)
    bits = jax.lax.cond(
      jnp.any(done),
      lambda: self._decode(xs, steps, done, m),
      lambda: jnp.zeros((b, self.block_bits), jnp.uint8),
    )
    reset = done | (steps >= self.max_block_steps)
    xs = xs._replace(
      r=jnp.where(reset, jnp.uint32(1), jnp.maximum(n_new, 1)),
      reads=jnp.where(reset, 0, reads),
      steps=jnp.where(reset, 0, steps),
      blocks=xs.blocks + done.astype(jnp.int32),
    )
    return bits, jnp.where(done, CHUNK * m, 0), ok, xs

  def sample(self, x, t, key, nonce):
    """Plain inverse-CDF sampling with the same draw ``R``: what the first token of every
    block is for the all-zero message (x = 0, slot 0)."""
    d = self.dist(x)
    b = d.freqs.shape[0]
    nn = broadcast_nonce(nonce, (b,))
    zero = jnp.zeros((b,), jnp.uint32)
    word = self._word(jnp.asarray(key, jnp.uint32), nn, t)
    pos, _, _ = _window(d, word, zero + 2**CHUNK, self.precision, x=zero)
    return d.token(pos)
