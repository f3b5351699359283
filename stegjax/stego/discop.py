"""Discop (Ding et al., IEEE S&P 2023): provably secure sampling by distribution copies.

Integer-only, batched and jittable. Variants:

* ``"basic"``: ``2**n`` copies of the distribution rotated by ``i * 2**(precision-n)``;
  the largest ``n`` whose copies all select distinct tokens is used and the copy
  index carries ``n`` message bits (most significant first).
* ``"recursive"``: a Huffman tree (two-queue method on sorted masses, ties to the
  leaf / lower rank) walked from the root; at each node two copies (the draw and
  the draw rotated by one half) pick children; if they differ, one message bit
  picks the copy. One 64-bit draw per node (``prf`` words ``2d, 2d+1`` at depth
  ``d``). The Huffman build is ``K-1`` sequential merges over ``[B]`` vectors.
* ``"recursive_bisect"``: the same recursive copies on a mass-bisection tree over the
  tokens sorted by frequency (each node a contiguous range, split where the two
  halves are most balanced). It needs no build: a walk step is a binary search
  on the cumulative sum, so it is fast on accelerators; its utilization is equal
  to or slightly above Huffman's on the tested distributions. It is a stegjax
  variant, not in the paper; security is the same (any fixed binary tree works).

Frequencies come from ``quantize.to_frequencies`` (int, rows sum to ``2**precision``).
Tokens are ranked by frequency (ties by lower id) and only the top ``support``
(static, default V) are considered: pass ``support >= `` the number of nonzero
frequencies (e.g. the top-k) to make the Huffman build and basic Discop cheap.

Step level (use inside an AR loop, all pure, jittable, scan-safe)::

    state = init_embed_state(bits, nonce)                  # bits uint8[B, L]
    tokens, state = embed_step(freqs, t, state, key, variant)
    bits_t, n_t = extract_step(freqs, tokens, t, key, nonce, variant)
    tokens = sample_step(freqs, t, key, nonce, variant)

Sequence level: ``embed``, ``extract``, ``sample`` over ``freqs[..., T, V]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np

from stegjax.errors import ConfigError
from stegjax.stego import prf, quantize
from stegjax.stego.sampler import Dist, Sampler
from stegjax.stego.common import (
  cumsum as _cumsum,
  broadcast_nonce,
  EmbedState,
  check_precision,
  frac_mul,
  init_embed_state,
  message_window,
  run_embed,
  run_extract,
  run_sample,
  validate_bits,
  validate_freqs,
)

__all__ = [
  "VARIANTS",
  "EmbedState",
  "init_embed_state",
  "max_bits_per_step",
  "embed_step",
  "extract_step",
  "extract_step_checked",
  "sample_step",
  "embed",
  "extract",
  "sample",
  "make_choose_fn",
  "make_extract_fn",
  "make_sample_fn",
  "basic_capacity",
  "tree_capacity",
  "DiscopSampler",
]

VARIANTS = ("basic", "recursive", "recursive_bisect")
PRFS = ("chacha20", "threefry")
_BIG = np.int32(2**31 - 1)
_HALF = np.uint32(2**31)


# ------------------------------------------------------------------ static sizes


def _check_variant(variant):
  if variant not in VARIANTS:
    raise ValueError(f"unknown Discop variant {variant!r}; expected one of {VARIANTS}")


def _support(v: int, support):
  if support is None:
    return v
  if not isinstance(support, (int, np.integer)) or support < 1:
    raise ValueError(f"support must be a positive int or None, got {support!r}")
  return min(int(support), v)


def _basic_levels(precision: int, k: int) -> int:
  # 2**n distinct tokens need k >= 2**n; offsets i * 2**(precision-n) need n <= precision
  return max(0, min(precision, k.bit_length() - 1))


def _huffman_depth(precision: int, k: int) -> int:
  # A leaf at depth d in a Huffman tree with integer masses >= 1 needs total >= F_{d+1}
  # (Katona-Nemetz); +1 margin.
  fib = [1, 1]
  while fib[-1] <= 2**precision:
    fib.append(fib[-1] + fib[-2])
  return max(1, min(k - 1, len(fib) - 2 + 1))


def _bisect_depth(precision: int, k: int) -> int:
  # The heavier child of a bisection node holds < 3/4 of its mass (module docstring), and
  # internal nodes have mass >= 2, so leaves lie at depth <= floor((p-1)/log2(4/3)) + 1.
  return max(1, min(k - 1, int(math.floor((precision - 1) / math.log2(4 / 3))) + 1))


def max_bits_per_step(variant: str, precision: int = 24, support: int = 2**14) -> int:
  """Static upper bound on bits one token carries (the width of ``extract_step``'s bits)."""
  _check_variant(variant)
  if variant == "basic":
    return max(1, _basic_levels(precision, support))
  if variant == "recursive":
    return _huffman_depth(precision, support)
  return _bisect_depth(precision, support)


def _n_words(variant, precision, k):
  return 1 if variant == "basic" else 2 * max_bits_per_step(variant, precision, k)


def _draws(key, nonce, t, n_words, prf_impl):
  if prf_impl == "chacha20":
    return prf.draw_words(key, nonce, t, n_words)
  if prf_impl == "threefry":
    return prf.threefry_draw_words(key, nonce, t, n_words)
  raise ValueError(f"unknown prf {prf_impl!r}; expected one of {PRFS}")


# ------------------------------------------------------------------ basic


def _basic(f, draws, precision, window=None, target=None):
  """Basic Discop on descending freqs ``f[B, K]``.

  Returns (chosen rank position [B], n bits [B], bits [B, N] (extract), ok [B]).
  """
  b, k = f.shape
  n_lv = _basic_levels(precision, k)
  total = 2**precision
  c_incl = _cumsum(f, axis=1).astype(jnp.uint32)  # C[1..K]
  r = draws[:, 0] >> np.uint32(32 - precision)  # exact uniform on [0, 2**p)
  i = jnp.arange(2**n_lv, dtype=jnp.uint32)
  pts = (r[:, None] + i * np.uint32(total >> n_lv)) & np.uint32(total - 1)
  tok = jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="right"))(c_incl, pts).astype(jnp.int32)
  # Level n uses points 0, s, 2s, ... (s = 2**(N-n)); a token's interval is an arc, so the
  # copies are distinct iff no two circular neighbours share a token. Levels nest, so the
  # passing levels form a prefix.
  passes = []
  for n in range(1, n_lv + 1):
    sub = tok[:, :: 2 ** (n_lv - n)]
    passes.append(~jnp.any(sub == jnp.roll(sub, -1, axis=1), axis=1))
  if passes:
    n_bits = jnp.cumprod(jnp.stack(passes, 1).astype(jnp.int32), axis=1).sum(1)
  else:
    n_bits = jnp.zeros((b,), jnp.int32)
  width = max(1, n_lv)
  kk = jnp.arange(width, dtype=jnp.int32)
  if target is None:
    w = window[:, :width] if n_lv else jnp.zeros((b, 1), jnp.int32)
    weights = jnp.where(
      kk < n_bits[:, None], jnp.left_shift(1, jnp.maximum(n_bits[:, None] - 1 - kk, 0)), 0
    )
    copy = (w * weights).sum(1)  # copy index, MSB first
    idx = copy << (n_lv - n_bits)
    pos = jnp.take_along_axis(tok, idx[:, None], axis=1)[:, 0]
    return pos, n_bits, None, jnp.ones((b,), bool)
  stride_ok = (jnp.arange(2**n_lv)[None, :] & ((1 << (n_lv - n_bits[:, None])) - 1)) == 0
  match = (tok == target[:, None]) & stride_ok
  ok = match.any(1)
  copy = jnp.argmax(match, axis=1).astype(jnp.int32) >> (n_lv - n_bits)
  bits = jnp.where(
    kk < n_bits[:, None], (copy[:, None] >> jnp.maximum(n_bits[:, None] - 1 - kk, 0)) & 1, 0
  )
  return None, n_bits, bits.astype(jnp.uint8), ok


# ------------------------------------------------------------------ recursive (shared node step)


def _node(draws, d, big_p, little_l):
  """Copies at a node of mass P with first child mass L: (copy0 goes first, copy1 goes first)."""
  hi = jnp.take_along_axis(draws, (2 * d)[:, None], axis=1)[:, 0]
  lo = jnp.take_along_axis(draws, (2 * d + 1)[:, None], axis=1)[:, 0]
  c0 = frac_mul(hi, lo, big_p) < little_l.astype(jnp.uint32)
  c1 = frac_mul(hi ^ _HALF, lo, big_p) < little_l.astype(jnp.uint32)  # rotated by one half
  return c0, c1


def _decide(c0, c1, bit, go_first):
  """Embed: pick by bit when copies differ. Extract: read the bit from the observed branch."""
  differ = c0 != c1
  if go_first is None:
    first = jnp.where(differ, jnp.where(bit == 1, c1, c0), c0)
    return first, differ, None, jnp.ones_like(differ)
  out_bit = (go_first != c0).astype(jnp.int32)  # which copy made that choice
  ok = differ | (go_first == c0)
  return go_first, differ, out_bit, ok


def _tree_walk(b, max_depth, init, node_fn, window, extract):
  """Shared while-loop over tree depth. node_fn(carry_node, d) -> (P, L, first_id, second_id, target_first)."""
  width = max_depth
  kk = jnp.arange(width, dtype=jnp.int32)

  def cond(c):
    return jnp.any(c["active"]) & (c["d"] < max_depth)

  def body(c):
    d = c["d"]
    dd = jnp.full((b,), d, jnp.int32)
    big_p, little_l, go_first_target, nxt = node_fn(c["node"])
    c0, c1 = _node(c["draws"], dd, big_p, little_l)
    if extract:
      first, differ, out_bit, ok = _decide(c0, c1, None, go_first_target)
    else:
      bit = jnp.take_along_axis(window, jnp.minimum(c["n"], width - 1)[:, None], axis=1)[:, 0]
      first, differ, out_bit, ok = _decide(c0, c1, bit, None)
    act = c["active"]
    new = dict(c)
    new["node"] = jax.tree.map(lambda a, z: jnp.where(act, a, z), nxt(first), c["node"])
    emb = act & differ
    if extract:
      new["bits"] = jnp.where((kk == c["n"][:, None]) & emb[:, None], out_bit[:, None], c["bits"])
      new["ok"] = c["ok"] & (ok | ~act)
    new["n"] = c["n"] + emb.astype(jnp.int32)
    new["active"] = act & ~new["node"]["leaf"]
    new["d"] = d + 1
    return new

  return jax.lax.while_loop(cond, body, init)


# ------------------------------------------------------------------ Huffman tree


def _huffman_build(f):
  """Two-queue Huffman on the positive entries of descending ``f[B, K]``.

  Node ids: leaf ``a`` (ascending mass order, rank position ``m-1-a``) is ``a``; the ``q``-th
  merge is ``K+q``. Returns (mass[B, 2K-1], child[B, K-1, 2] first=smaller, m[B]).

  The ``m-1`` merges are sequential (each needs the node made before it); every row does
  merge ``q`` at loop step ``q``. The arrays are laid out merge-major (``[K, B]``) so a step
  writes one contiguous row and reads each example's queue fronts with flat gathers.
  """
  b, k = f.shape
  m = (f > 0).sum(1).astype(jnp.int32)
  a = jnp.arange(k, dtype=jnp.int32)
  leaf_mass = jnp.where(
    a[None] < m[:, None],
    jnp.take_along_axis(f, jnp.clip(m[:, None] - 1 - a[None], 0, k - 1), axis=1),
    _BIG,
  )
  n_int = max(k - 1, 1)
  # leaves merge-major, two rows of padding so the second front never reads out of range
  lt = jnp.concatenate([leaf_mass.T, jnp.full((2, b), _BIG, jnp.int32)], 0).reshape(-1)
  col = jnp.arange(b, dtype=jnp.int32)

  def merge(q, c):
    i, j, nt, ch = c
    ntf = nt.reshape(-1)
    l0, l1 = lt[i * b + col], lt[(i + 1) * b + col]
    n0 = jnp.where(j < q, ntf[jnp.minimum(j, n_int - 1) * b + col], _BIG)
    n1 = jnp.where(j + 1 < q, ntf[jnp.minimum(j + 1, n_int - 1) * b + col], _BIG)
    u1 = l0 <= n0  # ties: the leaf first
    m1, id1 = jnp.where(u1, l0, n0), jnp.where(u1, i, k + j)
    i, j = i + u1.astype(jnp.int32), j + (~u1).astype(jnp.int32)
    lc, nc = jnp.where(u1, l1, l0), jnp.where(u1, n0, n1)
    u2 = lc <= nc
    m2, id2 = jnp.where(u2, lc, nc), jnp.where(u2, i, k + j)
    i, j = i + u2.astype(jnp.int32), j + (~u2).astype(jnp.int32)
    nt = jax.lax.dynamic_update_slice(nt, jnp.where(q < m - 1, m1 + m2, _BIG)[None], (q, 0))
    ch = jax.lax.dynamic_update_slice(ch, jnp.stack([id1, id2])[None], (q, 0, 0))
    return i, j, nt, ch

  zi = jnp.zeros((b,), jnp.int32)
  init = (zi, zi, jnp.full((n_int, b), _BIG, jnp.int32), jnp.zeros((n_int, 2, b), jnp.int32))
  # Only as many merges as the fullest row needs (rows with fewer tokens idle through the rest).
  n_merge = jnp.maximum(jnp.max(m) - 1, 0)
  _, _, nt, ch = jax.lax.fori_loop(0, n_merge, merge, init)
  return jnp.concatenate([leaf_mass, nt.T], axis=1), jnp.transpose(ch, (2, 0, 1)), m


def _huffman(f, draws, precision, window=None, target=None):
  b, k = f.shape
  depth = _huffman_depth(precision, k)
  mass, child, m = _huffman_build(f)
  root = jnp.where(m >= 2, k + m - 2, 0)
  on_path = None
  if target is not None:
    # Mark the ancestors of the target leaf (parents from the merge records).
    q = jnp.arange(max(k - 1, 1), dtype=jnp.int32)
    live = q[None] < (m - 1)[:, None]
    parent = jnp.full((b, 2 * k), -1, jnp.int32)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], live.shape)
    for s in range(2):
      idx = jnp.where(live, child[:, :, s], 2 * k)
      parent = parent.at[rows, idx].set(jnp.broadcast_to(k + q[None], live.shape), mode="drop")
    leaf = m - 1 - target
    on_path = jnp.zeros((b, 2 * k), bool)
    cur = leaf
    for _ in range(depth + 1):
      on_path = on_path.at[jnp.arange(b), jnp.where(cur >= 0, cur, 2 * k - 1)].set(cur >= 0)
      cur = jnp.where(
        cur >= 0, jnp.take_along_axis(parent, jnp.maximum(cur, 0)[:, None], axis=1)[:, 0], -1
      )

  def node_fn(node):
    cur = node["id"]
    qq = jnp.clip(cur - k, 0, max(k - 2, 0))
    ch = jnp.take_along_axis(child, qq[:, None, None], axis=1)[:, 0]  # [B, 2]
    big_p = jnp.take_along_axis(mass, cur[:, None], axis=1)[:, 0]
    little_l = jnp.take_along_axis(mass, ch[:, :1], axis=1)[:, 0]
    tgt = None if on_path is None else jnp.take_along_axis(on_path, ch[:, :1], axis=1)[:, 0]

    def nxt(first):
      nid = jnp.where(first, ch[:, 0], ch[:, 1])
      return {"id": nid, "leaf": nid < k}

    return big_p, little_l, tgt, nxt

  init = {
    "node": {"id": root, "leaf": root < k},
    "d": jnp.int32(0),
    "n": jnp.zeros((b,), jnp.int32),
    "active": root >= k,
    "draws": draws,
    "ok": jnp.ones((b,), bool),
    "bits": jnp.zeros((b, depth), jnp.int32),
  }
  out = _tree_walk(b, depth, init, node_fn, window, target is not None)
  pos = m - 1 - out["node"]["id"]
  if target is None:
    return pos, out["n"], None, out["ok"]
  return None, out["n"], out["bits"].astype(jnp.uint8), out["ok"] & (out["node"]["id"] == leaf)


# ------------------------------------------------------------------ bisection tree


def _bisect(f, draws, precision, window=None, target=None):
  b, k = f.shape
  depth = _bisect_depth(precision, k)
  m = (f > 0).sum(1).astype(jnp.int32)
  c = jnp.concatenate(
    [jnp.zeros((b, 1), jnp.uint32), _cumsum(f, axis=1).astype(jnp.uint32)], axis=1
  )
  n_search = max(1, (k + 1).bit_length())
  at = lambda idx: jnp.take_along_axis(c, idx[:, None], axis=1)[:, 0]

  def split(lo, hi):
    # s* = first s in (lo, hi] with 2*C[s] >= C[lo] + C[hi] (binary search, unrolled).
    target2 = at(lo) + at(hi)
    a, z = lo + 1, hi
    for _ in range(n_search):
      mid = (a + z) // 2
      ge = (at(mid) * 2) >= target2
      a, z = (
        jnp.where(a < z, jnp.where(ge, a, mid + 1), a),
        jnp.where(a < z, jnp.where(ge, mid, z), z),
      )
    s_hi = jnp.clip(a, lo + 1, hi - 1)
    s_lo = jnp.clip(a - 1, lo + 1, hi - 1)
    imb = lambda s: jnp.maximum(at(s) * 2, target2) - jnp.minimum(at(s) * 2, target2)
    return jnp.where(imb(s_lo) <= imb(s_hi), s_lo, s_hi)

  def node_fn(node):
    lo, hi = node["lo"], node["hi"]
    s = split(lo, jnp.maximum(hi, lo + 2))
    big_p = at(hi) - at(lo)
    little_l = at(s) - at(lo)
    tgt = None if target is None else target < s

    def nxt(first):
      nlo, nhi = jnp.where(first, lo, s), jnp.where(first, s, hi)
      return {"lo": nlo, "hi": nhi, "leaf": nhi - nlo <= 1}

    return big_p, little_l, tgt, nxt

  zero = jnp.zeros((b,), jnp.int32)
  init = {
    "node": {"lo": zero, "hi": m, "leaf": m <= 1},
    "d": jnp.int32(0),
    "n": zero,
    "active": m > 1,
    "draws": draws,
    "ok": jnp.ones((b,), bool),
    "bits": jnp.zeros((b, depth), jnp.int32),
  }
  out = _tree_walk(b, depth, init, node_fn, window, target is not None)
  pos = out["node"]["lo"]
  if target is None:
    return pos, out["n"], None, out["ok"]
  return None, out["n"], out["bits"].astype(jnp.uint8), out["ok"] & (pos == target)


_IMPL = {"basic": _basic, "recursive": _huffman, "recursive_bisect": _bisect}


# ------------------------------------------------------------------ step level


def _protocol(variant, precision, support, prf_impl) -> "DiscopSampler":
  _check_variant(variant)
  check_precision(precision)
  if support is not None:
    _support(1, support)  # validates
  return DiscopSampler(precision=precision, support=support, prf_impl=prf_impl, variant=variant)


def embed_step(
  freqs,
  t,
  state: EmbedState,
  key,
  variant: str = "recursive",
  *,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Choose one token per example, embedding message bits from ``state``'s cursor.

  Args:
    freqs: int32[B, V], rows summing to ``2**precision``.
    t: int32 scalar step index (part of the PRF input).
    state: ``EmbedState`` (see ``init_embed_state``).
    key: uint32[8] sampling key.
  Returns:
    (tokens int32[B], state with the cursor advanced by the bits this token carries).
  (The same as ``sampler.get(variant, support=...).choose``.)
  """
  chex.assert_rank(freqs, 2)
  chex.assert_shape(state.cursor, (freqs.shape[0],))
  return _protocol(variant, precision, support, prf_impl).choose(freqs, t, state, key)


def extract_step_checked(
  freqs,
  tokens,
  t,
  key,
  nonce,
  variant: str = "recursive",
  *,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Like ``extract_step`` plus ``ok bool[B]``: False where the token could not have been
  produced at this step under this key (zero frequency, or inconsistent with the draws)."""
  chex.assert_rank(freqs, 2)
  b = freqs.shape[0]
  chex.assert_shape(tokens, (b,))
  s = _protocol(variant, precision, support, prf_impl)
  bits, n, ok, _ = s.extract(freqs, tokens, t, key, s.init_extract_state(nonce, b))
  return bits, n, ok


def extract_step(
  freqs,
  tokens,
  t,
  key,
  nonce,
  variant: str = "recursive",
  *,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Bits carried by ``tokens`` at step ``t``: (bits uint8[B, W], n int32[B]); ``W = max_bits_per_step``."""
  bits, n, _ = extract_step_checked(
    freqs, tokens, t, key, nonce, variant, precision=precision, support=support, prf_impl=prf_impl
  )
  return bits, n


def sample_step(
  freqs,
  t,
  key,
  nonce,
  variant: str = "recursive",
  *,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Plain sampling with the same randomness (the walk with the all-zero message): int32[B]."""
  b = freqs.shape[0]
  state = init_embed_state(jnp.zeros((b, 1), jnp.uint8), nonce, jnp.zeros((b,), jnp.int32))
  tokens, _ = embed_step(
    freqs, t, state, key, variant, precision=precision, support=support, prf_impl=prf_impl
  )
  return tokens


# ------------------------------------------------------------------ sequence level

_STATIC = ("variant", "precision", "support", "prf_impl")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _embed_jit(freqs, bits, bit_len, key, nonce, variant, precision, support, prf_impl):
  step = lambda f, t, st: embed_step(
    f, t, st, key, variant, precision=precision, support=support, prf_impl=prf_impl
  )
  toks, n, _ = run_embed(step, freqs, bits, nonce, bit_len)
  return toks, n


@functools.partial(jax.jit, static_argnames=_STATIC)
def _extract_jit(freqs, tokens, key, nonce, variant, precision, support, prf_impl):
  k = _support(freqs.shape[-1], support)
  step = lambda f, tk, t, nn: extract_step(
    f, tk, t, key, nn, variant, precision=precision, support=support, prf_impl=prf_impl
  )
  return run_extract(step, max_bits_per_step(variant, precision, k), freqs, tokens, nonce)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _sample_jit(freqs, key, nonce, variant, precision, support, prf_impl):
  step = lambda f, t, nn: sample_step(
    f, t, key, nn, variant, precision=precision, support=support, prf_impl=prf_impl
  )
  return run_sample(step, freqs, nonce)


def _seq_checks(freqs, variant, precision, support, key):
  _check_variant(variant)
  freqs = jnp.asarray(freqs)
  if freqs.ndim < 2:
    raise ValueError(f"freqs must be [..., T, V], got shape {freqs.shape}")
  validate_freqs(freqs, precision, _support(freqs.shape[-1], support))
  if jnp.asarray(key).shape != (8,):
    raise ValueError(f"key must be uint32[8] (prf.make_key), got shape {jnp.asarray(key).shape}")
  return freqs


def embed(
  freqs,
  bits,
  key,
  nonce,
  variant: str = "recursive",
  *,
  bit_len=None,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Embed ``bits[..., L]`` while sampling ``T`` tokens from ``freqs[..., T, V]``.

  After the message ends the walk continues with zero bits (plain sampling).
  ``nonce`` (int or int array) broadcasts against the leading dims; ``bit_len``
  (optional, [...]) says how many of the L bits are message.
  Returns (tokens int32[..., T], n_embedded int32[...]): the message prefix that fits.
  """
  freqs = _seq_checks(freqs, variant, precision, support, key)
  bits = jnp.asarray(bits)
  validate_bits(bits)
  return _embed_jit(
    freqs,
    bits.astype(jnp.uint8),
    bit_len,
    jnp.asarray(key, jnp.uint32),
    broadcast_nonce(nonce, freqs.shape[:-2]),
    variant=variant,
    precision=precision,
    support=support,
    prf_impl=prf_impl,
  )


def extract(
  freqs,
  tokens,
  key,
  nonce,
  variant: str = "recursive",
  *,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Every bit ``tokens[..., T]`` carry: (bits uint8[..., N], n int32[...]); bits past n are 0.

  ``N = T * max_bits_per_step(...)``; the first ``n_embedded`` bits equal the message.
  """
  freqs = _seq_checks(freqs, variant, precision, support, key)
  return _extract_jit(
    freqs,
    jnp.asarray(tokens, jnp.int32),
    jnp.asarray(key, jnp.uint32),
    broadcast_nonce(nonce, freqs.shape[:-2]),
    variant=variant,
    precision=precision,
    support=support,
    prf_impl=prf_impl,
  )


def sample(
  freqs,
  key,
  nonce,
  variant: str = "recursive",
  *,
  precision: int = 24,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """Plain sampling with the same randomness as ``embed``: tokens int32[..., T]."""
  freqs = _seq_checks(freqs, variant, precision, support, key)
  return _sample_jit(
    freqs,
    jnp.asarray(key, jnp.uint32),
    broadcast_nonce(nonce, freqs.shape[:-2]),
    variant=variant,
    precision=precision,
    support=support,
    prf_impl=prf_impl,
  )


# ------------------------------------------------------------------ choose_fn for AR models


def _logits_to_freqs(logits, temperature, precision, top_k, top_p):
  probs = jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)
  return quantize.to_frequencies(probs, precision=precision, top_k=top_k, top_p=top_p)


def make_choose_fn(
  key,
  variant: str = "recursive",
  precision: int = 24,
  top_k: int | None = None,
  top_p: float | None = None,
  temperature: float = 1.0,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """A ``choose_fn(logits float32[B, V], step int32, state) -> (tokens int32[B], state)``.

  softmax(logits / temperature) -> ``to_frequencies`` -> ``embed_step``. Make its state
  with ``init_embed_state(bits uint8[B, L], nonce, bit_len)``; after generation
  ``jnp.minimum(state.cursor, state.bit_len)`` is the number of bits embedded.
  ``support`` defaults to ``top_k`` (every kept token is then considered).
  """
  _check_variant(variant)
  check_precision(precision)
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  support = top_k if support is None else support

  def choose_fn(logits, step, state):
    f = _logits_to_freqs(logits, temperature, precision, top_k, top_p)
    return embed_step(
      f, step, state, key, variant, precision=precision, support=support, prf_impl=prf_impl
    )

  return choose_fn


def make_extract_fn(
  key,
  variant: str = "recursive",
  precision: int = 24,
  top_k: int | None = None,
  top_p: float | None = None,
  temperature: float = 1.0,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """``extract_fn(logits[B, V], tokens[B], step, nonce[B]) -> (bits uint8[B, W], n, ok)``,
  the receiver's mirror of ``make_choose_fn`` (same settings)."""
  _check_variant(variant)
  support = top_k if support is None else support

  def extract_fn(logits, tokens, step, nonce):
    f = _logits_to_freqs(logits, temperature, precision, top_k, top_p)
    return extract_step_checked(
      f, tokens, step, key, nonce, variant, precision=precision, support=support, prf_impl=prf_impl
    )

  return extract_fn


def make_sample_fn(
  key,
  variant: str = "recursive",
  precision: int = 24,
  top_k: int | None = None,
  top_p: float | None = None,
  temperature: float = 1.0,
  support: int | None = None,
  prf_impl: str = "chacha20",
):
  """``sample_fn(logits[B, V], step, nonce[B]) -> tokens``: plain sampling, same randomness."""
  _check_variant(variant)
  support = top_k if support is None else support

  def sample_fn(logits, step, nonce):
    f = _logits_to_freqs(logits, temperature, precision, top_k, top_p)
    return sample_step(
      f, step, key, nonce, variant, precision=precision, support=support, prf_impl=prf_impl
    )

  return sample_fn


# ------------------------------------------------------------------ exact capacities (NumPy, for tests/benchmarks)


def basic_capacity(freqs, precision: int = 24) -> float:
  """Expected bits per token of basic Discop, by exhaustive enumeration of r (small precision only)."""
  f = np.asarray(freqs, np.int64)
  total = 2**precision
  if precision > 16:
    raise ValueError("basic_capacity enumerates 2**precision draws; use precision <= 16")
  c = np.cumsum(f)
  k = int((f > 0).sum())
  n_max = max(0, min(precision, k.bit_length() - 1))
  r = np.arange(total)
  bits = np.zeros(total)
  for n in range(1, n_max + 1):
    pts = (r[:, None] + np.arange(2**n)[None] * (total >> n)) % total
    tok = np.searchsorted(c, pts, side="right")
    ok = ~np.any(tok == np.roll(tok, -1, axis=1), axis=1)
    bits = np.where(ok & (bits == n - 1), n, bits)
  return float(bits.mean())


def tree_capacity(freqs, tree: str = "huffman") -> float:
  """Expected bits per token of recursive Discop on a tree: sum over nodes of 2*min(L, R) / total.

  (At a node with child fractions a, 1-a the two half-rotated copies differ with
  probability 2*min(a, 1-a).)
  """
  f = np.asarray(freqs, np.int64)
  f = f[f > 0]
  total = f.sum()
  acc = 0
  if tree == "huffman":
    import collections

    q1, q2 = collections.deque(np.sort(f).tolist()), collections.deque()
    while len(q1) + len(q2) > 1:
      ps = []
      for _ in range(2):
        ps.append(q1.popleft() if q1 and (not q2 or q1[0] <= q2[0]) else q2.popleft())
      acc += min(ps)
      q2.append(ps[0] + ps[1])
  elif tree == "bisect":
    fd = np.sort(f)[::-1]
    c = np.concatenate([[0], np.cumsum(fd)])
    stack = [(0, len(fd))]
    while stack:
      lo, hi = stack.pop()
      if hi - lo < 2:
        continue
      t2 = c[lo] + c[hi]
      s = int(np.searchsorted(2 * c, t2, side="left"))
      cand = sorted({min(max(x, lo + 1), hi - 1) for x in (s - 1, s)})
      s = min(cand, key=lambda x: (abs(2 * c[x] - t2), x))
      acc += min(c[s] - c[lo], c[hi] - c[s])
      stack += [(lo, s), (s, hi)]
  else:
    raise ValueError(f"tree must be 'huffman' or 'bisect', got {tree!r}")
  return float(2 * acc / total)


# ------------------------------------------------------------------ the Sampler protocol


@dataclasses.dataclass(frozen=True)
class DiscopSampler(Sampler):
  """Discop through the ``stego.sampler`` protocol (registered as basic / recursive /
  recursive_bisect); works on the ``K`` candidates of each step."""

  variant: str = "recursive"

  secure: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    if self.variant not in VARIANTS:
      raise ConfigError(f"unknown Discop variant {self.variant!r}; valid: {', '.join(VARIANTS)}")

  @property
  def name(self) -> str:  # type: ignore[override]
    return self.variant

  def _width(self, k: int) -> int:
    return max_bits_per_step(self.variant, self.precision, k)

  def _words(self, key, nonce, t, k):
    return _draws(key, nonce, t, _n_words(self.variant, self.precision, k), self.prf_impl)

  def _choose(self, d: Dist, t, state, key):
    k = d.freqs.shape[1]
    window = message_window(state, self._width(k))
    draws = self._words(key, state.nonce, t, k)
    pos, n, _, _ = _IMPL[self.variant](d.freqs, draws, self.precision, window=window)
    return pos, state._replace(cursor=state.cursor + n)

  def _extract(self, d: Dist, pos, found, t, key, xstate):
    k = d.freqs.shape[1]
    draws = self._words(key, xstate, t, k)
    _, n, bits, ok = _IMPL[self.variant](d.freqs, draws, self.precision, target=pos)
    n = jnp.where(found | (self.variant == "basic"), n, 0)  # basic keeps n: later bits stay aligned
    return bits, n, ok, xstate
