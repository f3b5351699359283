"""M1: hide bits while the AR prior draws the tokens; and its mirror, extraction.

``embed`` runs the prior's KV-cached generation with the sampler protocol's step
functions (``stego.sampler``: logits after CFG, temperature, top-k -> exact integer
frequencies of the candidates -> ``choose``). ``extract`` replays the same scan with the received
tokens forced (so the receiver sees bit-identical distributions) and reads back
every bit each token carries; it can also apply M3 corrections inside the same
pass (a corrected token changes the distributions of every later step, so
corrections must be applied in order, inside the AR loop).

The choose functions are module-level and cached per setting, so repeated calls
reuse one compiled generation loop (the sampling key travels in the state).

Every pass runs in one fixed batch geometry: rows are cut into chunks of exactly
``Sampler.rows`` (the last one padded), on one device. A row's logits depend on the
batch shape (XLA picks kernels and reduction orders per shape; on CPU a row's logits at
batch 1 and at batch 17 differ in the last bit and move a few integer frequencies), so
a sender embedding one image and a receiver replaying 17 counters would otherwise not
make bit-identical decisions. Within one shape a row's result does not depend on its
position or on the other rows.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.models import transformer
from stegjax.stego import sampler as sampler_lib


@dataclasses.dataclass(frozen=True)
class Sampler:
  """How tokens are drawn: the stego sampler's settings plus the prior's sampling settings.

  ``variant`` names any sampler of the ``stego.sampler`` registry (Discop ``recursive`` by
  default); ``stego`` is that protocol sampler.
  """

  variant: str = "recursive"
  precision: int = 24
  top_k: int = 256
  cfg_scale: float = 1.5
  temperature: float = 1.0
  rows: int = 8  # the fixed batch geometry of every pass (part of the protocol, like precision)

  @classmethod
  def from_config(cls, cm) -> "Sampler":
    return cls(
      variant=cm.variant,
      precision=int(cm.precision),
      top_k=int(cm.top_k),
      cfg_scale=float(cm.cfg_scale),
      temperature=float(cm.temperature),
      rows=int(cm.get("rows", 8)),
    )

  @functools.cached_property
  def stego(self) -> sampler_lib.Sampler:
    return sampler_lib.get(self.variant, precision=self.precision, top_k=self.top_k)


def in_rows(fn, rows: int, *arrays):
  """``fn(*chunks)`` over chunks of exactly ``rows`` rows (last padded with row 0), joined.

  ``arrays`` share their leading (batch) dimension; ``fn`` returns a pytree of arrays with
  that leading dimension. The result equals one call on all rows but is bit-identical for
  any number of rows, because every compiled call sees the same shapes.
  """
  arrays = [np.asarray(a) for a in arrays]
  b = len(arrays[0])
  outs = []
  for i in range(0, b, rows):
    chunk = [a[i : i + rows] for a in arrays]
    pad = rows - len(chunk[0])
    if pad:
      chunk = [np.concatenate([c, np.repeat(a[:1], pad, 0)]) for c, a in zip(chunk, arrays)]
    out = fn(*chunk)
    outs.append(jax.tree.map(lambda x, n=rows - pad: np.asarray(x)[:n], out))
  return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def _freqs(logits, s: Sampler):
  # Logits arrive already CFG-combined, temperature-scaled and top-k masked by generate.
  return s.stego.frequencies(logits)


@functools.lru_cache(maxsize=None)
def _embed_fn(s: Sampler):
  def choose(logits, step, state):
    emb, key = state
    tok, emb = s.stego.choose(logits, step, emb, key)
    return tok, (emb, key)

  return choose


@functools.lru_cache(maxsize=None)
def _extract_fn(s: Sampler, corrections: bool, vocab: int):
  width = s.stego.bits_per_step(vocab)
  del vocab

  def choose(logits, step, state):
    # Received token, or its M3 correction: the token of that rank in this step's prior order
    # (frequency, then token id), whatever the receiver got; then read the bits it carries.
    recovered, ranks, key, xs, bits, counts, ok, order = state
    rec = recovered[:, step]
    rank = ranks[:, step]
    d = s.stego.dist(logits)
    tok = rec
    if corrections:
      k = d.freqs.shape[1]
      tok = jnp.where(rank >= 0, d.token(jnp.clip(rank, 0, k - 1)), rec)
    pos, found = d.rank(tok)
    b, n, good, xs = s.stego.extract(d, tok, step, key, xs)
    bits = jax.lax.dynamic_update_slice_in_dim(bits, b[:, None, :], step, axis=1)
    counts = jax.lax.dynamic_update_slice_in_dim(counts, n[:, None], step, axis=1)
    ok = jax.lax.dynamic_update_slice_in_dim(ok, good[:, None], step, axis=1)
    pos = jnp.where(found, pos, -1)[:, None]
    order = jax.lax.dynamic_update_slice_in_dim(order, pos, step, axis=1)
    return tok, (recovered, ranks, key, xs, bits, counts, ok, order)

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
  b = len(bits)
  key = jnp.asarray(key, jnp.uint32)
  nonces = np.broadcast_to(np.asarray(nonces, np.int64), (b,))

  def run(bits, bit_len, labels, nonces):
    emb = s.stego.init_state(
      jnp.asarray(bits, jnp.uint8), jnp.asarray(nonces, jnp.uint32), jnp.asarray(bit_len)
    )
    toks, (emb, _) = transformer.generate(
      prior.model,
      {"params": prior.params},
      jnp.asarray(labels, jnp.int32),
      None,
      choose_fn=_embed_fn(s),
      cfg_scale=s.cfg_scale,
      top_k=s.top_k,
      temperature=s.temperature,
      choose_state=(emb, key),
    )
    return toks, s.stego.embedded(emb)

  toks, n = in_rows(run, s.rows, bits, np.asarray(bit_len), np.asarray(labels), nonces)
  assert toks.shape[0] == b
  return toks, n


def extract(prior, codebook, key, tokens, labels, nonces, s: Sampler, ranks=None):
  """Reads the bits carried by received token sequences, applying M3 corrections first.

  Args:
    codebook: unused (a correction is a rank in the prior's own order, ``replay``).
    tokens: int[B, T] received (recovered) tokens.
    ranks: int[B, T], the M3 correction at each corrected position (the rank of the true
      token in that step's prior order), -1 elsewhere.
  Returns (tokens int32[B, T] after corrections, list of B uint8 bit arrays, ok bool[B, T])
  where ``ok[b, t]`` is False if token t could not have been produced at step t.
  """
  del codebook
  out = replay(prior, key, tokens, labels, nonces, s, ranks)
  return out["tokens"], out["bits"], out["ok"]


def replay(prior, key, tokens, labels, nonces, s: Sampler, ranks=None) -> dict:
  """The receiver's AR replay of token sequences (with M3 corrections when ``ranks`` given).

  Returns dict: ``tokens`` int32[B, T] after corrections, ``bits`` (list of B uint8 arrays),
  ``ok`` bool[B, T], ``counts`` int32[B, T] (bits each token carries) and ``order`` int32[B, T]
  (each token's rank in its step's prior order: frequency, then lower id; -1 where it is not
  a candidate). ``order`` of the true tokens is what the sender codes as corrections: it
  depends only on the prior and the tokens before, never on the channel.
  """
  tokens = np.asarray(tokens, np.int32)
  b, t = tokens.shape
  use = ranks is not None
  if not use:
    ranks = np.full((b, t), -1, np.int32)
  choose, width = _extract_fn(s, use, int(prior.model.vocab_size))
  key = jnp.asarray(key, jnp.uint32)

  def run(tokens, ranks, labels, nonces):
    rows = tokens.shape[0]
    state = (
      jnp.asarray(tokens),
      jnp.asarray(ranks, jnp.int32),
      key,
      s.stego.init_extract_state(jnp.asarray(nonces, jnp.uint32)),
      jnp.zeros((rows, t, width), jnp.uint8),
      jnp.zeros((rows, t), jnp.int32),
      jnp.zeros((rows, t), bool),
      jnp.zeros((rows, t), jnp.int32),
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
    return out, st[4], st[5], st[6], st[7]

  nonces = np.broadcast_to(np.asarray(nonces, np.int64), (b,))
  out, bits, counts, ok, order = in_rows(
    run, s.rows, tokens, np.asarray(ranks, np.int32), np.asarray(labels), nonces
  )
  flat = [
    np.concatenate([bits[i, j, : counts[i, j]] for j in range(t)]).astype(np.uint8)
    for i in range(b)
  ]
  return {"tokens": out, "bits": flat, "ok": ok, "counts": counts, "order": order}


def prior_ranks(prior, tokens, labels, s: Sampler) -> np.ndarray:
  """int32[B, T]: each token's rank in its step's prior order given the tokens before it
  (-1 where it is not a candidate): the sender's M3 corrections (``correct.plan``)."""
  b = len(np.asarray(tokens))
  return replay(prior, np.zeros(8, np.uint32), tokens, labels, np.zeros(b, np.int64), s)["order"]


def allowed_sets(prior, tokens, labels, s: Sampler) -> np.ndarray:
  """bool[B, T, V]: the samplable (top-k) set at each step given the tokens before it."""

  def run(tokens, labels):
    logits = transformer.logits_for_tokens(
      prior.model,
      {"params": prior.params},
      jnp.asarray(labels, jnp.int32),
      jnp.asarray(tokens, jnp.int32),
      cfg_scale=s.cfg_scale,
      top_k=s.top_k,
      temperature=s.temperature,
    )
    return _freqs(logits.reshape(-1, logits.shape[-1]), s).reshape(logits.shape) > 0

  return in_rows(run, s.rows, np.asarray(tokens), np.asarray(labels))


@functools.partial(jax.jit, static_argnames=("model",))
def _sequence_nll(model, params, tokens, labels):
  logits = model.apply({"params": params}, tokens, labels)
  return -jnp.sum(transformer.token_log_probs(logits, tokens), -1)


def infer_labels(prior, tokens, candidates, rows: int = 8) -> np.ndarray:
  """The class under which the prior finds the tokens most likely (receiver side).

  Scored in chunks of ``rows`` (the sampler's geometry), so the sender's simulation and
  the receiver compute bit-identical scores whatever their batch sizes.
  """
  cands = np.asarray(candidates, np.int32)

  def run(tokens):
    tokens = jnp.asarray(tokens, jnp.int32)
    full = lambda c: jnp.full((tokens.shape[0],), c, jnp.int32)
    return jnp.stack([_sequence_nll(prior.model, prior.params, tokens, full(c)) for c in cands], 1)

  scores = in_rows(run, rows, np.asarray(tokens))
  return cands[np.argmin(scores, axis=1)]
