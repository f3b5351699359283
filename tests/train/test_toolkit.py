"""Toolkit: fit-or-load trains once then loads, retrains on a changed setting, resumes an
interrupted fit exactly; timers; atomic_write never leaves a partial file."""

import json
import os
import stat

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stegjax import config_lib, errors
from stegjax.train import sharding, toolkit


def _cfg(**kw):
  """The smoke-size train config of the real configs, 6 steps, a checkpoint every 2."""
  c = config_lib.train("smoke", steps={"smoke": 6}, lr=0.05, batch={"smoke": 16})
  c.update(dict(checkpoint_every=2, max_to_keep=5, log_every=1), **kw)
  return c


_RS = np.random.RandomState(0)
_XS = _RS.randn(64, 8).astype(np.float32)
_YS = _XS @ _RS.randn(8, 4).astype(np.float32)


def _init_fn(rng):
  return {"w": jax.random.normal(rng, (8, 4)) * 0.1, "b": jnp.zeros((4,))}, {}


def _loss_fn(params, extra, batch, rng, step):
  noise = 0.01 * jax.random.normal(rng, batch["y"].shape)  # the per-step key matters
  loss = jnp.mean((batch["x"] @ params["w"] + params["b"] - batch["y"] - noise) ** 2)
  return loss, ({"mse": loss}, extra)


def _batch_fn(step):
  idx = np.random.RandomState(step).choice(64, 16, replace=False)
  return {"x": _XS[idx], "y": _YS[idx]}


def _recipe(cfg=None):
  return toolkit.Recipe(
    _init_fn, _loss_fn, cfg or _cfg(), sharding.make_mesh(None), jax.random.key(0)
  )


def _fit(root, batch_fn=_batch_fn, settings=("toy", 1), cfg=None):
  return toolkit.fit_or_load(_recipe(cfg), batch_fn, root=str(root), name="toy", settings=settings)


def test_trains_once_then_loads(tmp_path):
  calls = []

  def counting(step):
    calls.append(step)
    return _batch_fn(step)

  first = _fit(tmp_path, counting)
  assert not first.cached and calls == list(range(6))
  init = _recipe().initial_state().params
  assert not np.allclose(first.params["w"], init["w"])  # it did learn something
  record = json.load(open(os.path.join(first.path, toolkit.DONE)))
  assert record["num_steps"] == 6 and record["settings"] == ["toy", 1]

  calls.clear()
  second = _fit(tmp_path, counting)
  assert second.cached and calls == []  # nothing trained
  assert second.path == first.path
  assert second.seconds == pytest.approx(first.seconds)  # the recorded training time
  chex.assert_trees_all_equal(first.params, second.params)
  assert toolkit.is_cached(str(tmp_path), "toy", ("toy", 1), _cfg())


def test_load_compiles_nothing(tmp_path):
  """A cached model is restored into abstract shapes: no init program is compiled or run
  (on a CPU that compile cost seconds per model on every command)."""
  _fit(tmp_path)
  compiles = []

  def listener(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    second = _fit(tmp_path)
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert second.cached and compiles == []
  assert second.params["w"].sharding.is_fully_replicated


def test_changed_setting_retrains(tmp_path):
  base = _fit(tmp_path)
  other = _fit(tmp_path, settings=("toy", 2))  # e.g. another architecture or seed
  assert not other.cached and other.path != base.path
  faster = _fit(tmp_path, cfg=_cfg(lr=0.1))  # the train recipe is part of the fingerprint
  assert not faster.cached and faster.path not in (base.path, other.path)
  assert not np.allclose(faster.params["w"], base.params["w"])
  # Logging and checkpoint cadence do not shape the model: same cache.
  assert _fit(tmp_path, cfg=_cfg(log_every=3, checkpoint_every=3)).cached
  assert not toolkit.is_cached(str(tmp_path), "toy", ("toy", 3), _cfg())


def test_interrupted_fit_resumes_to_the_same_result(tmp_path):
  whole = _fit(tmp_path / "whole")

  class Crash(Exception):
    pass

  def crashing(step):
    if step == 5:  # after the step-4 checkpoint
      raise Crash
    return _batch_fn(step)

  with pytest.raises(Crash):
    _fit(tmp_path / "cut", crashing)
  path = toolkit.checkpoint_dir(str(tmp_path / "cut"), "toy", ("toy", 1), _cfg())
  assert not os.path.exists(os.path.join(path, toolkit.DONE))  # no marker: not a cache
  seen = []

  def resumed_fn(step):
    seen.append(step)
    return _batch_fn(step)

  resumed = _fit(tmp_path / "cut", resumed_fn)
  assert not resumed.cached and seen == [4, 5]  # resumed from the last checkpoint
  chex.assert_trees_all_close(resumed.params, whole.params, rtol=1e-6, atol=1e-7)


def test_marker_of_another_fingerprint_is_refused(tmp_path):
  fitted = _fit(tmp_path)
  marker = os.path.join(fitted.path, toolkit.DONE)
  record = json.load(open(marker))
  record["fingerprint"] = "0123456789"
  toolkit.atomic_write(marker, json.dumps(record))
  with pytest.raises(errors.CheckpointMismatchError, match="fingerprint"):
    _fit(tmp_path)


def test_fingerprint_reads_configdicts_and_order_of_keys():
  a = ml_collections.ConfigDict({"x": 1, "y": [1, 2]})
  assert toolkit.fingerprint(a) == toolkit.fingerprint({"y": [1, 2], "x": 1})
  assert toolkit.fingerprint(a) != toolkit.fingerprint({"y": [1, 2], "x": 2})
  assert len(toolkit.fingerprint(a)) == 10


def test_timers_split_and_accumulate():
  timers = toolkit.Timers()
  with timers("a"):
    sum(range(10000))
  with timers("b"):
    pass
  with timers("a"):
    pass
  timers.add("train", 12.5, 20.0)
  split = timers.split()
  assert list(split) == ["a", "b", "train"]
  assert split["train"] == {"seconds": 12.5, "cpu_seconds": 20.0}
  assert all(v["seconds"] >= 0 for v in split.values())
  with pytest.raises(ZeroDivisionError):
    with timers("failing"):
      1 / 0
  assert "failing" in timers.split()  # a section that raised still counts its time


def test_atomic_write_bytes_text_and_writer(tmp_path):
  p = tmp_path / "sub" / "a.npy"
  toolkit.atomic_write(p, lambda f: np.save(f, np.arange(5)))
  np.testing.assert_array_equal(np.load(p), np.arange(5))
  toolkit.atomic_write(tmp_path / "t.txt", "héllo")
  assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
  toolkit.atomic_write(tmp_path / "b.bin", b"\x00\x01")
  assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
  p = tmp_path / "cache.bin"
  toolkit.atomic_write(p, b"old contents")

  def dies_halfway(f):
    f.write(b"new con")
    raise KeyboardInterrupt  # e.g. the user hits ^C mid-write

  with pytest.raises(KeyboardInterrupt):
    toolkit.atomic_write(p, dies_halfway)
  assert p.read_bytes() == b"old contents"
  assert sorted(os.listdir(tmp_path)) == ["cache.bin"]  # no temporary file left behind


def test_atomic_write_mode_is_set_at_creation(tmp_path):
  p = tmp_path / "key"
  modes = []

  def writer(f):  # while the secret is being written, the file is already 0o600
    modes.append(stat.S_IMODE(os.fstat(f.fileno()).st_mode))
    f.write(b"secret")

  toolkit.atomic_write(p, writer, mode=0o600)
  assert modes == [0o600] and stat.S_IMODE(os.stat(p).st_mode) == 0o600
  old = os.umask(0o022)
  try:
    toolkit.atomic_write(tmp_path / "plain", b"x")
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == 0o644
