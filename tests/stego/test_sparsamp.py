"""SparSamp: the eight sampler properties of DESIGN.md, adapted (round trip, exact marginal by
chi-square and by exhaustive integration over the draw, zero message vs plain sampling at
block starts, capacity against an independent per-token reference, identical draws,
determinism, batching, extraction from token ids)."""

import functools

import jax
import numpy as np
import pytest

from tests.stego import cases

from stegjax.errors import ConfigError

from stegjax.stego import prf, quantize, reference, sampler, sparsamp

KEY = prf.make_key(b"sparsamp test")


def big_case():
  """Top-k 2000 of 16384, four kinds of rows, T=6 steps."""
  return cases.top_k_2000(6)


S = sampler.get("sparsamp", top_k=2000, precision=24, block_bits=12)


@functools.lru_cache(maxsize=None)
def big_run():
  freqs, bits, nonce = big_case()
  tok, n = sampler.embed(S, freqs, bits, KEY, nonce)
  out, m, ok = sampler.extract(S, freqs, tok, KEY, nonce)
  perm = np.array([2, 0, 3, 1])
  tok_p, n_p = sampler.embed(S, freqs[perm], bits[perm], KEY, nonce[perm])
  again, _ = sampler.embed(S, freqs, bits, KEY, nonce)
  zeros, _ = sampler.embed(S, freqs, np.zeros_like(bits), KEY, nonce)
  plain = sampler.sample(S, freqs, KEY, nonce)
  return {
    k: np.asarray(v)
    for k, v in dict(
      tok=tok, n=n, out=out, m=m, ok=ok, tok_p=tok_p, n_p=n_p, again=again, zeros=zeros, plain=plain
    ).items()
  } | {"perm": perm}


def test_registered():
  assert "sparsamp" in sampler.names()
  assert isinstance(S, sparsamp.SparSampSampler) and S.bits_per_step(16384) == 12


def test_round_trip_top_k_16k_and_token_ids_only():
  r = big_run()
  _, bits, _ = big_case()
  assert np.all(r["n"] > 0) and np.all(r["ok"])
  np.testing.assert_array_equal(r["m"], r["n"])  # bits read back from token ids alone
  for b in range(4):
    np.testing.assert_array_equal(r["out"][b, : r["n"][b]], bits[b, : r["n"][b]])


def test_determinism_batching_and_zero_message():
  r = big_run()
  np.testing.assert_array_equal(r["again"], r["tok"])
  np.testing.assert_array_equal(r["tok_p"], r["tok"][r["perm"]])
  np.testing.assert_array_equal(r["n_p"], r["n"][r["perm"]])
  # the first step of a block (k = 0 for the all-zero message) is plain sampling with R
  np.testing.assert_array_equal(r["zeros"][:, 0], r["plain"][:, 0])
  assert not np.array_equal(r["tok"], r["zeros"])


# ---------------------------------------------------------------- independent reference


def _ref_run(f_rows, bits, nonce, precision, block_bits):
  """Per-token Python-integer SparSamp (cryptography's ChaCha20 words): tokens, bits embedded."""
  total = 1 << precision
  cursor, n, toks = 0, 1 << block_bits, []

  def block(c):
    w = [int(bits[c + i]) if c + i < len(bits) else 0 for i in range(block_bits)]
    return int("".join(map(str, w)), 2)

  k = block(0)
  for t, f in enumerate(f_rows):
    ids = np.argsort(-f, kind="stable")
    fs = [int(x) for x in f[ids]]
    c = np.cumsum(fs)
    r = int(reference.draw_words(KEY, nonce, t, 1)[0]) >> (32 - precision)
    u = (r + (k * total) // n) % total
    pos = int(np.searchsorted(c, u, side="right"))
    a = (int(c[pos]) - fs[pos] - r) % total
    lo = -(-a * n // total)
    n_new = -(-(a + fs[pos]) * n // total) - lo
    k_ext = k if k >= lo else k + n
    toks.append(int(ids[pos]))
    if n_new <= 1:
      cursor += block_bits
      n, k = 1 << block_bits, block(cursor)
    else:
      n, k = n_new, k_ext - lo
  return toks, min(cursor, len(bits))


def test_identical_draws_match_the_reference():
  r = big_run()
  freqs, bits, nonce = big_case()
  for b in range(4):
    toks, n = _ref_run(freqs[b], bits[b], int(nonce[b]), 24, 12)
    np.testing.assert_array_equal(r["tok"][b], toks)
    assert n == r["n"][b]


# ---------------------------------------------------------------- exact marginal


@pytest.mark.parametrize("n", [2, 5, 7, 16, 64])
def test_exact_marginal_exhaustive_over_the_draw(n):
  """For every candidate count n and sender index k, integrating over every draw R in
  [0, 2**6) gives each token exactly its frequency; the receiver's window holds k."""
  precision = 6
  f = np.array([[20, 17, 12, 9, 4, 2, 0, 0]], np.int32)
  d = sampler.Dist.of(f, np.arange(8, dtype=np.int32)[None])
  total = 2**precision
  r = np.arange(total, dtype=np.uint32)
  for k in range(n):
    kk = np.full(total, k, np.int32)
    nn = np.full(total, n, np.int32)
    dd = sampler.Dist(*(np.broadcast_to(a, (total, 8)) for a in d))
    pos, lo, n_new = _core(precision)(dd, r << np.uint32(32 - precision), nn, kk)
    np.testing.assert_array_equal(np.bincount(np.asarray(pos), minlength=8), f[0])
    k_ext = np.where(k >= np.asarray(lo), k, k + n)
    assert np.all((k_ext >= lo) & (k_ext < np.asarray(lo) + np.asarray(n_new)))


@functools.lru_cache(maxsize=None)
def _core(precision):
  return jax.jit(lambda d, w, n, k: sparsamp._step(d, w, n, precision, k=k))


def test_exact_marginal_chi_square_fixed_message():
  rng = np.random.default_rng(5)
  probs = rng.dirichlet(np.full(16, 0.4), size=3).astype(np.float32)
  f = np.asarray(quantize.to_frequencies(probs, precision=16))  # [T=3, 16]
  n_keys = 3000
  freqs = np.broadcast_to(f, (n_keys, 3, 16))
  msg = np.broadcast_to(np.tile(np.array([1, 0, 1, 1, 0, 0, 1, 0], np.uint8), 4), (n_keys, 32))
  s = sampler.get("sparsamp", precision=16, block_bits=8)
  tok, n = sampler.embed(s, freqs, msg, KEY, np.arange(n_keys))
  tok = np.asarray(tok)
  for t in range(3):  # 15 dof at significance 1e-4: 44.3
    exp = f[t] / 2**16 * n_keys
    obs = np.bincount(tok[:, t], minlength=16)
    keep = exp > 0
    assert obs[~keep].sum() == 0
    assert ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum() < 44.3
  out, m, _ = sampler.extract(s, freqs, tok, KEY, np.arange(n_keys))
  n, out = np.asarray(n), np.asarray(out)
  assert all(np.array_equal(out[i, : n[i]], msg[i, : n[i]]) for i in range(0, n_keys, 97))


# ---------------------------------------------------------------- capacity, errors


def test_capacity_on_the_published_setting():
  """Bits per token against the entropy on top-k 2000 of 16384 (about 6 bits): the block
  structure costs the tail of each block's last token, so utilization grows with block_bits."""
  f = np.asarray(quantize.to_frequencies(reference.synthetic_probs(16384, 24, 0, 1.25), top_k=2000))
  p = f / 2**24
  h = float(np.mean([-(r[r > 0] * np.log2(r[r > 0])).sum() for r in p]))
  bits = np.random.default_rng(1).integers(0, 2, (8, 24 * 16)).astype(np.uint8)
  util = {}
  for bb in (8, 16):
    s = sampler.get("sparsamp", top_k=2000, block_bits=bb)
    _, n = sampler.embed(s, np.broadcast_to(f, (8,) + f.shape), bits, KEY, np.arange(8))
    util[bb] = float(np.asarray(n).mean()) / (24 * h)
  assert 0.5 < util[8] < util[16] <= 1.0, util


def test_errors():
  with pytest.raises(ConfigError, match="block_bits"):
    sampler.get("sparsamp", block_bits=17)
  with pytest.raises(ConfigError, match="must not exceed precision"):
    sampler.get("sparsamp", block_bits=12, precision=8)


def test_window_start_and_offset_are_exact():
  rng = np.random.default_rng(3)
  for p in (6, 24, 30):
    x = rng.integers(0, 2 ** (p + 1), 500).astype(np.uint32)
    n = rng.integers(1, 2**16 + 1, 500).astype(np.int32)
    got = np.asarray(jax.jit(lambda a, b: sparsamp.window_start(a, b, p))(x, n))
    want = [-(-int(a) * int(b) // 2**p) for a, b in zip(x, n)]
    np.testing.assert_array_equal(got, want)
    k = (rng.random(500) * n).astype(np.int32)
    got = np.asarray(jax.jit(lambda a, b: sparsamp.offset(a, b, p))(k, n))
    np.testing.assert_array_equal(got, [(int(a) << p) // int(b) for a, b in zip(k, n)])
