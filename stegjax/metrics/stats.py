"""Statistical tests on stego token sequences (tests and tails from ``scipy.stats``).

The security claim of a distribution-preserving sampler is that stego token
sequences are distributed exactly as cover sequences. These tests are the
network-free attacks on that claim:

* two-sample tests on per-sequence mean log-likelihoods under the prior
  (Welch's t, Mann-Whitney U, and a keyed permutation test);
* a per-position chi-square test of homogeneity between cover and stego token
  histograms (for a fixed message), rare tokens pooled;
* a token-coincidence statistic that catches a *fixed nonce*: with one key and
  one counter for every message, the sampler's draws repeat and stego
  sequences collide with each other far more often than independent samples.

What stegjax adds to scipy is only the pooling of sparse histograms, the
coincidence statistics and a keyed ``numpy`` generator (``numpy_rng``), so that
resampling is a function of an explicit ``jax.random`` key.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats


@dataclasses.dataclass(frozen=True)
class TestResult:
  """A test statistic and its p-value (``name`` says which test)."""

  name: str
  statistic: float
  pvalue: float
  df: Optional[float] = None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def numpy_rng(key: jax.Array) -> np.random.Generator:
  """A numpy generator seeded from a ``jax.random`` key (for scipy's resampling tests)."""
  return np.random.default_rng(np.asarray(jax.random.bits(key, (4,), jnp.uint32)))


def _as_1d(x, name: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
  if x.size < 2:
    raise ValueError(f"{name} needs at least 2 samples, got {x.size}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains NaN or inf")
  return x


# --------------------------------------------------------------------------
# Two-sample tests (per-sequence log-likelihoods).
# --------------------------------------------------------------------------


def welch_t_test(a, b) -> TestResult:
  """Welch's unequal-variance t test of mean(a) == mean(b), two-sided."""
  a = _as_1d(a, "a")
  b = _as_1d(b, "b")
  if a.var() == 0.0 and b.var() == 0.0:
    # Both samples constant (scipy gives NaN): equal means are no evidence, unequal certain.
    diff = a.mean() - b.mean()
    t = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return TestResult("welch_t", t, 1.0 if diff == 0 else 0.0, float(a.size + b.size - 2))
  r = scipy.stats.ttest_ind(a, b, equal_var=False)
  return TestResult("welch_t", float(r.statistic), float(r.pvalue), float(r.df))


def mann_whitney_u(a, b, alternative: str = "two-sided") -> TestResult:
  """Mann-Whitney U (normal approximation with tie correction, continuity 0.5).

  ``statistic`` is U for ``a``; U / (n_a n_b) is P[a > b] + P[a = b] / 2.
  ``alternative``: 'two-sided' or 'greater' (a tends to be larger than b).
  """
  if alternative not in ("two-sided", "greater"):
    raise ValueError(f"alternative must be 'two-sided' or 'greater', got {alternative!r}")
  a = _as_1d(a, "a")
  b = _as_1d(b, "b")
  if np.all(np.concatenate([a, b]) == a[0]):
    return TestResult("mann_whitney_u", a.size * b.size / 2.0, 1.0)  # all tied: no evidence
  r = scipy.stats.mannwhitneyu(a, b, alternative=alternative, method="asymptotic")
  return TestResult("mann_whitney_u", float(r.statistic), float(r.pvalue))


def _abs_mean_diff(x, y, axis=-1):
  return np.abs(np.mean(x, axis=axis) - np.mean(y, axis=axis))


def permutation_test_mean(key: jax.Array, a, b, num_permutations: int = 2000) -> TestResult:
  """Permutation test of |mean(a) - mean(b)|, p = (#{null >= observed} + 1) / (n + 1).

  Exact in level for any distribution (the labels are exchangeable under H0),
  so it checks the t test's normal approximation. The permutations come from
  ``key`` (no global RNG).
  """
  a = _as_1d(a, "a")
  b = _as_1d(b, "b")
  if num_permutations < 1:
    raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")
  r = scipy.stats.permutation_test(
    (a, b),
    _abs_mean_diff,
    vectorized=True,
    n_resamples=num_permutations,
    alternative="greater",
    rng=numpy_rng(key),
  )
  return TestResult("permutation_mean", float(r.statistic), float(r.pvalue))


def two_sample_tests(
  cover, stego, key: Optional[jax.Array] = None, num_permutations: int = 2000
) -> dict:
  """All two-sample tests of cover vs stego values (e.g. mean per-token log-likelihood)."""
  cover = _as_1d(cover, "cover")
  stego = _as_1d(stego, "stego")
  out = {
    "n_cover": int(cover.size),
    "n_stego": int(stego.size),
    "mean_cover": float(cover.mean()),
    "mean_stego": float(stego.mean()),
    "std_cover": float(cover.std(ddof=1)),
    "std_stego": float(stego.std(ddof=1)),
    "welch_t": welch_t_test(stego, cover).to_dict(),
    "mann_whitney_u": mann_whitney_u(stego, cover).to_dict(),
  }
  if key is not None:
    out["permutation_mean"] = permutation_test_mean(key, stego, cover, num_permutations).to_dict()
  out["min_pvalue"] = min(v["pvalue"] for v in out.values() if isinstance(v, dict))
  return out


# --------------------------------------------------------------------------
# Token histograms.
# --------------------------------------------------------------------------


def token_histograms(tokens, vocab_size: int) -> np.ndarray:
  """Counts[t, k] = number of sequences with token k at position t; tokens (N, T)."""
  tokens = np.asarray(tokens)
  if tokens.ndim != 2:
    raise ValueError(f"tokens must have shape (num_sequences, length), got {tokens.shape}")
  if not np.issubdtype(tokens.dtype, np.integer):
    raise ValueError(f"tokens must be integers, got dtype {tokens.dtype}")
  if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
    raise ValueError(
      f"token ids must lie in [0, {vocab_size}), got range [{tokens.min()}, {tokens.max()}]"
    )
  n, t = tokens.shape
  flat = (np.arange(t)[None, :] * vocab_size + tokens).ravel()
  return np.bincount(flat, minlength=t * vocab_size).reshape(t, vocab_size)


def chi2_homogeneity(counts, min_expected: float = 5.0) -> TestResult:
  """Chi-square test that the rows of a contingency table share one distribution.

  counts: (R, K) non-negative counts (rows = samples, columns = categories).
  Columns whose smallest expected count is below ``min_expected`` are pooled
  into one "rare" column (and dropped if still empty) so that the chi-square
  approximation holds on sparse token histograms; df = (R-1)(K'-1).
  """
  counts = np.asarray(counts, np.float64)
  if counts.ndim != 2 or counts.shape[0] < 2:
    raise ValueError(f"counts must be (rows >= 2, categories), got {counts.shape}")
  if np.any(counts < 0):
    raise ValueError("counts must be non-negative")
  row = counts.sum(axis=1)
  if np.any(row == 0):
    raise ValueError("every row of counts needs at least one observation")
  counts = counts[:, counts.sum(axis=0) > 0]
  total = row.sum()
  expected_min = row.min() * counts.sum(axis=0) / total
  rare = expected_min < min_expected
  if np.any(rare):
    pooled = counts[:, rare].sum(axis=1, keepdims=True)
    counts = np.concatenate([counts[:, ~rare], pooled], axis=1)
    # If the pooled column is itself too small, fold it into the smallest column.
    if counts.shape[1] > 1 and row.min() * counts[:, -1].sum() / total < min_expected:
      j = int(np.argmin(counts[:, :-1].sum(axis=0)))
      counts[:, j] += counts[:, -1]
      counts = counts[:, :-1]
  k = counts.shape[1]
  if k < 2:
    # One category left: every row is identical in distribution.
    return TestResult("chi2_homogeneity", 0.0, 1.0, 0.0)
  r = scipy.stats.chi2_contingency(counts, correction=False)  # Pearson's, no Yates
  return TestResult("chi2_homogeneity", float(r.statistic), float(r.pvalue), float(r.dof))


def per_position_chi2(
  tokens_a, tokens_b, vocab_size: int, alpha: float = 0.01, min_expected: float = 5.0
) -> dict:
  """Per-position chi-square homogeneity of token histograms, a vs b.

  tokens_a, tokens_b: (N_a, T), (N_b, T) token ids (e.g. cover and stego for a
  fixed message). Positions are dependent (same sequences), so the global
  p-value is Bonferroni's ``min(1, T * min_t p_t)``, valid under any
  dependence. Also reports how many positions reject at ``alpha`` (about
  ``alpha * T`` expected under H0).
  """
  ha = token_histograms(tokens_a, vocab_size)
  hb = token_histograms(tokens_b, vocab_size)
  if ha.shape[0] != hb.shape[0]:
    raise ValueError(f"sequence lengths differ: {ha.shape[0]} vs {hb.shape[0]}")
  results = [chi2_homogeneity(np.stack([ha[t], hb[t]]), min_expected) for t in range(ha.shape[0])]
  p = np.array([r.pvalue for r in results])
  num_pos = p.size
  return {
    "statistics": [r.statistic for r in results],
    "dfs": [r.df for r in results],
    "pvalues": p.tolist(),
    "min_pvalue": float(p.min()),
    "bonferroni_pvalue": float(min(1.0, num_pos * p.min())),
    "num_rejected": int(np.sum(p < alpha)),
    "num_positions": int(num_pos),
    "alpha": alpha,
  }


# --------------------------------------------------------------------------
# Token coincidence (fixed-nonce ablation).
# --------------------------------------------------------------------------


def pair_coincidences(tokens) -> np.ndarray:
  """Fraction of equal positions in each disjoint pair (0,1), (2,3), ...; tokens (N, T).

  Disjoint pairs keep the per-pair values independent, so a two-sample test on
  them is valid. Independent samples coincide at position t with the
  collision probability sum_k p_t(k)^2; a fixed nonce pushes this up.
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or tokens.shape[0] < 4:
    raise ValueError(f"tokens must be (N >= 4, T), got {tokens.shape}")
  m = tokens.shape[0] // 2
  return np.mean(tokens[0 : 2 * m : 2] == tokens[1 : 2 * m : 2], axis=1).astype(np.float64)


def pair_common_prefix(tokens) -> np.ndarray:
  """Length of the common prefix of each disjoint pair (0,1), (2,3), ...; tokens (N, T).

  The sharper fixed-nonce statistic: while two sequences share a prefix their
  next-token distributions are identical, and with one nonce their draws are
  identical too, so they stay together far longer than independent samples
  wherever the distribution is peaked (steps that embed no bit copy the draw).
  """
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or tokens.shape[0] < 4:
    raise ValueError(f"tokens must be (N >= 4, T), got {tokens.shape}")
  m = tokens.shape[0] // 2
  eq = tokens[0 : 2 * m : 2] == tokens[1 : 2 * m : 2]
  return np.cumprod(eq, axis=1).sum(axis=1).astype(np.float64)


def collision_rate(tokens) -> np.ndarray:
  """Unbiased per-position collision probability over all pairs: sum_k c(c-1)/(N(N-1))."""
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or tokens.shape[0] < 2:
    raise ValueError(f"tokens must be (N >= 2, T), got {tokens.shape}")
  n = tokens.shape[0]
  h = token_histograms(tokens, int(tokens.max()) + 1).astype(np.float64)
  return np.sum(h * (h - 1), axis=1) / (n * (n - 1))


def coincidence_test(tokens_test, tokens_ref) -> dict:
  """One-sided test that ``tokens_test`` sequences coincide more than ``tokens_ref``.

  Mann-Whitney U ('greater') on two disjoint-pair statistics, the fraction of
  equal positions and the common-prefix length; the reported ``pvalue`` is
  Bonferroni's ``min(1, 2 * min(p1, p2))``. E.g. test = stego sequences made
  with one key and a fixed counter, ref = covers sampled with fresh keys.
  """
  ct = pair_coincidences(tokens_test)
  cr = pair_coincidences(tokens_ref)
  pt = pair_common_prefix(tokens_test)
  pr = pair_common_prefix(tokens_ref)
  mw = mann_whitney_u(ct, cr, alternative="greater")
  mw_prefix = mann_whitney_u(pt, pr, alternative="greater")
  return {
    "mean_coincidence_test": float(ct.mean()),
    "mean_coincidence_ref": float(cr.mean()),
    "mean_common_prefix_test": float(pt.mean()),
    "mean_common_prefix_ref": float(pr.mean()),
    "collision_rate_test": float(collision_rate(tokens_test).mean()),
    "collision_rate_ref": float(collision_rate(tokens_ref).mean()),
    "mann_whitney_u": mw.to_dict(),
    "mann_whitney_u_prefix": mw_prefix.to_dict(),
    "pvalue": float(min(1.0, 2.0 * min(mw.pvalue, mw_prefix.pvalue))),
  }
