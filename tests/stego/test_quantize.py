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
  f = np.asarray(to_frequencies(p, precision=precision))
  assert f.dtype == np.int32
  np.testing.assert_array_equal(f.sum(-1), 2**precision)
  assert np.all(f[p > 0] >= 1) and f[0, 5] == 0
  # proportional to p up to the unit rounding and the 2**-16 safety factor
  err = np.abs(f / 2**precision - p)
  assert err.max() < 2 * 200 / 2**precision + 2**-15


def test_top_k_and_top_p_sets():
  rng = np.random.default_rng(1)
  p = _dists(rng, 16384)
  f = np.asarray(to_frequencies(p, top_k=2000))
  assert np.all((f > 0).sum(-1) == 2000)
  np.testing.assert_array_equal(f.sum(-1), 2**24)
  for row in range(4):
    top = np.argsort(-p[row], kind="stable")[:2000]
    assert set(np.flatnonzero(f[row])) == set(top)
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
  f = np.asarray(to_frequencies(p, precision=24))
  assert f[0, 7] == 2**24 - (v - 1) and f.sum() == 2**24 and f.min() == 1
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
    to_frequencies(np.ones(10), precision=3)
  with pytest.raises(ValueError, match="top_k"):
    to_frequencies(np.ones(10), top_k=0)
