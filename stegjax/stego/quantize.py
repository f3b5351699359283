"""Float probabilities -> exact integer frequencies with a fixed total ``2**precision``.

Everything downstream (Discop, Meteor, arithmetic coding) works only on these
integers, so sender and receiver make bit-identical decisions once they agree
on the frequencies. The map is a deterministic function of the float input:
ranks are by probability, ties broken by the lower token id.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["to_frequencies", "MAX_PRECISION"]

MAX_PRECISION = 30  # totals up to 2**30 keep every cumulative sum (and 2x it) inside uint32


def _validate(probs, precision, top_k, top_p):
  if not isinstance(precision, (int, np.integer)) or not 1 <= precision <= MAX_PRECISION:
    raise ValueError(f"precision must be an int in [1, {MAX_PRECISION}], got {precision!r}")
  v = probs.shape[-1]
  if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
    raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
  if top_p is not None and not (0.0 < float(top_p) <= 1.0):
    raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
  kept_max = min(v, top_k) if top_k is not None else v
  if kept_max > 2**precision and top_p is None:
    raise ValueError(
      f"{kept_max} kept tokens cannot each get frequency >= 1 with total 2**{precision}"
    )
  if not isinstance(probs, jax.core.Tracer):
    p = np.asarray(probs)
    if not np.all(np.isfinite(p)):
      raise ValueError("probs contain NaN or inf")
    if np.any(p < 0):
      raise ValueError("probs contain negative values")
    if np.any(p.sum(-1) <= 0):
      raise ValueError("a probability row sums to zero: no token can be kept")


def to_frequencies(
  probs, precision: int = 24, top_k: int | None = None, top_p: float | None = None
):
  """Quantize probabilities ``[..., V]`` to int32 frequencies summing to ``2**precision``.

  Tokens cut by top-k / top-p (the smallest set of top tokens whose mass reaches
  ``top_p``, crossing token included) or with zero probability get 0; every kept
  token gets at least 1. Kept tokens get ``1 + floor(q * R * (1 - 2**-16))`` with
  ``R = 2**precision - K`` and ``q`` the renormalized probability (the small
  safety factor guarantees the float sum never overshoots); the integer
  remainder is shared the same way, its last units one each to the top ranks. Jittable; input
  values are validated eagerly when concrete.
  """
  probs = jnp.asarray(probs)
  if probs.ndim < 1 or probs.shape[-1] < 1:
    raise ValueError(f"probs must have a non-empty last (vocabulary) axis, got shape {probs.shape}")
  _validate(probs, precision, top_k, top_p)
  return _to_frequencies(probs, precision, top_k, None if top_p is None else float(top_p))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _to_frequencies(probs, precision, top_k, top_p):
  p = probs.astype(jnp.float32)
  v = p.shape[-1]
  total = 2**precision
  # Rank by probability, ties by lower id (lax.top_k is documented to be stable).
  k_sel = v if top_k is None else min(top_k, v)
  vals, ids = jax.lax.top_k(p, k_sel)  # [..., k] descending
  rank = jnp.arange(k_sel)
  keep = vals > 0
  if top_p is not None:
    csum = jnp.cumsum(vals, axis=-1)
    before = csum - vals  # mass strictly above this rank
    keep &= (before < jnp.float32(top_p) * csum[..., -1:]) | (rank == 0)
  keep_count = keep.sum(-1, keepdims=True).astype(jnp.int32)
  q = jnp.where(keep, vals, 0.0)
  q = q / q.sum(-1, keepdims=True)
  rest = (total - keep_count).astype(jnp.float32)  # units left after the minimum 1 each
  base = jnp.floor(q * rest * jnp.float32(1.0 - 2.0**-16))
  base = jnp.clip(base, 0.0, rest).astype(jnp.int32)
  base = jnp.where(keep, base, 0)
  left = total - keep_count - base.sum(-1, keepdims=True)  # >= 0 by the safety factor
  left = jnp.maximum(left, 0)
  # Hand the remainder out in proportion to q (again floored with the safety factor),
  # then the last few units one each to the top ranks.
  extra = jnp.floor(q * left.astype(jnp.float32) * jnp.float32(1.0 - 2.0**-16)).astype(jnp.int32)
  extra = jnp.where(keep, jnp.clip(extra, 0, left), 0)
  left2 = jnp.maximum(left - extra.sum(-1, keepdims=True), 0)
  kc = jnp.maximum(keep_count, 1)
  extra = extra + left2 // kc + (rank < left2 % kc).astype(jnp.int32)
  f_sorted = jnp.where(keep, 1 + base + extra, 0).astype(jnp.int32)
  out = jnp.zeros(p.shape, jnp.int32)
  out = jnp.put_along_axis(out, ids, f_sorted, axis=-1, inplace=False)
  return out
