"""Cost-based strategy: strength maps, the environment, one REINFORCE step through the trainer."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stegjax.models import steganalyzers
from stegjax.semcom import cost_rl
from stegjax.semcom import system
from stegjax.train import sharding
from stegjax.train import trainer

P = 16
LEVELS = (0.0, 0.5, 1.0)


def test_strength_map_blocks():
  acts = jnp.array([[[0, 1], [2, 1]]])
  s = cost_rl.strength_map(acts, LEVELS, 8)
  assert s.shape == (1, 16, 16, 1)
  np.testing.assert_allclose(np.asarray(s[0, :8, :8, 0]), 0.0)
  np.testing.assert_allclose(np.asarray(s[0, 8:, :8, 0]), 1.0)
  np.testing.assert_allclose(np.asarray(s[0, :8, 8:, 0]), 0.5)


def _setup():
  hider = system.Hider("cnn", ml_collections.ConfigDict(dict(features=4, depth=2)))
  p_hider = hider.init(jax.random.key(0), (P, P, 3))
  jscc = system.make_jscc(4, 1 / 6)
  p_jscc = jscc.init(jax.random.key(1), jnp.zeros((1, P, P, 3)))
  det = steganalyzers.make_steganalyzer("xunet", dict(features=(2, 4, 4)))
  dp, ds = steganalyzers.init_steganalyzer(det, jax.random.key(2), (P, P, 3))
  env = cost_rl.make_env(
    hider, p_hider, jscc, p_jscc, det, {"params": dp, **ds}, 10.0, dict(cover=0.02, secret=0.05)
  )
  return hider, p_hider, env


def test_zero_strength_sends_the_cover():
  hider, p_hider, env = _setup()
  x = jax.random.uniform(jax.random.key(3), (2, P, P, 3))
  reward, m = env(x, x[::-1], jnp.zeros((2, P, P, 1)), jax.random.key(4))
  np.testing.assert_allclose(np.asarray(m["stego"]), np.asarray(x), atol=1e-6)
  assert np.all(np.asarray(m["cover_mse"]) < 1e-10)
  _, m1 = env(x, x[::-1], jnp.ones((2, P, P, 1)), jax.random.key(4))
  assert np.all(np.asarray(m1["cover_mse"]) > 1e-6)  # full strength changes the cover
  assert reward.shape == (2,) and np.all(np.isfinite(np.asarray(reward)))


def test_one_reinforce_step_moves_the_policy():
  hider, p_hider, env = _setup()
  policy = cost_rl.Policy(len(LEVELS), 8, features=4)
  z = jnp.zeros((1, P, P, 3))
  loss_fn = cost_rl.reinforce_loss_fn(policy, hider, env, LEVELS, 0.01)
  cfg = ml_collections.ConfigDict(dict(num_steps=1, lr=1e-2, warmup_steps=0, schedule="constant"))
  tx = trainer.make_optimizer(cfg)
  mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, model=1)))
  state = trainer.create_train_state(
    lambda r: ({"policy": policy.init(r, z, z)}, {"p_hider": p_hider}), tx, jax.random.key(5), mesh
  )
  before = jax.tree.map(np.asarray, state.params)
  step = trainer.make_train_step(loss_fn, tx, mesh, state)
  rng = np.random.default_rng(0)
  imgs = rng.integers(0, 256, (4, P, P, 3), dtype=np.uint8)
  batch = sharding.put_batch({"cover": imgs[:2], "secret": imgs[2:]}, mesh)
  state, metrics = step(state, batch)
  assert not bool(metrics["nonfinite"])
  assert 0.0 <= float(metrics["miss"]) <= 1.0
  # The entropy of the zero-initialized policy is log(levels): uniform over strengths.
  np.testing.assert_allclose(float(metrics["entropy"]), np.log(len(LEVELS)), rtol=1e-4)
  moved = jax.tree.leaves(
    jax.tree.map(lambda a, b: float(np.max(np.abs(a - np.asarray(b)))), before, state.params)
  )
  assert max(moved) > 0.0
