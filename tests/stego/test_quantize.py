import numpy as np
import jax
import pytest

from stegjax.stego.quantize import to_frequencies


def _dists(rng, v):
  logits = rng.normal(size=(4, v)) * np.array([[8.0], [0.01], [2.0], [1.0]])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p[3] = 1.0 / np.arange(1, v + 1) ** 1.1  # Zipf-like
  return (p / p.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("precision", [8, 24, 30])
def test_sums_minimum_and_cut(precision):
  rng = np.random.default_rng(0)
  p = _dists(rng, 200)
  p[0, 5] = 0.0
  f = np.asarray(to_frequencies(p, precision=precision, rule="floor"))
  assert f.dtype == np.int32
  np.testing.assert_array_equal(f.sum(-1), 2**precision)
  assert np.all(f[p > 0] >= 1) and f[0, 5] == 0
  # proportional to p up to the unit rounding and the 2**-16 safety factor
  err = np.abs(f / 2**precision - p)
  assert err.max() < 2 * 200 / 2**precision + 2**-15


def test_top_k_and_top_p_sets():
  rng = np.random.default_rng(1)
  p = _dists(rng, 16384)
  f = np.asarray(to_frequencies(p, top_k=2000, rule="floor"))
  assert np.all((f > 0).sum(-1) == 2000)
  np.testing.assert_array_equal(f.sum(-1), 2**24)
  g = np.asarray(to_frequencies(p, top_k=2000))  # nearest: the top-k minus tokens under 1/2 unit
  for row in range(4):
    top = np.argsort(-p[row], kind="stable")[:2000]
    assert set(np.flatnonzero(f[row])) == set(top)
    q = p[row, top] / p[row, top].sum()
    assert set(np.flatnonzero(g[row])) == set(top[q * 2**24 >= 0.5 + 1e-3]) | set(
      top[(q * 2**24 >= 0.5 - 1e-3) & (g[row, top] > 0)]
    )
  g = np.asarray(to_frequencies(p, top_p=0.92))
  for row in range(4):
    order = np.argsort(-p[row], kind="stable")
    c = np.cumsum(p[row][order].astype(np.float64))
    k = int(np.searchsorted(c, 0.92 * c[-1])) + 1
    assert abs((g[row] > 0).sum() - k) <= 1  # float32 vs float64 cumsum at the boundary
    assert g[row].sum() == 2**24


def test_ties_by_token_id_and_jit_equal():
  p = np.array([[0.25, 0.25, 0.25, 0.25, 0.0]], np.float32)
  f = np.asarray(to_frequencies(p, precision=4, top_k=3))
  np.testing.assert_array_equal(f, [[6, 5, 5, 0, 0]])
  p2 = np.random.default_rng(2).dirichlet(np.ones(50), size=3).astype(np.float32)
  np.testing.assert_array_equal(
    jax.jit(lambda x: to_frequencies(x, top_k=20))(p2), to_frequencies(p2, top_k=20)
  )


def test_extremes():
  v = 1000
  p = np.full((1, v), 1e-30, np.float32)
  p[0, 7] = 1.0
  f = np.asarray(to_frequencies(p, precision=24, rule="floor"))
  assert f[0, 7] == 2**24 - (v - 1) and f.sum() == 2**24 and f.min() == 1
  # the nearest rule gives the 1e-30 tokens nothing (far below half a unit)
  f = np.asarray(to_frequencies(p, precision=24))
  assert f[0, 7] == 2**24 and f.sum() == 2**24
  f = np.asarray(to_frequencies(np.ones((1, 4), np.float32), precision=2))
  np.testing.assert_array_equal(f, [[1, 1, 1, 1]])


def test_errors():
  with pytest.raises(ValueError, match="precision"):
    to_frequencies(np.ones(4), precision=31)
  with pytest.raises(ValueError, match="NaN"):
    to_frequencies(np.array([0.5, np.nan]))
  with pytest.raises(ValueError, match="negative"):
    to_frequencies(np.array([0.5, -0.1]))
  with pytest.raises(ValueError, match="sums to zero"):
    to_frequencies(np.zeros(3))
  with pytest.raises(ValueError, match="cannot each get"):
    to_frequencies(np.ones(10), precision=3, rule="floor")
  with pytest.raises(ValueError, match="rule"):
    to_frequencies(np.ones(10), rule="ceil")
  with pytest.raises(ValueError, match="top_k"):
    to_frequencies(np.ones(10), top_k=0)


# ---------------------------------------------------------------- the nearest rule


def _rows(v, top):
  """Peaked, flat and Zipf rows (float32 [3, v]) whose top-`top` tails span many scales."""
  rng = np.random.default_rng(11)
  peaked = np.exp(-0.08 * np.arange(v) + rng.normal(size=v) * 0.3)  # tail to ~e^-20 at 256
  flat = np.exp(rng.normal(size=v) * 0.01)
  zipf = 1.0 / np.arange(1, v + 1) ** 1.2
  p = np.stack([rng.permutation(r) for r in (peaked, flat, zipf)])
  return (p / p.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("precision", [12, 16, 24, 30])
@pytest.mark.parametrize("top_k", [256, 2000])
def test_nearest_rule_fidelity(precision, top_k):
  from stegjax.stego.quantize import _model_truncated, total_variation, tv_bound

  p = _rows(4096, top_k)
  f = np.asarray(to_frequencies(p, precision=precision, top_k=top_k))
  np.testing.assert_array_equal(f.sum(-1), 2**precision)
  assert f.min() >= 0
  q = _model_truncated(p.astype(np.float64), top_k, None)
  tv = total_variation(p, f, precision, top_k=top_k)
  kept = (q > 0).sum(-1)
  assert np.all(tv <= tv_bound(kept, precision)), (tv, kept)
  # no token above its model mass plus one unit (float32 rounding of q: relative 2**-23;
  # the zeroed tail's mass, where the remainders cannot absorb it, in proportion to q)
  tiny = (q > 0) & (q * 2**precision < 0.5)
  lost = np.where(tiny, q, 0).sum(-1, keepdims=True)
  excess = f / 2**precision - q
  slack = 2.0**-precision + q * (2.0**-22 + lost / (1 - lost))
  assert np.all(excess <= slack), excess.max() * 2**precision
  # under half a unit: nothing; the floor rule, by contrast, inflates those tokens
  assert np.all(f[tiny] == 0)
  if precision == 12 and top_k == 256:
    assert tiny.sum() > 50  # the peaked row's tail: the test exercises the zeroing
    g = np.asarray(to_frequencies(p, precision=precision, top_k=top_k, rule="floor"))
    assert np.all(g[tiny] >= 1)
    assert np.all(total_variation(p, g, precision, top_k=top_k) > tv)


def test_nearest_rule_is_largest_remainder():
  # x = 16 * [0.45, 0.3, 0.2, 0.05] = [7.2, 4.8, 3.2, 0.8]: floors 7, 4, 3, 0 leave 2 units,
  # which go to the largest remainders 0.8 (token 3) and 0.8 (token 1), not to token 0.
  p = np.array([[0.45, 0.3, 0.2, 0.05]], np.float32)
  np.testing.assert_array_equal(to_frequencies(p, precision=4), [[7, 5, 3, 1]])
  # ties between equal remainders go to the higher-ranked token (equal mass: lower id)
  np.testing.assert_array_equal(
    to_frequencies(np.full((1, 5), 0.2, np.float32), precision=3), [[2, 2, 2, 1, 1]]
  )


def test_support_bounds_top_p_candidates():
  rng = np.random.default_rng(4)
  p = _dists(rng, 5000)
  full = np.asarray(to_frequencies(p, top_p=0.9))
  kept = (full > 0).sum(-1).max()
  bounded = np.asarray(to_frequencies(p, top_p=0.9, support=int(kept) + 10))
  # the same kept set; a float sum over another length may move a unit between remainders
  # (sender and receiver use the same support, so each side is still deterministic)
  np.testing.assert_array_equal(bounded > 0, full > 0)
  assert np.abs(bounded.astype(np.int64) - full).max() <= 1
