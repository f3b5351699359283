"""Meteor (Kaptchuk et al., CCS 2021) with a keyed mask: a baseline for Discop.

Per step: ``x = (next `precision` message bits) XOR mask`` with ``mask`` from the PRF;
the token is the one whose cumulative interval (token-id order) contains ``x``;
the bits carried are the common prefix of that interval's endpoints. The marginal
is exact (``x`` is uniform) but the bits per token are below entropy (no reordering).
Same API as ``discop`` (without a variant).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp

from stegjax.stego import prf
from stegjax.stego.sampler import Dist, Sampler
from stegjax.stego.common import (
  cumsum as _cumsum,
  broadcast_nonce,
  EmbedState,
  check_precision,
  init_embed_state,
  message_window,
  run_embed,
  run_extract,
  run_sample,
  validate_bits,
  validate_freqs,
)

__all__ = [
  "MeteorSampler",
  "EmbedState",
  "init_embed_state",
  "embed_step",
  "extract_step",
  "extract_step_checked",
  "sample_step",
  "embed",
  "extract",
  "sample",
  "max_bits_per_step",
]


def max_bits_per_step(precision: int = 24) -> int:
  return precision


def _setup(freqs, t, key, nonce, precision):
  check_precision(precision)
  chex.assert_rank(freqs, 2)
  c_incl = _cumsum(freqs.astype(jnp.int32), axis=1).astype(jnp.uint32)
  mask = prf.draw(key, nonce, t, 0) >> jnp.uint32(32 - precision)
  return c_incl, mask


def _interval(c_incl, tok):
  hi = jnp.take_along_axis(c_incl, tok[:, None], axis=1)[:, 0]
  f = jnp.take_along_axis(jnp.diff(c_incl, axis=1, prepend=0), tok[:, None], axis=1)[:, 0]
  return hi - f, hi


def _prefix(lo, hi, precision):
  # Common leading bits of lo and hi-1 within `precision` bits.
  return jnp.minimum(
    jax.lax.clz(lo ^ (hi - jnp.uint32(1))).astype(jnp.int32) - (32 - precision), precision
  )


def embed_step(freqs, t, state: EmbedState, key, *, precision: int = 24):
  """(tokens int32[B], state); ``freqs`` int32[B, V] summing to ``2**precision``."""
  c_incl, mask = _setup(freqs, t, key, state.nonce, precision)
  w = message_window(state, precision)
  x = (w.astype(jnp.uint32) << jnp.arange(precision - 1, -1, -1, dtype=jnp.uint32)).sum(
    1, dtype=jnp.uint32
  )
  x = x ^ mask
  tok = jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(c_incl, x).astype(jnp.int32)
  lo, hi = _interval(c_incl, tok)
  return tok, state._replace(cursor=state.cursor + _prefix(lo, hi, precision))


def extract_step_checked(freqs, tokens, t, key, nonce, *, precision: int = 24):
  b = freqs.shape[0]
  nonce = jnp.broadcast_to(jnp.asarray(nonce).astype(jnp.uint32), (b,))
  c_incl, mask = _setup(freqs, t, key, nonce, precision)
  tok = tokens.astype(jnp.int32)
  lo, hi = _interval(c_incl, tok)
  ok = hi > lo
  n = jnp.where(ok, _prefix(lo, hi, precision), 0)
  k = jnp.arange(precision, dtype=jnp.int32)
  val = lo ^ mask
  bits = (val[:, None] >> (precision - 1 - k).astype(jnp.uint32)) & jnp.uint32(1)
  bits = jnp.where(k[None] < n[:, None], bits, 0).astype(jnp.uint8)
  return bits, n, ok


def extract_step(freqs, tokens, t, key, nonce, *, precision: int = 24):
  bits, n, _ = extract_step_checked(freqs, tokens, t, key, nonce, precision=precision)
  return bits, n


def sample_step(freqs, t, key, nonce, *, precision: int = 24):
  b = freqs.shape[0]
  st = init_embed_state(jnp.zeros((b, 1), jnp.uint8), nonce, jnp.zeros((b,), jnp.int32))
  return embed_step(freqs, t, st, key, precision=precision)[0]


@functools.partial(jax.jit, static_argnames=("precision",))
def _embed_jit(freqs, bits, bit_len, key, nonce, precision):
  step = lambda f, t, st: embed_step(f, t, st, key, precision=precision)
  return run_embed(step, freqs, bits, nonce, bit_len)[:2]


@functools.partial(jax.jit, static_argnames=("precision",))
def _extract_jit(freqs, tokens, key, nonce, precision):
  step = lambda f, tk, t, nn: extract_step(f, tk, t, key, nn, precision=precision)
  return run_extract(step, precision, freqs, tokens, nonce)


@functools.partial(jax.jit, static_argnames=("precision",))
def _sample_jit(freqs, key, nonce, precision):
  return run_sample(lambda f, t, nn: sample_step(f, t, key, nn, precision=precision), freqs, nonce)


def embed(freqs, bits, key, nonce, *, bit_len=None, precision: int = 24):
  """(tokens int32[..., T], n_embedded int32[...]); see ``discop.embed``."""
  validate_freqs(freqs, precision)
  validate_bits(bits)
  return _embed_jit(
    jnp.asarray(freqs),
    jnp.asarray(bits, jnp.uint8),
    bit_len,
    jnp.asarray(key, jnp.uint32),
    broadcast_nonce(nonce, jnp.asarray(freqs).shape[:-2]),
    precision=precision,
  )


def extract(freqs, tokens, key, nonce, *, precision: int = 24):
  """(bits uint8[..., T*precision], n int32[...])."""
  validate_freqs(freqs, precision)
  return _extract_jit(
    jnp.asarray(freqs),
    jnp.asarray(tokens, jnp.int32),
    jnp.asarray(key, jnp.uint32),
    broadcast_nonce(nonce, jnp.asarray(freqs).shape[:-2]),
    precision=precision,
  )


def sample(freqs, key, nonce, *, precision: int = 24):
  validate_freqs(freqs, precision)
  return _sample_jit(
    jnp.asarray(freqs),
    jnp.asarray(key, jnp.uint32),
    broadcast_nonce(nonce, jnp.asarray(freqs).shape[:-2]),
    precision=precision,
  )


# ------------------------------------------------------------------ the Sampler protocol


@dataclasses.dataclass(frozen=True)
class MeteorSampler(Sampler):
  """Meteor through the ``stego.sampler`` protocol. Intervals follow the candidates' rank
  order (Meteor's reordering), not token ids as the module-level functions do."""

  name: ClassVar[str] = "meteor"
  secure: ClassVar[bool] = True

  def _width(self, k: int) -> int:
    return self.precision

  def _choose(self, d: Dist, t, state, key):
    return embed_step(d.freqs, t, state, key, precision=self.precision)

  def _extract(self, d: Dist, pos, found, t, key, xstate):
    bits, n, ok = extract_step_checked(d.freqs, pos, t, key, xstate, precision=self.precision)
    return bits, jnp.where(found, n, 0), ok, xstate
