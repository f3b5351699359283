"""Class-conditional Llama-style AR prior over VQ tokens (LlamaGen ``GPT``, c2i).

Layout mirrors LlamaGen ``autoregressive/models/gpt.py`` so published checkpoints map
one-to-one. torch key -> flax path (``.N`` -> ``_N``; Linear ``weight`` [out,in]
-> ``kernel`` [in,out]; Embedding ``weight`` -> ``embedding``; RMSNorm keeps ``weight``):

    cls_embedding.embedding_table.weight [num_classes+1, dim]  cls_embedding/embedding_table/embedding
    tok_embeddings.weight [vocab, dim]                         tok_embeddings/embedding
    layers.N.attention.wqkv.weight  [(H+2*Hkv)*hd, dim]        layers_N/attention/wqkv/kernel (fused, q|k|v)
    layers.N.attention.wo.weight    [dim, H*hd]                layers_N/attention/wo/kernel
    layers.N.feed_forward.{w1,w3,w2}.weight                    layers_N/feed_forward/{w1,w3,w2}/kernel
    layers.N.{attention_norm,ffn_norm}.weight                  layers_N/{attention_norm,ffn_norm}/weight
    norm.weight / output.weight                                norm/weight, output/kernel
    freqs_cis, causal_mask, kv caches (buffers)                dropped (recomputed here)

Sequence layout: position 0 is the class token, position 1+i holds image token i (raster
order over ``grid=(h, w)``). Teacher forcing: the class token predicts token 0 and token i
predicts token i+1, so ``__call__(tokens[B,T])`` returns logits[B,T,V] with logits[:, i] the
distribution of tokens[:, i].

2D RoPE exactly as LlamaGen: interleaved rotary pairs (x[2k], x[2k+1]); the first head_dim/4
pairs rotate by the row index, the last head_dim/4 by the column index, both with
frequencies ``base ** (-2k / (head_dim/2))``. LlamaGen's table holds cos = sin = 0 for the
class-token row, which zeroes the class token's query and key (``cls_rope='zero'``, the
default, needed to reproduce published checkpoints); ``cls_rope='identity'`` leaves them
unrotated instead.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
ChooseFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]

_init = nn.initializers.normal(stddev=0.02)  # LlamaGen initializer_range


def find_multiple(n: int, k: int) -> int:
  return n if n % k == 0 else n + k - (n % k)


def ffn_hidden_dim(
  dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None
) -> int:
  """LlamaGen/Llama SwiGLU width: int(2/3 * 4 dim), times the multiplier, rounded up."""
  hidden = int(2 * (4 * dim) / 3)
  if ffn_dim_multiplier is not None:
    hidden = int(ffn_dim_multiplier * hidden)
  return find_multiple(hidden, multiple_of)


def precompute_freqs_cis_2d(
  grid: Sequence[int],
  head_dim: int,
  base: float = 10000.0,
  cls_token_num: int = 1,
  cls_rope: str = "zero",
) -> jax.Array:
  """RoPE table float32[cls_token_num + h*w, head_dim // 2, 2] of (cos, sin) per rotary pair."""
  h, w = int(grid[0]), int(grid[1])
  if head_dim % 4:
    raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
  if cls_rope not in ("zero", "identity"):
    raise ValueError(f"cls_rope must be 'zero' or 'identity', got {cls_rope!r}")
  half = head_dim // 2
  # float32 throughout, like torch's default dtype in LlamaGen.
  freqs = 1.0 / (
    np.float32(base) ** (np.arange(0, half, 2, dtype=np.float32)[: half // 2] / np.float32(half))
  )
  rows = np.outer(np.arange(h, dtype=np.float32), freqs).astype(np.float32)  # [h, hd/4]
  cols = np.outer(np.arange(w, dtype=np.float32), freqs).astype(np.float32)  # [w, hd/4]
  ang = np.concatenate(
    [
      np.broadcast_to(rows[:, None, :], (h, w, half // 2)),
      np.broadcast_to(cols[None, :, :], (h, w, half // 2)),
    ],
    axis=-1,
  )
  table = np.stack([np.cos(ang), np.sin(ang)], axis=-1).reshape(h * w, half, 2)
  cls = np.zeros((cls_token_num, half, 2), np.float32)
  if cls_rope == "identity":
    cls[..., 0] = 1.0
  return jnp.asarray(np.concatenate([cls, table.astype(np.float32)], axis=0))


def apply_rotary_emb(x: jax.Array, freqs_cis: jax.Array) -> jax.Array:
  """Rotate interleaved pairs. x [B,T,H,hd]; freqs_cis [T, hd//2, 2]."""
  xs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
  f = freqs_cis[None, :, None]  # [1,T,1,hd/2,2]
  out = jnp.stack(
    [
      xs[..., 0] * f[..., 0] - xs[..., 1] * f[..., 1],
      xs[..., 1] * f[..., 0] + xs[..., 0] * f[..., 1],
    ],
    axis=-1,
  )
  return out.reshape(x.shape).astype(x.dtype)


class RMSNorm(nn.Module):
  eps: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    weight = self.param("weight", nn.initializers.ones, (x.shape[-1],))
    xf = x.astype(jnp.float32)
    y = (xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)).astype(x.dtype)
    return y * weight.astype(self.dtype)


class FeedForward(nn.Module):
  dim: int
  hidden_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  def setup(self):
    dense = lambda n: nn.Dense(n, use_bias=False, dtype=self.dtype, kernel_init=_init)
    self.w1, self.w3, self.w2 = dense(self.hidden_dim), dense(self.hidden_dim), dense(self.dim)
    self.ffn_dropout = nn.Dropout(self.dropout)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.ffn_dropout(self.w2(nn.silu(self.w1(x)) * self.w3(x)), deterministic=not train)


def _attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """Grouped-query attention. q [B,T,H,hd]; k,v [B,S,Hkv,hd]; mask bool [T,S]."""
  b, t, n_head, hd = q.shape
  n_kv = k.shape[2]
  # LlamaGen repeat_interleave: kv head j serves query heads j*G ... j*G+G-1.
  qg = q.reshape(b, t, n_kv, n_head // n_kv, hd)
  s = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32)
  s = s * (1.0 / np.sqrt(hd)).astype(np.float32)
  s = jnp.where(mask[None, None, None], s, -jnp.inf)
  p = jax.nn.softmax(s, axis=-1).astype(v.dtype)
  o = jnp.einsum("bkgts,bskd->btkgd", p, v)
  return o.reshape(b, t, n_head * hd)


class Attention(nn.Module):
  dim: int
  n_head: int
  n_kv_head: int
  head_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  def setup(self):
    self.wqkv = nn.Dense(
      (self.n_head + 2 * self.n_kv_head) * self.head_dim,
      use_bias=False,
      dtype=self.dtype,
      kernel_init=_init,
    )
    self.wo = nn.Dense(self.dim, use_bias=False, dtype=self.dtype, kernel_init=_init)
    self.resid_dropout = nn.Dropout(self.dropout)

  def __call__(self, x, freqs_cis, mask, cache=None, pos=None, train: bool = False):
    b, t, _ = x.shape
    qs, kvs = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
    qkv = self.wqkv(x)
    q = qkv[..., :qs].reshape(b, t, self.n_head, self.head_dim)
    k = qkv[..., qs : qs + kvs].reshape(b, t, self.n_kv_head, self.head_dim)
    v = qkv[..., qs + kvs :].reshape(b, t, self.n_kv_head, self.head_dim)
    q, k = apply_rotary_emb(q, freqs_cis), apply_rotary_emb(k, freqs_cis)
    if cache is not None:  # decode: write this step's k/v at `pos`, attend over the cache
      k_cache, v_cache = cache
      k = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, pos, 0, 0))
      v = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, pos, 0, 0))
      cache = (k, v)
    out = self.resid_dropout(self.wo(_attend(q, k, v, mask)), deterministic=not train)
    return out, cache


class TransformerBlock(nn.Module):
  dim: int
  n_head: int
  n_kv_head: int
  head_dim: int
  ffn_hidden: int
  norm_eps: float = 1e-5
  resid_dropout_p: float = 0.0
  ffn_dropout_p: float = 0.0
  dtype: Dtype = jnp.float32

  def setup(self):
    self.attention = Attention(
      self.dim, self.n_head, self.n_kv_head, self.head_dim, self.resid_dropout_p, self.dtype
    )
    self.feed_forward = FeedForward(self.dim, self.ffn_hidden, self.ffn_dropout_p, self.dtype)
    self.attention_norm = RMSNorm(self.norm_eps, self.dtype)
    self.ffn_norm = RMSNorm(self.norm_eps, self.dtype)

  def __call__(self, x, freqs_cis, mask, cache=None, pos=None, train: bool = False):
    a, cache = self.attention(self.attention_norm(x), freqs_cis, mask, cache, pos, train)
    h = x + a
    return h + self.feed_forward(self.ffn_norm(h), train), cache


class LabelEmbedder(nn.Module):
  """Class embedding with a null class (row num_classes) for classifier-free guidance."""

  num_classes: int
  dim: int
  dropout_prob: float = 0.1
  dtype: Dtype = jnp.float32

  def setup(self):
    self.embedding_table = nn.Embed(
      self.num_classes + 1, self.dim, dtype=self.dtype, embedding_init=_init
    )

  def __call__(self, labels: jax.Array, train: bool = False) -> jax.Array:
    if train and self.dropout_prob > 0:  # class dropout trains the null class
      drop = jax.random.uniform(self.make_rng("dropout"), labels.shape) < self.dropout_prob
      labels = jnp.where(drop, self.num_classes, labels)
    return self.embedding_table(labels)[:, None, :]


class Transformer(nn.Module):
  """LlamaGen c2i GPT. GPT-B: dim=768, n_layer=12, n_head=12, vocab 16384, 1000 classes.

  Training with ``train=True`` needs ``rngs={'dropout': key}`` when class_dropout_prob or
  any dropout probability is positive.
  """

  vocab_size: int
  num_classes: int
  dim: int
  n_layer: int
  n_head: int
  n_kv_head: Optional[int] = None
  head_dim: Optional[int] = None
  multiple_of: int = 256
  ffn_dim_multiplier: Optional[float] = None
  norm_eps: float = 1e-5
  rope_base: float = 10000
  grid: Sequence[int] = (16, 16)
  cls_token_num: int = 1
  class_dropout_prob: float = 0.1
  dtype: Dtype = jnp.float32
  token_dropout_p: float = 0.0
  resid_dropout_p: float = 0.0
  ffn_dropout_p: float = 0.0
  cls_rope: str = "zero"

  # ---- derived shapes -------------------------------------------------------------
  @property
  def kv_heads(self) -> int:
    return self.n_head if self.n_kv_head is None else self.n_kv_head

  @property
  def hd(self) -> int:
    return self.dim // self.n_head if self.head_dim is None else self.head_dim

  @property
  def num_tokens(self) -> int:
    return int(self.grid[0]) * int(self.grid[1])

  def _validate(self) -> None:
    if self.cls_token_num != 1:
      raise ValueError(
        f"only one class token is supported (c2i), got cls_token_num={self.cls_token_num}"
      )
    if self.head_dim is None and self.dim % self.n_head:
      raise ValueError(f"dim={self.dim} is not divisible by n_head={self.n_head}; set head_dim")
    if self.n_head % self.kv_heads:
      raise ValueError(f"n_head={self.n_head} is not a multiple of n_kv_head={self.kv_heads}")
    if len(self.grid) != 2 or min(self.grid) < 1:
      raise ValueError(f"grid must be (h, w) with positive sizes, got {self.grid}")

  def setup(self):
    self._validate()
    self.cls_embedding = LabelEmbedder(
      self.num_classes, self.dim, self.class_dropout_prob, self.dtype
    )
    self.tok_embeddings = nn.Embed(
      self.vocab_size, self.dim, dtype=self.dtype, embedding_init=_init
    )
    self.tok_dropout = nn.Dropout(self.token_dropout_p)
    ffn = ffn_hidden_dim(self.dim, self.multiple_of, self.ffn_dim_multiplier)
    self.layers = [
      TransformerBlock(
        self.dim,
        self.n_head,
        self.kv_heads,
        self.hd,
        ffn,
        self.norm_eps,
        self.resid_dropout_p,
        self.ffn_dropout_p,
        self.dtype,
      )
      for _ in range(self.n_layer)
    ]
    self.norm = RMSNorm(self.norm_eps, self.dtype)
    # LlamaGen zero-initializes the output head.
    self.output = nn.Dense(
      self.vocab_size, use_bias=False, dtype=self.dtype, kernel_init=nn.initializers.zeros
    )
    self.freqs_cis = precompute_freqs_cis_2d(
      self.grid, self.hd, self.rope_base, self.cls_token_num, self.cls_rope
    )

  def _head(self, h: jax.Array) -> jax.Array:
    return self.output(self.norm(h)).astype(jnp.float32)

  def __call__(self, tokens: jax.Array, labels: jax.Array, train: bool = False) -> jax.Array:
    """Teacher-forced logits float32[B,T,V]; logits[:, i] is the distribution of tokens[:, i]."""
    if tokens.ndim != 2:
      raise ValueError(f"tokens must be int[B,T], got shape {tokens.shape}")
    b, t = tokens.shape
    if not 1 <= t <= self.num_tokens:
      raise ValueError(f"sequence length {t} must be in [1, h*w={self.num_tokens}]")
    chex.assert_shape(labels, (b,))
    cls = self.cls_embedding(labels, train)
    x = jnp.concatenate([cls, self.tok_embeddings(tokens[:, : t - 1])], axis=1)  # [B,T,D]
    x = self.tok_dropout(x, deterministic=not train)
    mask = jnp.tril(jnp.ones((t, t), bool))
    freqs = self.freqs_cis[:t]
    for layer in self.layers:
      x, _ = layer(x, freqs, mask, train=train)
    logits = self._head(x)
    chex.assert_shape(logits, (b, t, self.vocab_size))
    return logits

  def decode_step(
    self, token: jax.Array, labels: jax.Array, pos: jax.Array, cache
  ) -> tuple[jax.Array, Any]:
    """One KV-cached step at sequence position ``pos`` (0 = class token).

    token int[B] is the image token at position pos (ignored at pos 0, where the class
    embedding of ``labels`` is used); returns (logits float32[B,V] for the token at
    position pos, i.e. image token index pos, and the updated cache).
    """
    b = token.shape[0]
    chex.assert_shape([token, labels], (b,))
    x = jnp.where(pos == 0, self.cls_embedding(labels), self.tok_embeddings(token)[:, None, :])
    freqs = jax.lax.dynamic_slice_in_dim(self.freqs_cis, pos, 1, axis=0)
    s = cache[0][0].shape[1]
    mask = (jnp.arange(s) <= pos)[None, :]
    new_cache = []
    for layer, c in zip(self.layers, cache):
      x, c = layer(x, freqs, mask, cache=c, pos=pos)
      new_cache.append(c)
    return self._head(x)[:, 0], tuple(new_cache)


def init_cache(model: Transformer, batch: int, dtype: Dtype | None = None):
  """Zero KV cache: per layer (k, v), each [B, h*w, n_kv_head, head_dim]."""
  dtype = model.dtype if dtype is None else dtype
  shape = (batch, model.num_tokens, model.kv_heads, model.hd)
  return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(model.n_layer))


def token_log_probs(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """log p(token) under each step's logits: [..., T, V] and [..., T] -> float32 [..., T]."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  return jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]


def process_logits(
  logits: jax.Array,
  batch: int,
  use_cfg: bool,
  cfg_scale: float,
  top_k: int | None,
  temperature: float,
) -> jax.Array:
  """Raw step logits [B or 2B, V] -> processed float32[B, V]: CFG, then temperature, then top-k."""
  logits = logits.astype(jnp.float32)
  if use_cfg:
    cond, uncond = logits[:batch], logits[batch:]
    logits = uncond + cfg_scale * (cond - uncond)
  if temperature != 1.0:
    logits = logits / temperature
  if top_k is not None and top_k < logits.shape[-1]:
    # Exactly k tokens, ties to the lower id: the same set the stego samplers' quantizer
    # keeps, so an honest sample and a stego sample share one support.
    keep = jax.lax.top_k(logits, top_k)[1]
    rows = jnp.arange(logits.shape[0])[:, None]
    mask = jnp.zeros(logits.shape, bool).at[rows, keep].set(True)
    logits = jnp.where(mask, logits, -jnp.inf)
  return logits


def _check_sampling_args(model, labels, cfg_scale, top_k, temperature):
  if not isinstance(model, Transformer):
    raise ValueError(f"model must be a transformer.Transformer, got {type(model).__name__}")
  if labels.ndim != 1:
    raise ValueError(f"labels must be int[B], got shape {labels.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"labels must be integers, got {labels.dtype}")
  if top_k is not None and (int(top_k) != top_k or top_k < 1):
    raise ValueError(f"top_k must be a positive integer or None, got {top_k}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if not np.isfinite(cfg_scale):
    raise ValueError(f"cfg_scale must be finite, got {cfg_scale}")


@functools.partial(
  jax.jit,
  static_argnames=(
    "model",
    "choose_fn",
    "use_cfg",
    "cfg_scale",
    "top_k",
    "temperature",
    "num_steps",
    "return_logits",
  ),
)
def _decode(
  model,
  params,
  labels,
  key,
  forced,
  choose_state,
  *,
  choose_fn,
  use_cfg,
  cfg_scale,
  top_k,
  temperature,
  num_steps,
  return_logits,
):
  """The one scan shared by generate and logits_for_tokens (so both compute identical logits)."""
  b = labels.shape[0]
  rows = jnp.concatenate([labels, jnp.full_like(labels, model.num_classes)]) if use_cfg else labels
  cache = init_cache(model, rows.shape[0])

  if forced is not None:

    def chooser(logits, step, state):
      return forced[:, step], state
  elif choose_fn is None:

    def chooser(logits, step, state):
      return jax.random.categorical(jax.random.fold_in(key, step), logits).astype(jnp.int32), state
  else:
    chooser = choose_fn

  def body(carry, step):
    cache, prev, state = carry
    inp = jnp.concatenate([prev, prev]) if use_cfg else prev
    raw, cache = model.apply(params, inp, rows, step, cache, method=Transformer.decode_step)
    logits = process_logits(raw, b, use_cfg, cfg_scale, top_k, temperature)
    # Fence: the logits must not depend on how the consumer is fused (sender vs receiver).
    logits = jax.lax.optimization_barrier(logits)
    tok, state = chooser(logits, step, state)
    tok = jnp.asarray(tok)
    if tok.shape != (b,) or not jnp.issubdtype(tok.dtype, jnp.integer):
      raise ValueError(f"choose_fn must return int[{b}] tokens, got {tok.dtype}{tok.shape}")
    tok = tok.astype(jnp.int32)
    return (cache, tok, state), (tok, logits if return_logits else None)

  init = (cache, jnp.zeros((b,), jnp.int32), choose_state)
  (_, _, state), (toks, logits) = jax.lax.scan(body, init, jnp.arange(num_steps, dtype=jnp.int32))
  toks = toks.T
  logits = None if logits is None else jnp.swapaxes(logits, 0, 1)
  return toks, state, logits


def generate(
  model: Transformer,
  params,
  labels: jax.Array,
  key: jax.Array | None,
  choose_fn: ChooseFn | None = None,
  cfg_scale: float = 1.0,
  top_k: int | None = None,
  temperature: float = 1.0,
  choose_state: Any = None,
) -> tuple[jax.Array, Any]:
  """Sample h*w tokens per label with a KV cache in one jitted lax.scan.

  Each step: logits of the next token (cond and null-class rows together when
  cfg_scale != 1, combined as uncond + cfg_scale * (cond - uncond)), divided by the
  temperature, top-k masked to -inf, then ``choose_fn(logits float32[B,V], step int32,
  state) -> (tokens int32[B], state)``. Default: categorical sampling with
  ``fold_in(key, step)``. choose_fn, cfg_scale, top_k and temperature are static (a new
  value compiles once more). Returns (tokens int32[B, h*w], final choose_state).
  """
  labels = jnp.asarray(labels)
  cfg_scale, temperature = float(cfg_scale), float(temperature)  # static: hashable Python floats
  _check_sampling_args(model, labels, cfg_scale, top_k, temperature)
  if choose_fn is None and key is None:
    raise ValueError("generate needs a PRNG key when no choose_fn is given")
  toks, state, _ = _decode(
    model,
    params,
    labels,
    key,
    None,
    choose_state,
    choose_fn=choose_fn,
    use_cfg=cfg_scale != 1.0,
    cfg_scale=float(cfg_scale),
    top_k=None if top_k is None else int(top_k),
    temperature=float(temperature),
    num_steps=model.num_tokens,
    return_logits=False,
  )
  chex.assert_shape(toks, (labels.shape[0], model.num_tokens))
  return toks, state


def logits_for_tokens(
  model: Transformer,
  params,
  labels: jax.Array,
  tokens: jax.Array,
  cfg_scale: float = 1.0,
  top_k: int | None = None,
  temperature: float = 1.0,
) -> jax.Array:
  """Processed per-step logits float32[B,T,V] that ``generate`` saw when it produced ``tokens``.

  Replays the same KV-cached scan as ``generate`` with the tokens forced, so with equal
  (cfg_scale, top_k, temperature) the receiver gets bit-identical distributions.
  """
  labels, tokens = jnp.asarray(labels), jnp.asarray(tokens)
  cfg_scale, temperature = float(cfg_scale), float(temperature)
  _check_sampling_args(model, labels, cfg_scale, top_k, temperature)
  if tokens.ndim != 2 or tokens.shape[0] != labels.shape[0]:
    raise ValueError(f"tokens must be int[{labels.shape[0]}, T], got shape {tokens.shape}")
  if not 1 <= tokens.shape[1] <= model.num_tokens:
    raise ValueError(f"token count {tokens.shape[1]} must be in [1, h*w={model.num_tokens}]")
  _, _, logits = _decode(
    model,
    params,
    labels,
    None,
    tokens.astype(jnp.int32),
    None,
    choose_fn=None,
    use_cfg=cfg_scale != 1.0,
    cfg_scale=float(cfg_scale),
    top_k=None if top_k is None else int(top_k),
    temperature=float(temperature),
    num_steps=tokens.shape[1],
    return_logits=True,
  )
  return logits
