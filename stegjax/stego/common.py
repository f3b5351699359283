"""Pieces shared by the samplers: embedding state, message windows, validation,
and the scan-based sequence drivers (``embed`` / ``extract`` / ``sample`` over
``[..., T, V]`` built from a sampler's step functions)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from stegjax.stego.quantize import MAX_PRECISION

__all__ = [
  "EmbedState",
  "init_embed_state",
  "message_window",
  "cumsum",
  "ranked",
  "rank_to_id",
  "id_to_rank",
  "mulhi",
  "frac_mul",
  "check_precision",
  "validate_freqs",
  "validate_bits",
  "broadcast_nonce",
  "run_embed",
  "run_extract",
  "run_sample",
  "n_embedded",
]


class EmbedState(NamedTuple):
  """Per-example embedding state carried across AR steps (a pytree, scan-safe)."""

  bits: jax.Array  # uint8[B, L]  message bits (0/1), MSB of each byte first
  bit_len: jax.Array  # int32[B]     how many of the L bits are message; the rest read as 0
  cursor: jax.Array  # int32[B]     bits consumed so far (may run past bit_len: zero padding)
  nonce: jax.Array  # uint32[B]    per-message PRF nonce


def init_embed_state(bits, nonce, bit_len=None) -> EmbedState:
  """Start state for a batch: ``bits`` uint8[B, L]; ``nonce`` int or [B]; ``bit_len`` [B] (default L)."""
  bits = jnp.asarray(bits)
  if bits.ndim != 2:
    raise ValueError(f"bits must be uint8[B, L], got shape {bits.shape}")
  validate_bits(bits)
  b, l = bits.shape
  if l == 0:  # keep gathers well-formed; bit_len 0 makes the column read as 0
    bits = jnp.zeros((b, 1), jnp.uint8)
  if bit_len is None:
    bit_len = jnp.full((b,), l, jnp.int32)
  bit_len = jnp.broadcast_to(jnp.asarray(bit_len, jnp.int32), (b,))
  if not isinstance(bit_len, jax.core.Tracer) and np.any(
    (np.asarray(bit_len) < 0) | (np.asarray(bit_len) > l)
  ):
    raise ValueError(f"bit_len must lie in [0, {l}]")
  nonce = broadcast_nonce(nonce, (b,))
  return EmbedState(bits.astype(jnp.uint8), bit_len, jnp.zeros((b,), jnp.int32), nonce)


def message_window(state: EmbedState, width: int):
  """The next ``width`` message bits at each cursor (0 past ``bit_len``): int32[B, width]."""
  idx = state.cursor[:, None] + jnp.arange(width, dtype=jnp.int32)
  valid = idx < state.bit_len[:, None]
  got = jnp.take_along_axis(state.bits, jnp.clip(idx, 0, state.bits.shape[1] - 1), axis=1)
  return jnp.where(valid, got.astype(jnp.int32), 0)


def cumsum(x, axis: int = -1):
  """Inclusive prefix sum via ``lax.associative_scan`` (several times faster than
  ``jnp.cumsum`` on XLA:CPU; exact for integers)."""
  return jax.lax.associative_scan(jnp.add, x, axis=axis)


def ranked(freqs, support: int | None):
  """The K largest frequencies in descending order: int32[B, K] (K = ``support`` or V).

  Only the sorted masses are needed to build trees and cumulative intervals; token
  ids are recovered with ``rank_to_id`` / ``id_to_rank`` (ties ranked by lower id), so a
  single-operand sort of the packed nonzero entries suffices (far cheaper on CPU than
  ``lax.top_k`` or a keyed two-operand sort). Rows with more than K nonzero entries
  would lose mass: callers pass a ``support`` bounding the kept tokens (the
  sequence-level API checks it).
  """
  b, v = freqs.shape
  k = v if support is None else min(int(support), v)
  f = freqs.astype(jnp.int32)
  if k < v:
    nz = f > 0
    slot = cumsum(nz.astype(jnp.int32), axis=1) - 1
    slot = jnp.where(nz & (slot < k), slot, k)  # k: dropped
    f = jnp.zeros((b, k), jnp.int32).at[jnp.arange(b)[:, None], slot].set(f, mode="drop")
  return jnp.flip(jnp.sort(f, axis=1), axis=1)


def rank_to_id(freqs, f_desc, pos):
  """Token id at rank ``pos`` (ties by lower id): int32[B]."""
  fr = jnp.take_along_axis(f_desc, pos[:, None], axis=1)  # [B, 1]
  j = pos - (f_desc > fr).sum(1)  # rank among equal masses
  eq = freqs == fr
  hit = eq & (cumsum(eq.astype(jnp.int32), axis=1) == (j + 1)[:, None])
  return jnp.argmax(hit, axis=1).astype(jnp.int32)


def id_to_rank(freqs, tokens):
  """(rank int32[B], found bool[B]) of each token: #{larger} + #{equal with lower id}."""
  tok = tokens.astype(jnp.int32)[:, None]
  fx = jnp.take_along_axis(freqs, jnp.clip(tok, 0, freqs.shape[1] - 1), axis=1)
  ids = jnp.arange(freqs.shape[1], dtype=jnp.int32)[None]
  rank = ((freqs > fx) | ((freqs == fx) & (ids < tok))).sum(1).astype(jnp.int32)
  found = (fx[:, 0] > 0) & (tok[:, 0] >= 0) & (tok[:, 0] < freqs.shape[1])
  return rank, found


def mulhi(a, b):
  """High 32 bits of the 64-bit product of uint32 ``a`` and ``b``, from 16-bit limbs.

  Written with plain uint32 multiply/add/shift instead of ``lax.mulhi`` because jax
  0.10's Shardy partitioner cannot lower ``chlo.mulhi`` on sharded arrays.
  """
  a, b = a.astype(jnp.uint32), b.astype(jnp.uint32)
  m16 = jnp.uint32(0xFFFF)
  a0, a1 = a & m16, a >> 16
  b0, b1 = b & m16, b >> 16
  p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
  mid = (p00 >> 16) + (p01 & m16) + (p10 & m16)  # < 3 * 2**16
  return p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)


def frac_mul(hi, lo, m):
  """floor((hi * 2**32 + lo) * m / 2**64) for uint32 hi, lo, m: an exact integer draw in [0, m)."""
  hi, lo, m = (x.astype(jnp.uint32) for x in (hi, lo, m))
  a = hi * m  # low word of hi*m
  s = a + mulhi(lo, m)
  carry = (s < a).astype(jnp.uint32)
  return mulhi(hi, m) + carry


def check_precision(precision):
  if not isinstance(precision, (int, np.integer)) or not 1 <= precision <= MAX_PRECISION:
    raise ValueError(f"precision must be an int in [1, {MAX_PRECISION}], got {precision!r}")


def validate_freqs(freqs, precision: int, support: int | None = None):
  """Eager checks (skipped under tracing): integer dtype, >= 0, rows sum to 2**precision."""
  check_precision(precision)
  if not jnp.issubdtype(jnp.asarray(freqs).dtype, jnp.integer):
    raise ValueError(
      f"freqs must be integers (use quantize.to_frequencies), got dtype {jnp.asarray(freqs).dtype}"
    )
  if isinstance(freqs, jax.core.Tracer):
    return
  f = np.asarray(freqs).astype(np.int64)
  if np.any(f < 0):
    raise ValueError("freqs contain negative values")
  sums = f.sum(-1)
  if np.any(sums != 2**precision):
    bad = sums[sums != 2**precision].ravel()[0]
    raise ValueError(
      f"every freqs row must sum to 2**{precision} = {2**precision}, found a row summing to {bad}"
    )
  if support is not None:
    nz = (f > 0).sum(-1).max()
    if nz > support:
      raise ValueError(f"a row has {nz} tokens with nonzero frequency but support={support}")


def validate_bits(bits):
  if not jnp.issubdtype(jnp.asarray(bits).dtype, jnp.integer):
    raise ValueError(
      f"bits must be an integer (uint8) array of 0/1, got dtype {jnp.asarray(bits).dtype}"
    )
  if not isinstance(bits, jax.core.Tracer) and np.asarray(bits).size and np.asarray(bits).max() > 1:
    raise ValueError("bits must contain only 0 and 1 (unpack bytes with np.unpackbits)")
  if not isinstance(bits, jax.core.Tracer) and np.asarray(bits).size and np.asarray(bits).min() < 0:
    raise ValueError("bits must contain only 0 and 1")


def broadcast_nonce(nonce, shape):
  n = jnp.asarray(nonce)
  if not jnp.issubdtype(n.dtype, jnp.integer):
    raise ValueError(f"nonce must be an integer or integer array, got dtype {n.dtype}")
  if not isinstance(n, jax.core.Tracer):
    v = (
      np.asarray(nonce).astype(np.int64)
      if np.asarray(nonce).dtype != np.uint64
      else np.asarray(nonce)
    )
    if v.size and (v.min() < 0 or v.max() >= 2**32):
      raise ValueError("nonce must lie in [0, 2**32)")
  try:
    return jnp.broadcast_to(n.astype(jnp.uint32), shape)
  except ValueError as e:
    raise ValueError(
      f"nonce of shape {n.shape} does not broadcast to the batch shape {shape}"
    ) from e


def n_embedded(state: EmbedState):
  return jnp.minimum(state.cursor, state.bit_len)


# ---------------------------------------------------------------- sequence drivers
# Each takes leading dims [...], flattens them to a batch B, scans over T.


def _flatten(freqs, lead):
  b = int(np.prod(lead)) if lead else 1
  return freqs.reshape((b,) + freqs.shape[len(lead) :])


def run_embed(step_fn: Callable, freqs, bits, nonce, bit_len=None):
  """``step_fn(freqs[B,V], t, state) -> (tokens[B], state)`` over T steps.

  Returns (tokens int32[..., T], n_embedded int32[...], final EmbedState).
  """
  lead = freqs.shape[:-2]
  t_len, v = freqs.shape[-2:]
  if bits.shape[:-1] != lead:
    raise ValueError(f"bits leading dims {bits.shape[:-1]} must equal freqs leading dims {lead}")
  f = _flatten(freqs, lead)  # [B, T, V]
  bb = bits.reshape((f.shape[0], bits.shape[-1]))
  bl = (
    None if bit_len is None else jnp.broadcast_to(jnp.asarray(bit_len, jnp.int32), lead).reshape(-1)
  )
  state = init_embed_state(bb, broadcast_nonce(nonce, lead).reshape(-1), bl)

  def body(st, xs):
    ft, t = xs
    tok, st = step_fn(ft, t, st)
    return st, tok

  state, toks = jax.lax.scan(
    body, state, (jnp.swapaxes(f, 0, 1), jnp.arange(t_len, dtype=jnp.int32))
  )
  toks = jnp.swapaxes(toks, 0, 1).reshape(lead + (t_len,))
  return toks, n_embedded(state).reshape(lead), state


def run_extract(step_fn: Callable, width: int, freqs, tokens, nonce):
  """``step_fn(freqs[B,V], tokens[B], t, nonce[B]) -> (bits[B,width], n[B])`` over T steps.

  Returns (bits uint8[..., T*width] with the carried bits packed from the start, n int32[...]).
  """
  lead = freqs.shape[:-2]
  t_len = freqs.shape[-2]
  if tokens.shape != lead + (t_len,):
    raise ValueError(f"tokens shape {tokens.shape} must be {lead + (t_len,)} to match freqs")
  f = _flatten(freqs, lead)
  b = f.shape[0]
  tk = tokens.reshape((b, t_len)).astype(jnp.int32)
  nn = broadcast_nonce(nonce, lead).reshape(-1)

  def body(_, xs):
    ft, tt, t = xs
    return None, step_fn(ft, tt, t, nn)

  _, (bits, n) = jax.lax.scan(
    body, None, (jnp.swapaxes(f, 0, 1), tk.T, jnp.arange(t_len, dtype=jnp.int32))
  )
  bits, n = jnp.swapaxes(bits, 0, 1), n.T  # [B, T, W], [B, T]
  chex.assert_shape(bits, (b, t_len, width))
  offs = jnp.cumsum(n, axis=1) - n
  k = jnp.arange(width, dtype=jnp.int32)
  total = t_len * width
  pos = jnp.where(k < n[..., None], offs[..., None] + k, total)  # out of range -> dropped
  out = jnp.zeros((b, total), jnp.uint8)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None, None], pos.shape)
  out = out.at[rows, pos].set(bits.astype(jnp.uint8), mode="drop")
  return out.reshape(lead + (total,)), n.sum(1).astype(jnp.int32).reshape(lead)


def run_sample(step_fn: Callable, freqs, nonce):
  """``step_fn(freqs[B,V], t, nonce[B]) -> tokens[B]`` over T steps: tokens int32[..., T]."""
  lead = freqs.shape[:-2]
  t_len = freqs.shape[-2]
  f = _flatten(freqs, lead)
  nn = broadcast_nonce(nonce, lead).reshape(-1)

  def body(_, xs):
    ft, t = xs
    return None, step_fn(ft, t, nn)

  _, toks = jax.lax.scan(body, None, (jnp.swapaxes(f, 0, 1), jnp.arange(t_len, dtype=jnp.int32)))
  return jnp.swapaxes(toks, 0, 1).reshape(lead + (t_len,))
