"""Tests for the LlamaGen-style AR prior: KV cache, causality, 2D RoPE, CFG, generation."""

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax.models import transformer as tr

V, C, GRID = 48, 5, (3, 4)
T = GRID[0] * GRID[1]


def _random_params(model, seed, *args):
  """Random weights of the model's shape without running (slow-to-compile) init.

  LlamaGen zero-initializes the output head, which would make every test trivial.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == "weight":  # RMSNorm gains
      return jnp.asarray(1.0 + 0.1 * rng.normal(size=s.shape), jnp.float32)
    fan_in = s.shape[0] if name == "kernel" else 1
    return jnp.asarray(rng.normal(size=s.shape) / np.sqrt(fan_in), jnp.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _make(seed=0, **kw):
  cfg = dict(
    vocab_size=V,
    num_classes=C,
    dim=32,
    n_layer=2,
    n_head=4,
    n_kv_head=2,
    head_dim=12,
    multiple_of=16,
    grid=GRID,
  )
  cfg.update(kw)
  model = tr.Transformer(**cfg)
  params = _random_params(model, seed, jnp.zeros((2, T), jnp.int32), jnp.zeros((2,), jnp.int32))
  return model, params


@pytest.fixture(scope="module")
def setup():
  model, params = _make()
  rng = np.random.default_rng(1)
  tokens = jnp.asarray(rng.integers(0, V, (3, T)), jnp.int32)
  labels = jnp.asarray([0, 2, 4], jnp.int32)
  forward = jax.jit(model.apply)
  return model, params, tokens, labels, forward


def test_shapes_names_and_ffn_rule(setup):
  model, params, tokens, labels, forward = setup
  logits = forward(params, tokens, labels)
  chex.assert_shape(logits, (3, T, V))
  assert logits.dtype == jnp.float32
  flat = flax.traverse_util.flatten_dict(params["params"], sep="/")
  shapes = {k: v.shape for k, v in flat.items()}
  hidden = tr.ffn_hidden_dim(32, 16)
  assert hidden == 96  # int(2/3 * 4 * 32) = 85, rounded up to a multiple of 16
  # (n_head + 2 n_kv_head) * head_dim, wo from n_head*head_dim back to dim, null class row.
  assert shapes["layers_0/attention/wqkv/kernel"] == (32, (4 + 2 * 2) * 12)
  assert shapes["layers_1/attention/wo/kernel"] == (4 * 12, 32)
  assert shapes["layers_0/feed_forward/w1/kernel"] == (32, hidden)
  assert shapes["layers_0/feed_forward/w2/kernel"] == (hidden, 32)
  assert shapes["cls_embedding/embedding_table/embedding"] == (C + 1, 32)
  assert shapes["tok_embeddings/embedding"] == (V, 32)
  assert shapes["output/kernel"] == (32, V)
  assert shapes["layers_0/attention_norm/weight"] == (32,)


def test_ffn_rule_and_published_parameter_counts():
  assert tr.ffn_hidden_dim(768, 256) == 2048
  assert tr.ffn_hidden_dim(3200, 256) == 8704
  assert tr.ffn_hidden_dim(100, 8, ffn_dim_multiplier=1.5) == find_mult(int(1.5 * 266), 8)

  def count(**kw):
    m = tr.Transformer(vocab_size=16384, num_classes=1000, **kw)
    s = jax.eval_shape(
      m.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32), jnp.zeros((1,), jnp.int32)
    )
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(s))

  # LlamaGen's published sizes: GPT-B 111M, GPT-L 343M, GPT-3B 3.1B (head dim 100).
  assert count(dim=768, n_layer=12, n_head=12, grid=(16, 16)) == 110_888_448
  assert count(dim=1024, n_layer=24, n_head=16, grid=(16, 16)) == 342_910_976
  assert count(dim=3200, n_layer=24, n_head=32, grid=(24, 24)) == 3_096_659_200
  assert tr.Transformer(vocab_size=8, num_classes=2, dim=3200, n_layer=1, n_head=32).hd == 100


def find_mult(n, k):
  return n if n % k == 0 else n + k - n % k


def test_kv_cached_logits_equal_full_forward(setup):
  model, params, tokens, labels, forward = setup
  full = forward(params, tokens, labels)
  cached = tr.logits_for_tokens(model, params, labels, tokens)
  assert float(jnp.max(jnp.abs(full))) > 1.0  # logits are not trivially small
  chex.assert_trees_all_close(cached, full, atol=1e-5, rtol=1e-5)
  # A prefix replays to the same values.
  chex.assert_trees_all_close(
    tr.logits_for_tokens(model, params, labels, tokens[:, :5]), full[:, :5], atol=1e-5, rtol=1e-5
  )


def test_causal_mask(setup):
  model, params, tokens, labels, forward = setup
  base = forward(params, tokens, labels)
  k = 6
  changed = tokens.at[:, k].set((tokens[:, k] + 1) % V)
  out = forward(params, changed, labels)
  # logits[:, i] depends on tokens[:, :i] only: positions <= k are untouched, later ones move.
  np.testing.assert_array_equal(np.asarray(out[:, : k + 1]), np.asarray(base[:, : k + 1]))
  assert np.all(np.max(np.abs(np.asarray(out[:, k + 1 :] - base[:, k + 1 :])), axis=-1) > 1e-4)
  # The class label conditions every position.
  other = forward(params, tokens, (labels + 1) % C)
  assert np.all(np.max(np.abs(np.asarray(other - base)), axis=-1) > 1e-4)


def test_rope_table_layout_matches_llamagen():
  hd, base, (h, w) = 12, 10000.0, (3, 5)
  table = np.asarray(tr.precompute_freqs_cis_2d((h, w), hd, base))
  assert table.shape == (1 + h * w, hd // 2, 2)
  np.testing.assert_array_equal(table[0], 0.0)  # LlamaGen's class row: cos = sin = 0
  freqs = base ** (-np.arange(0, hd // 2, 2)[: hd // 4] / (hd // 2))
  for r in range(h):
    for c in range(w):
      ang = np.concatenate([r * freqs, c * freqs])  # first pairs by row, then by column
      np.testing.assert_allclose(table[1 + r * w + c, :, 0], np.cos(ang), atol=1e-6)
      np.testing.assert_allclose(table[1 + r * w + c, :, 1], np.sin(ang), atol=1e-6)
  ident = np.asarray(tr.precompute_freqs_cis_2d((h, w), hd, base, cls_rope="identity"))
  np.testing.assert_array_equal(ident[0, :, 0], 1.0)
  np.testing.assert_array_equal(ident[0, :, 1], 0.0)
  np.testing.assert_array_equal(ident[1:], table[1:])
  # Interleaved pairs: rotating e_0 by angle a gives (cos a, sin a) in slots 0 and 1.
  x = jnp.zeros((1, 1, 1, hd)).at[..., 0].set(1.0)
  y = np.asarray(tr.apply_rotary_emb(x, jnp.asarray(table[1 + 2 * w + 3 : 2 + 2 * w + 3])))[0, 0, 0]
  np.testing.assert_allclose(y[:2], [np.cos(2.0), np.sin(2.0)], atol=1e-6)
  np.testing.assert_allclose(y[2:], 0.0, atol=1e-7)
  with pytest.raises(ValueError, match="divisible by 4"):
    tr.precompute_freqs_cis_2d((2, 2), 6)


def test_rope_2d_relative_property():
  hd, (h, w) = 16, (4, 5)
  table = tr.precompute_freqs_cis_2d((h, w), hd)[1:]
  rng = np.random.default_rng(0)
  q = jnp.broadcast_to(jnp.asarray(rng.normal(size=hd), jnp.float32), (1, h * w, 1, hd))
  k = jnp.broadcast_to(jnp.asarray(rng.normal(size=hd), jnp.float32), (1, h * w, 1, hd))
  qr, kr = tr.apply_rotary_emb(q, table)[0, :, 0], tr.apply_rotary_emb(k, table)[0, :, 0]
  scores = np.asarray(qr @ kr.T)
  rc = [(i // w, i % w) for i in range(h * w)]
  by_offset = {}
  for a in range(h * w):
    for b in range(h * w):
      by_offset.setdefault((rc[a][0] - rc[b][0], rc[a][1] - rc[b][1]), []).append(scores[a, b])
  spread = max(np.ptp(v) for v in by_offset.values())
  assert spread < 1e-4, spread
  # ... and the score really depends on both offsets (rows and columns are distinct axes).
  assert abs(by_offset[(1, 0)][0] - by_offset[(0, 1)][0]) > 1e-3
  assert abs(by_offset[(0, 0)][0] - by_offset[(2, 0)][0]) > 1e-3


def test_gqa_equals_mha_with_repeated_kv_heads(setup):
  model, params, tokens, labels, forward = setup
  mha = model.clone(n_kv_head=None)
  p = flax.core.unfreeze(jax.tree.map(np.asarray, params))
  hd, groups = model.hd, model.n_head // model.kv_heads
  for i in range(model.n_layer):
    w = p["params"][f"layers_{i}"]["attention"]["wqkv"]["kernel"]
    qs, kvs = model.n_head * hd, model.kv_heads * hd
    rep = lambda m: np.repeat(m.reshape(m.shape[0], model.kv_heads, hd), groups, axis=1).reshape(
      m.shape[0], -1
    )
    p["params"][f"layers_{i}"]["attention"]["wqkv"]["kernel"] = np.concatenate(
      [w[:, :qs], rep(w[:, qs : qs + kvs]), rep(w[:, qs + kvs :])], axis=1
    )
  chex.assert_trees_all_close(
    jax.jit(mha.apply)(p, tokens, labels), forward(params, tokens, labels), atol=1e-5, rtol=1e-5
  )


def test_cfg(setup):
  model, params, tokens, labels, forward = setup
  cond = forward(params, tokens, labels)
  uncond = forward(params, tokens, jnp.full_like(labels, C))
  kw = dict(choose_fn=None, top_k=None, temperature=1.0, num_steps=T, return_logits=True)
  # CFG rows run together (batch 2B); scale 1 gives back the conditional logits.
  _, _, one = tr._decode(
    model, params, labels, None, tokens, None, use_cfg=True, cfg_scale=1.0, **kw
  )
  chex.assert_trees_all_close(one, cond, atol=1e-5, rtol=1e-5)
  three = tr.logits_for_tokens(model, params, labels, tokens, cfg_scale=3.0)
  chex.assert_trees_all_close(three, uncond + 3.0 * (cond - uncond), atol=5e-5, rtol=1e-5)
  assert float(jnp.max(jnp.abs(three - cond))) > 1e-2


def test_temperature_then_top_k(setup):
  model, params, tokens, labels, forward = setup
  cond = np.asarray(forward(params, tokens, labels))
  out = np.asarray(tr.logits_for_tokens(model, params, labels, tokens, top_k=7, temperature=0.5))
  finite = np.isfinite(out)
  assert np.all(finite.sum(-1) == 7)
  assert np.all(out[~finite] == -np.inf)
  np.testing.assert_allclose(out[finite], cond[finite] / 0.5, atol=5e-5, rtol=1e-5)
  # The kept entries are the 7 largest.
  kth = np.sort(cond, axis=-1)[..., -7]
  assert np.all(finite == (cond >= kth[..., None]))


def test_generate_and_receiver_logits_are_bit_identical(setup):
  model, params, tokens, labels, forward = setup
  key = jax.random.key(7)

  def record(logits, step, state):
    tok = jax.random.categorical(jax.random.fold_in(key, step), logits).astype(jnp.int32)
    return tok, state.at[:, step].set(logits)

  for cfg, k, temp in [(1.0, None, 1.0), (2.5, 9, 0.8)]:
    state0 = jnp.zeros((3, T, V), jnp.float32)
    toks, seen = tr.generate(
      model,
      params,
      labels,
      None,
      choose_fn=record,
      cfg_scale=cfg,
      top_k=k,
      temperature=temp,
      choose_state=state0,
    )
    chex.assert_shape(toks, (3, T))
    assert toks.dtype == jnp.int32
    replay = tr.logits_for_tokens(
      model, params, labels, toks, cfg_scale=cfg, top_k=k, temperature=temp
    )
    np.testing.assert_array_equal(np.asarray(replay), np.asarray(seen))
    if k is not None:  # every sampled token lies inside the top-k set
      picked = np.take_along_axis(np.asarray(replay), np.asarray(toks)[..., None], -1)
      assert np.all(np.isfinite(picked))


def test_default_sampler_greedy_and_determinism(setup):
  model, params, tokens, labels, forward = setup
  a, _ = tr.generate(model, params, labels, jax.random.key(1))
  b, _ = tr.generate(model, params, labels, jax.random.key(1))
  c, _ = tr.generate(model, params, labels, jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  # top_k=1 is greedy: each token is the argmax of the logits replayed at its step.
  g, _ = tr.generate(model, params, labels, jax.random.key(3), top_k=1)
  replay = tr.logits_for_tokens(model, params, labels, g)
  np.testing.assert_array_equal(np.asarray(g), np.argmax(np.asarray(replay), axis=-1))


def test_choose_fn_once_per_step_without_retracing(setup):
  model, params, tokens, labels, forward = setup

  @chex.assert_max_traces(n=1)
  def count(logits, step, state):
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), state.at[step].add(1)

  for seed in range(3):  # new keys and labels: the compiled scan is reused, never retraced
    toks, calls = tr.generate(
      model,
      params,
      (labels + seed) % C,
      jax.random.key(seed),
      choose_fn=count,
      choose_state=jnp.zeros((T,), jnp.int32),
    )
    np.testing.assert_array_equal(np.asarray(calls), np.ones(T))


def test_class_dropout_uses_null_class(setup):
  model, params, tokens, labels, forward = setup
  drop_all = model.clone(class_dropout_prob=1.0)
  out = drop_all.apply(params, tokens, labels, train=True, rngs={"dropout": jax.random.key(0)})
  chex.assert_trees_all_close(out, forward(params, tokens, jnp.full_like(labels, C)), atol=1e-6)


def test_bad_inputs_raise(setup):
  model, params, tokens, labels, forward = setup
  with pytest.raises(ValueError, match="sequence length"):
    model.apply(params, jnp.zeros((3, T + 1), jnp.int32), labels)
  with pytest.raises(ValueError, match="top_k"):
    tr.generate(model, params, labels, jax.random.key(0), top_k=0)
  with pytest.raises(ValueError, match="temperature"):
    tr.generate(model, params, labels, jax.random.key(0), temperature=0.0)
  with pytest.raises(ValueError, match="labels"):
    tr.generate(model, params, labels[:, None], jax.random.key(0))
  with pytest.raises(ValueError, match="key"):
    tr.generate(model, params, labels, None)
  with pytest.raises(ValueError, match="token count"):
    tr.logits_for_tokens(model, params, labels, jnp.zeros((3, T + 1), jnp.int32))
  with pytest.raises(ValueError, match="choose_fn"):
    tr.generate(
      model, params, labels, None, choose_fn=lambda l, s, st: (jnp.zeros((2,), jnp.int32), st)
    )
  with pytest.raises(ValueError, match="cls_token_num"):
    tr.Transformer(vocab_size=8, num_classes=2, dim=16, n_layer=1, n_head=2, cls_token_num=2).init(
      jax.random.key(0), jnp.zeros((1, 2), jnp.int32), jnp.zeros((1,), jnp.int32)
    )
  with pytest.raises(ValueError, match="n_kv_head"):
    tr.Transformer(vocab_size=8, num_classes=2, dim=16, n_layer=1, n_head=4, n_kv_head=3).init(
      jax.random.key(0), jnp.zeros((1, 2), jnp.int32), jnp.zeros((1,), jnp.int32)
    )


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_larger_model_cache_and_bit_exact_replay(dtype):
  model, params = _make(
    seed=5,
    dim=128,
    n_layer=4,
    n_head=8,
    n_kv_head=4,
    head_dim=None,
    grid=(8, 8),
    vocab_size=512,
    num_classes=10,
    dtype=dtype,
  )
  labels = jnp.arange(4, dtype=jnp.int32)
  key = jax.random.key(11)

  def record(logits, step, state):
    tok = jax.random.categorical(jax.random.fold_in(key, step), logits).astype(jnp.int32)
    return tok, state.at[:, step].set(logits)

  toks, seen = tr.generate(
    model,
    params,
    labels,
    None,
    choose_fn=record,
    cfg_scale=4.0,
    top_k=50,
    temperature=0.9,
    choose_state=jnp.zeros((4, 64, 512), jnp.float32),
  )
  replay = tr.logits_for_tokens(
    model, params, labels, toks, cfg_scale=4.0, top_k=50, temperature=0.9
  )
  np.testing.assert_array_equal(np.asarray(replay), np.asarray(seen))
  if dtype == jnp.float32:
    full = jax.jit(model.apply)(params, toks, labels)
    chex.assert_trees_all_close(
      tr.logits_for_tokens(model, params, labels, toks), full, atol=1e-5, rtol=1e-5
    )


def test_top_k_keeps_exactly_k_with_ties_like_the_stego_quantizer():
  # Ties at the k-th logit: plain sampling must keep the same k tokens as the stego samplers,
  # or an honest cover could show a token no stego image can (a warden would see it).
  from stegjax.stego import sampler

  x = jnp.array([[0.0, 1.0, 1.0, 1.0, 0.5, 1.0], [3.0, 2.0, 2.0, -1.0, 2.0, 0.0]])
  kept = np.isfinite(np.asarray(tr.process_logits(x, 2, False, 1.0, 2, 1.0)))
  np.testing.assert_array_equal(kept.sum(-1), [2, 2])
  np.testing.assert_array_equal(kept, [[0, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
  allowed = np.asarray(sampler.get("recursive", top_k=2, precision=16).allowed(x))
  np.testing.assert_array_equal(kept, allowed)
