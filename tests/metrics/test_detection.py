"""Detection error P_E, its intervals, ROC and AUC on hand-made predictions."""

import itertools

import jax
import numpy as np
import pytest

from stegjax.metrics import detection


def _brute_min_pe(scores, labels):
  best = 0.5
  for t in np.concatenate([[-np.inf], np.unique(scores)]):
    best = min(best, detection.pe_at_threshold(scores, labels, t))
  return best


def test_hand_made_pe():
  # covers 0.1, 0.4; stegos 0.35, 0.8.
  scores = [0.1, 0.4, 0.35, 0.8]
  labels = [0, 0, 1, 1]
  assert detection.detection_errors(scores, labels, 0.5) == (0.0, 0.5)
  assert detection.detection_errors(scores, labels, 0.2) == (0.5, 0.0)
  pe, thr = detection.min_pe(scores, labels)
  assert pe == pytest.approx(0.25)
  assert thr == pytest.approx(0.225)  # midpoint between 0.1 and 0.35
  # Perfect separation -> 0; reversed scores -> best is the trivial 0.5.
  assert detection.min_pe([0, 1, 2, 3], [0, 0, 1, 1])[0] == 0.0
  assert detection.min_pe([3, 2, 1, 0], [0, 0, 1, 1])[0] == 0.5


def test_min_pe_matches_brute_force_with_ties():
  rng = np.random.default_rng(0)
  for _ in range(30):
    n = rng.integers(4, 40)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 6, n).astype(float) + 0.5 * labels * rng.random()
    pe, thr = detection.min_pe(scores, labels)
    assert pe == pytest.approx(_brute_min_pe(scores, labels), abs=1e-12)
    # The returned threshold achieves it.
    assert detection.pe_at_threshold(scores, labels, thr) == pytest.approx(pe, abs=1e-12)


def test_auc_and_roc_match_pairwise_count():
  rng = np.random.default_rng(1)
  labels = np.r_[np.zeros(25, int), np.ones(35, int)]
  scores = rng.integers(0, 10, 60) + labels * 2.0
  pos, neg = scores[labels == 1], scores[labels == 0]
  pairs = [(1.0 if p > q else 0.5 if p == q else 0.0) for p, q in itertools.product(pos, neg)]
  a = detection.auc(scores, labels)
  assert a == pytest.approx(np.mean(pairs), abs=1e-12)
  fpr, tpr, thr = detection.roc_curve(scores, labels)
  assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
  assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
  assert np.trapezoid(tpr, fpr) == pytest.approx(a, abs=1e-12)
  # Each ROC point is the rule "score >= thr".
  for f, t, h in zip(fpr[1:], tpr[1:], thr[1:]):
    assert f == pytest.approx(np.mean(neg >= h)) and t == pytest.approx(np.mean(pos >= h))


def test_binomial_ci_hand_value_and_coverage():
  lo, hi = detection.pe_binomial_ci(0.2, 0.4, 100, 100)
  fa, md = 21 / 102, 41 / 102
  se = 0.5 * np.sqrt(fa * (1 - fa) / 102 + md * (1 - md) / 102)
  c = 0.5 * (fa + md)
  assert lo == pytest.approx(c - 1.959964 * se, abs=1e-5)
  assert hi == pytest.approx(c + 1.959964 * se, abs=1e-5)
  # Coverage of the true P_E over simulated detectors is close to 95%.
  rng = np.random.default_rng(2)
  true_fa, true_md, n = 0.3, 0.1, 200
  cover = 0
  trials = 2000
  fa_hat = rng.binomial(n, true_fa, trials) / n
  md_hat = rng.binomial(n, true_md, trials) / n
  for f, m in zip(fa_hat, md_hat):
    lo, hi = detection.pe_binomial_ci(f, m, n, n)
    cover += lo <= 0.2 <= hi
  assert 0.93 <= cover / trials <= 0.97


def test_bootstrap_and_permutation_on_null_and_separable():
  rng = np.random.default_rng(3)
  labels = np.r_[np.zeros(300, int), np.ones(300, int)]
  null_scores = rng.normal(size=600)
  key = jax.random.key(0)
  out = detection.min_pe_permutation_test(key, null_scores, labels, num_permutations=300)
  lo, hi = out["null_interval"]
  # min-P_E is biased below 0.5 under H0; the observed value lies in the null interval.
  assert hi < 0.5 and lo < out["min_pe"] < 0.5 and out["pvalue"] > 0.05
  sep = labels + 0.2 * rng.normal(size=600)  # well separated
  out = detection.min_pe_permutation_test(key, sep, labels, num_permutations=300)
  assert out["min_pe"] < 0.05 and out["pvalue"] == pytest.approx(1 / 301)
  lo, hi = detection.bootstrap_ci(key, sep, labels, num_resamples=200)
  assert lo <= out["min_pe"] <= hi < 0.1
  # A custom statistic (AUC) works too and is deterministic in the key.
  a1 = detection.bootstrap_ci(key, sep, labels, detection.auc, num_resamples=50)
  a2 = detection.bootstrap_ci(key, sep, labels, detection.auc, num_resamples=50)
  assert a1 == a2 and a1[0] > 0.95


def test_evaluate_fixed_threshold_from_train():
  labels = np.array([0, 0, 0, 1, 1, 1])
  train = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # threshold 2.5
  test = np.array([0.0, 2.6, 1.0, 2.4, 9.0, 8.0])  # 1 FA, 1 MD of 3 each
  out = detection.evaluate(jax.random.key(1), train, labels, test, labels, num_resamples=50)
  assert out["threshold_train"] == pytest.approx(2.5)
  assert (out["p_fa"], out["p_md"]) == pytest.approx((1 / 3, 1 / 3))
  assert out["pe_fixed"] == pytest.approx(1 / 3)
  lo, hi = out["pe_fixed_ci"]
  assert lo < 1 / 3 < hi
  assert out["pe_min"] <= out["pe_fixed"]


@pytest.mark.parametrize(
  "bad",
  [
    dict(scores=[0.1, 0.2], labels=[0, 0]),
    dict(scores=[0.1, np.nan], labels=[0, 1]),
    dict(scores=[0.1, 0.2], labels=[0, 2]),
    dict(scores=[0.1, 0.2, 0.3], labels=[0, 1]),
  ],
)
def test_bad_input_raises(bad):
  with pytest.raises(ValueError):
    detection.min_pe(**bad)
