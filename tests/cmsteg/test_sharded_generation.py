"""Batched Discop generation (M1) with the batch sharded over 'data' equals unsharded.

On 8 fake CPU devices: ``transformer.generate`` with a Discop ``choose_fn`` (as
``cmsteg/embed.py`` does: CFG, top-k, exact integer frequencies, ChaCha20 draws)
runs once with everything on one device and once with the labels and the
``EmbedState`` (message bits, lengths, cursors, nonces) sharded over a data=8
mesh and the parameters replicated. Token ids and the number of embedded bits
must be identical (exact equality: they are integers chosen by integer
arithmetic from logits that must not depend on the layout), the outputs must
stay sharded over 'data', the KV cache must be sharded too (its per-device
shape in the compiled program is 1/8 of the global one), and the receiver,
replaying the sharded tokens, must read the message back.

Note: under jax 0.10's default Shardy partitioner the sharded program does not
compile (``lax.mulhi`` in Discop's exact draw cannot be partitioned); the
subprocess probes for that and falls back to GSPMD (see ``_CODE``).
"""

import json

_CODE = """
import json
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

# jax 0.10's default Shardy partitioner cannot lower lax.mulhi (chlo.mulhi) on a sharded
# operand ("failed to legalize operation 'mhlo.unknown'"), and Discop's exact integer draw
# (stego/common.py frac_mul) uses it. Until frac_mul avoids mulhi (or jax fixes it), the
# sharded run uses the GSPMD partitioner; the probe switches back to Shardy by itself.
try:
  _m = jax.make_mesh((8,), ('data',))
  jax.jit(lambda a: jax.lax.mulhi(a, a))(jax.device_put(jnp.ones((8,), jnp.uint32),
                                                        NamedSharding(_m, P('data'))))
  PARTITIONER = 'shardy'
except Exception:  # pylint: disable=broad-except
  jax.config.update('jax_use_shardy_partitioner', False)
  PARTITIONER = 'gspmd'
from stegjax.models import transformer as tr
from stegjax.stego import discop
from stegjax.train import sharding
assert jax.device_count() == 8

B, CFG, TOP_K, PREC = 16, 1.5, 16, 24
model = tr.Transformer(vocab_size=64, num_classes=4, dim=32, n_layer=2, n_head=2, grid=(4, 4))
T = model.num_tokens
params = model.init({'params': jax.random.key(0)}, jnp.zeros((1, T), jnp.int32),
                    jnp.zeros((1,), jnp.int32))
# Random (non-zero) head so the distributions are not uniform.
params['params']['output']['kernel'] = 0.5 * jax.random.normal(
    jax.random.key(1), params['params']['output']['kernel'].shape)
rs = np.random.RandomState(0)
labels = rs.randint(0, 4, (B,)).astype(np.int32)
bits = rs.randint(0, 2, (B, 64)).astype(np.uint8)
bit_len = rs.randint(8, 64, (B,)).astype(np.int32)
nonce = np.arange(B, dtype=np.uint32) + 7
key = jnp.asarray(rs.randint(0, 2**31, (8,)), jnp.uint32)
choose = discop.make_choose_fn(key, 'recursive', precision=PREC, top_k=TOP_K)

def run(labels, state, params):
  toks, st = tr.generate(model, params, labels, None, choose_fn=choose, cfg_scale=CFG,
                         top_k=TOP_K, choose_state=state)
  return toks, jnp.minimum(st.cursor, st.bit_len), st

dev0 = jax.devices()[0]
put0 = lambda t: jax.device_put(t, dev0)
t1, n1, _ = run(put0(labels), put0(discop.init_embed_state(bits, nonce, bit_len)), put0(params))

mesh = sharding.make_mesh(None)
assert dict(mesh.shape) == {'data': 8, 'model': 1}
lab_s = sharding.shard_batch(labels, mesh)
st_s = sharding.shard_batch(discop.init_embed_state(bits, nonce, bit_len), mesh)
par_s = jax.device_put(params, sharding.replicated(mesh))
assert st_s.bits.sharding.spec == jax.sharding.PartitionSpec('data')
assert len(st_s.bits.addressable_shards) == 8 and st_s.bits.addressable_shards[0].data.shape == (2, 64)
t8, n8, st8 = run(lab_s, st_s, par_s)

t1, n1, t8, n8 = (np.asarray(x) for x in (t1, n1, t8, n8))
assert t1.shape == (B, T)
np.testing.assert_array_equal(t8, t1)
np.testing.assert_array_equal(n8, n1)
assert n1.sum() > B, n1  # bits were embedded (not a degenerate all-zero-capacity run)
assert len(np.unique(t1)) > 8  # the tokens are not degenerate either

# Per-device KV cache shape in the compiled sharded program: rows 2B/8 (CFG doubles rows).
hd = model.hd
compiled = tr._decode.lower(model, par_s, lab_s, None, None, st_s, choose_fn=choose, use_cfg=True,
                            cfg_scale=CFG, top_k=TOP_K, temperature=1.0, num_steps=T,
                            return_logits=False).compile().as_text()
local_cache = f'f32[{2 * B // 8},{T},{model.kv_heads},{hd}]'
global_cache = f'f32[{2 * B},{T},{model.kv_heads},{hd}]'

# The receiver replays the sharded tokens and reads the embedded prefix back.
ext = jax.jit(discop.make_extract_fn(key, 'recursive', precision=PREC, top_k=TOP_K))
t8_s = sharding.shard_batch(t8, mesh)
logits = tr.logits_for_tokens(model, par_s, lab_s, t8_s, cfg_scale=CFG, top_k=TOP_K)
got, ok_all = [[] for _ in range(B)], True
for t in range(T):
  b_, n_, ok = (np.asarray(x) for x in ext(logits[:, t], t8_s[:, t], jnp.int32(t), nonce))
  ok_all &= bool(ok.all())
  for i in range(B):
    got[i].extend(b_[i, :n_[i]].tolist())
for i in range(B):
  assert got[i][:n1[i]] == bits[i, :n1[i]].tolist(), i
toks_again = run(lab_s, st_s, par_s)[0]
print('RESULT ' + json.dumps(dict(
    state_spec=list(st8.cursor.sharding.spec), out_spec=list(toks_again.sharding.spec),
    local_cache=local_cache in compiled, global_cache=global_cache in compiled,
    ok_all=ok_all, bits=int(n1.sum()), partitioner=PARTITIONER)))
"""


def test_discop_generation_sharded_over_data_equals_unsharded(python_subprocess):
  out = python_subprocess(_CODE, n_devices=8)
  res = json.loads([l for l in out.splitlines() if l.startswith("RESULT ")][-1][len("RESULT ") :])
  assert res["state_spec"] == ["data"], res  # the Discop state stays sharded through the scan
  assert res["out_spec"][:1] == ["data"], res  # so do the generated tokens [B, T]
  assert res["local_cache"] and not res["global_cache"], res  # KV cache sharded over data
  assert res["ok_all"], res
