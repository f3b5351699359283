"""The model-aware warden catches the legacy floor quantizer and not the nearest one.

Synthetic steps, no network: each of T steps has its own top-k distribution (peaked rows
with a tail far below one unit, and Zipf rows). Covers are drawn from the float
distribution with ``jax.random.categorical`` (an honest generator); stegos from the
quantized frequencies, which is exactly the marginal of a distribution-preserving sampler
(Discop's exact-marginal property, tests/stego/test_discop.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.security import warden

V, TOP_K, T, N = 512, 256, 64, 240  # vocabulary, kept tokens, steps, sequences per side


def _rows(seed):
  """float32 logits [T, V]: half peaked rows, half Zipf rows, each over a random top-k set."""
  rng = np.random.default_rng(seed)
  rank = np.arange(1, TOP_K + 1, dtype=np.float64)
  rows = np.full((T, V), -np.inf, np.float32)
  for t in range(T):
    if t % 2 == 0:
      # Peaked: 86 head tokens carry all but < 6e-6 of the mass; 170 tail tokens between
      # 1e-10 and 3.4e-8 each (far below one unit at 2**-12 .. 2**-16, around it at 2**-24).
      tail = np.exp(rng.uniform(np.log(1e-10), np.log(3.4e-8), 170))
      p = np.r_[rng.dirichlet(np.ones(86)) * (1 - tail.sum()), tail]
    else:
      p = rank**-1.3 / np.sum(rank**-1.3)  # Zipf: tail ~1e-4, around one unit at 2**-12
    rows[t, rng.permutation(V)[:TOP_K]] = np.log(p)
  return jnp.asarray(rows)


def _draw(key, logits_rows, n):
  """n sequences [n, T], step t drawn from the distribution given by logits_rows[t]."""
  return jax.random.categorical(key, logits_rows, shape=(n, T))


def _run(precision, rule, seed=0):
  key = jax.random.key(seed)
  rows = _rows(seed)
  covers = _draw(jax.random.fold_in(key, 1), rows, N)  # honest: the float distribution
  # The stego marginal: this rule's integer frequencies (q) as the sampling distribution.
  _, q = warden.step_distributions(rows, precision=precision, top_k=TOP_K, rule=rule)
  stegos = _draw(jax.random.fold_in(key, 2), jnp.log(q), N)
  cov, stg = (
    warden.statistics(
      *warden.token_masses(rows, x, precision=precision, top_k=TOP_K, rule=rule), precision
    )
    for x in (covers, stegos)
  )
  return warden.compare(cov, stg, num_train=N // 2)


def test_catches_the_floor_rule():
  """The positive control: the legacy floor rule at a low precision, N = 240 + 240."""
  out = _run(12, "floor")
  for name in warden.STATISTICS:
    r = out[name]
    assert r["pvalue"] < 1e-6 and r["pe_ci"][1] < 0.4, (name, r)
  # Tail tokens of model mass <= 3.4e-8 appear in stegos at 2**-12 each.
  assert out["rare_rate"]["mean_stego"] > 0.01 > 1e-4 > out["rare_rate"]["mean_cover"]
  # At 2**-16 the inflation is 16x smaller and still seen by the rare-token rate.
  assert _run(16, "floor")["rare_rate"]["pvalue"] < 1e-3


def test_does_not_catch_the_nearest_rule():
  """The nearest rule at the tool's precision: P_E's interval holds 0.5, no small p-value."""
  out = _run(24, "nearest")
  for name in warden.STATISTICS:
    r = out[name]
    lo, hi = r["pe_ci"]
    assert lo <= 0.5 <= hi and r["pvalue"] > 1e-3, (name, r)
  # Even at 2**-12 no token is inflated: stegos hold no token under half a unit.
  low = _run(12, "nearest")["rare_rate"]
  assert low["mean_stego"] == 0.0 and low["pvalue"] > 0.1


def test_token_masses_per_sequence_logits():
  rows = _rows(3)[:4]
  toks = jax.random.categorical(jax.random.key(4), rows, shape=(3, 4))
  shared = warden.token_masses(rows, toks, precision=12, top_k=TOP_K, rule="floor")
  each = warden.token_masses(
    jnp.broadcast_to(rows, (3, 4, V)), toks, precision=12, top_k=TOP_K, rule="floor"
  )
  # The same masses (up to float32 ulps of the softmax; q within one unit).
  np.testing.assert_allclose(np.asarray(shared[0]), np.asarray(each[0]), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(shared[1]), np.asarray(each[1]), rtol=0, atol=2.0**-12)
  p, q = warden.step_distributions(rows, precision=12, top_k=TOP_K, rule="floor")
  np.testing.assert_allclose(np.asarray(q.sum(-1)), 1.0, rtol=1e-6)
  assert float(q[0].min(where=p[0] > 0, initial=1.0)) == 2.0**-12  # the floor: one unit


def test_statistics_hand_values():
  p = np.array([[0.5, 1e-9, 0.25], [0.5, 0.5, 0.5]])
  q = np.array([[0.25, 2.0**-12, 0.0], [0.5, 0.5, 0.5]])
  s = warden.statistics(p, q, precision=12)
  np.testing.assert_allclose(s["rare_rate"], [1 / 3, 0.0])
  want = (np.log(0.5) + np.log(2.0**-12 / 1e-9) - 12 * np.log(2.0)) / 3
  np.testing.assert_allclose(s["log_ratio"], [want, 0.0])
  with pytest.raises(ValueError, match="model mass 0"):
    warden.statistics(np.zeros((1, 2)), np.zeros((1, 2)), 12)
  with pytest.raises(ValueError, match="num_train"):
    warden.compare(s, s, num_train=2)
