"""Statistical tests on stego token sequences (numpy; p-values from jax.scipy.special).

The security claim of a distribution-preserving sampler is that stego token
sequences are distributed exactly as cover sequences. These tests are the
network-free attacks on that claim (issue 7):

* two-sample tests on per-sequence mean log-likelihoods under the prior
  (Welch's t, Mann-Whitney U, and a keyed permutation test);
* a per-position chi-square test of homogeneity between cover and stego token
  histograms (for a fixed message);
* a token-coincidence statistic that catches a *fixed nonce*: with one key and
  one counter for every message, the sampler's draws repeat and stego
  sequences collide with each other far more often than independent samples.

scipy is not a dependency: distribution tails come from
``jax.scipy.special`` (``gammaincc`` for chi-square, ``betainc`` for Student t,
``ndtr`` for the normal), evaluated in float32 (x64 stays disabled), so
p-values below ~1e-38 read as 0.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np


@dataclasses.dataclass(frozen=True)
class TestResult:
  """A test statistic and its p-value (``name`` says which test)."""

  name: str
  statistic: float
  pvalue: float
  df: Optional[float] = None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# --------------------------------------------------------------------------
# Distribution tails.
# --------------------------------------------------------------------------


def chi2_sf(x, df):
  """P[X >= x] for X ~ chi-square(df): the regularized upper gamma Q(df/2, x/2)."""
  x = np.asarray(x, np.float64)
  df = np.asarray(df, np.float64)
  if np.any(df <= 0):
    raise ValueError(f"chi2_sf: degrees of freedom must be positive, got {df}")
  p = jsp.gammaincc(
    jnp.asarray(df / 2.0, jnp.float32), jnp.asarray(np.maximum(x, 0.0) / 2.0, jnp.float32)
  )
  return np.asarray(p, np.float64)


def t_sf_two_sided(t, df):
  """P[|T| >= |t|] for Student t with ``df`` degrees: I_{df/(df+t^2)}(df/2, 1/2)."""
  t = np.asarray(t, np.float64)
  df = np.asarray(df, np.float64)
  if np.any(df <= 0):
    raise ValueError(f"t_sf_two_sided: degrees of freedom must be positive, got {df}")
  x = df / (df + t * t)
  p = jsp.betainc(jnp.asarray(df / 2.0, jnp.float32), jnp.float32(0.5), jnp.asarray(x, jnp.float32))
  return np.clip(np.asarray(p, np.float64), 0.0, 1.0)


def normal_sf_two_sided(z):
  """P[|Z| >= |z|] for a standard normal, 2 * Phi(-|z|)."""
  z = np.abs(np.asarray(z, np.float64))
  return np.asarray(2.0 * jsp.ndtr(jnp.asarray(-z, jnp.float32)), np.float64)


def normal_sf(z):
  """P[Z >= z] for a standard normal (one-sided, upper tail)."""
  return np.asarray(jsp.ndtr(jnp.asarray(-np.asarray(z, np.float64), jnp.float32)), np.float64)


# --------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------


def _as_1d(x, name: str) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
  if x.size < 2:
    raise ValueError(f"{name} needs at least 2 samples, got {x.size}")
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} contains NaN or inf")
  return x


def rankdata(x) -> np.ndarray:
  """Ranks 1..n with ties given their average rank (as scipy's 'average')."""
  x = np.asarray(x)
  order = np.argsort(x, kind="stable")
  xs = x[order]
  # Start index of each run of equal values.
  new_run = np.concatenate([[True], xs[1:] != xs[:-1]])
  run_id = np.cumsum(new_run) - 1
  starts = np.flatnonzero(new_run)
  ends = np.concatenate([starts[1:], [xs.size]])
  avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
  ranks = np.empty(x.size, np.float64)
  ranks[order] = avg[run_id]
  return ranks


# --------------------------------------------------------------------------
# Two-sample tests (per-sequence log-likelihoods).
# --------------------------------------------------------------------------


def welch_t_test(a, b) -> TestResult:
  """Welch's unequal-variance t test of mean(a) == mean(b), two-sided."""
  a = _as_1d(a, "a")
  b = _as_1d(b, "b")
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  se2 = va + vb
  diff = a.mean() - b.mean()
  if se2 == 0.0:
    # Both samples constant: identical means are no evidence, different ones certain.
    return TestResult(
      "welch_t",
      0.0 if diff == 0 else float(np.sign(diff) * np.inf),
      1.0 if diff == 0 else 0.0,
      float(a.size + b.size - 2),
    )
  t = diff / np.sqrt(se2)
  # Welch-Satterthwaite degrees of freedom.
  df = se2**2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
  return TestResult("welch_t", float(t), float(t_sf_two_sided(t, df)), float(df))


def mann_whitney_u(a, b, alternative: str = "two-sided") -> TestResult:
  """Mann-Whitney U (normal approximation with tie correction, continuity 0.5).

  ``statistic`` is U for ``a``; U / (n_a n_b) is P[a > b] + P[a = b] / 2.
  ``alternative``: 'two-sided' or 'greater' (a tends to be larger than b).
  """
  if alternative not in ("two-sided", "greater"):
    raise ValueError(f"alternative must be 'two-sided' or 'greater', got {alternative!r}")
  a = _as_1d(a, "a")
  b = _as_1d(b, "b")
  na, nb = a.size, b.size
  n = na + nb
  ranks = rankdata(np.concatenate([a, b]))
  u = ranks[:na].sum() - na * (na + 1) / 2.0
  mu = na * nb / 2.0
  _, tie_counts = np.unique(np.concatenate([a, b]), return_counts=True)
  tie_term = np.sum(tie_counts**3 - tie_counts) / (n * (n - 1))
  sigma = np.sqrt(na * nb / 12.0 * ((n + 1) - tie_term))
  if sigma == 0.0:
    return TestResult("mann_whitney_u", float(u), 1.0)
  if alternative == "two-sided":
    z = (abs(u - mu) - 0.5) / sigma
    p = normal_sf_two_sided(max(z, 0.0))
  else:
    z = (u - mu - 0.5) / sigma
    p = normal_sf(z)
  return TestResult("mann_whitney_u", float(u), float(min(1.0, p)))


def permutation_test_mean(key: jax.Array, a, b, num_permutations: int = 2000) -> TestResult:
  """Two-sided permutation test of |mean(a) - mean(b)| (p with the +1 correction).

  Exact in level for any distribution (the labels are exchangeable under H0),
  so it checks the t test's normal approximation. The permutations come from
  ``key`` (no global RNG).
  """
  a = _as_1d(a, "a")
  b = _as_1d(b, "b")
  if num_permutations < 1:
    raise ValueError(f"num_permutations must be >= 1, got {num_permutations}")
  pooled = np.concatenate([a, b])
  n = pooled.size
  observed = abs(a.mean() - b.mean())
  # Random permutations as the argsort of keyed uint32 bits (one cheap jax op).
  perms = np.argsort(
    np.asarray(jax.random.bits(key, (num_permutations, n), np.uint32)), axis=1, kind="stable"
  )
  x = pooled[perms]
  stats = np.abs(x[:, : a.size].mean(axis=1) - x[:, a.size :].mean(axis=1))
  # A small relative tolerance so float ties with the observed value count as ties.
  exceed = np.sum(stats >= observed * (1 - 1e-12) - 1e-15)
  return TestResult(
    "permutation_mean", float(observed), float((exceed + 1) / (num_permutations + 1))
  )


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
  col = counts.sum(axis=0)
  expected = np.outer(row, col) / total
  stat = float(np.sum((counts - expected) ** 2 / expected))
  df = float((counts.shape[0] - 1) * (k - 1))
  return TestResult("chi2_homogeneity", stat, float(chi2_sf(stat, df)), df)


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
