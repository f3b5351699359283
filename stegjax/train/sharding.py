"""Mesh and parameter-sharding rules.

One code path for one CPU, one GPU and many hosts: the mesh has axes
``('data', 'model')`` and a list of regex rules maps each parameter path (e.g.
``layers_3/attention/wqkv/kernel``) to a ``PartitionSpec``. Named presets:

- ``replicate``: every parameter on every device (pure data parallelism);
- ``fsdp``: the largest dimension of every weight sharded over ``data``;
- ``fsdp_tp``: Megatron-style tensor parallelism (attention heads and MLP hidden
  over ``model``) on top of fsdp for the rest.

A rule's spec is a tuple of mesh-axis names / ``None`` per dimension, or the
string ``"largest"`` (shard the largest divisible dimension over ``data``).
Dimensions that the mesh axis does not divide are replicated instead, so one
rule set works at every device count. A tuple rule whose length differs from a
parameter's rank does not apply to it: the next matching rule is tried (so the
2D transformer rules and the 4D conv rules can share a preset).

Batch-leading pytrees (data batches, the KV cache, Discop states, CMSTEG's M2
latents) are sharded over ``data`` on their leading dimension with
``batch_specs`` / ``shard_batch`` (outside jit) or ``constrain_batch`` (inside).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stegjax import errors

Rule = tuple[str, Any]

PRESETS: dict[str, list[Rule]] = {
  "replicate": [],
  "fsdp": [(r".*", "largest")],
  "fsdp_tp": [
    # --- AR prior (models/transformer.py), 2D kernels [in, out].
    # Column-parallel: output features over 'model' (heads / MLP hidden).
    (r"attention/wqkv/kernel$", ("data", "model")),
    (r"feed_forward/w[13]/kernel$", ("data", "model")),
    # Row-parallel: input features over 'model'.
    (r"attention/wo/kernel$", ("model", "data")),
    (r"feed_forward/w2/kernel$", ("model", "data")),
    # Vocabulary-parallel token embedding [V, D] and output head [D, V].
    (r"tok_embeddings/embedding$", ("model", "data")),
    (r"output/kernel$", ("data", "model")),
    # --- VQ tokenizer (models/vq.py), conv kernels HWIO: channel-parallel pairs like
    # the MLP above (each ResnetBlock's conv1 splits its output channels, conv2 its input; the
    # attention q/k/v 1x1 convs split channels, proj_out gathers them back).
    (r"/conv1/kernel$", (None, None, "data", "model")),
    (r"/conv2/kernel$", (None, None, "model", "data")),
    (r"/(q|k|v)/kernel$", (None, None, "data", "model")),
    (r"/proj_out/kernel$", (None, None, "model", "data")),
    (r".*", "largest"),
  ],
}


def make_mesh(mesh_config=None, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the ('data', 'model') mesh; ``data=-1`` takes every remaining device."""
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  model = int(getattr(mesh_config, "model", 1) or 1) if mesh_config is not None else 1
  data = int(getattr(mesh_config, "data", -1) or -1) if mesh_config is not None else -1
  if data == -1:
    if n % model:
      raise ValueError(f"config.mesh.model={model} does not divide the {n} devices")
    data = n // model
  if data * model != n:
    raise ValueError(
      f"config.mesh data={data} x model={model} = {data * model} devices, but {n} are available"
    )
  arr = np.asarray(devices, dtype=object).reshape(data, model)
  return Mesh(arr, ("data", "model"))


def resolve_rules(rules) -> list[Rule]:
  """A preset name, or a list of (regex, spec) pairs, to a list of rules."""
  if rules is None:
    return []
  if isinstance(rules, str):
    if rules not in PRESETS:
      raise ValueError(f"unknown sharding preset {rules!r}; valid: {sorted(PRESETS)}")
    return list(PRESETS[rules])
  return [(str(p), s) for p, s in rules]


def path_str(path) -> str:
  """'params/layers_0/attention/wqkv/kernel' from a jax key path."""
  parts = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return "/".join(parts)


def _spec_for(shape, spec, mesh: Mesh) -> P:
  if len(shape) == 0:
    return P()
  if spec == "largest":
    size = mesh.shape["data"]
    if size == 1:
      return P()
    order = sorted(range(len(shape)), key=lambda i: (-shape[i], i))
    for i in order:
      if shape[i] % size == 0:
        out = [None] * len(shape)
        out[i] = "data"
        return P(*out)
    return P()
  spec = tuple(spec)
  if len(spec) != len(shape):
    return None  # written for another rank: the caller tries the next rule
  out = []
  used = set()
  for dim, axis in zip(shape, spec):
    if axis is None or axis in used or mesh.shape[axis] == 1 or dim % mesh.shape[axis]:
      out.append(None)
    else:
      out.append(axis)
      used.add(axis)
  return P(*out)


def tree_specs(tree, mesh: Mesh, rules) -> Any:
  """PartitionSpecs for every leaf of ``tree`` (arrays or ShapeDtypeStructs)."""
  rules = resolve_rules(rules)

  def leaf_spec(path, leaf):
    shape = getattr(leaf, "shape", ())
    name = path_str(path)
    for pattern, spec in rules:
      if re.search(pattern, name):
        out = _spec_for(shape, spec, mesh)
        if out is not None:
          return out
    return P()

  return jax.tree_util.tree_map_with_path(leaf_spec, tree)


def rule_matches(tree, rules) -> dict[str, list[str]]:
  """For each rule pattern, the leaf paths it decides (first applicable rule wins).

  Use it to check that a rule set really addresses a model's parameter paths:
  a pattern that decides no path is a typo or a stale rule.
  """
  rules = resolve_rules(rules)
  out: dict[str, list[str]] = {p: [] for p, _ in rules}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name, rank = path_str(path), len(getattr(leaf, "shape", ()))
    for pattern, spec in rules:
      if re.search(pattern, name) and (spec == "largest" or rank == 0 or len(tuple(spec)) == rank):
        out[pattern].append(name)
        break
  return out


def describe(tree, mesh: Mesh, rules) -> dict[str, P]:
  """{path: PartitionSpec} for every leaf, for logs and tests."""
  specs = tree_specs(tree, mesh, rules)
  return {
    path_str(p): s
    for p, s in jax.tree_util.tree_leaves_with_path(specs, is_leaf=lambda x: isinstance(x, P))
  }


def tree_shardings(tree, mesh: Mesh, rules) -> Any:
  return jax.tree.map(
    lambda s: NamedSharding(mesh, s),
    tree_specs(tree, mesh, rules),
    is_leaf=lambda x: isinstance(x, P),
  )


def _leading_spec(shape, mesh: Mesh) -> P:
  # Leading dimension over 'data' when it divides; otherwise replicated (e.g. scalars, keys).
  size = mesh.shape["data"]
  if len(shape) == 0 or size == 1 or shape[0] % size:
    return P()
  return P("data")


def batch_specs(tree, mesh: Mesh) -> Any:
  """PartitionSpecs putting every leaf's leading (batch) dimension over 'data'.

  For batch-leading pytrees: the KV cache (per layer ``(k, v)`` of ``[B, S, Hkv, hd]``),
  a Discop ``EmbedState``, M2 latents ``[B, h, w, d]``. Leaves whose leading size
  'data' does not divide (and scalars) are replicated.
  """
  return jax.tree.map(lambda x: _leading_spec(np.shape(x), mesh), tree)


def shard_batch(tree, mesh: Mesh) -> Any:
  """Global arrays (the same full value on every process) -> arrays sharded by ``batch_specs``."""

  def put(x):
    sharding = NamedSharding(mesh, _leading_spec(np.shape(x), mesh))
    if isinstance(x, jax.Array):
      return jax.device_put(x, sharding)
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

  return jax.tree.map(put, tree)


def spread(tree) -> Any:
  """Batch-leading arrays over this process's devices (``shard_batch`` on a local mesh).

  For evaluation with replicated params: unsharded inputs would make every device
  compute the whole batch (``--cpu_devices`` splits one CPU into several).
  """
  return shard_batch(tree, make_mesh(None, jax.local_devices()))


def to_host(tree) -> Any:
  """Every leaf's whole value as numpy on this process, also for multi-process global arrays.

  A fully replicated global array is read from this process's own copy; a sharded one is
  gathered with ``multihost_utils`` (a collective: every process must call it).
  """

  def get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return np.asarray(x)
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.tree.map(get, tree)


def replicate_local(tree) -> Any:
  """Params replicated on this process's devices, to go with ``spread`` inputs.

  Works on global arrays of a multi-process mesh (trained params): their values come to
  the host first (``to_host``), never by a cross-host ``device_put``.
  """
  return jax.device_put(to_host(tree), replicated(make_mesh(None, jax.local_devices())))


def apply_geometry(n: int, batch_size: int) -> tuple[int, int]:
  """(rows per device per call, number of calls) for ``batched_apply`` over ``n`` rows.

  Every call gives each of the job's devices the same number of rows, at most
  ``batch_size``, so a job with the same number of devices (in one process or several)
  computes every row in the same batch shape and gets bit-identical results.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be at least 1, got {batch_size}")
  devices = jax.device_count()
  rows = max(1, min(int(batch_size), -(-max(n, 1) // devices)))
  return rows, -(-n // (rows * devices)) if n else 0


def batched_apply(fn, params, inputs, batch_size: int = 128, gather: bool = True) -> Any:
  """``fn(params, batch)`` over the rows of ``inputs``, spread over every device of the job.

  Args:
    fn: a jitted function of (params, batch-leading pytree) -> batch-leading pytree; each row's
      output must depend on that row only (padding rows are computed and dropped).
    params: replicated on this process's devices (``replicate_local``; global arrays are fine).
    inputs: pytree of host arrays with a common leading size N, the same on every process.
    batch_size: at most this many rows per device per call (see ``apply_geometry``).
    gather: True: every process gets all N output rows (gathered with ``multihost_utils``);
      False: ``(outputs, row_indices)`` of the rows this process computed.
  """
  leaves = jax.tree.leaves(inputs)
  n = len(leaves[0])
  rows, calls = apply_geometry(n, batch_size)
  local, count, index = jax.local_device_count(), jax.process_count(), jax.process_index()
  per_call = rows * local  # this process's rows of one call, in device order
  # Row r of call c on process p: c * rows * devices + p * per_call + r; padding repeats row 0.
  order = np.arange(calls)[:, None] * (per_call * count) + index * per_call + np.arange(per_call)
  valid = order < n
  idx = np.where(valid, order, 0)
  params = replicate_local(params)
  if not calls:  # no rows: empty outputs of the right shapes and dtypes
    shapes = jax.eval_shape(fn, params, jax.tree.map(lambda x: np.asarray(x)[:0], inputs))
    empty = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    return empty if gather else (empty, np.zeros((0,), np.int64))
  outs = []
  for c in range(calls):
    batch = jax.tree.map(lambda x, i=idx[c]: np.asarray(x)[i], inputs)
    outs.append(to_host(fn(params, spread(batch))))
  out = jax.tree.map(lambda *xs: np.stack(xs), *outs)  # [calls, per_call, ...]
  if not gather:
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:])[valid.reshape(-1)], out), order[valid]
  if count > 1:
    out = multihost_utils.process_allgather(out)  # [processes, calls, per_call, ...]
    out = jax.tree.map(lambda x: np.swapaxes(x, 0, 1), out)
  return jax.tree.map(lambda x: x.reshape(-1, *x.shape[(3 if count > 1 else 2) :])[:n], out)


def constrain_batch(tree, mesh: Mesh) -> Any:
  """Inside jit: ``with_sharding_constraint`` of every leaf to ``batch_specs``."""
  return jax.tree.map(
    lambda x: jax.lax.with_sharding_constraint(
      x, NamedSharding(mesh, _leading_spec(x.shape, mesh))
    ),
    tree,
  )


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension over 'data', the rest replicated."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def process_rows(global_rows):
  """This process's contiguous block of a global batch (what ``put_batch`` expects).

  A ``batch_fn`` draws the same global batch on every process and keeps its block, so the
  trained model does not depend on the number of processes.
  """
  rows = np.asarray(global_rows)
  count, index = jax.process_count(), jax.process_index()
  if len(rows) % count:
    raise errors.ConfigError(
      f"global batch of {len(rows)} rows is not divisible by {count} processes"
    )
  per = len(rows) // count
  return rows[index * per : (index + 1) * per]


def put_batch(batch, mesh: Mesh):
  """Host batch (this process's rows) -> global arrays sharded over 'data'."""
  sharding = batch_sharding(mesh)

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0:
      return jax.device_put(x, replicated(mesh))
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree.map(put, batch)
