import numpy as np
import jax
import jax.numpy as jnp
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from stegjax.stego import prf, reference


def test_rfc8439_block_vector():
  # RFC 8439 section 2.3.2
  key = np.frombuffer(bytes(range(32)), "<u4")
  nonce = np.frombuffer(bytes.fromhex("000000090000004a00000000"), "<u4")
  out = prf.words_to_bytes(prf.chacha20_block(key, 1, nonce))
  assert out.hex() == (
    "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
    "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
  )


def test_rfc8439_appendix_a1_zero_key():
  out = prf.words_to_bytes(prf.chacha20_block(np.zeros(8, np.uint32), 0, np.zeros(3, np.uint32)))
  assert out.hex() == (
    "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
    "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
  )


def test_block_matches_cryptography_keystream_vectorized():
  rng = np.random.default_rng(0)
  keys = rng.integers(0, 2**32, size=(5, 8), dtype=np.uint64).astype(np.uint32)
  ctrs = np.array([0, 1, 7, 2**31, 2**32 - 1], np.uint32)
  nonces = rng.integers(0, 2**32, size=(5, 3), dtype=np.uint64).astype(np.uint32)
  got = np.asarray(jax.jit(prf.chacha20_block)(keys, ctrs, nonces))
  for i in range(5):
    n16 = ctrs[i : i + 1].astype("<u4").tobytes() + nonces[i].astype("<u4").tobytes()
    ks = (
      Cipher(algorithms.ChaCha20(prf.words_to_bytes(keys[i]), n16), mode=None)
      .encryptor()
      .update(b"\0" * 64)
    )
    assert prf.words_to_bytes(got[i]) == ks


def test_draw_is_pure_broadcasting_and_matches_words():
  key = prf.make_key(b"secret")
  nonce = jnp.array([0, 1, 2**32 - 1], jnp.uint32)[:, None]
  node = jnp.arange(40, dtype=jnp.uint32)[None]
  d = jax.jit(prf.draw)(key, nonce, 5, node)
  assert d.shape == (3, 40) and d.dtype == jnp.uint32
  w = prf.draw_words(key, nonce[:, 0], 5, 40)
  np.testing.assert_array_equal(d, w)
  np.testing.assert_array_equal(d, prf.draw(key, nonce, 5, node))  # pure
  for n in (0, 2):
    np.testing.assert_array_equal(
      np.asarray(w[n]), reference.draw_words(key, int(nonce[n, 0]), 5, 40).astype(np.uint32)
    )
  # every (nonce, step, node) gives a different word (no reuse)
  d2 = prf.draw(key, nonce, 6, node)
  allw = np.concatenate([np.asarray(d).ravel(), np.asarray(d2).ravel()])
  assert len(np.unique(allw)) == allw.size


def test_make_key():
  k = prf.make_key(b"x" * 1000)
  assert k.shape == (8,) and k.dtype == np.uint32
  np.testing.assert_array_equal(k, prf.make_key(b"x" * 1000))
  assert not np.array_equal(prf.make_key(b"a"), prf.make_key(b"b"))
  assert not np.array_equal(prf.make_key(b"a"), prf.make_key(b"a", info=b"other"))
  with pytest.raises(ValueError):
    prf.make_key(b"")
  with pytest.raises(TypeError):
    prf.make_key("text")
  with pytest.raises(ValueError, match="last dimension 8"):
    prf.draw(np.zeros(4, np.uint32), 0, 0, 0)


def test_threefry_variant_consistent():
  key = prf.make_key(b"k")
  w = prf.threefry_draw_words(key, jnp.array([3, 4]), 2, 5)
  np.testing.assert_array_equal(w[:, 3], prf.threefry_draw(key, jnp.array([3, 4]), 2, 3))
  assert len(np.unique(np.asarray(w))) == 10
