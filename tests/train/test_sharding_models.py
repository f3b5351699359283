"""The real models under the sharding presets on 8 fake CPU devices.

One training step of the AR prior (models/transformer.py) and of the VQ tokenizer
(models/vq.py) with the shared trainer under ``replicate`` (data=8), ``fsdp``
(data=8) and ``fsdp_tp`` (data=4 x model=2) must equal the same step on one
device, and the parameters must really be laid out as the rules say.

Tolerances (float32; only the reduction order differs between layouts; measured
differences are ~5e-7 relative, so the bounds leave a 20-40x margin while a lost or
doubled cross-shard reduction changes these numbers by O(1)):
- loss at steps 1 and 2 and the global gradient norm: relative 1e-5;
- the gradient (the momentum trace after step 1 is the clipped gradient):
  max |diff| <= 2e-5 * max |g|;
- parameters after steps 1 and 2: |diff| <= 1e-6 |p| + 4e-5 * lr * max |g|.
The optimizer is global-norm clipping + SGD with momentum, whose parameter update is
proportional to the gradient (Adam's first step, ~lr * sign(g), would hide a scaled
gradient and amplify float noise where g ~ 0). The first step must move the weights
and lower the loss, so no comparison passes vacuously.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.models import transformer as tr
from stegjax.models import vq as vq_lib
from stegjax.train import sharding

P = jax.sharding.PartitionSpec
# Shared by the in-process rule checks and the subprocess (as source text).
PRIOR_KW = dict(
  vocab_size=64, num_classes=4, dim=64, n_layer=2, n_head=4, grid=(4, 4), class_dropout_prob=0.25
)
VQ_KW = dict(
  ch=16,
  ch_mult=(1,),
  num_res_blocks=1,
  z_channels=16,
  codebook_size=64,
  codebook_dim=4,
  norm_groups=8,
)

_COMMON = """
import json
import jax, jax.numpy as jnp, numpy as np, ml_collections, optax
from stegjax.models import transformer as tr, vq as vq_lib
from stegjax.train import sharding, trainer
assert jax.device_count() == 8, jax.devices()
RTOL, GTOL = 1e-5, 2e-5
LR = 0.1
# Clipping by the global norm (a reduction over every shard) + SGD momentum (a sharded state).
TX = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(LR, momentum=0.9))
SETTINGS = [('one', 1, 1, 'replicate'), ('replicate', 8, 1, 'replicate'),
            ('fsdp', 8, 1, 'fsdp'), ('fsdp_tp', 4, 2, 'fsdp_tp')]

def spec(x):
  s = list(x.sharding.spec)
  return s + [None] * (x.ndim - len(s))

def flat(tree):
  return {sharding.path_str(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)}

def run_all(init_fn, loss_fn, batch, named):
  out = {}
  for name, data, model, rules in SETTINGS:
    mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=data, model=model)),
                              jax.devices()[:data * model])
    st = trainer.create_train_state(init_fn, TX, jax.random.PRNGKey(3), mesh, rules)
    leaves = {sharding.path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(st.params)}
    r = dict(before=flat(st.params), specs={k: spec(leaves[k]) for k in named},
             n_shards={k: len(leaves[k].sharding.device_set) for k in named},
             trace_specs={sharding.path_str(p): spec(x)
                          for p, x in jax.tree_util.tree_leaves_with_path(st.opt_state)
                          if sharding.path_str(p).endswith(named[0])})
    step = trainer.make_train_step(loss_fn, TX, mesh, st)
    st, m1 = step(st, sharding.put_batch(batch, mesh))
    r.update(loss=float(m1['loss']), grad_norm=float(m1['grad_norm']), after1=flat(st.params),
             trace=flat(st.opt_state))  # momentum trace after one step == the clipped gradient
    st, m2 = step(st, sharding.put_batch(batch, mesh))
    r.update(loss2=float(m2['loss']), after2=flat(st.params))
    out[name] = r
  ref = out['one']
  gscale = max(np.max(np.abs(x)) for x in ref['trace'].values())
  moved = max(np.max(np.abs(ref['after1'][k] - ref['before'][k])) for k in ref['before'])
  assert moved >= 0.1 * LR * gscale and ref['loss2'] < ref['loss'], (moved, ref['loss'], ref['loss2'])
  report = {}
  for name, r in out.items():
    for k in ref['before']:  # parameters are born equal whatever the layout
      np.testing.assert_array_equal(r['before'][k], ref['before'][k], err_msg=f'{name} init {k}')
    for key in ('loss', 'grad_norm', 'loss2'):
      assert abs(r[key] - ref[key]) <= RTOL * abs(ref[key]), (name, key, r[key], ref[key])
    g_err = max(float(np.max(np.abs(r['trace'][k] - ref['trace'][k]))) for k in ref['trace'])
    assert g_err <= GTOL * gscale, (name, 'grad', g_err, gscale)
    p_err = max(float(np.max(np.abs(r[a][k] - ref[a][k]) - 1e-6 * np.abs(ref[a][k])))
                for a in ('after1', 'after2') for k in ref['before'])
    assert p_err <= 2 * GTOL * LR * gscale, (name, 'params', p_err, LR * gscale)
    report[name] = dict(loss=r['loss'], loss2=r['loss2'], grad_norm=r['grad_norm'],
                        grad_err=g_err / float(gscale), param_err=p_err / float(LR * gscale),
                        specs=r['specs'], n_shards=r['n_shards'], trace_specs=r['trace_specs'])
  print('RESULT ' + json.dumps(report))
"""

# Faster CPU compiles (about 2x); all layouts compile with the same flags, so they still
# compare like for like.
_ENV = {
  "XLA_FLAGS": "--xla_force_host_platform_device_count=8 "
  "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
}


def _result(out: str) -> dict:
  line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT ") :])


# ----------------------------------------------------------------------------- rule coverage


def _prior_shapes():
  m = tr.Transformer(**PRIOR_KW)
  return jax.eval_shape(
    m.init, jax.random.key(0), jnp.zeros((1, 16), jnp.int32), jnp.zeros((1,), jnp.int32)
  )


def _vq_shapes():
  return jax.eval_shape(vq_lib.VQModel(**VQ_KW).init, jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def test_fsdp_tp_rules_address_the_real_parameter_paths():
  matches = sharding.rule_matches(_prior_shapes(), "fsdp_tp")
  n = PRIOR_KW["n_layer"]
  assert len(matches[r"attention/wqkv/kernel$"]) == n
  assert len(matches[r"attention/wo/kernel$"]) == n
  assert len(matches[r"feed_forward/w[13]/kernel$"]) == 2 * n
  assert len(matches[r"feed_forward/w2/kernel$"]) == n
  assert matches[r"tok_embeddings/embedding$"] == ["params/tok_embeddings/embedding"]
  assert matches[r"output/kernel$"] == ["params/output/kernel"]
  # The VQ conv rules (4D) decide nothing in the transformer.
  for pat in (r"/conv1/kernel$", r"/conv2/kernel$", r"/(q|k|v)/kernel$", r"/proj_out/kernel$"):
    assert matches[pat] == [], (pat, matches[pat])

  vm = sharding.rule_matches(_vq_shapes(), "fsdp_tp")
  # ResnetBlocks: encoder 1 (level) + 2 (mid); decoder 2 (level) + 2 (mid).
  assert len(vm[r"/conv1/kernel$"]) == len(vm[r"/conv2/kernel$"]) == 3 + 4
  assert len(vm[r"/(q|k|v)/kernel$"]) == 3 * (
    1 + 1 + 2 + 1
  )  # enc attn, enc mid, dec attn x2, dec mid
  assert len(vm[r"/proj_out/kernel$"]) == 5
  assert all(p.endswith("/kernel") for p in vm[r"/conv1/kernel$"])
  # The transformer's 2D rules decide nothing in the VQ.
  assert vm[r"attention/wqkv/kernel$"] == [] and vm[r"output/kernel$"] == []


class _FakeMesh:
  """Only ``.shape`` is read by the rule functions: a 4 x 2 mesh without 8 devices."""

  shape = {"data": 4, "model": 2}


def test_rule_of_another_rank_falls_through():
  tree = {
    "a": {"kernel": jax.ShapeDtypeStruct((3, 3, 8, 8), jnp.float32)},
    "b": {"kernel": jax.ShapeDtypeStruct((8, 6), jnp.float32)},
  }
  rules = [(r"kernel$", ("data", "model")), (r"el$", (None, None, "model", "data"))]
  assert sharding.rule_matches(tree, rules) == {r"kernel$": ["b/kernel"], r"el$": ["a/kernel"]}
  assert sharding.describe(tree, _FakeMesh(), rules) == {
    "a/kernel": P(None, None, "model", "data"),
    "b/kernel": P("data", "model"),
  }
  # An axis that does not divide the dimension is replicated instead.
  odd = {"k": jax.ShapeDtypeStruct((6, 3), jnp.float32)}
  assert sharding.describe(odd, _FakeMesh(), [(r"k", ("data", "model"))]) == {"k": P(None, None)}


def test_batch_specs_leading_dim_over_data():
  cache = ((np.zeros((8, 16, 2, 4)), np.zeros((8, 16, 2, 4))),)
  tree = {"cache": cache, "scalar": np.zeros(()), "odd": np.zeros((6, 2)), "key": np.zeros((2,))}
  specs = sharding.batch_specs(tree, _FakeMesh())
  assert specs["cache"] == ((P("data"), P("data")),)
  assert specs["scalar"] == P() and specs["odd"] == P() and specs["key"] == P()


# ----------------------------------------------------------------------------- 8 devices


def test_prior_one_step_equal_across_presets(python_subprocess):
  code = (
    _COMMON
    + f"""
PRIOR_KW = {PRIOR_KW!r}
model = tr.Transformer(**PRIOR_KW)
T = PRIOR_KW['grid'][0] * PRIOR_KW['grid'][1]
rs = np.random.RandomState(0)
batch = {{'tokens': rs.randint(0, PRIOR_KW['vocab_size'], (8, T)).astype(np.int32),
         'label': rs.randint(0, PRIOR_KW['num_classes'], (8,)).astype(np.int32)}}

def init_fn(rng):
  r1, r2 = jax.random.split(rng)
  p = model.init({{'params': r1, 'dropout': r1}}, jnp.zeros((1, T), jnp.int32),
                 jnp.zeros((1,), jnp.int32))['params']
  # LlamaGen zero-initializes the head, which would zero every other gradient at step 1.
  p['output']['kernel'] = 0.02 * jax.random.normal(r2, p['output']['kernel'].shape)
  return p, {{}}

def loss_fn(params, extra, batch, rng, step):
  logits = model.apply({{'params': params}}, batch['tokens'], batch['label'], train=True,
                       rngs={{'dropout': rng}})  # class dropout: rng must not depend on layout
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['tokens']).mean()
  return loss, ({{}}, extra)

named = ['layers_0/attention/wqkv/kernel', 'layers_0/attention/wo/kernel',
         'layers_1/feed_forward/w1/kernel', 'layers_1/feed_forward/w2/kernel',
         'tok_embeddings/embedding', 'output/kernel', 'norm/weight']
run_all(init_fn, loss_fn, batch, named)
"""
  )
  res = _result(python_subprocess(code, n_devices=8, env=_ENV))
  one, fsdp, tp = res["one"]["specs"], res["fsdp"]["specs"], res["fsdp_tp"]["specs"]
  assert not any(any(v) for v in one.values()), one  # all replicated
  assert not any(any(v) for v in res["replicate"]["specs"].values())
  # fsdp: the largest dimension over data (8 divides every one of these).
  assert fsdp["layers_0/attention/wqkv/kernel"] == [None, "data"]  # [64, 192]
  assert fsdp["layers_1/feed_forward/w2/kernel"] == ["data", None]  # [256, 64]
  assert fsdp["norm/weight"] == ["data"]
  # fsdp_tp: Megatron pairs over model, the other dimension over data.
  assert tp["layers_0/attention/wqkv/kernel"] == ["data", "model"]
  assert tp["layers_1/feed_forward/w1/kernel"] == ["data", "model"]
  assert tp["layers_0/attention/wo/kernel"] == ["model", "data"]
  assert tp["layers_1/feed_forward/w2/kernel"] == ["model", "data"]
  assert tp["tok_embeddings/embedding"] == ["model", "data"]
  assert tp["output/kernel"] == ["data", "model"]
  assert tp["norm/weight"] == ["data"]
  # The optimizer state (momentum trace) follows the parameter rules.
  assert list(res["fsdp_tp"]["trace_specs"].values()) == [["data", "model"]]
  assert res["fsdp_tp"]["n_shards"]["layers_0/attention/wqkv/kernel"] == 8


def test_vq_one_step_equal_across_presets(python_subprocess):
  code = (
    _COMMON
    + f"""
VQ_KW = {VQ_KW!r}
model = vq_lib.VQModel(**VQ_KW)
rs = np.random.RandomState(0)
batch = {{'image': rs.uniform(-1, 1, (8, 8, 8, 3)).astype(np.float32)}}

def init_fn(rng):
  return model.init(rng, jnp.zeros((1, 8, 8, 3)))['params'], {{}}

def loss_fn(params, extra, batch, rng, step):
  x = batch['image']
  x_rec, aux = model.apply({{'params': params}}, x, train=True, rngs={{'dropout': rng}})
  loss = jnp.mean(jnp.square(x_rec - x)) + aux['codebook_loss'] + aux['commit_loss']
  return loss, ({{}}, extra)

named = ['encoder/conv_blocks_0/res_0/conv1/kernel', 'encoder/conv_blocks_0/res_0/conv2/kernel',
         'decoder/mid_1/q/kernel', 'decoder/mid_1/proj_out/kernel', 'encoder/conv_in/kernel',
         'quantizer/embedding', 'decoder/conv_out/kernel']
run_all(init_fn, loss_fn, batch, named)
"""
  )
  res = _result(python_subprocess(code, n_devices=8, env=_ENV))
  fsdp, tp = res["fsdp"]["specs"], res["fsdp_tp"]["specs"]
  assert not any(any(v) for v in res["replicate"]["specs"].values())
  # fsdp: the largest dimension that 8 divides (ties: the first, here the input channels).
  assert fsdp["encoder/conv_blocks_0/res_0/conv1/kernel"] == [
    None,
    None,
    "data",
    None,
  ]  # [3,3,16,16]
  assert fsdp["quantizer/embedding"] == ["data", None]  # [64, 4]
  assert fsdp["decoder/conv_out/kernel"] == [None, None, "data", None]  # [3, 3, 16, 3]
  # fsdp_tp: channel-parallel conv pairs.
  assert tp["encoder/conv_blocks_0/res_0/conv1/kernel"] == [None, None, "data", "model"]
  assert tp["encoder/conv_blocks_0/res_0/conv2/kernel"] == [None, None, "model", "data"]
  assert tp["decoder/mid_1/q/kernel"] == [None, None, "data", "model"]
  assert tp["decoder/mid_1/proj_out/kernel"] == [None, None, "model", "data"]
  # conv_in [3, 3, 3, 16] is no rule's kernel: largest (16) over data.
  assert tp["encoder/conv_in/kernel"] == [None, None, None, "data"]
  assert res["fsdp_tp"]["n_shards"]["encoder/conv_blocks_0/res_0/conv1/kernel"] == 8
