"""Cover and stego token sequences from one AR prior, and what a warden computes on them.

A ``Generator`` draws honest covers (``jax.random.categorical`` on the processed logits, as
``transformer.generate`` samples) and stego tokens from any sampler of the ``stego.sampler``
registry, with one set of sampling settings (CFG, temperature, top-k), so that covers and
stegos differ only in how each token is chosen. ``per_sequence`` evaluates a function of every
step's processed logits in one teacher-forced pass (the sampler's distributions, up to float
rounding; ``replay_loglik`` checks against the sampler's own KV-cached scan).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.models import transformer
from stegjax.stego import framing, sampler
from stegjax.train import sharding


@functools.lru_cache(maxsize=None)
def _choose_fn(s: sampler.Sampler):
  """The AR loop's choose function for sampler ``s`` (cached: one compile per sampler)."""

  def choose(logits, step, state):
    st, key = state
    tok, st = s.choose(logits, step, st, key)
    return tok, (st, key)

  return choose


class Generator:
  """An AR prior with the sampling settings that covers and stegos share.

  ``prior``: a trained prior (``.model``, ``.params``); ``st``: a config section with
  ``cfg_scale``, ``top_k``, ``temperature`` and the stego system's ``secret``.
  """

  def __init__(self, prior, st):
    self.model, self.params = prior.model, prior.params
    self.top_k = int(st.top_k)
    self.kw = dict(
      cfg_scale=float(st.cfg_scale), top_k=self.top_k, temperature=float(st.temperature)
    )
    self.key = jnp.asarray(framing.sampling_key(str(st.secret).encode()), jnp.uint32)
    self._jitted: dict = {}

  def capacity(self, s: sampler.Sampler) -> int:
    """Most message bits a sequence of sampler ``s`` can carry."""
    return self.model.num_tokens * s.bits_per_step(self.model.vocab_size)

  def cover(self, labels, key):
    """Honest generations: ``jax.random.categorical`` on the float top-k distribution."""
    labels = jnp.asarray(labels, jnp.int32)
    return np.asarray(
      transformer.generate(self.model, {"params": self.params}, labels, key, **self.kw)[0]
    )

  def stego(self, s: sampler.Sampler, labels, bits, nonces, bit_len=None):
    """(tokens, bits embedded) of any registered sampler ``s`` carrying ``bits``."""
    state = s.init_state(jnp.asarray(bits, jnp.uint8), jnp.asarray(nonces, jnp.uint32), bit_len)
    toks, (state, _) = transformer.generate(
      self.model,
      {"params": self.params},
      jnp.asarray(labels, jnp.int32),
      None,
      choose_fn=_choose_fn(s),
      choose_state=(state, self.key),
      **self.kw,
    )
    return np.asarray(toks), np.asarray(s.embedded(state))

  def covers(self, labels, key, batch: int):
    """Honest generations for every label, in batches (batch at row i keyed fold_in(key, i))."""
    one = lambda i, b: self.cover(pad_rows(labels, i, b), jax.random.fold_in(key, i))
    return in_batches(one, len(labels), batch)

  def stegos(self, s: sampler.Sampler, labels, bits_fn, nonce0: int, batch: int):
    """(tokens, bits embedded) of sampler ``s`` for every label, in batches: ``bits_fn(i, b)``
    gives the message bits of rows i .. i + b, the counters are nonce0 + row."""

    def one(i, b):
      nonces = np.arange(nonce0 + i, nonce0 + i + b, dtype=np.uint32)
      return self.stego(s, pad_rows(labels, i, b), bits_fn(i, b), nonces)

    return in_batches(one, len(labels), batch)

  def framed(self, s, labels, messages, counters, secret: bytes, batch: int):
    """Stego tokens of framed messages (``framing.pack`` with each counter), as cmsteg hides."""
    framed = [framing.pack(bytes(m), secret, int(c)) for m, c in zip(messages, counters)]
    lengths = np.asarray([len(f) for f in framed], np.int32)
    bits = np.zeros((len(framed), int(lengths.max())), np.uint8)
    for i, f in enumerate(framed):
      bits[i, : len(f)] = f
    rows = lambda x, i, b: pad_rows(np.asarray(x), i, b)

    def one(i, b):
      nonces, bit_len = rows(counters, i, b), jnp.asarray(rows(lengths, i, b))
      return self.stego(s, rows(labels, i, b), rows(bits, i, b), nonces, bit_len)[0]

    return in_batches(one, len(labels), batch)

  def step_logits(self, params, labels, tokens):
    """Processed logits [B, T, V] of every step in one teacher-forced pass (as the sampler's)."""
    b, cfg = labels.shape[0], self.kw["cfg_scale"]
    use_cfg = cfg != 1.0
    rows = jnp.concatenate([labels, jnp.full_like(labels, self.model.num_classes)])
    raw = self.model.apply(
      {"params": params},
      jnp.concatenate([tokens, tokens]) if use_cfg else tokens,
      rows if use_cfg else labels,
    )
    process = lambda r: transformer.process_logits(
      r, b, use_cfg, cfg, self.top_k, self.kw["temperature"]
    )
    return jax.vmap(process, in_axes=1, out_axes=1)(raw)

  def per_sequence(self, fn, labels, tokens, batch: int):
    """``fn(step_logits, tokens)`` over the rows of (labels, tokens), spread over the devices
    (compiled once per ``fn``)."""
    if fn not in self._jitted:
      self._jitted[fn] = jax.jit(lambda p, x: fn(self.step_logits(p, *x), x[1]))
    inputs = (np.asarray(labels, np.int32), np.asarray(tokens, np.int32))
    return sharding.batched_apply(self._jitted[fn], self.params, inputs, batch)

  def replay_loglik(self, labels, tokens):
    """Mean log-likelihood from the sampler's own KV-cached scan (checks the fast pass)."""
    logits = transformer.logits_for_tokens(
      self.model, {"params": self.params}, jnp.asarray(labels), jnp.asarray(tokens), **self.kw
    )
    return np.asarray(mean_loglik(logits, jnp.asarray(tokens)))


def mean_loglik(logits, tokens):
  """Mean log p(token_t | prefix) per sequence: logits [B, T, V], tokens [B, T] -> [B]."""
  return jnp.mean(transformer.token_log_probs(logits, tokens), axis=-1)


def in_batches(fn, n: int, batch: int):
  """fn(start, size) for constant-size batches (one compile; the last one is padded),
  concatenating the first n rows. Each batch's randomness is keyed by its start."""
  outs = [fn(start, batch) for start in range(0, n, batch)]
  return jax.tree.map(lambda *xs: np.concatenate(xs)[:n], *outs)


def pad_rows(x, start, size):
  """Rows start .. start + size of x, the last one repeated past the end."""
  x = x[start : start + size]
  return np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)]) if len(x) < size else x


def random_bits(key, n: int, length: int) -> np.ndarray:
  """uint8[n, length] uniform message bits."""
  return np.asarray(jax.random.bernoulli(key, 0.5, (n, length))).astype(np.uint8)
