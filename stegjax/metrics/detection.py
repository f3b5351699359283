"""Detection error P_E, its confidence intervals, ROC and AUC for steganalysis.

Convention: ``labels`` are 1 for stego, 0 for cover; a larger ``score`` means
"more likely stego"; the detector says stego iff ``score > threshold``.
P_FA = fraction of covers called stego, P_MD = fraction of stegos called cover,
and P_E = (P_FA + P_MD) / 2 (CMSTEG Table 3; Fridrich's steganalysis
convention). Two ways to choose the threshold:

* ``min_pe``: the minimum over all thresholds on the evaluated set itself, as
  reported in the steganalysis literature. It is optimistically biased: for an
  undetectable stego it sits *below* 0.5 by O(1/sqrt(N)), so "0.5 is inside
  its interval" must be judged with ``min_pe_permutation_test`` (the exact null
  distribution of the minimum) or a bootstrap that re-optimizes the threshold.
* ``pe_at_threshold`` with a threshold fixed on training data (``min_pe`` of
  the training scores): unbiased on the test set, so its binomial interval
  (``pe_binomial_ci``) is honest.

The ROC and AUC are ``sklearn.metrics``'; the bootstrap and the permutation null
are ``scipy.stats``' (each class resampled or permuted as its own sample), driven by
explicit ``jax.random`` keys. stegjax adds P_E from the ROC (vectorized over resamples)
and the interval for the mean of two binomial proportions, which neither library has.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np
import scipy.stats
import sklearn.metrics

from stegjax.metrics import stats


def _check(scores, labels):
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels)
  if scores.ndim != 1 or labels.shape != scores.shape:
    raise ValueError(
      f"scores and labels must be 1-D of equal length, got {scores.shape} and {labels.shape}"
    )
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores contain NaN or inf")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError("labels must be 0 (cover) or 1 (stego)")
  labels = labels.astype(np.int64)
  n_s = int(labels.sum())
  n_c = labels.size - n_s
  if n_s == 0 or n_c == 0:
    raise ValueError(f"need both covers and stegos, got {n_c} covers and {n_s} stegos")
  return scores, labels, n_c, n_s


def detection_errors(scores, labels, threshold: float) -> tuple[float, float]:
  """(P_FA, P_MD) of the rule "stego iff score > threshold"."""
  scores, labels, n_c, n_s = _check(scores, labels)
  said_stego = scores > threshold
  p_fa = float(np.sum(said_stego & (labels == 0)) / n_c)
  p_md = float(np.sum(~said_stego & (labels == 1)) / n_s)
  return p_fa, p_md


def pe_at_threshold(scores, labels, threshold: float) -> float:
  """P_E = (P_FA + P_MD) / 2 at a given threshold."""
  p_fa, p_md = detection_errors(scores, labels, threshold)
  return 0.5 * (p_fa + p_md)


def _min_pe_rows(scores: np.ndarray, labels: np.ndarray, n_c: int, n_s: int):
  """Vectorized min-P_E over thresholds for each row of (B, N) scores/labels.

  Sort each row; a threshold between sorted positions i and i+1 calls the
  first i+1 cover. Only splits between distinct values are thresholds (ties
  fall on one side together); the two ends (all stego, all cover) give 0.5.
  Returns (pe[B], split_index[B]) with split_index = number called cover.
  """
  order = np.argsort(scores, axis=1, kind="stable")
  s = np.take_along_axis(scores, order, axis=1)
  y = np.take_along_axis(labels, order, axis=1)
  stego_below = np.cumsum(y, axis=1)  # stegos called cover (missed)
  cover_below = np.cumsum(1 - y, axis=1)  # covers called cover
  p_md = stego_below / n_s
  p_fa = (n_c - cover_below) / n_c
  pe = 0.5 * (p_fa + p_md)  # split after position i
  valid = np.ones_like(pe, dtype=bool)
  valid[:, :-1] = s[:, 1:] > s[:, :-1]
  pe = np.where(valid, pe, np.inf)
  # Prepend the "everything stego" split (index 0 called cover): P_E = 0.5.
  pe = np.concatenate([np.full((pe.shape[0], 1), 0.5), pe], axis=1)
  idx = np.argmin(pe, axis=1)
  return pe[np.arange(pe.shape[0]), idx], idx, s


def min_pe(scores, labels) -> tuple[float, float]:
  """Minimum over thresholds of P_E, and the threshold achieving it.

  The threshold is the midpoint between the last score called cover and the
  next one, so it transfers to new data; -inf means "call everything stego".
  """
  scores, labels, n_c, n_s = _check(scores, labels)
  pe, idx, s = _min_pe_rows(scores[None], labels[None], n_c, n_s)
  k = int(idx[0])
  s = s[0]
  if k == 0:
    thr = -np.inf
  elif k == s.size:
    thr = float(s[-1])
  else:
    thr = float(0.5 * (s[k - 1] + s[k]))
  return float(pe[0]), thr


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(fpr, tpr, thresholds) of ``sklearn.metrics.roc_curve``, every distinct score kept.

  At thresholds[i] the rule "stego iff score >= thresholds[i]" has false
  positive rate fpr[i] and true positive rate tpr[i]; thresholds[0] = +inf.
  """
  scores, labels, _, _ = _check(scores, labels)
  return sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)


def auc(scores, labels) -> float:
  """Area under the ROC: P[stego score > cover score] + P[tie] / 2 (Mann-Whitney)."""
  scores, labels, _, _ = _check(scores, labels)
  return float(sklearn.metrics.roc_auc_score(labels, scores))


def pe_binomial_ci(
  p_fa: float, p_md: float, n_cover: int, n_stego: int, level: float = 0.95
) -> tuple[float, float]:
  """Interval for P_E = (P_FA + P_MD)/2 from two independent binomials.

  Method: Agresti-Caffo adjusted Wald (add one error and one success to each
  class, then a normal interval on the mean of the two proportions). Valid
  when the threshold was not chosen on these data (e.g. fixed on training).
  """
  if not 0.0 < level < 1.0:
    raise ValueError(f"level must be in (0, 1), got {level}")
  if n_cover < 1 or n_stego < 1:
    raise ValueError(f"need n_cover, n_stego >= 1, got {n_cover}, {n_stego}")
  for name, p in (("p_fa", p_fa), ("p_md", p_md)):
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"{name} must be in [0, 1], got {p}")
  fa = (p_fa * n_cover + 1.0) / (n_cover + 2.0)
  md = (p_md * n_stego + 1.0) / (n_stego + 2.0)
  center = 0.5 * (fa + md)
  se = 0.5 * np.sqrt(fa * (1 - fa) / (n_cover + 2.0) + md * (1 - md) / (n_stego + 2.0))
  z = scipy.stats.norm.ppf(0.5 + level / 2.0)
  return float(max(0.0, center - z * se)), float(min(1.0, center + z * se))


def _min_pe_split(covers, stegos, axis=-1):
  """min-P_E of each row of resampled (..., n_c) covers and (..., n_s) stegos."""
  covers, stegos = np.moveaxis(covers, axis, -1), np.moveaxis(stegos, axis, -1)
  lead = np.broadcast_shapes(covers.shape[:-1], stegos.shape[:-1])
  n_c, n_s = covers.shape[-1], stegos.shape[-1]
  scores = np.concatenate(
    [np.broadcast_to(covers, (*lead, n_c)), np.broadcast_to(stegos, (*lead, n_s))], -1
  ).reshape(-1, n_c + n_s)
  labels = np.broadcast_to(np.r_[np.zeros(n_c, np.int64), np.ones(n_s, np.int64)], scores.shape)
  pe, _, _ = _min_pe_rows(scores, labels, n_c, n_s)
  return pe.reshape(lead)


def bootstrap_ci(
  key: jax.Array,
  scores,
  labels,
  statistic: Optional[Callable] = None,
  num_resamples: int = 1000,
  level: float = 0.95,
) -> tuple[float, float]:
  """Stratified percentile bootstrap interval (``scipy.stats.bootstrap``, class sizes fixed).

  ``statistic(scores, labels) -> float``; default is ``min_pe`` with the
  threshold re-optimized in every resample (so the selection is part of the
  variability).
  """
  scores, labels, n_c, n_s = _check(scores, labels)
  if num_resamples < 10:
    raise ValueError(f"num_resamples must be >= 10, got {num_resamples}")
  if statistic is None:
    stat, vectorized = _min_pe_split, True
  else:
    y = np.r_[np.zeros(n_c, np.int64), np.ones(n_s, np.int64)]
    stat, vectorized = (lambda c, s: statistic(np.concatenate([c, s]), y)), False
  r = scipy.stats.bootstrap(
    (scores[labels == 0], scores[labels == 1]),
    stat,
    vectorized=vectorized,
    n_resamples=num_resamples,
    confidence_level=level,
    method="percentile",
    rng=stats.numpy_rng(key),
  )
  return float(r.confidence_interval.low), float(r.confidence_interval.high)


def min_pe_permutation_test(
  key: jax.Array, scores, labels, num_permutations: int = 1000, level: float = 0.95
) -> dict:
  """Exact null of min-P_E: shuffle labels (H0: cover and stego scores exchangeable).

  Returns the p-value P[min P_E under H0 <= observed] (with +1 correction)
  and the null interval [q_{(1-level)/2}, q_{(1+level)/2}]: an undetectable
  stego has its min-P_E inside it, although the interval lies below 0.5.
  """
  scores, labels, n_c, n_s = _check(scores, labels)
  r = scipy.stats.permutation_test(
    (scores[labels == 0], scores[labels == 1]),
    _min_pe_split,
    vectorized=True,
    n_resamples=num_permutations,
    alternative="less",
    rng=stats.numpy_rng(key),
  )
  a = (1.0 - level) / 2.0
  lo, hi = np.quantile(r.null_distribution, [a, 1.0 - a])
  return {
    "min_pe": float(r.statistic),
    "pvalue": float(r.pvalue),
    "null_interval": (float(lo), float(hi)),
    "null_mean": float(np.mean(r.null_distribution)),
  }


def evaluate(
  key: jax.Array,
  train_scores,
  train_labels,
  test_scores,
  test_labels,
  level: float = 0.95,
  num_resamples: int = 1000,
) -> dict:
  """Every figure the steganalysis report needs for one detector.

  * ``pe_fixed``: P_E on test at the threshold minimizing P_E on train, with
    its binomial interval ``pe_fixed_ci`` (the unbiased figure);
  * ``pe_min``: min-P_E on test (literature's figure), its stratified
    bootstrap interval and the permutation null interval and p-value;
  * ``auc`` and the test ROC curve.
  """
  k_boot, k_perm = jax.random.split(key)
  _, thr = min_pe(train_scores, train_labels)
  test_scores_np, test_labels_np, n_c, n_s = _check(test_scores, test_labels)
  p_fa, p_md = detection_errors(test_scores_np, test_labels_np, thr)
  pe_min_test, thr_test = min_pe(test_scores_np, test_labels_np)
  perm = min_pe_permutation_test(k_perm, test_scores_np, test_labels_np, num_resamples, level)
  fpr, tpr, _ = roc_curve(test_scores_np, test_labels_np)
  return {
    "n_cover_test": n_c,
    "n_stego_test": n_s,
    "threshold_train": thr,
    "p_fa": p_fa,
    "p_md": p_md,
    "pe_fixed": 0.5 * (p_fa + p_md),
    "pe_fixed_ci": pe_binomial_ci(p_fa, p_md, n_c, n_s, level),
    "pe_min": pe_min_test,
    "threshold_test": thr_test,
    "pe_min_bootstrap_ci": bootstrap_ci(
      k_boot, test_scores_np, test_labels_np, None, num_resamples, level
    ),
    "pe_min_null_interval": perm["null_interval"],
    "pe_min_pvalue": perm["pvalue"],
    "auc": auc(test_scores_np, test_labels_np),
    "roc_fpr": fpr.tolist(),
    "roc_tpr": tpr.tolist(),
    "ci_level": level,
    "ci_method": "pe_fixed: Agresti-Caffo adjusted Wald binomial; "
    "pe_min: stratified percentile bootstrap (threshold re-optimized) "
    "and label-permutation null",
  }
