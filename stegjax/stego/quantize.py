"""Float probabilities -> exact integer frequencies with a fixed total ``2**precision``.

Everything downstream (Discop, Meteor, arithmetic coding, SparSamp) works only on these
integers, so sender and receiver make bit-identical decisions once they agree on the
frequencies. The map is a deterministic function of the float input: candidates are
ranked by probability, ties broken by the lower token id (``lax.top_k`` is stable).

Two rules:

* ``"nearest"`` (default): the integers closest to the model's truncated distribution.
  With ``x_i = q_i * 2**precision`` (``q`` renormalized over the kept tokens), each token
  gets ``floor(x_i)`` and the units left over go one each to the largest remainders
  (remainders compared to 2**-20, ties to the higher-ranked token); a token with
  ``x_i < 1/2`` gets nothing, so no rare token is inflated. Every token is within one unit
  of ``x_i``, hence the per-step total variation from ``q`` is below
  ``kept / 2**(precision+1)`` (plus float32 rounding of ``q``, relative 2**-23, which only
  matters above precision 23 and goes to the top token). When the zeroed tail holds more
  mass than the other tokens' remainders can absorb (thousands of kept tokens at a low
  precision), the rest is spread in proportion to the mass.
* ``"floor"`` (legacy): every kept token gets at least 1, the rest in proportion. It
  raises tokens far below one unit to ``2**-precision``: a model-aware warden detects this
  at low precision; kept only as a positive control.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "to_frequencies",
  "candidates_from_logits",
  "candidates_from_probs",
  "quantize_kept",
  "select_top",
  "top_mask",
  "order_key",
  "total_variation",
  "tv_bound",
  "MAX_PRECISION",
  "RULES",
]

MAX_PRECISION = 30  # totals up to 2**30 keep every cumulative sum (and 2x it) inside uint32
RULES = ("nearest", "floor")
_REM_BITS = 20  # remainders are compared at 2**-20 of a unit


def _validate(probs, precision, top_k, top_p, rule):
  if not isinstance(precision, (int, np.integer)) or not 1 <= precision <= MAX_PRECISION:
    raise ValueError(f"precision must be an int in [1, {MAX_PRECISION}], got {precision!r}")
  if rule not in RULES:
    raise ValueError(f"unknown quantizer rule {rule!r}; expected one of {RULES}")
  v = probs.shape[-1]
  if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
    raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
  if top_p is not None and not (0.0 < float(top_p) <= 1.0):
    raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
  kept_max = min(v, top_k) if top_k is not None else v
  if rule == "floor" and kept_max > 2**precision and top_p is None:
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


# ---------------------------------------------------------------------- selection (no sort)


def order_key(x):
  """int32 keys with the order of ``x`` (float32 bit pattern made monotone; ints as is)."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(jnp.int32)
  i = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
  return jnp.where(i < 0, i ^ jnp.int32(0x7FFFFFFF), i)


def _midpoint(lo, hi):
  return (lo >> 1) + (hi >> 1) + (lo & hi & 1) + ((lo ^ hi) & 1)  # ceil((lo+hi)/2), no overflow


def _threshold(keys, enough, iters: int = 32):
  """Largest int32 ``t`` with ``enough(keys >= t)`` (bisection over the key range; ``enough``
  is monotone: True for t = INT32_MIN). One pass over the row per iteration, no sort."""
  shape = keys.shape[:-1] + (1,)
  lo = jnp.full(shape, -(2**31), jnp.int32)
  hi = jnp.full(shape, 2**31 - 1, jnp.int32)

  def body(_, c):
    lo, hi = c
    mid = _midpoint(lo, hi)
    ok = enough(keys >= mid)
    return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)

  return jax.lax.fori_loop(0, iters, body, (lo, hi))[0]


def top_mask(keys, k: int):
  """bool mask of the ``k`` largest keys per row, ties to the lower index (as ``lax.top_k``)."""
  t = _threshold(keys, lambda m: m.sum(-1, keepdims=True) >= k)
  gt = keys > t
  eq = keys == t
  return gt | (eq & (jnp.cumsum(eq, axis=-1, dtype=jnp.int32) <= k - gt.sum(-1, keepdims=True)))


def select_top(keys, k: int):
  """Indices int32[..., k] of the ``k`` largest keys per row, in ascending index order (the set
  ``lax.top_k`` returns, ties to the lower index), by a threshold search and a compaction:
  on XLA:CPU several times faster than ``lax.top_k`` or a sort over the vocabulary."""
  v = keys.shape[-1]
  if k >= v:
    return jnp.broadcast_to(jnp.arange(v, dtype=jnp.int32), keys.shape)
  sel = top_mask(keys, k)
  slot = jnp.where(sel, jnp.cumsum(sel, axis=-1, dtype=jnp.int32) - 1, k)
  flat = slot.reshape(-1, v)
  rows = jnp.arange(flat.shape[0])[:, None]
  ids = jnp.broadcast_to(jnp.arange(v, dtype=jnp.int32), flat.shape)
  out = jnp.zeros((flat.shape[0], k), jnp.int32).at[rows, flat].set(ids, mode="drop")
  return out.reshape(keys.shape[:-1] + (k,))


def _keep_mask(vals, keys, total_mass, top_k, top_p):
  """Kept candidates (any order, ties by position): top-k by key, then the top-p cut (the
  smallest most-probable prefix whose mass reaches ``top_p``, crossing token included)."""
  keep = vals > 0
  if top_k is not None and top_k < vals.shape[-1]:
    keep &= top_mask(jnp.where(keep, keys, -(2**31)), top_k)
  if top_p is not None:
    m = jnp.where(keep, vals, 0.0)
    ref = m.sum(-1, keepdims=True) if top_k is not None or total_mass is None else total_mass
    goal = jnp.float32(top_p) * ref
    t = _threshold(keys, lambda s: jnp.sum(jnp.where(s, m, 0.0), -1, keepdims=True) >= goal)
    gt, eq = keys > t, keys == t
    eq_m = jnp.where(eq, m, 0.0)
    before = jnp.sum(jnp.where(gt, m, 0.0), -1, keepdims=True) + jnp.cumsum(eq_m, -1) - eq_m
    top = keys == jnp.max(jnp.where(keep, keys, -(2**31)), -1, keepdims=True)
    keep &= gt | (eq & (before < goal)) | top
  return keep


# ---------------------------------------------------------------------- rules (any order)


def _floor_rule(q, keep, precision):
  total = 2**precision
  keep_count = keep.sum(-1, keepdims=True).astype(jnp.int32)
  rest = (total - keep_count).astype(jnp.float32)  # units left after the minimum 1 each
  base = jnp.floor(q * rest * jnp.float32(1.0 - 2.0**-16))
  base = jnp.where(keep, jnp.clip(base, 0.0, rest).astype(jnp.int32), 0)
  left = jnp.maximum(total - keep_count - base.sum(-1, keepdims=True), 0)
  extra = jnp.floor(q * left.astype(jnp.float32) * jnp.float32(1.0 - 2.0**-16)).astype(jnp.int32)
  extra = jnp.where(keep, jnp.clip(extra, 0, left), 0)
  left2 = jnp.maximum(left - extra.sum(-1, keepdims=True), 0)
  kc = jnp.maximum(keep_count, 1)
  first = top_mask(jnp.where(keep, order_key(q), -(2**31)), left2 % kc)  # the top ranks
  extra = extra + left2 // kc + first.astype(jnp.int32)
  return jnp.where(keep, 1 + base + extra, 0).astype(jnp.int32)


def _nearest_rule(q, keep, precision):
  total = 2**precision
  x = q * jnp.float32(total)  # exact scaling of the float32 q
  fl = jnp.floor(x)
  base = jnp.where(keep, fl, 0.0).astype(jnp.int32)
  elig = keep & (x >= 0.5)
  key = jnp.where(elig, jnp.floor((x - fl) * 2.0**_REM_BITS).astype(jnp.int32), -1)
  deficit = total - base.sum(-1, keepdims=True)  # in [0, kept) up to float rounding of q
  need = jnp.clip(deficit, 0, elig.sum(-1, keepdims=True))
  # Largest threshold thr with #{key >= thr} >= need (bisection on the integer keys).
  lo = jnp.zeros_like(need)
  hi = jnp.full_like(need, 2**_REM_BITS)
  for _ in range(_REM_BITS + 1):
    mid = (lo + hi + 1) // 2
    ok = (key >= mid).sum(-1, keepdims=True) >= need
    lo, hi = jnp.where(ok, mid, lo), jnp.where(ok, hi, mid - 1)
  gt = key > lo
  eq = key == lo
  room = need - gt.sum(-1, keepdims=True)
  give = gt | (eq & (jnp.cumsum(eq, axis=-1, dtype=jnp.int32) <= room))
  f = base + give.astype(jnp.int32)
  # Units still left: the zeroed tail held more than the eligible tokens' remainders can
  # absorb (many kept tokens at a low precision). Spread them in proportion to the mass
  # (the same relative inflation for every eligible token), then float rounding to the top.
  left = jnp.maximum(total - f.sum(-1, keepdims=True), 0)
  qe = jnp.where(elig, q, 0.0)
  share = qe / jnp.maximum(qe.sum(-1, keepdims=True), jnp.float32(1e-30))
  f = f + jnp.floor(share * left.astype(jnp.float32) * jnp.float32(1 - 2.0**-16)).astype(jnp.int32)
  top = jnp.argmax(jnp.where(keep, q, -1.0), axis=-1)[..., None]  # first maximum: lowest id
  add = (total - f.sum(-1, keepdims=True)) * (jnp.arange(q.shape[-1]) == top)
  return f + add.astype(jnp.int32)


def quantize_kept(vals, keep, precision: int, rule: str = "nearest"):
  """int32[..., K] frequencies of candidate masses ``vals`` (any positive scale, any order;
  ties go to the earlier position) where ``keep``; rows sum to ``2**precision``."""
  q = jnp.where(keep, vals.astype(jnp.float32), 0.0)
  q = q / q.sum(-1, keepdims=True)
  if rule == "floor":
    return _floor_rule(q, keep, precision)
  return _nearest_rule(q, keep, precision)


@functools.partial(jax.jit, static_argnames=("k", "precision", "top_k", "top_p", "rule"))
def candidates_from_probs(probs, k: int, precision: int, top_k=None, top_p=None, rule="nearest"):
  """(freqs int32[..., K], ids int32[..., K]): the K most probable tokens (ascending ids)
  quantized; zeros for candidates the truncation drops."""
  p = probs.astype(jnp.float32)
  keys = order_key(p)
  ids = select_top(keys, k)
  vals = jnp.take_along_axis(p, ids, -1)
  ck = jnp.take_along_axis(keys, ids, -1)
  keep = _keep_mask(vals, ck, p.sum(-1, keepdims=True), top_k, top_p)
  return quantize_kept(vals, keep, precision, rule), ids


@functools.partial(jax.jit, static_argnames=("k", "precision", "top_k", "top_p", "rule"))
def candidates_from_logits(logits, k: int, precision: int, top_k=None, top_p=None, rule="nearest"):
  """``candidates_from_probs(softmax(logits))`` without a softmax over the vocabulary when
  only top-k is asked: exponentials of the K candidates (plus one vocabulary-wide sum when
  ``top_p`` needs the full mass)."""
  lg = logits.astype(jnp.float32)
  keys = order_key(lg)
  ids = select_top(keys, k)
  cl = jnp.take_along_axis(lg, ids, -1)
  top = jnp.max(cl, -1, keepdims=True)
  e = jnp.exp(cl - top)
  mass = None
  if top_p is not None and top_k is None:
    mass = jnp.sum(jnp.exp(lg - top), axis=-1, keepdims=True)
  keep = _keep_mask(e, jnp.take_along_axis(keys, ids, -1), mass, top_k, top_p)
  return quantize_kept(e, keep, precision, rule), ids


def to_frequencies(
  probs,
  precision: int = 24,
  top_k: int | None = None,
  top_p: float | None = None,
  *,
  rule: str = "nearest",
  support: int | None = None,
):
  """Quantize probabilities ``[..., V]`` to int32 frequencies summing to ``2**precision``.

  Tokens cut by top-k / top-p (the smallest set of top tokens whose mass reaches
  ``top_p``, crossing token included) or with zero probability get 0; the kept ones follow
  ``rule`` (module docstring). ``support`` bounds the candidates considered (default
  ``top_k``, else the whole vocabulary): with top-p, a static bound makes this a
  ``lax.top_k`` instead of a full sort. Jittable; input values are validated eagerly when
  concrete.
  """
  probs = jnp.asarray(probs)
  if probs.ndim < 1 or probs.shape[-1] < 1:
    raise ValueError(f"probs must have a non-empty last (vocabulary) axis, got shape {probs.shape}")
  _validate(probs, precision, top_k, top_p, rule)
  v = probs.shape[-1]
  k = support if support is not None else (top_k if top_k is not None else v)
  k = min(int(k), v)
  return _to_frequencies(probs, k, precision, top_k, None if top_p is None else float(top_p), rule)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _to_frequencies(probs, k, precision, top_k, top_p, rule):
  f, ids = candidates_from_probs(probs, k, precision, top_k, top_p, rule)
  out = jnp.zeros(probs.shape, jnp.int32)
  return jnp.put_along_axis(out, ids, f, axis=-1, inplace=False)


# ---------------------------------------------------------------------- fidelity (NumPy, for reports)


def _model_truncated(p, top_k, top_p):
  """The model's truncated distribution in float64, same kept set as the quantizer."""
  order = np.argsort(-p, axis=-1, kind="stable")
  ps = np.take_along_axis(p, order, -1)
  keep = ps > 0
  rank = np.arange(p.shape[-1])
  if top_k is not None:
    keep &= rank < top_k
  if top_p is not None:
    csum = np.cumsum(np.where(keep, ps, 0.0), -1)
    ref = csum[..., -1:] if top_k is not None else p.sum(-1, keepdims=True)
    keep &= ((csum - ps) < np.float32(top_p) * ref) | (rank == 0)
  qs = np.where(keep, ps, 0.0)
  qs = qs / qs.sum(-1, keepdims=True)
  q = np.zeros_like(p)
  np.put_along_axis(q, order, qs, -1)
  return q


def total_variation(probs, freqs, precision: int, top_k=None, top_p=None) -> np.ndarray:
  """Per-step total variation float64[...] between the model's top-k / top-p distribution
  (``probs`` renormalized over the kept tokens) and ``freqs / 2**precision``."""
  p = np.asarray(probs, np.float64)
  q = _model_truncated(p, top_k, top_p)
  return 0.5 * np.abs(q - np.asarray(freqs, np.float64) / 2.0**precision).sum(-1)


def tv_bound(kept, precision: int) -> np.ndarray:
  """The nearest rule's per-step bound on the total variation: ``kept / 2**precision``
  (``kept`` int[...]: tokens the model's truncation keeps)."""
  return np.asarray(kept, np.float64) / 2.0**precision
