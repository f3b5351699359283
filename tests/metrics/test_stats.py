"""Two-sample tests, chi-square of token histograms and the token-coincidence statistic."""

import itertools

import jax
import numpy as np
import pytest

from stegjax.metrics import stats


def test_welch_hand_value():
  a = np.array([1.0, 2.0, 3.0, 4.0])
  b = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
  r = stats.welch_t_test(a, b)
  va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 5
  assert r.statistic == pytest.approx((2.5 - 6.0) / np.sqrt(va + vb))
  assert r.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 4))
  # Constant samples: equal means are no evidence, unequal ones certain.
  assert stats.welch_t_test([1.0, 1.0], [1.0, 1.0]).pvalue == 1.0
  assert stats.welch_t_test([1.0, 1.0], [2.0, 2.0]).pvalue == 0.0


def test_mann_whitney_u_counts_pairs():
  rng = np.random.default_rng(0)
  a = rng.integers(0, 5, 30).astype(float)
  b = rng.integers(1, 6, 40).astype(float)
  u = sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in itertools.product(a, b))
  assert stats.mann_whitney_u(a, b).statistic == pytest.approx(u)
  assert stats.mann_whitney_u([2.0, 2.0], [2.0, 2.0, 2.0]).pvalue == 1.0  # all tied
  with pytest.raises(ValueError):
    stats.mann_whitney_u(a, b, alternative="less")


def test_two_sample_level_and_power():
  """Under H0 each test rejects about 5% at alpha 0.05; a 0.5-sd shift is found."""
  rng = np.random.default_rng(1)
  trials = 400
  rej = {"welch": 0, "mwu": 0}
  for _ in range(trials):
    a, b = rng.normal(size=60), rng.normal(size=60)
    rej["welch"] += stats.welch_t_test(a, b).pvalue < 0.05
    rej["mwu"] += stats.mann_whitney_u(a, b).pvalue < 0.05
  for name, r in rej.items():
    assert 0.02 <= r / trials <= 0.09, (name, r / trials)
  a, b = rng.normal(size=300), rng.normal(0.5, 1.0, size=300)
  out = stats.two_sample_tests(a, b, key=jax.random.key(0), num_permutations=500)
  assert out["welch_t"]["pvalue"] < 1e-6 and out["mann_whitney_u"]["pvalue"] < 1e-6
  assert out["permutation_mean"]["pvalue"] == pytest.approx(1 / 501)
  same = stats.two_sample_tests(
    a, rng.normal(size=300), key=jax.random.key(1), num_permutations=500
  )
  assert same["min_pvalue"] > 0.01
  # The permutation p-value agrees with Welch's on a null comparison.
  assert abs(same["permutation_mean"]["pvalue"] - same["welch_t"]["pvalue"]) < 0.08
  # The permutations are a function of the key.
  p1 = stats.permutation_test_mean(jax.random.key(2), a, b[:50], 100).pvalue
  assert p1 == stats.permutation_test_mean(jax.random.key(2), a, b[:50], 100).pvalue


def test_chi2_homogeneity_hand_value_and_pooling():
  r = stats.chi2_homogeneity([[10, 20], [30, 40]])
  # expected [[12, 18], [28, 42]]
  assert r.statistic == pytest.approx(4 / 12 + 4 / 18 + 4 / 28 + 4 / 42)
  assert r.df == 1
  assert r.pvalue == pytest.approx(0.3730, abs=1e-4)  # chi-square(1) tail of 0.7937
  # Rare categories (expected < 5) are pooled: these two tables give the same test.
  r1 = stats.chi2_homogeneity([[50, 40, 1, 2, 0, 1], [45, 48, 2, 1, 3, 0]])
  r2 = stats.chi2_homogeneity([[50, 40, 4], [45, 48, 6]])
  assert (r1.statistic, r1.df) == pytest.approx((r2.statistic, r2.df))
  assert stats.chi2_homogeneity([[5, 0], [7, 0]]).pvalue == 1.0
  with pytest.raises(ValueError):
    stats.chi2_homogeneity([[1, 2]])


def _sample_tokens(rng, probs, n):
  """(n, T) tokens, position t drawn from probs[t]."""
  cdf = np.cumsum(probs, axis=1)
  u = rng.random((n, probs.shape[0]))
  return np.minimum((u[..., None] > cdf[None]).sum(-1), probs.shape[1] - 1)


def test_per_position_chi2_size_and_power():
  rng = np.random.default_rng(2)
  vocab, length = 12, 20
  probs = rng.dirichlet(np.ones(vocab), size=length)
  a = _sample_tokens(rng, probs, 400)
  b = _sample_tokens(rng, probs, 400)
  same = stats.per_position_chi2(a, b, vocab, alpha=0.01)
  assert same["bonferroni_pvalue"] > 0.01 and same["num_rejected"] <= 2
  # A "naive" sampler that always picks the most likely token is caught.
  naive = np.tile(np.argmax(probs, axis=1), (400, 1))
  diff = stats.per_position_chi2(a, naive, vocab, alpha=0.01)
  assert diff["bonferroni_pvalue"] < 1e-6 and diff["num_rejected"] == length
  with pytest.raises(ValueError):
    stats.per_position_chi2(a, b[:, :5], vocab)
  with pytest.raises(ValueError):
    stats.token_histograms(a, vocab_size=3)


def test_coincidence_catches_fixed_nonce():
  """One shared draw u_t for every message (a fixed nonce) makes sequences collide."""
  rng = np.random.default_rng(3)
  vocab, length, n = 64, 32, 200
  probs = rng.dirichlet(np.ones(vocab), size=length)
  cdf = np.cumsum(probs, axis=1)
  cover = _sample_tokens(rng, probs, n)
  # Discop-like: copy i is the draw rotated by i/2; a message bit picks the copy.
  u_fixed = rng.random(length)
  bits = rng.integers(0, 2, (n, length))
  u = (u_fixed[None] + 0.5 * bits) % 1.0
  fixed = np.minimum((u[..., None] > cdf[None]).sum(-1), vocab - 1)
  # Pairs coincide far more often than independent samples.
  out = stats.coincidence_test(fixed, cover)
  assert out["pvalue"] < 1e-6
  assert out["mean_coincidence_test"] > 0.4 > out["mean_coincidence_ref"]
  fresh = _sample_tokens(rng, probs, n)
  assert stats.coincidence_test(fresh, cover)["pvalue"] > 0.01
  # Common prefix: pairs from a fixed nonce stay together longer.
  assert out["mean_common_prefix_test"] > out["mean_common_prefix_ref"]
  np.testing.assert_array_equal(
    stats.pair_common_prefix(np.array([[1, 2, 3], [1, 2, 4], [5, 6, 7], [0, 6, 7]])), [2, 0]
  )
  # Unbiased collision rate matches sum_k p_k^2 on fresh samples.
  big = _sample_tokens(rng, probs, 3000)
  np.testing.assert_allclose(stats.collision_rate(big).mean(), (probs**2).sum(1).mean(), rtol=0.05)
  # With one draw for all, the histograms collapse to <= 2 tokens per position too.
  assert stats.per_position_chi2(cover, fixed, vocab)["bonferroni_pvalue"] < 1e-6
