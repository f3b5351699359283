"""Distributions the sampler tests share: four kinds of rows over a real vocabulary size."""

import functools

import numpy as np

from stegjax.stego import quantize


def kinds(rng, v):
  """peaked, flat, Zipf-like, random: probabilities [4, v]."""
  z = rng.normal(size=(4, v))
  logits = np.stack([z[0] * 6.0, z[1] * 0.05, -1.1 * np.log(rng.permutation(v) + 1.0), z[3] * 1.5])
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return p / p.sum(-1, keepdims=True)


@functools.lru_cache(maxsize=None)
def top_k_2000(steps: int, precision: int = 24):
  """Top-k 2000 of 16384: freqs [4 kinds, steps, V], 400 message bits per row, nonces."""
  rng = np.random.default_rng(0)
  probs = np.stack([kinds(rng, 16384) for _ in range(steps)], axis=1).astype(np.float32)
  freqs = np.asarray(quantize.to_frequencies(probs, precision=precision, top_k=2000))
  bits = rng.integers(0, 2, size=(4, 400)).astype(np.uint8)
  return freqs, bits, np.array([11, 12, 13, 14], np.uint32)
