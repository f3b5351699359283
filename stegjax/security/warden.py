"""A model-aware warden: tells stego token sequences from honest generations by likelihood.

A warden who has the prior and knows the sampler's quantizer knows, at every step t of a
sequence, the model's top-k distribution ``p_t`` (what an honest generator draws from with
``jax.random.categorical``) and the distribution ``q_t = freqs_t / 2**precision`` that a
distribution-preserving sampler really draws from. The sampler is secure as far as
``q_t = p_t``; finite precision makes them differ most where ``p_t`` is tiny. The legacy
``floor`` rule gives every kept token at least one unit, so tokens the model almost never
draws appear at ``2**-precision`` (low-probability inflation, the finite-precision effect
published attacks on provably secure samplers exploit).

Two statistics per sequence, larger meaning "more stego-like":

* ``rare_rate``: the fraction of its tokens whose model mass is below ``2**-(precision+1)``
  (half a unit, the quantizer's resolution);
* ``log_ratio``: the mean per-token log-likelihood ratio ``log q_t(x_t) / p_t(x_t)`` of stego
  against cover (summed over the sequence it is the Neyman-Pearson test of the whole
  sequence). A token the quantizer gives nothing (no stego can carry it) scores
  ``log 2**-precision``, the lowest ratio a token with a frequency can reach, not -inf.

``step_distributions`` gives ``p_t`` and ``q_t`` from a step's processed logits, ``token_masses``
``p_t(x_t)`` and ``q_t(x_t)`` of the tokens;
``statistics`` turns them into the per-sequence scores; ``compare`` measures covers against
stegos.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

from stegjax.metrics import detection, stats
from stegjax.stego import quantize

STATISTICS = ("rare_rate", "log_ratio")


@functools.partial(jax.jit, static_argnames=("precision", "top_k", "rule"))
def step_distributions(logits, *, precision: int, top_k: int | None, rule: str):
  """The honest and the stego distribution of each step, float32[..., V] each.

  logits: float[..., V], the processed logits of a step (CFG, temperature, top-k already
  applied, as the sampler sees them). Returns (p, q): ``p`` the softmax, what an honest
  generator draws from; ``q`` the quantizer's integer frequencies over ``2**precision``,
  what a distribution-preserving stego sampler draws from.
  """
  p = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  freqs = quantize.to_frequencies(p, precision=precision, top_k=top_k, rule=rule)
  return p, freqs.astype(jnp.float32) / jnp.float32(2.0**precision)


def token_masses(logits, tokens, *, precision: int, top_k: int | None, rule: str):
  """Model mass ``p`` and stego mass ``q`` of each token, float32[N, T] each.

  logits: float[N, T, V] (or [T, V], shared by every sequence), each step's processed
  logits; tokens: int[N, T].
  """
  logits, tokens = jnp.asarray(logits), jnp.asarray(tokens)
  chex.assert_rank(tokens, 2)
  if logits.ndim == 2:
    logits = logits[None]
  chex.assert_rank(logits, 3)
  chex.assert_equal(logits.shape[1], tokens.shape[1])
  p, q = step_distributions(logits, precision=precision, top_k=top_k, rule=rule)
  p, q = (jnp.broadcast_to(a, (tokens.shape[0], *a.shape[1:])) for a in (p, q))
  pick = lambda a: jnp.take_along_axis(a, tokens[..., None], axis=-1)[..., 0]
  return pick(p), pick(q)


def statistics(p, q, precision: int) -> dict:
  """Per-sequence ``rare_rate`` and ``log_ratio`` (float64[N]) of token masses [N, T]."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  if p.shape != q.shape or p.ndim != 2:
    raise ValueError(f"p and q must be [N, T] of one shape, got {p.shape} and {q.shape}")
  if np.any(p <= 0):
    raise ValueError("a token has model mass 0: it was not drawn from this prior's top-k")
  with np.errstate(divide="ignore"):
    ratio = np.where(q > 0, np.log(q) - np.log(p), -precision * np.log(2.0))
  return {
    "rare_rate": np.mean(p < 2.0 ** -(precision + 1), axis=1),
    "log_ratio": np.mean(ratio, axis=1),
  }


def compare(cover: dict, stego: dict, num_train: int, level: float = 0.95) -> dict:
  """The warden's figures for each statistic, covers vs stegos (dicts from ``statistics``).

  The first ``num_train`` sequences of each side choose the threshold (min P_E there); P_E
  on the rest gets its binomial interval. The p-value is a one-sided Mann-Whitney U
  (stegos score higher) over every sequence, valid since the sequences of each side are
  independent draws.
  """
  out = {}
  for name in STATISTICS:
    c, s = np.asarray(cover[name]), np.asarray(stego[name])
    n_c, n_s = len(c) - num_train, len(s) - num_train
    if num_train < 1 or min(n_c, n_s) < 1:
      raise ValueError(
        f"the warden needs 1 <= num_train < sequences, got {num_train} of {len(c)}, {len(s)}"
      )
    y = lambda a, b: np.r_[np.zeros(a, int), np.ones(b, int)]
    _, thr = detection.min_pe(np.r_[c[:num_train], s[:num_train]], y(num_train, num_train))
    test_scores, test_labels = np.r_[c[num_train:], s[num_train:]], y(n_c, n_s)
    p_fa, p_md = detection.detection_errors(test_scores, test_labels, thr)
    out[name] = {
      "n_cover": int(len(c)),
      "n_stego": int(len(s)),
      "n_test_cover": int(n_c),
      "n_test_stego": int(n_s),
      "mean_cover": float(np.mean(c)),
      "mean_stego": float(np.mean(s)),
      "threshold": float(thr),
      "pe": 0.5 * (p_fa + p_md),
      "pe_ci": detection.pe_binomial_ci(p_fa, p_md, n_c, n_s, level),
      "ci_level": level,
      "auc": detection.auc(test_scores, test_labels),
      "pvalue": stats.mann_whitney_u(s, c, alternative="greater").pvalue,
    }
  return out


def _masses_and_tail(logits, tokens, *, precision: int, top_k: int | None, rule: str):
  """token_masses, plus per sequence the mean number and mass of kept tokens per step that
  lie below half a unit (what the floor rule inflates; none means nothing to see)."""
  p, q = token_masses(logits, tokens, precision=precision, top_k=top_k, rule=rule)
  probs = jax.nn.softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  below = (probs > 0) & (probs < 2.0 ** -(precision + 1))
  return p, q, below.sum(-1).mean(-1), jnp.where(below, probs, 0.0).sum(-1).mean(-1)


def evaluate(
  gen, labels, covers, stegos, *, precision: int, rule: str, num_train: int, level=0.95, batch=64
) -> dict:
  """``compare`` of honest ``covers`` and ``stegos`` (int[N, T] tokens for ``labels``) under the
  quantizer (``precision``, ``rule``) the warden assumes; ``gen`` a ``generation.Generator``
  (its prior gives each step's processed logits). ``tail_tokens`` / ``tail_mass``: kept
  tokens per step below half a unit in the covers' distributions, and their mass."""
  fn = functools.partial(_masses_and_tail, precision=precision, top_k=gen.top_k, rule=rule)
  p, q, count, mass = gen.per_sequence(fn, labels, covers, batch)
  cover = statistics(p, q, precision)
  stego = statistics(*gen.per_sequence(fn, labels, stegos, batch)[:2], precision)
  out = dict(compare(cover, stego, num_train, level), precision=precision, rule=rule)
  return dict(out, tail_tokens=float(np.mean(count)), tail_mass=float(np.mean(mass)))
