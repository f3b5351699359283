"""Meteor, arithmetic coding and the naive sampler: round trips, Meteor's exact marginal,
and the naive sampler's distortion (the positive control)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.stego import arithmetic, meteor, naive, prf, quantize

KEY = prf.make_key(b"baselines")


@functools.lru_cache(maxsize=None)
def case():
  rng = np.random.default_rng(0)
  f = np.asarray(
    quantize.to_frequencies(
      rng.dirichlet(np.full(32, 0.3), size=(4, 8)).astype(np.float32), precision=16
    )
  )
  bits = rng.integers(0, 2, size=(4, 300)).astype(np.uint8)
  return f, bits, np.arange(4, dtype=np.uint32)


@pytest.mark.parametrize(
  "mod", [meteor, arithmetic, naive], ids=lambda m: m.__name__.split(".")[-1]
)
def test_round_trip(mod):
  f, bits, nonce = case()
  tok, n = mod.embed(f, bits, KEY, nonce, precision=16)
  out, m = mod.extract(f, tok, KEY, nonce, precision=16)
  n, m, out = np.asarray(n), np.asarray(m), np.asarray(out)
  assert np.all(n > 0)
  for b in range(4):
    np.testing.assert_array_equal(out[b, : n[b]], bits[b, : n[b]])
  assert np.all(m >= n)
  # sampling follows the support
  s = np.asarray(mod.sample(f, KEY, nonce, precision=16))
  assert np.all(np.take_along_axis(f, s[..., None], -1) > 0)


def test_meteor_marginal_and_naive_distortion():
  rng = np.random.default_rng(1)
  f = np.asarray(
    quantize.to_frequencies(rng.dirichlet(np.full(8, 0.5), size=1).astype(np.float32), precision=12)
  )
  n_keys = 4000
  freqs = np.broadcast_to(f, (n_keys, 1, 8))
  bits = np.broadcast_to(
    np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0], np.uint8), (n_keys, 14)
  )
  tok, _ = meteor.embed(freqs, bits, KEY, np.arange(n_keys), precision=12)
  obs = np.bincount(np.asarray(tok)[:, 0], minlength=8)
  exp = f[0] / 2**12 * n_keys
  keep = exp > 0
  chi2 = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
  assert chi2 < 29.9  # 7 dof, significance 1e-4
  # naive with a uniform random message is uniform over the top 4: far from f
  rb = rng.integers(0, 2, size=(n_keys, 14)).astype(np.uint8)
  tok_n, n = naive.embed(freqs, rb, n_bits=2, precision=12)
  obs_n = np.bincount(np.asarray(tok_n)[:, 0], minlength=8)
  chi2_n = ((obs_n[keep] - exp[keep]) ** 2 / exp[keep]).sum()
  assert chi2_n > 200
  np.testing.assert_array_equal(np.asarray(n), 2)


def test_naive_choose_fn_is_a_step_embedder():
  choose = naive.make_choose_fn(n_bits=3, precision=16, top_k=16)
  logits = jnp.asarray(np.random.default_rng(2).normal(size=(2, 50)).astype(np.float32))
  st = naive.init_embed_state(np.array([[1, 0, 1], [0, 1, 1]], np.uint8), 0)
  tok, st = jax.jit(choose)(logits, jnp.int32(0), st)
  order = np.argsort(-np.asarray(logits), axis=1, kind="stable")
  np.testing.assert_array_equal(np.asarray(tok), [order[0, 5], order[1, 3]])
  np.testing.assert_array_equal(np.asarray(st.cursor), [3, 3])
