"""Worker for tests/train/test_batched_apply.py: ``batched_apply`` with trained-style params.

  python _batched_worker.py PID NPROC PORT OUT RULES
The params are global arrays over every device of the job (as the trainer returns them,
laid out by RULES); process 0 writes OUT.npz with the gathered outputs and its own rows.
"""

import sys

import jax

pid, nproc, port, out_path, rules = (
  int(sys.argv[1]),
  int(sys.argv[2]),
  sys.argv[3],
  sys.argv[4],
  sys.argv[5],
)
if nproc > 1:
  jax.distributed.initialize(
    coordinator_address=f"localhost:{port}", num_processes=nproc, process_id=pid
  )

import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from stegjax.train import sharding  # noqa: E402


class Net(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(16, (3, 3))(x))
    x = nn.Conv(8, (3, 3), strides=2)(x)
    return x.mean((1, 2)), jnp.argmax(x.reshape(x.shape[0], x.shape[1] * x.shape[2] * 8), -1)


net = Net()
x = np.random.RandomState(0).rand(37, 8, 8, 3).astype(np.float32)
host_params = net.init(jax.random.PRNGKey(0), x[:1])["params"]
mesh = sharding.make_mesh(None)  # every device of the job
shardings = sharding.tree_shardings(host_params, mesh, rules)
params = jax.tree.map(
  lambda p, s: jax.make_array_from_callback(p.shape, s, lambda i, p=p: np.asarray(p)[i]),
  host_params,
  shardings,
)
fn = jax.jit(lambda p, b: net.apply({"params": p}, b))
out = {}
for bs in (1, 4, 64):
  feats, arg = sharding.batched_apply(fn, params, x, batch_size=bs)
  mine, rows = sharding.batched_apply(fn, params, x, batch_size=bs, gather=False)
  assert feats.shape == (37, 8) and arg.shape == (37,), (feats.shape, arg.shape)
  np.testing.assert_array_equal(mine[0], feats[rows])
  out[f"feats_{bs}"], out[f"arg_{bs}"], out[f"rows_{bs}_{pid}"] = feats, arg, rows
rows = sharding.batched_apply(fn, params, x[:0], batch_size=4)[0]
assert rows.shape == (0, 8), rows.shape
if pid == 0:
  np.savez(out_path, **out)
print("OK", jax.process_count(), jax.device_count(), jax.tree.leaves(params)[0].sharding.spec)
