"""The Sampler protocol and its registry: how an AR loop draws tokens that carry message bits.

A sampler works on one step of a batch at a time, inside the AR ``lax.scan``. A step's
distribution arrives as either

* logits ``float32[B, V]`` (already CFG-combined and temperature-scaled by the model),
* integer frequencies ``int32[B, V]`` whose rows sum to ``2**precision``, or
* a ``Dist`` (from ``dist``): the ``K`` candidate tokens (``K`` = the static ``support``)
  with integer frequencies, ranked by frequency (ties by lower token id).

Logits and frequencies become a ``Dist`` by a threshold search over the vocabulary (the
``lax.top_k`` set, without a sort), then every sampler works on the ``K`` candidates only::

    s = sampler.get("recursive", precision=24, top_k=256)
    state = s.init_state(bits, nonce, bit_len)            # bits uint8[B, L]
    tokens, state = s.choose(logits, t, state, key)       # inside the scan
    s.embedded(state)                                     # int32[B] bits embedded
    xs = s.init_extract_state(nonce)
    bits_t, n_t, ok_t, xs = s.extract(logits, tokens, t, key, xs)
    tokens = s.sample(logits, t, key, nonce)              # plain sampling, same randomness

``bits_t`` is ``uint8[B, s.bits_per_step(V)]`` (a static width); ``ok_t`` is False where
the token could not have been produced at this step under this key. Samplers are frozen
dataclasses: hashable, so they serve as ``jax.jit`` static arguments and cache keys.

The registry maps names to implementations (``names()``, ``get(name, **cfg)``,
``from_config(cfg)``); each implementation lives in its own module and is imported when
first asked for.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import importlib
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.errors import ConfigError
from stegjax.stego import quantize
from stegjax.stego.common import (
  EmbedState,
  broadcast_nonce,
  check_precision,
  init_embed_state,
  n_embedded,
  validate_bits,
  validate_freqs,
)

__all__ = [
  "Dist",
  "Sampler",
  "names",
  "get",
  "from_config",
  "register",
  "embed",
  "extract",
  "sample",
]


class Dist(NamedTuple):
  """One step's K candidate tokens.

  ``freqs`` int32[B, K]: their frequencies in descending order (rows sum to
  ``2**precision``; zeros last). Position ``i`` of ``freqs`` is the token of rank ``i``
  (ties by lower token id): ``token(pos)``; ``rank(tokens)`` is the inverse.
  ``cand_freqs`` / ``cand_ids`` int32[B, K]: the same candidates in ascending token id
  (how they were selected, without a sort over the vocabulary).
  """

  freqs: jax.Array
  cand_freqs: jax.Array
  cand_ids: jax.Array

  @staticmethod
  def of(cand_freqs, cand_ids) -> "Dist":
    f = cand_freqs.astype(jnp.int32)
    return Dist(jnp.flip(jnp.sort(f, axis=-1), axis=-1), f, cand_ids.astype(jnp.int32))

  def token(self, pos):
    """Token id int32[B] at rank ``pos`` int32[B]."""
    fr = jnp.take_along_axis(self.freqs, pos[:, None], axis=1)  # [B, 1]
    j = pos - (self.freqs > fr).sum(1)  # rank among equal frequencies
    eq = self.cand_freqs == fr
    hit = eq & (jnp.cumsum(eq, axis=1, dtype=jnp.int32) == (j + 1)[:, None])
    at = jnp.argmax(hit, axis=1)
    return jnp.take_along_axis(self.cand_ids, at[:, None], axis=1)[:, 0]

  def rank(self, tokens):
    """(rank int32[B], found bool[B]): found is False for a token that is not a candidate
    or has frequency 0."""
    tok = jnp.asarray(tokens, jnp.int32)[:, None]
    hit = self.cand_ids == tok
    at = jnp.argmax(hit, axis=1)
    fx = jnp.take_along_axis(self.cand_freqs, at[:, None], axis=1)
    f, ids = self.cand_freqs, self.cand_ids
    rank = ((f > fx) | ((f == fx) & (ids < tok))).sum(1).astype(jnp.int32)
    return rank, hit.any(1) & (fx[:, 0] > 0)


PRFS = ("chacha20", "threefry")


@dataclasses.dataclass(frozen=True)
class Sampler(abc.ABC):
  """Base of every sampler: the shared settings and the logits/frequencies -> ``Dist`` step.

  Fields (all static): ``precision`` (frequencies sum to ``2**precision``, at most 30),
  ``top_k`` / ``top_p`` truncation, ``support`` (static bound K on the candidate tokens;
  defaults to ``top_k``, required with ``top_p`` for a fast step), ``rule`` (the quantizer:
  ``"nearest"`` or the legacy ``"floor"``), ``prf_impl`` (``"chacha20"``, or the
  non-cryptographic ``"threefry"``).

  Subclasses implement the positional core on a ``Dist`` (``_choose`` / ``_extract`` /
  ``_init_*``); positions are ranks in the candidate list, mapped to token ids here.
  """

  precision: int = 24
  top_k: int | None = None
  top_p: float | None = None
  support: int | None = None
  rule: str = "nearest"
  prf_impl: str = "chacha20"

  name: ClassVar[str] = "?"
  secure: ClassVar[bool] = True  # False: a baseline or positive control, not provably secure

  def __post_init__(self):
    try:
      check_precision(self.precision)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if self.top_k is not None and (not isinstance(self.top_k, (int, np.integer)) or self.top_k < 1):
      raise ConfigError(f"top_k must be a positive int or None, got {self.top_k!r}")
    if self.top_p is not None and not 0.0 < float(self.top_p) <= 1.0:
      raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
    if self.support is not None and (
      not isinstance(self.support, (int, np.integer)) or self.support < 1
    ):
      raise ConfigError(f"support must be a positive int or None, got {self.support!r}")
    if self.support is not None and self.top_k is not None and self.support < self.top_k:
      raise ConfigError(f"support ({self.support}) must be at least top_k ({self.top_k})")
    if self.rule not in quantize.RULES:
      raise ConfigError(f"unknown quantizer rule {self.rule!r}; valid: {', '.join(quantize.RULES)}")
    if self.prf_impl not in PRFS:
      raise ConfigError(f"unknown prf {self.prf_impl!r}; valid: {', '.join(PRFS)}")

  # ---------------------------------------------------------------- static sizes

  def k(self, vocab: int) -> int:
    """Static number of candidate tokens K for a vocabulary of ``vocab``."""
    k = self.support if self.support is not None else self.top_k
    return vocab if k is None else min(int(k), int(vocab))

  def bits_per_step(self, vocab: int) -> int:
    """Static upper bound on the bits one token carries (the width of ``extract``'s bits)."""
    return self._width(self.k(vocab))

  # ---------------------------------------------------------------- distributions

  def dist(self, x) -> Dist:
    """``Dist`` of one step from logits float[B, V], frequencies int[B, V], or a ``Dist``."""
    if isinstance(x, Dist):
      return x
    x = jnp.asarray(x)
    if x.ndim != 2:
      raise ValueError(f"a step takes [B, V] logits or frequencies, got shape {x.shape}")
    k = self.k(x.shape[-1])
    if jnp.issubdtype(x.dtype, jnp.integer):
      ids = quantize.select_top(x.astype(jnp.int32), k)  # the top-k set, ties by lower id
      return Dist.of(jnp.take_along_axis(x.astype(jnp.int32), ids, axis=1), ids)
    f, ids = quantize.candidates_from_logits(
      x, k, precision=self.precision, top_k=self.top_k, top_p=self.top_p, rule=self.rule
    )
    return Dist.of(f, ids)

  def frequencies(self, x) -> jax.Array:
    """int32[B, V] frequencies of one step (zeros outside the candidates); ``x`` as ``dist``."""
    x = jnp.asarray(x) if not isinstance(x, Dist) else x
    if not isinstance(x, Dist) and jnp.issubdtype(x.dtype, jnp.integer):
      return x.astype(jnp.int32)
    vocab = x.shape[-1]
    d = self.dist(x)
    rows = jnp.arange(d.cand_ids.shape[0])[:, None]
    return jnp.zeros((d.cand_ids.shape[0], vocab), jnp.int32).at[rows, d.cand_ids].set(d.cand_freqs)

  def allowed(self, x, vocab: int | None = None) -> jax.Array:
    """bool[B, V]: the tokens this step can produce (nonzero frequency)."""
    if isinstance(x, Dist):
      if vocab is None:
        raise ValueError("allowed(Dist) needs the vocabulary size")
      rows = jnp.arange(x.cand_ids.shape[0])[:, None]
      return (
        jnp.zeros((x.cand_ids.shape[0], vocab), bool).at[rows, x.cand_ids].set(x.cand_freqs > 0)
      )
    return self.frequencies(x) > 0

  # ---------------------------------------------------------------- step level

  def init_state(self, bits, nonce, bit_len=None):
    """Embedding state for a batch (a pytree): ``bits`` uint8[B, L], ``nonce`` int or [B]."""
    return init_embed_state(bits, nonce, bit_len)

  def embedded(self, state) -> jax.Array:
    """int32[B]: message bits embedded so far (the cursor, capped at ``bit_len``)."""
    return n_embedded(state)

  def init_extract_state(self, nonce, batch: int | None = None):
    """Receiver state for a batch (a pytree); the default holds just the nonces uint32[B]."""
    n = jnp.asarray(nonce)
    b = batch if batch is not None else (n.shape[0] if n.ndim else 1)
    return broadcast_nonce(n, (b,))

  def _nonce_of(self, xstate):
    return xstate

  def choose(self, x, t, state, key):
    """(tokens int32[B], state): one token per row, embedding bits from the state's cursor."""
    d = self.dist(x)
    pos, state = self._choose(d, t, state, jnp.asarray(key, jnp.uint32))
    return d.token(pos), state

  def extract(self, x, tokens, t, key, xstate):
    """(bits uint8[B, W], n int32[B], ok bool[B], xstate): the bits ``tokens`` carry at step t."""
    d = self.dist(x)
    pos, found = d.rank(tokens)
    width = self._width(d.freqs.shape[1])
    bits, n, ok, xstate = self._extract(d, pos, found, t, jnp.asarray(key, jnp.uint32), xstate)
    bits = jnp.where(jnp.arange(width)[None] < n[:, None], bits, 0).astype(jnp.uint8)
    return bits, n.astype(jnp.int32), ok & found, xstate

  def sample(self, x, t, key, nonce):
    """Plain sampling with the same randomness (the all-zero message): tokens int32[B]."""
    d = self.dist(x)
    b = d.freqs.shape[0]
    st = self.init_state(jnp.zeros((b, 1), jnp.uint8), nonce, jnp.zeros((b,), jnp.int32))
    return self.choose(d, t, st, key)[0]

  # ---------------------------------------------------------------- what a sampler implements

  @abc.abstractmethod
  def _width(self, k: int) -> int:
    """Static bound on bits per step with K candidates."""

  @abc.abstractmethod
  def _choose(self, d: Dist, t, state, key):
    """(positions int32[B] into ``d``, state)."""

  @abc.abstractmethod
  def _extract(self, d: Dist, pos, found, t, key, xstate):
    """(bits [B, W], n [B], ok [B], xstate) for the observed positions (``found`` False: the
    token is not a candidate; ``pos`` is then arbitrary)."""


# ---------------------------------------------------------------------- registry

# name -> ("module:Class", fixed constructor arguments). Implementations are imported on
# first use, so adding a sampler is one line here plus its own module.
_ENTRIES: dict[str, tuple[str, dict]] = {
  "basic": ("stegjax.stego.discop:DiscopSampler", {"variant": "basic"}),
  "recursive": ("stegjax.stego.discop:DiscopSampler", {"variant": "recursive"}),
  "recursive_bisect": ("stegjax.stego.discop:DiscopSampler", {"variant": "recursive_bisect"}),
  "meteor": ("stegjax.stego.meteor:MeteorSampler", {}),
  "arithmetic": ("stegjax.stego.arithmetic:ArithmeticSampler", {}),
  "naive": ("stegjax.stego.naive:NaiveSampler", {}),
  "sparsamp": ("stegjax.stego.sparsamp:SparSampSampler", {}),
  "rotation": ("stegjax.stego.rotation:RotationSampler", {}),
}


def register(name: str, target: str, **fixed):
  """Adds ``name`` -> ``"module:Class"`` (constructed with ``fixed`` plus the caller's cfg)."""
  _ENTRIES[name] = (target, dict(fixed))


def names() -> tuple[str, ...]:
  """Every registered sampler name."""
  return tuple(_ENTRIES)


@functools.lru_cache(maxsize=None)
def _class(target: str):
  mod, cls = target.split(":")
  return getattr(importlib.import_module(mod), cls)


def _fields(cls) -> set[str]:
  return {f.name for f in dataclasses.fields(cls)}


def get(name: str, **cfg) -> Sampler:
  """The sampler registered as ``name`` with settings ``cfg`` (precision, top_k, top_p,
  support, rule, prf_impl, and a sampler's own fields such as naive's ``n_bits``)."""
  if name not in _ENTRIES:
    raise ConfigError(f"unknown sampler {name!r}; valid: {', '.join(names())}")
  target, fixed = _ENTRIES[name]
  cls = _class(target)
  bad = sorted(set(cfg) - (_fields(cls) - set(fixed)))
  if bad:
    raise ConfigError(
      f"sampler {name!r} has no setting {', '.join(bad)}; "
      f"valid: {', '.join(sorted(_fields(cls) - set(fixed)))}"
    )
  return cls(**fixed, **cfg)


# config field -> Sampler field (configs keep their established names)
_CONFIG_ALIASES = {"prf": "prf_impl", "naive_bits": "n_bits", "quantizer": "rule"}


def from_config(cfg, name: str | None = None) -> Sampler:
  """The sampler a config section names: ``cfg.sampler`` (or ``cfg.variant``, the older
  field), with whichever of the sampler's settings the section has. Other fields
  (``cfg_scale``, ``temperature``, ...) are left to the caller."""
  get_ = cfg.get if hasattr(cfg, "get") else lambda k, d=None: getattr(cfg, k, d)
  if name is None:
    name = get_("sampler", None) or get_("variant", None)
  if name is None:
    raise ConfigError("the config names no sampler (field 'sampler' or 'variant')")
  if name not in _ENTRIES:
    raise ConfigError(f"unknown sampler {name!r}; valid: {', '.join(names())}")
  target, fixed = _ENTRIES[name]
  allowed = _fields(_class(target)) - set(fixed)
  kw = {}
  keys = list(cfg.keys()) if hasattr(cfg, "keys") else list(vars(cfg))
  for k in keys:
    field = _CONFIG_ALIASES.get(k, k)
    if field in allowed:
      v = get_(k)
      kw[field] = int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
  return get(name, **kw)


# ---------------------------------------------------------------------- sequence level


def _lead(x, n_trailing):
  return x.shape[: x.ndim - n_trailing]


@functools.partial(jax.jit, static_argnames=("s",))
def _embed_jit(s: Sampler, xs, bits, bit_len, key, nonce):
  lead = _lead(xs, 2)
  t_len, v = xs.shape[-2:]
  flat = xs.reshape((-1, t_len, v))
  b = flat.shape[0]
  state = s.init_state(
    bits.reshape(b, -1), nonce.reshape(-1), None if bit_len is None else bit_len.reshape(-1)
  )

  def body(st, inp):
    x, t = inp
    tok, st = s.choose(x, t, st, key)
    return st, tok

  state, toks = jax.lax.scan(body, state, (jnp.swapaxes(flat, 0, 1), jnp.arange(t_len)))
  return jnp.swapaxes(toks, 0, 1).reshape(lead + (t_len,)), s.embedded(state).reshape(lead)


@functools.partial(jax.jit, static_argnames=("s",))
def _extract_jit(s: Sampler, xs, tokens, key, nonce):
  lead = _lead(xs, 2)
  t_len, v = xs.shape[-2:]
  flat = xs.reshape((-1, t_len, v))
  b = flat.shape[0]
  width = s.bits_per_step(v)

  def body(xst, inp):
    x, tk, t = inp
    bits, n, ok, xst = s.extract(x, tk, t, key, xst)
    return xst, (bits, n, ok)

  _, (bits, n, ok) = jax.lax.scan(
    body,
    s.init_extract_state(nonce.reshape(-1), b),
    (jnp.swapaxes(flat, 0, 1), tokens.reshape(b, t_len).T, jnp.arange(t_len)),
  )
  bits, n, ok = jnp.swapaxes(bits, 0, 1), n.T, ok.T  # [B, T, W], [B, T], [B, T]
  offs = jnp.cumsum(n, axis=1) - n
  kk = jnp.arange(width, dtype=jnp.int32)
  total = t_len * width
  pos = jnp.where(kk < n[..., None], offs[..., None] + kk, total)
  rows = jnp.broadcast_to(jnp.arange(b)[:, None, None], pos.shape)
  out = jnp.zeros((b, total), jnp.uint8).at[rows, pos].set(bits, mode="drop")
  return (
    out.reshape(lead + (total,)),
    n.sum(1).astype(jnp.int32).reshape(lead),
    ok.reshape(lead + (t_len,)),
  )


@functools.partial(jax.jit, static_argnames=("s",))
def _sample_jit(s: Sampler, xs, key, nonce):
  lead = _lead(xs, 2)
  t_len, v = xs.shape[-2:]
  flat = xs.reshape((-1, t_len, v))
  nn = nonce.reshape(-1)

  def body(_, inp):
    x, t = inp
    return None, s.sample(x, t, key, nn)

  _, toks = jax.lax.scan(body, None, (jnp.swapaxes(flat, 0, 1), jnp.arange(t_len)))
  return jnp.swapaxes(toks, 0, 1).reshape(lead + (t_len,))


def _seq_inputs(s: Sampler, xs, key):
  xs = jnp.asarray(xs)
  if xs.ndim < 2:
    raise ValueError(f"expected [..., T, V] logits or frequencies, got shape {xs.shape}")
  if jnp.issubdtype(xs.dtype, jnp.integer):
    validate_freqs(xs, s.precision, s.k(xs.shape[-1]))
  if jnp.asarray(key).shape != (8,):
    raise ValueError(f"key must be uint32[8] (prf.make_key), got shape {jnp.asarray(key).shape}")
  return xs, jnp.asarray(key, jnp.uint32)


def embed(s: Sampler, xs, bits, key, nonce, bit_len=None) -> tuple[Any, Any]:
  """Embeds ``bits[..., L]`` over ``xs[..., T, V]`` (logits or frequencies), one jitted scan.

  Returns (tokens int32[..., T], bits embedded int32[...]).
  """
  xs, key = _seq_inputs(s, xs, key)
  lead = _lead(xs, 2)
  bits = jnp.asarray(bits)
  validate_bits(bits)
  if bits.shape[:-1] != lead:
    raise ValueError(f"bits leading dims {bits.shape[:-1]} must equal the distributions' {lead}")
  bl = None if bit_len is None else jnp.broadcast_to(jnp.asarray(bit_len, jnp.int32), lead)
  return _embed_jit(s, xs, bits.astype(jnp.uint8), bl, key, broadcast_nonce(nonce, lead))


def extract(s: Sampler, xs, tokens, key, nonce):
  """(bits uint8[..., T*W], n int32[...], ok bool[..., T]): every bit ``tokens`` carry."""
  xs, key = _seq_inputs(s, xs, key)
  lead = _lead(xs, 2)
  tokens = jnp.asarray(tokens, jnp.int32)
  if tokens.shape != xs.shape[:-1]:
    raise ValueError(f"tokens shape {tokens.shape} must be {xs.shape[:-1]}")
  return _extract_jit(s, xs, tokens, key, broadcast_nonce(nonce, lead))


def sample(s: Sampler, xs, key, nonce):
  """Plain sampling with the same randomness: tokens int32[..., T]."""
  xs, key = _seq_inputs(s, xs, key)
  return _sample_jit(s, xs, key, broadcast_nonce(nonce, _lead(xs, 2)))


__all__ += ["EmbedState", "PRFS"]


def plain_sample(d: Dist, t, key, nonce, precision: int):
  """Inverse-CDF sampling of positions in ``d`` with the PRF word ``(nonce, t, 0)``: int32[B]
  (what samplers without an embedding-free walk use as ``sample``)."""
  from stegjax.stego import prf

  c = jax.lax.associative_scan(jnp.add, d.freqs.astype(jnp.int32), axis=1).astype(jnp.uint32)
  r = prf.draw(key, nonce, t, 0) >> jnp.uint32(32 - precision)
  r = jnp.broadcast_to(r, (d.freqs.shape[0],))
  return jax.vmap(lambda cc, v: jnp.searchsorted(cc, v, side="right"))(c, r).astype(jnp.int32)
