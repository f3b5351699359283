"""A deliberately INSECURE sampler: the message bits pick among the top ``2**n`` tokens.

The positive control for steganalysis: its tokens are uniform over the top
``2**n`` candidates instead of following the model's distribution. ``n`` is
``min(n_bits, floor(log2(number of kept tokens)))`` per step. ``sample`` is plain
inverse-CDF sampling with the PRF (as in the other samplers). Same API as ``discop``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp

from stegjax.stego import prf
from stegjax.errors import ConfigError
from stegjax.stego.sampler import Dist, Sampler, plain_sample
from stegjax.stego.common import (
  cumsum as _cumsum,
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
  "NaiveSampler",
  "EmbedState",
  "init_embed_state",
  "embed_step",
  "extract_step",
  "sample_step",
  "embed",
  "extract",
  "sample",
  "make_choose_fn",
]


def _check_n(n_bits):
  if not isinstance(n_bits, int) or not 0 <= n_bits <= 16:
    raise ValueError(f"n_bits must be an int in [0, 16], got {n_bits!r}")


def _top(freqs, n_bits):
  chex.assert_rank(freqs, 2)
  k = min(2**n_bits, freqs.shape[-1])
  f, ids = jax.lax.top_k(freqs.astype(jnp.int32), k)  # ties by lower id
  kept = (f > 0).sum(1)
  n = jnp.minimum(
    n_bits, 31 - jax.lax.clz(jnp.maximum(kept, 1)).astype(jnp.int32)
  )  # floor(log2 kept)
  return ids.astype(jnp.int32), n


def embed_step(freqs, t, state: EmbedState, key=None, *, n_bits: int = 2, precision: int = 24):
  """(tokens int32[B], state): token = rank ``int(next n bits)`` among the top tokens."""
  _check_n(n_bits)
  ids, n = _top(freqs, n_bits)
  w = message_window(state, max(n_bits, 1))
  kk = jnp.arange(w.shape[1])
  idx = jnp.where(kk[None] < n[:, None], w << jnp.maximum(n[:, None] - 1 - kk[None], 0), 0).sum(1)
  tok = jnp.take_along_axis(ids, idx[:, None], axis=1)[:, 0]
  return tok, state._replace(cursor=state.cursor + n)


def extract_step(
  freqs, tokens, t=None, key=None, nonce=None, *, n_bits: int = 2, precision: int = 24
):
  """(bits uint8[B, max(n_bits,1)], n int32[B]); a token outside the top ``2**n`` gives n = 0."""
  _check_n(n_bits)
  ids, n = _top(freqs, n_bits)
  hit = ids == tokens[:, None].astype(jnp.int32)
  rank = jnp.argmax(hit, axis=1).astype(jnp.int32)
  n = jnp.where(hit.any(1) & (rank < (1 << n)), n, 0)
  kk = jnp.arange(max(n_bits, 1))
  bits = jnp.where(
    kk[None] < n[:, None], (rank[:, None] >> jnp.maximum(n[:, None] - 1 - kk[None], 0)) & 1, 0
  )
  return bits.astype(jnp.uint8), n


def sample_step(freqs, t, key, nonce, *, n_bits: int = 2, precision: int = 24):
  """Plain inverse-CDF sampling with the PRF draw (the distribution naive embedding distorts)."""
  check_precision(precision)
  c_incl = _cumsum(freqs.astype(jnp.int32), axis=1).astype(jnp.uint32)
  r = prf.draw(key, nonce, t, 0) >> jnp.uint32(32 - precision)
  r = jnp.broadcast_to(r, (freqs.shape[0],))
  return jax.vmap(lambda c, v: jnp.searchsorted(c, v, side="right"))(c_incl, r).astype(jnp.int32)


def make_choose_fn(
  key=None, n_bits: int = 2, precision: int = 24, top_k=None, top_p=None, temperature: float = 1.0
):
  """``choose_fn(logits[B, V], step, state) -> (tokens, state)`` like ``discop.make_choose_fn``."""
  from stegjax.stego import quantize

  _check_n(n_bits)

  def choose_fn(logits, step, state):
    probs = jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    f = quantize.to_frequencies(probs, precision=precision, top_k=top_k, top_p=top_p)
    return embed_step(f, step, state, key, n_bits=n_bits, precision=precision)

  return choose_fn


@functools.partial(jax.jit, static_argnames=("n_bits",))
def _embed_jit(freqs, bits, bit_len, n_bits):
  return run_embed(lambda f, t, st: embed_step(f, t, st, n_bits=n_bits), freqs, bits, 0, bit_len)[
    :2
  ]


@functools.partial(jax.jit, static_argnames=("n_bits",))
def _extract_jit(freqs, tokens, n_bits):
  step = lambda f, tk, t, nn: extract_step(f, tk, n_bits=n_bits)
  return run_extract(step, max(n_bits, 1), freqs, tokens, 0)


@functools.partial(jax.jit, static_argnames=("precision",))
def _sample_jit(freqs, key, nonce, precision):
  return run_sample(lambda f, t, nn: sample_step(f, t, key, nn, precision=precision), freqs, nonce)


def embed(freqs, bits, key=None, nonce=0, *, bit_len=None, n_bits: int = 2, precision: int = 24):
  """(tokens int32[..., T], n_embedded int32[...]). ``key``/``nonce`` are unused (no randomness)."""
  _check_n(n_bits)
  validate_freqs(freqs, precision)
  validate_bits(bits)
  return _embed_jit(jnp.asarray(freqs), jnp.asarray(bits, jnp.uint8), bit_len, n_bits=n_bits)


def extract(freqs, tokens, key=None, nonce=0, *, n_bits: int = 2, precision: int = 24):
  _check_n(n_bits)
  validate_freqs(freqs, precision)
  return _extract_jit(jnp.asarray(freqs), jnp.asarray(tokens, jnp.int32), n_bits=n_bits)


def sample(freqs, key, nonce, *, precision: int = 24):
  validate_freqs(freqs, precision)
  return _sample_jit(
    jnp.asarray(freqs), jnp.asarray(key, jnp.uint32), jnp.asarray(nonce), precision=precision
  )


# ------------------------------------------------------------------ the Sampler protocol


@dataclasses.dataclass(frozen=True)
class NaiveSampler(Sampler):
  """The insecure top-``2**n_bits`` sampler through the ``stego.sampler`` protocol (the
  steganalysis positive control); ``sample`` is plain inverse-CDF sampling."""

  n_bits: int = 2

  name: ClassVar[str] = "naive"
  secure: ClassVar[bool] = False

  def __post_init__(self):
    super().__post_init__()
    try:
      _check_n(self.n_bits)
    except ValueError as e:
      raise ConfigError(str(e)) from None

  def _width(self, k: int) -> int:
    return max(self.n_bits, 1)

  def _choose(self, d: Dist, t, state, key):
    return embed_step(d.freqs, t, state, n_bits=self.n_bits)

  def _extract(self, d: Dist, pos, found, t, key, xstate):
    bits, n = extract_step(d.freqs, pos, n_bits=self.n_bits)
    return bits, jnp.where(found, n, 0), found, xstate

  def sample(self, x, t, key, nonce):
    d = self.dist(x)
    pos = plain_sample(d, t, jnp.asarray(key, jnp.uint32), nonce, self.precision)
    return d.token(pos)
