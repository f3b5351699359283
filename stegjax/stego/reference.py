"""Plain per-token NumPy/Python reference of the samplers (one example, one step).

Independent of the JAX code paths (the PRF comes from the ``cryptography``
package's ChaCha20), so tests compare against it, and ``benchmarks/samplers.py``
uses it as the per-token loop baseline.
"""

from __future__ import annotations

import collections

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from stegjax.stego import prf

__all__ = ["draw_words", "basic_step", "huffman_step", "bisect_step", "STEPS"]


def draw_words(key, nonce: int, step: int, n_words: int) -> np.ndarray:
  """The same words as ``prf.draw_words``, from cryptography's ChaCha20 keystream."""
  n_blocks = -(-n_words // 16)
  nonce16 = np.array([0, step, nonce, prf._DOMAIN], np.uint32).astype("<u4").tobytes()
  enc = Cipher(algorithms.ChaCha20(prf.words_to_bytes(key), nonce16), mode=None).encryptor()
  ks = enc.update(b"\x00" * (64 * n_blocks))
  return np.frombuffer(ks, "<u4")[:n_words].astype(np.uint64)


def _order(f):
  f = np.asarray(f, np.int64)
  ids = np.argsort(-f, kind="stable")
  ids = ids[f[ids] > 0]
  return f[ids], ids


def basic_step(f, words, bits, precision, support=None):
  """(token, n) of basic Discop; ``bits`` is the message window (list of 0/1)."""
  fs, ids = _order(f)
  total = 1 << precision
  c = np.cumsum(fs)
  r = int(words[0]) >> (32 - precision)
  k_static = len(f) if support is None else min(support, len(f))
  n_lv = max(0, min(precision, k_static.bit_length() - 1))
  tok_at = lambda x: int(np.searchsorted(c, x % total, side="right"))
  n = 0
  for lv in range(1, n_lv + 1):
    toks = [tok_at(r + i * (total >> lv)) for i in range(1 << lv)]
    if len(set(toks)) < len(toks):
      break
    n = lv
  copy = 0
  for b in bits[:n]:
    copy = 2 * copy + int(b)
  return int(ids[tok_at(r + copy * (total >> n))]), n


def _frac(hi, lo, m):
  return ((int(hi) << 32 | int(lo)) * int(m)) >> 64


def _walk(words, bits, root, children, mass):
  node, d, n = root, 0, 0
  while node in children:
    first, second = children[node]
    p, l = mass[node], mass[first]
    hi, lo = int(words[2 * d]), int(words[2 * d + 1])
    c0 = _frac(hi, lo, p) < l
    c1 = _frac(hi ^ (1 << 31), lo, p) < l
    if c0 != c1:
      go = c1 if (n < len(bits) and bits[n]) else c0
      n += 1
    else:
      go = c0
    node = first if go else second
    d += 1
  return node, n


def huffman_step(f, words, bits, precision=None):
  """(token, n) of recursive Discop on the two-queue Huffman tree."""
  fs, ids = _order(f)
  m = len(fs)
  asc = fs[::-1]
  mass = {("L", a): int(asc[a]) for a in range(m)}
  q1 = collections.deque(("L", a) for a in range(m))
  q2 = collections.deque()
  children = {}
  q = 0
  while len(q1) + len(q2) > 1:
    picks = []
    for _ in range(2):
      if q1 and (not q2 or mass[q1[0]] <= mass[q2[0]]):
        picks.append(q1.popleft())
      else:
        picks.append(q2.popleft())
    node = ("N", q)
    q += 1
    mass[node] = mass[picks[0]] + mass[picks[1]]
    children[node] = (picks[0], picks[1])
    q2.append(node)
  root = q2[0] if q2 else q1[0]
  leaf, n = _walk(words, bits, root, children, mass)
  return int(ids[m - 1 - leaf[1]]), n


def bisect_step(f, words, bits, precision=None):
  """(token, n) of recursive Discop on the mass-bisection tree."""
  fs, ids = _order(f)
  c = np.concatenate([[0], np.cumsum(fs)])
  lo, hi, d, n = 0, len(fs), 0, 0
  while hi - lo > 1:
    t2 = c[lo] + c[hi]
    s = int(np.searchsorted(2 * c, t2, side="left"))
    cand = sorted({min(max(x, lo + 1), hi - 1) for x in (s - 1, s)})
    s = min(cand, key=lambda x: (abs(2 * c[x] - t2), x))
    p, l = int(c[hi] - c[lo]), int(c[s] - c[lo])
    hi_w, lo_w = int(words[2 * d]), int(words[2 * d + 1])
    c0 = _frac(hi_w, lo_w, p) < l
    c1 = _frac(hi_w ^ (1 << 31), lo_w, p) < l
    if c0 != c1:
      go = c1 if (n < len(bits) and bits[n]) else c0
      n += 1
    else:
      go = c0
    lo, hi = (lo, s) if go else (s, hi)
    d += 1
  return int(ids[lo]), n


STEPS = {"basic": basic_step, "recursive": huffman_step, "recursive_bisect": bisect_step}


def synthetic_probs(v: int, n: int, seed: int, exponent: float, noise: float = 0.5) -> np.ndarray:
  """Synthetic next-token distributions float32[n, v]: Zipf-like ranks (``rank**-exponent``)
  with log-normal noise, randomly permuted over the vocabulary. exponent 1.25 with top-k
  2000 of 16384 gives about 6 bits of entropy; 1.1 with top-p 0.92 of 50257 about 8 bits."""
  rng = np.random.default_rng(seed)
  logits = -exponent * np.log(np.arange(1, v + 1))[None] + rng.normal(size=(n, v)) * noise
  logits = np.take_along_axis(logits, np.argsort(rng.random((n, v)), axis=1), axis=1)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  return (p / p.sum(-1, keepdims=True)).astype(np.float32)
