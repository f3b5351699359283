"""The one trainer every experiment uses.

Reads top to bottom like flax's examples: ``make_optimizer``,
``create_train_state`` (parameters born sharded: ``jax.eval_shape`` then a jitted
init with ``out_shardings``), ``make_train_step`` (jitted with explicit in/out
shardings and a donated state), and ``fit`` (checkpoints, resume, metrics,
progress bar, NaN/inf detection).

Contracts:
- ``init_fn(rng) -> (params, extra)``; ``extra`` holds non-trained collections
  (e.g. ``batch_stats``), ``{}`` when there are none.
- ``loss_fn(params, extra, batch, rng, step) -> (loss, (metrics, new_extra))``.
  GANs keep generator and discriminator in one ``params`` dict and use
  ``stop_gradient`` so one optimizer trains both.
- ``batch_fn(step) -> batch`` (a dict of host arrays holding this process's
  rows), so a resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from absl import logging
from tqdm.auto import tqdm

from stegjax.train import sharding as shd


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  extra: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data; per-step keys are fold_in(rng, step)


class NonFiniteError(FloatingPointError):
  """The loss or the gradient became NaN/inf."""


def make_optimizer(cfg) -> optax.GradientTransformation:
  """AdamW with warmup + cosine (or constant) schedule and global-norm clipping.

  Fields read from ``cfg``: lr, num_steps, warmup_steps, schedule
  ('cosine'|'constant'), weight_decay, b1, b2, grad_clip (0 disables).
  """
  lr = float(cfg.lr)
  warmup = int(cfg.get("warmup_steps", 0))
  total = max(int(cfg.num_steps), warmup + 1)
  kind = cfg.get("schedule", "cosine")
  if kind == "cosine":
    sched = optax.warmup_cosine_decay_schedule(
      0.0, lr, max(warmup, 1), total, end_value=lr * cfg.get("final_lr_frac", 0.1)
    )
  elif kind == "constant":
    sched = optax.join_schedules(
      [optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)], [warmup]
    )
  else:
    raise ValueError(f"unknown train.schedule {kind!r}; valid: 'cosine', 'constant'")
  parts = []
  if cfg.get("grad_clip", 0.0):
    parts.append(optax.clip_by_global_norm(float(cfg.grad_clip)))
  parts.append(
    optax.adamw(
      sched,
      b1=cfg.get("b1", 0.9),
      b2=cfg.get("b2", 0.95),
      weight_decay=cfg.get("weight_decay", 0.0),
    )
  )
  return optax.chain(*parts)


def _raw_key(rng) -> jax.Array:
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  return rng


def state_shardings(abstract_state: TrainState, mesh, rules) -> TrainState:
  """Parameter rules apply to params and to the optimizer moments (same paths)."""
  return shd.tree_shardings(abstract_state, mesh, rules)


def _state_init(init_fn: Callable, tx: optax.GradientTransformation) -> Callable:
  def init(rng):
    init_rng, state_rng = jax.random.split(rng)
    params, extra = init_fn(init_rng)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      extra=extra,
      opt_state=tx.init(params),
      rng=state_rng,
    )

  return init


def create_train_state(
  init_fn: Callable, tx: optax.GradientTransformation, rng, mesh, rules="replicate"
) -> TrainState:
  rng = _raw_key(rng)
  init = _state_init(init_fn, tx)
  shardings = state_shardings(jax.eval_shape(init, rng), mesh, rules)
  return jax.jit(init, out_shardings=shardings)(rng)


def abstract_train_state(
  init_fn: Callable, tx: optax.GradientTransformation, rng, mesh, rules="replicate"
) -> TrainState:
  """The state's shapes, dtypes and shardings, traced but never compiled or run: what a
  restore needs (compiling the init only to overwrite it cost seconds per model)."""
  init = _state_init(init_fn, tx)
  abstract = jax.eval_shape(init, _raw_key(rng))
  shardings = state_shardings(abstract, mesh, rules)
  return jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
  )


def _where_tree(pred, a, b):
  return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def make_train_step(
  loss_fn: Callable, tx: optax.GradientTransformation, mesh, state: TrainState
) -> Callable:
  """Jitted ``step(state, batch) -> (state, metrics)`` with a donated state.

  A non-finite loss or gradient leaves the state unchanged (so no checkpoint is
  ever poisoned) and sets ``metrics['nonfinite']``; ``fit`` raises on it.
  """
  state_sh = jax.tree.map(lambda x: x.sharding, state)
  batch_sh = shd.batch_sharding(mesh)
  repl = shd.replicated(mesh)

  def step_fn(state: TrainState, batch):
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, (metrics, new_extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, state.extra, batch, rng, state.step
    )
    grad_norm = optax.global_norm(grads)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    new_state = TrainState(
      step=state.step + 1,
      params=_where_tree(finite, new_params, state.params),
      extra=_where_tree(finite, new_extra, state.extra),
      opt_state=_where_tree(finite, new_opt, state.opt_state),
      rng=state.rng,
    )
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm, nonfinite=~finite)
    return new_state, metrics

  return jax.jit(
    step_fn, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, repl), donate_argnums=(0,)
  )


class MetricWriter:
  """JSON lines, one per logged step; process 0 writes."""

  def __init__(self, path: str, resume_step: int = 0):
    self.path = path
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    kept = []
    if os.path.exists(path):
      # Drop lines past the restored step so a resumed log reads like an uninterrupted one.
      with open(path) as f:
        for line in f:
          try:
            if json.loads(line).get("step", 0) <= resume_step:
              kept.append(line)
          except json.JSONDecodeError:
            pass
    with open(path, "w") as f:
      f.writelines(kept)

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    row = {"step": int(step)}
    row.update({k: float(v) for k, v in metrics.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")


def checkpoint_manager(ckpt_dir: str, cfg) -> ocp.CheckpointManager:
  opts = ocp.CheckpointManagerOptions(
    max_to_keep=int(cfg.get("max_to_keep", 2)),
    save_interval_steps=int(cfg.get("checkpoint_every", 1000)),
    create=True,
  )
  return ocp.CheckpointManager(os.path.abspath(ckpt_dir), options=opts)


def abstract_like(state):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def restore_latest(mngr: ocp.CheckpointManager, state):
  """Restores the newest checkpoint into ``state``'s shapes and shardings, if any."""
  step = mngr.latest_step()
  if step is None:
    return state, 0
  restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract_like(state)))
  return restored, int(step)


def restore_step(workdir: str, cfg, abstract_state: TrainState, step: int) -> TrainState:
  """The checkpoint of ``step`` in ``workdir``, restored into ``abstract_state``'s shapes and
  shardings (``abstract_train_state``)."""
  mngr = checkpoint_manager(workdir, cfg)
  try:
    return mngr.restore(int(step), args=ocp.args.StandardRestore(abstract_state))
  finally:
    mngr.close()


def fit(
  state: TrainState,
  step_fn: Callable,
  batch_fn: Callable[[int], Any],
  num_steps: int,
  workdir: str,
  cfg,
  mesh,
  eval_fn: Callable | None = None,
  desc: str = "train",
) -> TrainState:
  """Runs ``step_fn`` up to ``num_steps``, resuming from ``workdir`` if it holds a checkpoint.

  ``cfg`` fields: checkpoint_every, max_to_keep, log_every, eval_every.
  ``eval_fn(state, step) -> dict`` is called every eval_every steps and at the end.
  """
  log_every = max(1, int(cfg.get("log_every", 50)))
  eval_every = int(cfg.get("eval_every", 0))
  save_every = max(1, int(cfg.get("checkpoint_every", 1000)))
  mngr = checkpoint_manager(workdir, cfg)
  state, start = restore_latest(mngr, state)
  if start:
    logging.info("%s: resumed from step %d in %s", desc, start, workdir)
  writer = MetricWriter(os.path.join(workdir, "metrics.jsonl"), resume_step=start)
  bar = tqdm(
    total=num_steps, initial=start, desc=desc, disable=not sys.stderr.isatty(), dynamic_ncols=True
  )
  pending = []

  def flush():
    if not pending:
      return
    rows = jax.device_get(pending)
    pending.clear()
    for s, m in rows:
      if bool(m.pop("nonfinite")):
        raise NonFiniteError(
          f"{desc}: loss or gradient is NaN/inf at step {s} "
          f"(loss={float(m['loss'])}, grad_norm={float(m['grad_norm'])})"
        )
    s, m = rows[-1]
    writer.write(s, m)
    bar.set_postfix({k: f"{float(v):.4g}" for k, v in m.items() if k in ("loss", "grad_norm")})
    # Per-step metrics are in metrics.jsonl and the bar; on the console only with --verbosity=1.
    logging.debug("%s step %d: %s", desc, s, {k: round(float(v), 5) for k, v in m.items()})

  try:
    for step in range(start, num_steps):
      batch = shd.put_batch(batch_fn(step), mesh)
      state, metrics = step_fn(state, batch)
      pending.append((step + 1, metrics))
      bar.update(1)
      if (step + 1) % log_every == 0 or step + 1 == num_steps:
        flush()
      if (step + 1) % save_every == 0:
        mngr.save(step + 1, args=ocp.args.StandardSave(state))
      if (
        eval_fn is not None and eval_every and (step + 1) % eval_every == 0 and step + 1 < num_steps
      ):
        writer.write(step + 1, {f"eval/{k}": v for k, v in eval_fn(state, step + 1).items()})
    flush()
    if mngr.latest_step() != num_steps and num_steps > start:
      mngr.save(num_steps, args=ocp.args.StandardSave(state), force=True)
    if eval_fn is not None:
      writer.write(num_steps, {f"eval/{k}": v for k, v in eval_fn(state, num_steps).items()})
  finally:
    bar.close()
    mngr.wait_until_finished()
    mngr.close()
  return state
