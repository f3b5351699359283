"""Trainer: learning, exact resume, NaN detection, 8-device equivalence."""

import json

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stegjax.train import sharding, trainer


def _cfg(**kw):
  c = ml_collections.ConfigDict(
    dict(
      lr=0.05,
      num_steps=6,
      warmup_steps=0,
      schedule="constant",
      weight_decay=0.0,
      grad_clip=1.0,
      checkpoint_every=3,
      max_to_keep=5,
      log_every=1,
    )
  )
  c.update(kw)
  return c


def _problem():
  """A tiny regression with dropout-like rng use, so rng handling matters."""
  rs = np.random.RandomState(0)
  w_true = rs.randn(8, 4).astype(np.float32)
  xs = rs.randn(64, 8).astype(np.float32)
  ys = xs @ w_true

  def init_fn(rng):
    return {"w": jax.random.normal(rng, (8, 4)) * 0.1, "b": jnp.zeros((4,))}, {}

  def loss_fn(params, extra, batch, rng, step):
    noise = 0.01 * jax.random.normal(rng, batch["y"].shape)
    pred = batch["x"] @ params["w"] + params["b"]
    loss = jnp.mean((pred - batch["y"] - noise) ** 2)
    return loss, ({"mse": loss}, extra)

  def batch_fn(step):
    idx = np.random.RandomState(step).choice(64, 16, replace=False)
    return {"x": xs[idx], "y": ys[idx]}

  return init_fn, loss_fn, batch_fn


def _train(workdir, num_steps, cfg=None, loss_fn=None):
  cfg = cfg or _cfg()
  init_fn, default_loss, batch_fn = _problem()
  mesh = sharding.make_mesh(None)
  tx = trainer.make_optimizer(cfg)
  state = trainer.create_train_state(init_fn, tx, jax.random.PRNGKey(0), mesh)
  step = trainer.make_train_step(loss_fn or default_loss, tx, mesh, state)
  return trainer.fit(state, step, batch_fn, num_steps, str(workdir), cfg, mesh, desc="test")


def test_loss_decreases(tmp_path):
  _train(tmp_path, 30, _cfg(num_steps=30, checkpoint_every=100))
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert rows[-1]["step"] == 30
  assert rows[-1]["loss"] < 0.3 * rows[0]["loss"], (rows[0], rows[-1])


def test_resume_equals_uninterrupted(tmp_path):
  full = _train(tmp_path / "a", 6)
  _train(tmp_path / "b", 3)  # "killed" after step 3 (checkpoint at 3)
  resumed = _train(tmp_path / "b", 6)  # a fresh process would start here
  assert int(resumed.step) == 6
  chex.assert_trees_all_equal(jax.device_get(full.params), jax.device_get(resumed.params))
  chex.assert_trees_all_equal(jax.device_get(full.opt_state), jax.device_get(resumed.opt_state))
  # The resumed run's metric log reads like an uninterrupted one.
  steps = [json.loads(l)["step"] for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert steps == sorted(set(steps)) and steps[-1] == 6


def test_nan_raises_with_step(tmp_path):
  _, good_loss, _ = _problem()

  def loss_fn(params, extra, batch, rng, step):
    loss, aux = good_loss(params, extra, batch, rng, step)
    return jnp.where(step >= 3, jnp.nan, loss), aux

  with pytest.raises(trainer.NonFiniteError, match="step 4"):
    _train(tmp_path, 6, _cfg(log_every=100), loss_fn=loss_fn)


def test_bad_schedule_is_clear():
  with pytest.raises(ValueError, match="schedule"):
    trainer.make_optimizer(_cfg(schedule="linearish"))


def test_eight_devices_equal_one(python_subprocess):
  out = python_subprocess(
    """
      import jax, jax.numpy as jnp, numpy as np, ml_collections, json
      from stegjax.train import sharding, trainer
      assert jax.device_count() == 8
      cfg = ml_collections.ConfigDict(dict(lr=0.05, num_steps=3, warmup_steps=0, schedule='constant',
                                           grad_clip=1.0))
      rs = np.random.RandomState(0)
      xs = rs.randn(16, 8).astype(np.float32); ys = rs.randn(16, 32).astype(np.float32)
      def init_fn(rng):
        return {'w': jax.random.normal(rng, (8, 32)), 'b': jnp.zeros((32,))}, {}
      def loss_fn(p, e, b, rng, step):
        l = jnp.mean((b['x'] @ p['w'] + p['b'] - b['y']) ** 2)
        return l, ({}, e)
      res = {}
      for name, devs, rules in [('one', jax.devices()[:1], 'replicate'), ('fsdp8', jax.devices(), 'fsdp')]:
        mesh = sharding.make_mesh(None, devs)
        tx = trainer.make_optimizer(cfg)
        st = trainer.create_train_state(init_fn, tx, jax.random.PRNGKey(1), mesh, rules)
        step = trainer.make_train_step(loss_fn, tx, mesh, st)
        for i in range(3):
          st, m = step(st, sharding.put_batch({'x': xs, 'y': ys}, mesh))
        res[name] = (np.asarray(st.params['w']), float(m['loss']), str(st.params['w'].sharding.spec))
      np.testing.assert_allclose(res['one'][0], res['fsdp8'][0], rtol=1e-5, atol=1e-6)
      assert abs(res['one'][1] - res['fsdp8'][1]) < 1e-5
      print(json.dumps({'spec8': res['fsdp8'][2], 'spec1': res['one'][2]}))
  """,
    n_devices=8,
  )
  specs = json.loads(out.strip().splitlines()[-1])
  assert "data" in specs["spec8"], specs  # the weight really is sharded on 8 devices
  assert "data" not in specs["spec1"]
