"""The eight Discop properties of DESIGN.md, for every variant."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.stego import cases

from stegjax.stego import discop, prf, quantize, reference

VARIANTS = discop.VARIANTS
KEY = prf.make_key(b"test key")
P24 = 24


def big_case():
  """Top-k 2000 of 16384: freqs [4 kinds, T=4, V], support 2000."""
  return cases.top_k_2000(4)


@functools.lru_cache(maxsize=None)
def big_run(variant):
  freqs, bits, nonce = big_case()
  kw = dict(support=2000)
  tokens, n = discop.embed(freqs, bits, KEY, nonce, variant, **kw)
  out, m = discop.extract(freqs, tokens, KEY, nonce, variant, **kw)
  plain = discop.sample(freqs, KEY, nonce, variant, **kw)
  zeros, _ = discop.embed(freqs, np.zeros_like(bits), KEY, nonce, variant, **kw)
  perm = np.array([2, 0, 3, 1])
  tok_p, n_p = discop.embed(freqs[perm], bits[perm], KEY, nonce[perm], variant, **kw)
  again, _ = discop.embed(freqs, bits, KEY, nonce, variant, **kw)
  return dict(
    tokens=np.asarray(tokens),
    n=np.asarray(n),
    out=np.asarray(out),
    m=np.asarray(m),
    plain=np.asarray(plain),
    zeros=np.asarray(zeros),
    tok_p=np.asarray(tok_p),
    n_p=np.asarray(n_p),
    perm=perm,
    again=np.asarray(again),
  )


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_top_k_16k(variant):
  r = big_run(variant)
  _, bits, _ = big_case()
  assert np.all(r["n"] > 0)
  for b in range(4):
    np.testing.assert_array_equal(r["out"][b, : r["n"][b]], bits[b, : r["n"][b]])
  # the message (400 bits) is longer than the capacity: every carried bit is message
  np.testing.assert_array_equal(r["m"], r["n"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_message_is_plain_sampling_and_determinism(variant):
  r = big_run(variant)
  np.testing.assert_array_equal(r["zeros"], r["plain"])
  np.testing.assert_array_equal(r["again"], r["tokens"])
  assert not np.array_equal(r["tokens"], r["plain"])  # the message does change the tokens


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_rows_are_independent(variant):
  r = big_run(variant)
  np.testing.assert_array_equal(r["tok_p"], r["tokens"][r["perm"]])
  np.testing.assert_array_equal(r["n_p"], r["n"][r["perm"]])


@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_per_token_reference_with_same_draws(variant):
  """Spec conformance and identical draws: the NumPy reference, fed the (n, t, j) words
  from cryptography's ChaCha20, picks the same tokens and carries the same bit counts."""
  r = big_run(variant)
  freqs, bits, nonce = big_case()
  n_words = 1 if variant == "basic" else 2 * discop.max_bits_per_step(variant, P24, 2000)
  step = reference.STEPS[variant]
  for b in range(4):
    cursor = 0
    for t in range(freqs.shape[1]):
      words = reference.draw_words(KEY, int(nonce[b]), t, n_words)
      kw = {"support": 2000} if variant == "basic" else {}
      tok, n = step(freqs[b, t], words, list(bits[b, cursor:]), P24, **kw)
      assert tok == r["tokens"][b, t], (b, t)
      cursor += n
    assert cursor == r["n"][b]


# ---------------------------------------------------------------- exact marginal, exhaustive


@functools.lru_cache(maxsize=None)
def _core(variant, precision, mode):
  impl = discop._IMPL[variant]
  if mode == "embed":
    return jax.jit(lambda f, d, w: impl(f, d, precision, window=w)[:2])
  return jax.jit(lambda f, d, tg: impl(f, d, precision, target=tg)[1:])


def test_basic_exact_marginal_exhaustive_over_draw():
  # total 64 (precision 6); every draw r and every fixed 3-bit message
  f = np.array([20, 17, 12, 9, 4, 2], np.int32)
  r = np.arange(64, dtype=np.uint32)
  draws = (r << 26)[:, None]
  fb = np.broadcast_to(f, (64, 6))
  caps = []
  for msg in range(8):
    w = np.broadcast_to(np.array([(msg >> 2) & 1, (msg >> 1) & 1, msg & 1], np.int32), (64, 3))
    pos, n = _core("basic", 6, "embed")(fb, draws, np.ascontiguousarray(w))
    np.testing.assert_array_equal(np.bincount(np.asarray(pos), minlength=6), f)
    caps.append(np.asarray(n).mean())
    # extraction over every draw gives the message prefix back
    n2, bits, ok = _core("basic", 6, "extract")(fb, draws, pos)
    assert np.all(ok) and np.array_equal(n2, n)
    for i in range(64):
      np.testing.assert_array_equal(np.asarray(bits[i, : int(n[i])]), w[i, : int(n[i])])
  # capacity equals the specification (independent NumPy enumeration)
  assert np.allclose(caps, discop.basic_capacity(f, 6))
  assert discop.basic_capacity(f, 6) > 1.0


@pytest.mark.parametrize("variant", ["recursive", "recursive_bisect"])
def test_recursive_exact_marginal_exhaustive_over_node_draws(variant):
  # node masses 16, 8, 4 (powers of two) so a grid of 32 draws per node is exact
  f = np.array([8, 4, 3, 1], np.int32)
  g = 32
  depth = discop.max_bits_per_step(variant, 4, 4)
  grid = np.stack(np.meshgrid(*[np.arange(g)] * depth, indexing="ij"), -1).reshape(-1, depth)
  draws = np.zeros((grid.shape[0], 2 * depth), np.uint32)
  draws[:, 0::2] = grid.astype(np.uint32) << 27
  fb = np.broadcast_to(f, (grid.shape[0], 4))
  for msg in ([0, 0, 0], [1, 1, 1], [1, 0, 1], [0, 1, 1]):
    w = np.broadcast_to(np.array(msg[:depth], np.int32), (grid.shape[0], depth))
    pos, n = _core(variant, 4, "embed")(fb, draws, np.ascontiguousarray(w))
    counts = np.bincount(np.asarray(pos), minlength=4)
    np.testing.assert_array_equal(counts * 16, f * grid.shape[0])
    assert (
      abs(
        np.asarray(n).mean()
        - discop.tree_capacity(f, "huffman" if variant == "recursive" else "bisect")
      )
      < 1e-9
    )
    n2, bits, ok = _core(variant, 4, "extract")(fb, draws, pos)
    assert np.all(ok) and np.array_equal(n2, n)
    bits = np.asarray(bits)
    for k in range(depth):
      sel = np.asarray(n) > k
      assert np.all(bits[sel, k] == msg[k])


# ---------------------------------------------------------------- exact marginal, statistical


@functools.lru_cache(maxsize=None)
def small_run(variant):
  rng = np.random.default_rng(5)
  probs = rng.dirichlet(np.full(16, 0.4), size=2).astype(np.float32)
  f = np.asarray(quantize.to_frequencies(probs, precision=16))  # [T=2, V=16]
  n_keys = 3000
  freqs = np.broadcast_to(f, (n_keys, 2, 16))
  msg = np.tile(np.array([1, 0, 1, 1, 0, 0, 1, 0], np.uint8), 6)
  bits = np.broadcast_to(msg, (n_keys, msg.size))
  nonce = np.arange(n_keys, dtype=np.uint32)
  tokens, n = discop.embed(freqs, bits, KEY, nonce, variant, precision=16)
  out, m = discop.extract(freqs, tokens, KEY, nonce, variant, precision=16)
  return f, np.asarray(tokens), np.asarray(n), np.asarray(out), np.asarray(m), msg


@pytest.mark.parametrize("variant", VARIANTS)
def test_exact_marginal_chi_square_fixed_message(variant):
  f, tokens, n, out, m, msg = small_run(variant)
  # chi-square goodness of fit per step at significance 1e-4 (15 dof: critical value 44.3)
  for t in range(2):
    p = f[t] / 2**16
    obs = np.bincount(tokens[:, t], minlength=16)
    exp = p * tokens.shape[0]
    keep = exp > 0
    assert obs[~keep].sum() == 0
    chi2 = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    assert chi2 < 44.3, chi2
  assert np.all(m >= n)
  for i in range(0, tokens.shape[0], 97):
    np.testing.assert_array_equal(out[i, : n[i]], msg[: n[i]])


@pytest.mark.parametrize("variant", ["recursive", "recursive_bisect"])
def test_mean_bits_match_tree_capacity(variant):
  f, tokens, n, out, m, msg = small_run(variant)
  tree = "huffman" if variant == "recursive" else "bisect"
  expect = sum(discop.tree_capacity(f[t], tree) for t in range(2))
  # per-token bits are bounded by the depth, so 5 standard errors with sd <= 4
  assert abs(m.mean() - expect) < 5 * 4 / np.sqrt(len(m)), (m.mean(), expect)


# ---------------------------------------------------------------- capacity on published settings


def _entropy(f):
  p = f[f > 0] / f.sum()
  return float(-(p * np.log2(p)).sum())


@pytest.mark.parametrize("tree", ["huffman", "bisect"])
def test_recursive_utilization_published_settings(tree):
  fk = np.asarray(quantize.to_frequencies(reference.synthetic_probs(16384, 3, 0, 1.25), top_k=2000))
  fp = np.asarray(quantize.to_frequencies(reference.synthetic_probs(50257, 2, 1, 1.1), top_p=0.92))
  for f, target in [(r, 0.90) for r in fk] + [(r, 0.92) for r in fp]:
    h = _entropy(f)
    assert 5.0 < h < 9.0
    assert discop.tree_capacity(f, tree) / h >= target, (tree, h)


# ---------------------------------------------------------------- step level, choose_fn, errors


def test_step_functions_do_not_retrace():
  rng = np.random.default_rng(3)
  f = np.asarray(
    quantize.to_frequencies(
      rng.dirichlet(np.ones(32), size=(5, 2)).astype(np.float32), precision=16
    )
  )

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(freqs, t, state):
    return discop.embed_step(freqs, t, state, KEY, "recursive_bisect", precision=16)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def back(freqs, tokens, t, nonce):
    return discop.extract_step(freqs, tokens, t, KEY, nonce, "recursive_bisect", precision=16)

  bits = rng.integers(0, 2, size=(2, 64)).astype(np.uint8)
  st = discop.init_embed_state(bits, np.array([4, 9]))
  toks = []
  for t in range(5):
    tok, st = step(f[t], jnp.int32(t), st)
    toks.append(tok)
  got = []
  for t in range(5):
    b, n = back(f[t], toks[t], jnp.int32(t), np.array([4, 9], np.uint32))
    got.append([np.asarray(b[i, : n[i]]) for i in range(2)])
  for i in range(2):
    rec = np.concatenate([g[i] for g in got])
    assert len(rec) == int(st.cursor[i]) > 0
    np.testing.assert_array_equal(rec, bits[i, : len(rec)])


def test_choose_fn_inside_scan_and_extract_fn():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(6, 3, 40)).astype(np.float32) * 2  # [T, B, V]
  choose = discop.make_choose_fn(KEY, "recursive", precision=20, top_k=10)
  extract_fn = discop.make_extract_fn(KEY, "recursive", precision=20, top_k=10)
  bits = rng.integers(0, 2, size=(3, 50)).astype(np.uint8)
  nonce = np.array([1, 2, 3], np.uint32)

  @jax.jit
  def gen(logits, state):
    def body(st, xs):
      lg, t = xs
      tok, st = choose(lg, t, st)
      return st, tok

    return jax.lax.scan(body, state, (logits, jnp.arange(6)))

  st, toks = gen(logits, discop.init_embed_state(bits, nonce))
  assert np.all(np.asarray(st.cursor) > 0)
  rec = [[] for _ in range(3)]
  for t in range(6):
    b, n, ok = extract_fn(logits[t], toks[t], t, nonce)
    assert np.all(ok)
    for i in range(3):
      rec[i].append(np.asarray(b[i, : n[i]]))
  for i in range(3):
    r = np.concatenate(rec[i])
    np.testing.assert_array_equal(r[: int(st.cursor[i])], bits[i, : int(st.cursor[i])])
  # tokens lie in each step's top-10
  top = np.argsort(-logits, axis=-1, kind="stable")[..., :10]
  assert all(int(toks[t, i]) in top[t, i] for t in range(6) for i in range(3))


def test_leading_dims_nonce_broadcast_and_wrong_key():
  rng = np.random.default_rng(6)
  f = np.asarray(
    quantize.to_frequencies(
      rng.dirichlet(np.ones(16), size=(4, 3)).astype(np.float32), precision=12
    )
  )
  bits = rng.integers(0, 2, size=(4, 30)).astype(np.uint8)
  nonce = np.array([5, 6], np.uint32)[:, None]  # broadcasts over [2, 2]
  tok4, n4 = discop.embed(f, bits, KEY, np.array([5, 5, 6, 6]), "basic", precision=12)
  tok22, n22 = discop.embed(
    f.reshape(2, 2, 3, 16), bits.reshape(2, 2, 30), KEY, nonce, "basic", precision=12
  )
  np.testing.assert_array_equal(np.asarray(tok22).reshape(4, 3), tok4)
  np.testing.assert_array_equal(np.asarray(n22).reshape(4), n4)
  out, m = discop.extract(f, tok4, KEY, np.array([5, 5, 6, 6]), "basic", precision=12)
  wrong, _ = discop.extract(
    f, tok4, prf.make_key(b"other"), np.array([5, 5, 6, 6]), "basic", precision=12
  )
  assert not np.array_equal(np.asarray(wrong), np.asarray(out))


def test_checked_extract_flags_impossible_tokens():
  f = np.array([[0, 2**12 - 8, 8] + [0] * 5], np.int32)
  for variant in VARIANTS:
    _, n, ok = discop.extract_step_checked(f, jnp.array([0]), 0, KEY, 1, variant, precision=12)
    assert not bool(ok[0]), variant


def test_errors():
  f = np.full((1, 2, 4), 2**10, np.int32)
  bits = np.zeros((1, 4), np.uint8)
  with pytest.raises(ValueError, match="unknown Discop variant"):
    discop.embed(f, bits, KEY, 0, "fancy", precision=12)
  with pytest.raises(ValueError, match="sum to 2\\*\\*12"):
    discop.embed(f + 1, bits, KEY, 0, "basic", precision=12)
  with pytest.raises(ValueError, match="integers"):
    discop.embed(f.astype(np.float32), bits, KEY, 0, "basic", precision=12)
  with pytest.raises(ValueError, match="key"):
    discop.embed(f, bits, KEY[:4], 0, "basic", precision=12)
  with pytest.raises(ValueError, match="nonce"):
    discop.embed(f, bits, KEY, -1, "basic", precision=12)
  with pytest.raises(ValueError, match="0 and 1"):
    discop.embed(f, bits + 2, KEY, 0, "basic", precision=12)
  with pytest.raises(ValueError, match="support"):
    discop.embed(f, bits, KEY, 0, "basic", precision=12, support=2)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_slow_chi_square_larger_vocabulary(variant):
  rng = np.random.default_rng(9)
  f = np.asarray(
    quantize.to_frequencies(
      rng.dirichlet(np.full(256, 0.2), size=1).astype(np.float32), precision=20, top_k=64
    )
  )
  n_keys = 40000
  freqs = np.broadcast_to(f, (n_keys, 1, 256))
  bits = np.broadcast_to(np.array([0, 1, 1, 0, 1, 0, 0, 1] * 4, np.uint8), (n_keys, 32))
  tokens, n = discop.embed(freqs, bits, KEY, np.arange(n_keys), variant, precision=20, support=64)
  out, _ = discop.extract(freqs, tokens, KEY, np.arange(n_keys), variant, precision=20, support=64)
  obs = np.bincount(np.asarray(tokens)[:, 0], minlength=256)
  exp = f[0] / 2**20 * n_keys
  keep = exp > 0
  assert obs[~keep].sum() == 0
  chi2 = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
  assert chi2 < 118.0, chi2  # 63 dof, significance 1e-4
  n, out = np.asarray(n), np.asarray(out)
  assert all(np.array_equal(out[i, : n[i]], bits[i, : n[i]]) for i in range(0, n_keys, 331))


def test_integer_products_exact_at_the_extremes():
  from stegjax.stego.common import frac_mul, mulhi

  edge = [
    0,
    1,
    2,
    0xFFFF,
    0x10000,
    0x10001,
    2**24 - 1,
    2**24,
    2**30,
    2**31 - 1,
    2**31,
    2**32 - 2,
    2**32 - 1,
  ]
  rng = np.random.default_rng(7)
  vals = np.array(edge + list(rng.integers(0, 2**32, 40, dtype=np.uint64)), np.uint64)
  a, b = np.meshgrid(vals, vals)
  a, b = a.ravel(), b.ravel()
  got = np.asarray(jax.jit(mulhi)(a.astype(np.uint32), b.astype(np.uint32)))
  want = [(int(x) * int(y)) >> 32 for x, y in zip(a, b)]
  np.testing.assert_array_equal(got.astype(np.uint64), np.array(want, np.uint64))
  m = np.array([1, 2, 3, 2**24 - 1, 2**24, 2**30, 2**30 + 7], np.uint64)
  hi, lo, mm = np.meshgrid(vals, vals[:12], m)
  got = np.asarray(
    jax.jit(frac_mul)(
      hi.ravel().astype(np.uint32), lo.ravel().astype(np.uint32), mm.ravel().astype(np.uint32)
    )
  )
  want = [
    ((int(h) << 32 | int(l)) * int(q)) >> 64 for h, l, q in zip(hi.ravel(), lo.ravel(), mm.ravel())
  ]
  np.testing.assert_array_equal(got.astype(np.uint64), np.array(want, np.uint64))
  assert np.all(got.astype(np.uint64) < mm.ravel())
