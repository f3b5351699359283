"""Arithmetic-coding steganography (Ziegler et al., 2019): a NOT secure baseline.

The message bits are read as a binary fraction; each step narrows an integer
interval ``[low, high)`` (``precision`` bits) to the sub-interval of the token
that contains the message point and emits the common leading bits. It has no
randomness (``key``/``nonce`` only feed ``sample``) and, when the interval is
narrow, distorts the distribution: use it to compare capacity, not security.
The interval is sender/receiver state, so ``extract_step`` also carries a state.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, NamedTuple

import chex
import jax
import jax.numpy as jnp

from stegjax.stego import prf
from stegjax.stego.sampler import Dist, Sampler, plain_sample
from stegjax.stego.common import (
  mulhi as _mulhi,
  cumsum as _cumsum,
  check_precision,
  init_embed_state as _init_common,
  message_window,
  n_embedded,
  broadcast_nonce,
  validate_bits,
  validate_freqs,
)

__all__ = [
  "ArithmeticSampler",
  "ArithState",
  "init_embed_state",
  "init_extract_state",
  "embed_step",
  "extract_step",
  "sample_step",
  "embed",
  "extract",
  "sample",
]


class ArithState(NamedTuple):
  bits: jax.Array  # uint8[B, L]
  bit_len: jax.Array  # int32[B]
  cursor: jax.Array  # int32[B]
  nonce: jax.Array  # uint32[B]
  low: jax.Array  # uint32[B]
  high: jax.Array  # uint32[B] (exclusive)


def init_embed_state(bits, nonce, bit_len=None, *, precision: int = 24) -> ArithState:
  st = _init_common(bits, nonce, bit_len)
  b = st.cursor.shape[0]
  return ArithState(*st, jnp.zeros((b,), jnp.uint32), jnp.full((b,), 2**precision, jnp.uint32))


def init_extract_state(batch: int, *, precision: int = 24):
  """(low, high) for the receiver."""
  return jnp.zeros((batch,), jnp.uint32), jnp.full((batch,), 2**precision, jnp.uint32)


def _bounds(freqs, low, high, precision):
  # b_j = low + floor(width * C_j / 2**p), C inclusive; width * C < 2**60 via hi/lo words.
  c = _cumsum(freqs.astype(jnp.int32), axis=1).astype(jnp.uint32)
  w = (high - low)[:, None]
  lo_w, hi_w = w * c, _mulhi(w, c)
  scaled = (
    (hi_w << jnp.uint32(32 - precision)) | (lo_w >> jnp.uint32(precision))
    if precision < 32
    else hi_w
  )
  return low[:, None] + scaled  # upper bounds b_{j+1}


def _narrow(ub, tok, low, precision):
  new_hi = jnp.take_along_axis(ub, tok[:, None], axis=1)[:, 0]
  prev = jnp.take_along_axis(ub, jnp.maximum(tok - 1, 0)[:, None], axis=1)[:, 0]
  new_lo = jnp.where(tok > 0, prev, low)
  n = jnp.minimum(
    jax.lax.clz(new_lo ^ (new_hi - jnp.uint32(1))).astype(jnp.int32) - (32 - precision), precision
  )
  mask = jnp.uint32(2**precision - 1)
  nu = n.astype(jnp.uint32)
  shifted_lo = jnp.where(n >= precision, 0, (new_lo << nu) & mask).astype(jnp.uint32)
  shifted_hi = jnp.where(
    n >= precision, 2**precision, (((new_hi - 1) << nu) | ((jnp.uint32(1) << nu) - 1)) & mask
  ).astype(jnp.uint32)
  shifted_hi = jnp.where(n >= precision, shifted_hi, shifted_hi + 1)
  return new_lo, new_hi, n, shifted_lo, shifted_hi


def embed_step(freqs, t, state: ArithState, key=None, *, precision: int = 24):
  check_precision(precision)
  chex.assert_rank(freqs, 2)
  w = message_window(state, precision)
  x = (w.astype(jnp.uint32) << jnp.arange(precision - 1, -1, -1, dtype=jnp.uint32)).sum(
    1, dtype=jnp.uint32
  )
  ub = _bounds(freqs, state.low, state.high, precision)
  tok = jax.vmap(lambda u, v: jnp.searchsorted(u, v, side="right"))(ub, x).astype(jnp.int32)
  _, _, n, lo, hi = _narrow(ub, tok, state.low, precision)
  return tok, state._replace(cursor=state.cursor + n, low=lo, high=hi)


def extract_step(freqs, tokens, t, key, nonce, interval, *, precision: int = 24):
  """(bits uint8[B, precision], n int32[B], new interval); ``interval`` = (low, high)."""
  low, high = interval
  ub = _bounds(freqs, low, high, precision)
  new_lo, new_hi, n, lo, hi = _narrow(ub, tokens.astype(jnp.int32), low, precision)
  n = jnp.where(new_hi > new_lo, n, 0)
  k = jnp.arange(precision, dtype=jnp.int32)
  bits = (new_lo[:, None] >> (precision - 1 - k).astype(jnp.uint32)) & jnp.uint32(1)
  bits = jnp.where(k[None] < n[:, None], bits, 0).astype(jnp.uint8)
  return bits, n, (lo, hi)


def sample_step(freqs, t, key, nonce, *, precision: int = 24):
  """Plain inverse-CDF sampling with the PRF draw."""
  c_incl = _cumsum(freqs.astype(jnp.int32), axis=1).astype(jnp.uint32)
  r = jnp.broadcast_to(prf.draw(key, nonce, t, 0) >> jnp.uint32(32 - precision), (freqs.shape[0],))
  return jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(c_incl, r).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("precision",))
def _embed_jit(freqs, bits, bit_len, precision):
  lead = freqs.shape[:-2]
  t_len = freqs.shape[-2]
  f = freqs.reshape((-1,) + freqs.shape[-2:])
  st = init_embed_state(
    bits.reshape(f.shape[0], -1),
    0,
    None if bit_len is None else jnp.broadcast_to(bit_len, lead).reshape(-1),
    precision=precision,
  )

  def body(s, xs):
    tok, s = embed_step(xs[0], xs[1], s, precision=precision)
    return s, tok

  st, toks = jax.lax.scan(body, st, (jnp.swapaxes(f, 0, 1), jnp.arange(t_len)))
  return jnp.swapaxes(toks, 0, 1).reshape(lead + (t_len,)), n_embedded(st).reshape(lead)


@functools.partial(jax.jit, static_argnames=("precision",))
def _extract_jit(freqs, tokens, precision):
  lead = freqs.shape[:-2]
  t_len = freqs.shape[-2]
  f = freqs.reshape((-1,) + freqs.shape[-2:])
  b = f.shape[0]
  tk = tokens.reshape(b, t_len)

  def body(iv, xs):
    bits, n, iv = extract_step(xs[0], xs[1], xs[2], None, None, iv, precision=precision)
    return iv, (bits, n)

  _, (bits, n) = jax.lax.scan(
    body,
    init_extract_state(b, precision=precision),
    (jnp.swapaxes(f, 0, 1), tk.T, jnp.arange(t_len)),
  )
  bits, n = jnp.swapaxes(bits, 0, 1), n.T
  offs = _cumsum(n, axis=1) - n
  k = jnp.arange(precision)
  total = t_len * precision
  pos = jnp.where(k < n[..., None], offs[..., None] + k, total)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None, None], pos.shape)
  out = jnp.zeros((b, total), jnp.uint8).at[rows, pos].set(bits, mode="drop")
  return out.reshape(lead + (total,)), n.sum(1).astype(jnp.int32).reshape(lead)


@functools.partial(jax.jit, static_argnames=("precision",))
def _sample_jit(freqs, key, nonce, precision):
  lead = freqs.shape[:-2]
  f = freqs.reshape((-1,) + freqs.shape[-2:])
  nn = jnp.broadcast_to(nonce, lead).reshape(-1).astype(jnp.uint32)
  toks = jax.vmap(
    lambda ft, t: sample_step(ft, t, key, nn, precision=precision), in_axes=(1, 0), out_axes=1
  )(f, jnp.arange(f.shape[1]))
  return toks.reshape(lead + (f.shape[1],))


def embed(freqs, bits, key=None, nonce=0, *, bit_len=None, precision: int = 24):
  """(tokens int32[..., T], n_embedded int32[...]); deterministic, keyless (not secure)."""
  validate_freqs(freqs, precision)
  validate_bits(bits)
  return _embed_jit(jnp.asarray(freqs), jnp.asarray(bits, jnp.uint8), bit_len, precision=precision)


def extract(freqs, tokens, key=None, nonce=0, *, precision: int = 24):
  validate_freqs(freqs, precision)
  return _extract_jit(jnp.asarray(freqs), jnp.asarray(tokens, jnp.int32), precision=precision)


def sample(freqs, key, nonce, *, precision: int = 24):
  validate_freqs(freqs, precision)
  nonce = broadcast_nonce(nonce, jnp.asarray(freqs).shape[:-2])
  return _sample_jit(jnp.asarray(freqs), jnp.asarray(key, jnp.uint32), nonce, precision=precision)


# ------------------------------------------------------------------ the Sampler protocol


class ArithExtractState(NamedTuple):
  nonce: jax.Array  # uint32[B]
  low: jax.Array  # uint32[B]
  high: jax.Array  # uint32[B]


@dataclasses.dataclass(frozen=True)
class ArithmeticSampler(Sampler):
  """Arithmetic coding through the ``stego.sampler`` protocol (NOT secure: deterministic,
  distorts narrow intervals). Its state carries the interval on both sides."""

  name: ClassVar[str] = "arithmetic"
  secure: ClassVar[bool] = False

  def _width(self, k: int) -> int:
    return self.precision

  def init_state(self, bits, nonce, bit_len=None):
    return init_embed_state(bits, nonce, bit_len, precision=self.precision)

  def init_extract_state(self, nonce, batch=None):
    n = Sampler.init_extract_state(self, nonce, batch)
    low, high = init_extract_state(n.shape[0], precision=self.precision)
    return ArithExtractState(n, low, high)

  def _choose(self, d: Dist, t, state, key):
    return embed_step(d.freqs, t, state, precision=self.precision)

  def _extract(self, d: Dist, pos, found, t, key, xstate):
    bits, n, (lo, hi) = extract_step(
      d.freqs, pos, t, key, xstate.nonce, (xstate.low, xstate.high), precision=self.precision
    )
    return bits, jnp.where(found, n, 0), found, xstate._replace(low=lo, high=hi)

  def sample(self, x, t, key, nonce):
    d = self.dist(x)
    pos = plain_sample(d, t, jnp.asarray(key, jnp.uint32), nonce, self.precision)
    return d.token(pos)
