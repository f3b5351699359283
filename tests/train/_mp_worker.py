"""Worker for the multi-process / resharding tests: trains a tiny model with the shared trainer.

  python _mp_worker.py PID NPROC PORT WORKDIR STEPS RULES
Writes WORKDIR.npy (the gathered weights) from process 0.
"""

import sys

import jax

pid, nproc, port, workdir, steps, rules = (
  int(sys.argv[1]),
  int(sys.argv[2]),
  sys.argv[3],
  sys.argv[4],
  int(sys.argv[5]),
  sys.argv[6],
)
if nproc > 1:
  jax.distributed.initialize(
    coordinator_address=f"localhost:{port}", num_processes=nproc, process_id=pid
  )

import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from stegjax.train import sharding, trainer  # noqa: E402

GLOBAL_BATCH = 16
cfg = ml_collections.ConfigDict(
  dict(
    lr=0.05,
    num_steps=steps,
    warmup_steps=0,
    schedule="constant",
    grad_clip=1.0,
    checkpoint_every=2,
    log_every=1,
  )
)
rs = np.random.RandomState(0)
xs = rs.randn(64, 8).astype(np.float32)
ys = rs.randn(64, 32).astype(np.float32)


def init_fn(rng):
  return {"w": jax.random.normal(rng, (8, 32)), "b": jnp.zeros((32,))}, {}


def loss_fn(p, e, b, rng, step):
  return jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2), ({}, e)


def batch_fn(step):
  # The same global batch for any process count; each process feeds its own rows.
  idx = np.random.RandomState(step).permutation(64)[:GLOBAL_BATCH]
  per = GLOBAL_BATCH // jax.process_count()
  idx = idx[jax.process_index() * per : (jax.process_index() + 1) * per]
  return {"x": xs[idx], "y": ys[idx]}


mesh = sharding.make_mesh(None)
tx = trainer.make_optimizer(cfg)
state = trainer.create_train_state(init_fn, tx, jax.random.PRNGKey(1), mesh, rules)
step = trainer.make_train_step(loss_fn, tx, mesh, state)
state = trainer.fit(state, step, batch_fn, steps, workdir, cfg, mesh, desc="worker")
w = multihost_utils.process_allgather(state.params["w"], tiled=True)
if jax.process_index() == 0:
  np.save(workdir + ".npy", np.asarray(w))
  print("SPEC", state.params["w"].sharding.spec, "STEP", int(state.step))
