"""M1: hide bits while the AR prior draws the tokens; and its mirror, extraction.

``embed`` runs the prior's KV-cached generation with a Discop ``choose_fn``:
logits (after CFG, temperature, top-k) -> softmax -> exact integer frequencies
-> ``discop.embed_step``. ``extract`` replays the same scan with the received
tokens forced (so the receiver sees bit-identical distributions) and reads back
every bit each token carries; it can also apply M3 corrections inside the same
pass (a corrected token changes the distributions of every later step, so
corrections must be applied in order, inside the AR loop).

The choose functions are module-level and cached per setting, so repeated calls
reuse one compiled generation loop (the sampling key travels in the state).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.cmsteg import correct
from stegjax.models import transformer
from stegjax.stego import discop, quantize


@dataclasses.dataclass(frozen=True)
class Sampler:
  """How tokens are drawn: Discop settings plus the prior's sampling settings."""

  variant: str = "recursive"
  precision: int = 24
  top_k: int = 256
  cfg_scale: float = 1.5
  temperature: float = 1.0

  @classmethod
  def from_config(cls, cm) -> "Sampler":
    return cls(
      variant=cm.variant,
      precision=int(cm.precision),
      top_k=int(cm.top_k),
      cfg_scale=float(cm.cfg_scale),
      temperature=float(cm.temperature),
    )


def _freqs(logits, s: Sampler):
  # Logits arrive already CFG-combined, temperature-scaled and top-k masked by generate.
  return quantize.to_frequencies(
    jax.nn.softmax(logits, axis=-1), precision=s.precision, top_k=s.top_k
  )


@functools.lru_cache(maxsize=None)
def _embed_fn(s: Sampler):
  def choose(logits, step, state):
    emb, key = state
    tok, emb = discop.embed_step(
      _freqs(logits, s), step, emb, key, s.variant, precision=s.precision, support=s.top_k
    )
    return tok, (emb, key)

  return choose


@functools.lru_cache(maxsize=None)
def _extract_fn(s: Sampler, corrections: bool):
  width = discop.max_bits_per_step(s.variant, s.precision, s.top_k)

  def choose(logits, step, state):
    # Received token, or its M3 correction: the rank-th allowed token nearest (in codebook
    # space) to the received one; then read the bits that token carries at this step.
    recovered, ranks, codebook, key, nonce, bits, counts, ok = state
    rec = recovered[:, step]
    rank = ranks[:, step]
    f = _freqs(logits, s)
    tok = rec
    if corrections:
      order = correct.distance_order(codebook, rec, f > 0)
      fixed = jnp.take_along_axis(order, jnp.maximum(rank, 0)[:, None], axis=1)[:, 0]
      tok = jnp.where(rank >= 0, fixed, rec)
    b, n, good = discop.extract_step_checked(
      f, tok, step, key, nonce, s.variant, precision=s.precision, support=s.top_k
    )
    bits = jax.lax.dynamic_update_slice_in_dim(bits, b[:, None, :], step, axis=1)
    counts = jax.lax.dynamic_update_slice_in_dim(counts, n[:, None], step, axis=1)
    ok = jax.lax.dynamic_update_slice_in_dim(ok, good[:, None], step, axis=1)
    return tok, (recovered, ranks, codebook, key, nonce, bits, counts, ok)

  return choose, width


def embed(prior, key, bits, bit_len, labels, nonces, s: Sampler):
  """Generates token sequences carrying ``bits``.

  Args:
    prior: ``recipes.Trained`` AR prior.
    key: uint32[8] sampling key (``framing.sampling_key(secret)``).
    bits: uint8[B, L] message bits; ``bit_len`` int[B] of them are message (rest zero).
    labels: int[B] class labels; ``nonces``: int[B] per-message counters.
  Returns (tokens int32[B, T], n_embedded int32[B]).
  """
  bits = jnp.asarray(bits, jnp.uint8)
  b = bits.shape[0]
  emb = discop.init_embed_state(bits, jnp.asarray(nonces, jnp.uint32), jnp.asarray(bit_len))
  toks, (emb, _) = transformer.generate(
    prior.model,
    {"params": prior.params},
    jnp.asarray(labels, jnp.int32),
    None,
    choose_fn=_embed_fn(s),
    cfg_scale=s.cfg_scale,
    top_k=s.top_k,
    temperature=s.temperature,
    choose_state=(emb, jnp.asarray(key, jnp.uint32)),
  )
  n = jnp.minimum(emb.cursor, emb.bit_len)
  assert toks.shape[0] == b
  return np.asarray(toks), np.asarray(n)


def extract(prior, codebook, key, tokens, labels, nonces, s: Sampler, ranks=None):
  """Reads the bits carried by received token sequences, applying M3 corrections first.

  Args:
    codebook: float[V, d] tokenizer codebook (needed only with ``ranks``).
    tokens: int[B, T] received (recovered) tokens.
    ranks: int[B, T], the M3 correction rank at each corrected position, -1 elsewhere.
  Returns (tokens int32[B, T] after corrections, list of B uint8 bit arrays, ok bool[B, T])
  where ``ok[b, t]`` is False if token t could not have been produced at step t.
  """
  tokens = jnp.asarray(tokens, jnp.int32)
  b, t = tokens.shape
  use = ranks is not None
  if not use:
    ranks = jnp.full((b, t), -1, jnp.int32)
  if use and codebook is None:
    raise ValueError("M3 corrections need the tokenizer's codebook")
  choose, width = _extract_fn(s, use)
  codebook = jnp.zeros((1, 1), jnp.float32) if codebook is None else codebook
  state = (
    tokens,
    jnp.asarray(ranks, jnp.int32),
    jnp.asarray(codebook, jnp.float32),
    jnp.asarray(key, jnp.uint32),
    jnp.broadcast_to(jnp.asarray(nonces, jnp.uint32), (b,)),
    jnp.zeros((b, t, width), jnp.uint8),
    jnp.zeros((b, t), jnp.int32),
    jnp.zeros((b, t), bool),
  )
  out, st = transformer.generate(
    prior.model,
    {"params": prior.params},
    jnp.asarray(labels, jnp.int32),
    None,
    choose_fn=choose,
    cfg_scale=s.cfg_scale,
    top_k=s.top_k,
    temperature=s.temperature,
    choose_state=state,
  )
  bits, counts, ok = (np.asarray(x) for x in st[5:])
  flat = [
    np.concatenate([bits[i, j, : counts[i, j]] for j in range(t)]).astype(np.uint8)
    for i in range(b)
  ]
  return np.asarray(out), flat, ok


def allowed_sets(prior, tokens, labels, s: Sampler) -> np.ndarray:
  """bool[B, T, V]: the samplable (top-k) set at each step given the tokens before it."""
  logits = transformer.logits_for_tokens(
    prior.model,
    {"params": prior.params},
    jnp.asarray(labels, jnp.int32),
    jnp.asarray(tokens, jnp.int32),
    cfg_scale=s.cfg_scale,
    top_k=s.top_k,
    temperature=s.temperature,
  )
  f = _freqs(logits.reshape(-1, logits.shape[-1]), s)
  return np.asarray(f > 0).reshape(logits.shape)


@functools.partial(jax.jit, static_argnames=("model",))
def _sequence_nll(model, params, tokens, labels):
  logits = model.apply({"params": params}, tokens, labels)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  return -jnp.sum(jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0], -1)


def infer_labels(prior, tokens, candidates) -> np.ndarray:
  """The class under which the prior finds the tokens most likely (receiver side)."""
  tokens = jnp.asarray(tokens, jnp.int32)
  cands = np.asarray(candidates, np.int32)
  scores = jnp.stack(
    [
      _sequence_nll(prior.model, prior.params, tokens, jnp.full((tokens.shape[0],), c, jnp.int32))
      for c in cands
    ],
    1,
  )
  return cands[np.asarray(jnp.argmin(scores, axis=1))]
