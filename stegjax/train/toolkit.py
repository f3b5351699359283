"""The experiment toolkit: fit-or-load, timers, atomic writes (from ``stegjax.files``).

  from stegjax.train import toolkit
  recipe = toolkit.Recipe(init_fn, loss_fn, config.prior.train, mesh, jax.random.PRNGKey(seed))
  fitted = toolkit.fit_or_load(recipe, batch_fn, root=workdir, name="prior",
                               settings=(config.data, config.vq, config.prior.model, seed))
  fitted.params, fitted.cached, fitted.seconds

One cache test for every trained model: it lives in ``root/<name>_<fingerprint>``, where the
fingerprint hashes ``settings`` (every setting that shapes the model: data, architecture, seed,
a version string when the code changed) together with the training recipe (``train_cfg`` less
its logging and checkpoint cadence). A completed fit writes ``done.json`` there; with it a rerun
restores the final checkpoint and trains nothing. Without it the fit resumes from the newest
orbax checkpoint (``trainer.fit``), so an interrupted run loses at most ``checkpoint_every``
steps and ends with the same parameters as an uninterrupted one. A changed setting gets a new
directory: nothing ever restores a checkpoint trained under other settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import resource
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from absl import logging

from stegjax import errors
from stegjax.files import atomic_write, fingerprint
from stegjax.train import trainer

__all__ = [
  "Fitted",
  "Recipe",
  "Timers",
  "atomic_write",
  "checkpoint_dir",
  "completed",
  "cpu_seconds",
  "fingerprint",
  "fit_or_load",
  "is_cached",
]

DONE = "done.json"
# Fields of a train config that change how often a fit logs or saves, not what it learns.
CADENCE_FIELDS = ("log_every", "checkpoint_every", "max_to_keep", "eval_every")


# ----------------------------------------------------------------------------- timers


def cpu_seconds() -> float:
  """CPU time of this process (user + system): a load-independent cost on a shared machine."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


class Timers:
  """Named wall-clock and CPU-time sections, for a report's time split.

    timers = toolkit.Timers()
    with timers("models"):
      ...
    timers.split()  # {"models": {"seconds": 12.3, "cpu_seconds": 20.1}, ...}

  A name used twice accumulates; sections may nest (each counts its own span).
  """

  def __init__(self):
    self._wall: dict[str, float] = {}
    self._cpu: dict[str, float] = {}

  @contextlib.contextmanager
  def __call__(self, name: str):
    t0, c0 = time.perf_counter(), cpu_seconds()
    try:
      yield
    finally:
      self.add(name, time.perf_counter() - t0, cpu_seconds() - c0)

  def add(self, name: str, seconds: float, cpu: float = 0.0):
    """Records a span measured elsewhere (e.g. a cached model's original training time)."""
    self._wall[name] = self._wall.get(name, 0.0) + float(seconds)
    self._cpu[name] = self._cpu.get(name, 0.0) + float(cpu)

  def seconds(self, name: str) -> float:
    return self._wall.get(name, 0.0)

  def split(self) -> dict[str, dict[str, float]]:
    """``{name: {"seconds", "cpu_seconds"}}`` in the order the sections first ran."""
    return {k: {"seconds": self._wall[k], "cpu_seconds": self._cpu[k]} for k in self._wall}


# ----------------------------------------------------------------------------- fit or load


class Recipe:
  """What to train and how: ``init_fn``, ``loss_fn`` (``trainer``'s contracts), the train config,
  the mesh and the init key. Compiled once; ``fit_or_load`` may fit it many times on different
  batches (e.g. one detector per scenario), each fit starting from the same initial state."""

  def __init__(self, init_fn: Callable, loss_fn: Callable, train_cfg, mesh, rng, rules="replicate"):
    self.init_fn, self.loss_fn, self.train_cfg = init_fn, loss_fn, train_cfg
    self.mesh, self.rng, self.rules = mesh, rng, rules
    self.tx = trainer.make_optimizer(train_cfg)

  @functools.cached_property
  def _initial_state(self) -> trainer.TrainState:
    return trainer.create_train_state(self.init_fn, self.tx, self.rng, self.mesh, self.rules)

  def abstract_state(self) -> trainer.TrainState:
    """The initial state's shapes and shardings, with nothing compiled (for a restore)."""
    return trainer.abstract_train_state(self.init_fn, self.tx, self.rng, self.mesh, self.rules)

  def initial_state(self) -> trainer.TrainState:
    """A fresh copy of the initial state (the train step donates its input)."""
    return jax.tree.map(jnp.copy, self._initial_state)

  @functools.cached_property
  def step_fn(self) -> Callable:
    return trainer.make_train_step(self.loss_fn, self.tx, self.mesh, self._initial_state)


@dataclasses.dataclass
class Fitted:
  """A trained model's parameters and where they came from."""

  params: Any
  extra: Any
  path: str  # the checkpoint directory
  cached: bool  # restored from a completed fit; nothing was trained in this run
  seconds: float  # wall time of the fit that trained it (this run's, or the recorded one)
  cpu_seconds: float


def learning_settings(train_cfg) -> dict:
  """The train config without its logging/checkpoint cadence (what the model learns from)."""
  cfg = train_cfg.to_dict() if hasattr(train_cfg, "to_dict") else dict(train_cfg)
  return {k: v for k, v in cfg.items() if k not in CADENCE_FIELDS}


def checkpoint_dir(root: str, name: str, settings, train_cfg) -> str:
  """``root/<name>_<fingerprint>``: where the model these settings describe lives."""
  return os.path.join(root, f"{name}_{fingerprint(settings, learning_settings(train_cfg))}")


def completed(path: str) -> dict | None:
  """The record a completed fit left in ``path`` (``done.json``), or None: the one cache test."""
  marker = os.path.join(path, DONE)
  if not os.path.exists(marker):
    return None
  with open(marker) as f:
    record = json.load(f)
  if record.get("fingerprint") != os.path.basename(path).rsplit("_", 1)[-1]:
    raise errors.CheckpointMismatchError(
      f"{marker} was written for fingerprint {record.get('fingerprint')!r}, not this "
      f"directory's; remove {path} to retrain"
    )
  # A marker whose final checkpoint is gone (deleted by hand) is no cache: refit.
  return record if os.path.isdir(os.path.join(path, str(record["num_steps"]))) else None


def is_cached(root: str, name: str, settings, train_cfg) -> bool:
  """Whether ``fit_or_load`` with these arguments would train nothing."""
  return completed(checkpoint_dir(root, name, settings, train_cfg)) is not None


def fit_or_load(
  recipe: Recipe,
  batch_fn: Callable[[int], Any],
  *,
  root: str,
  name: str,
  settings,
  eval_fn: Callable | None = None,
  desc: str | None = None,
) -> Fitted:
  """Trains ``recipe`` on ``batch_fn`` (``trainer.fit``), or restores it; see the module doc.

  ``settings``: everything besides the train config that shapes the model (config sections,
  seeds, a version string). ``recipe.train_cfg`` enters the fingerprint itself.
  """
  path = checkpoint_dir(root, name, settings, recipe.train_cfg)
  record = completed(path)
  t0, c0 = time.perf_counter(), cpu_seconds()
  cached = record is not None
  if cached:  # a completed fit: read its final step, compile nothing
    state = trainer.restore_step(
      path, recipe.train_cfg, recipe.abstract_state(), int(record["num_steps"])
    )
  else:
    state = trainer.fit(
      recipe.initial_state(),
      recipe.step_fn,
      batch_fn,
      int(recipe.train_cfg.num_steps),
      path,
      recipe.train_cfg,
      recipe.mesh,
      eval_fn=eval_fn,
      desc=desc or name,
    )
    record = {
      "fingerprint": os.path.basename(path).rsplit("_", 1)[-1],
      "num_steps": int(recipe.train_cfg.num_steps),
      "seconds": time.perf_counter() - t0,
      "cpu_seconds": cpu_seconds() - c0,
      "settings": json.loads(json.dumps(_settings_json(settings), default=str)),
      "train": learning_settings(recipe.train_cfg),
    }
    if jax.process_index() == 0:
      atomic_write(os.path.join(path, DONE), json.dumps(record, indent=1, default=str))
    logging.info(
      "%s: trained %d steps in %.0f s (%s)",
      desc or name,
      record["num_steps"],
      record["seconds"],
      path,
    )
  return Fitted(
    state.params, state.extra, path, cached, float(record["seconds"]), float(record["cpu_seconds"])
  )


def _settings_json(settings):
  if hasattr(settings, "to_dict"):
    return settings.to_dict()
  if isinstance(settings, (list, tuple)):
    return [_settings_json(s) for s in settings]
  if isinstance(settings, dict):
    return {k: _settings_json(v) for k, v in settings.items()}
  return settings
