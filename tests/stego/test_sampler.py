"""The Sampler protocol and registry: every registered sampler round-trips from logits and
from frequencies, inside a scan, at precision 30; Discop through the protocol equals the
module functions; registry errors name the valid choices."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stegjax.errors import ConfigError
from stegjax.stego import discop, prf, quantize, sampler

KEY = prf.make_key(b"sampler protocol")
NAMES = sampler.names()


@functools.lru_cache(maxsize=None)
def case(v=300, t=5, b=3):
  rng = np.random.default_rng(0)
  logits = (rng.normal(size=(b, t, v)) * 3).astype(np.float32)
  bits = rng.integers(0, 2, (b, 200)).astype(np.uint8)
  return logits, bits, np.arange(b, dtype=np.uint32) + 7


def _check_round_trip(s, xs, bits, nonce):
  tok, n = sampler.embed(s, xs, bits, KEY, nonce)
  out, m, ok = sampler.extract(s, xs, tok, KEY, nonce)
  tok, n, out, m, ok = (np.asarray(a) for a in (tok, n, out, m, ok))
  assert np.all(n > 0) and np.all(ok)
  np.testing.assert_array_equal(m, n)  # the message is longer than the capacity
  for i in range(len(n)):
    np.testing.assert_array_equal(out[i, : n[i]], bits[i, : n[i]])
  return tok, n


def test_registry_names():
  assert {"basic", "recursive", "recursive_bisect", "meteor", "arithmetic", "naive"} <= set(NAMES)
  for name in NAMES:
    assert sampler.get(name).name == name


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_from_logits_and_frequencies(name):
  logits, bits, nonce = case()
  s = sampler.get(name, top_k=64, precision=20)
  tok, _ = _check_round_trip(s, logits, bits, nonce)
  # tokens lie in each step's top-64
  top = np.argsort(-logits, axis=-1, kind="stable")[..., :64]
  assert np.all((top == tok[..., None]).any(-1))
  f = np.asarray(quantize.to_frequencies(jax.nn.softmax(logits, -1), precision=20, top_k=64))
  _check_round_trip(s, f, bits, nonce)
  # sample: tokens with nonzero frequency; and the same for every call
  sm = np.asarray(sampler.sample(s, f, KEY, nonce))
  assert np.all(np.take_along_axis(f, sm[..., None], -1) > 0)
  np.testing.assert_array_equal(sm, np.asarray(sampler.sample(s, f, KEY, nonce)))


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_at_precision_30(name):
  logits, bits, nonce = case()
  s = sampler.get(name, top_k=200, precision=30)
  _check_round_trip(s, logits, bits, nonce)


@pytest.mark.parametrize("variant", discop.VARIANTS)
def test_discop_protocol_equals_module_functions(variant):
  logits, bits, nonce = case()
  f = np.asarray(quantize.to_frequencies(jax.nn.softmax(logits, -1), precision=20, top_k=64))
  s = sampler.get(variant, top_k=64, precision=20)
  t1, n1 = sampler.embed(s, f, bits, KEY, nonce)
  t2, n2 = discop.embed(f, bits, KEY, nonce, variant, precision=20, support=64)
  np.testing.assert_array_equal(t1, t2)
  np.testing.assert_array_equal(n1, n2)
  np.testing.assert_array_equal(
    sampler.sample(s, f, KEY, nonce),
    discop.sample(f, KEY, nonce, variant, precision=20, support=64),
  )
  # the all-zero message is plain sampling
  z, _ = sampler.embed(s, f, np.zeros_like(bits), KEY, nonce)
  np.testing.assert_array_equal(z, sampler.sample(s, f, KEY, nonce))


@pytest.mark.parametrize("name", ["recursive", "arithmetic"])
def test_step_functions_inside_a_scan(name):
  """The AR-loop usage: choose in one scan, extract (with its carried state) in another."""
  logits, bits, nonce = case()
  s = sampler.get(name, top_k=32, precision=16)
  lg = jnp.swapaxes(jnp.asarray(logits), 0, 1)  # [T, B, V]

  @jax.jit
  def gen(state):
    def body(st, xs):
      x, t = xs
      tok, st = s.choose(x, t, st, KEY)
      return st, tok

    return jax.lax.scan(body, state, (lg, jnp.arange(lg.shape[0])))

  st, toks = gen(s.init_state(bits, nonce))

  @jax.jit
  def back(xst):
    def body(c, xs):
      x, tk, t = xs
      b, n, ok, c = s.extract(x, tk, t, KEY, c)
      return c, (b, n, ok)

    return jax.lax.scan(body, xst, (lg, toks, jnp.arange(lg.shape[0])))[1]

  b, n, ok = (np.asarray(a) for a in back(s.init_extract_state(nonce)))
  assert b.shape[-1] == s.bits_per_step(logits.shape[-1]) and np.all(ok)
  emb = np.asarray(s.embedded(st))
  for i in range(bits.shape[0]):
    rec = np.concatenate([b[t, i, : n[t, i]] for t in range(lg.shape[0])])
    np.testing.assert_array_equal(rec[: emb[i]], bits[i, : emb[i]])


def test_extract_flags_tokens_outside_the_candidates():
  logits, _, nonce = case()
  for name in NAMES:
    s = sampler.get(name, top_k=8, precision=16)
    bottom = np.argmin(logits[:, 0], -1).astype(np.int32)
    _, n, ok, _ = s.extract(logits[:, 0], bottom, 0, KEY, s.init_extract_state(nonce))
    assert not np.any(ok), name
    if name != "basic":
      assert np.all(np.asarray(n) == 0), name


def test_allowed_and_frequencies_match_the_quantizer():
  logits, _, _ = case()
  s = sampler.get("recursive", top_k=20, precision=16)
  f = np.asarray(s.frequencies(logits[:, 0]))
  want = np.asarray(
    quantize.to_frequencies(jax.nn.softmax(logits[:, 0], -1), precision=16, top_k=20)
  )
  np.testing.assert_array_equal(f, want)
  np.testing.assert_array_equal(np.asarray(s.allowed(logits[:, 0])), want > 0)


def test_registry_errors_and_config():
  with pytest.raises(ConfigError, match="valid: basic, recursive"):
    sampler.get("fancy")
  with pytest.raises(ConfigError, match="no setting n_bits"):
    sampler.get("recursive", n_bits=3)
  with pytest.raises(ConfigError, match="precision"):
    sampler.get("meteor", precision=31)
  with pytest.raises(ConfigError, match="rule"):
    sampler.get("recursive", rule="ceil")
  cfg = ml_collections.ConfigDict(
    dict(variant="recursive_bisect", precision=20, top_k=100, cfg_scale=1.5, naive_bits=3)
  )
  s = sampler.from_config(cfg)
  assert (s.name, s.precision, s.top_k) == ("recursive_bisect", 20, 100)
  assert sampler.from_config(cfg, "naive").n_bits == 3
  assert hash(s) == hash(sampler.from_config(cfg))  # a static jit argument / cache key
  with pytest.raises(ConfigError, match="unknown sampler"):
    sampler.from_config(ml_collections.ConfigDict(dict(sampler="x")))
