"""Deterministic, resumable, per-process batches over arrays (``.npy`` memory maps).

* ``batch_indices(n, b, seed, step, ...)``: the record ids of one process's batch at a
  global step, a pure function, so a resumed run reads exactly the batches an uninterrupted
  run would have read from that step on.
  A multi-process ``batch_fn`` keeps this process's block of the global batch
  (``train.sharding.process_rows``) and reads only those rows from the memory maps, so every
  host of a multi-host job reads just its own shard.
* ``batches_from``: the same batches as an iterator that can start at any step.
* ``shard_range``: one process's contiguous block of records (e.g. of an evaluation split).
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import jax
import numpy as np

from stegjax import errors


def _check_shard(shard_index: int, shard_count: int):
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index} of {shard_count}")


def shard_range(
  n: int, shard_index: int | None = None, shard_count: int | None = None, drop_remainder=False
) -> range:
  """Record ids of one shard (default: this JAX process's): contiguous blocks.

  With ``drop_remainder`` every shard has ``n // shard_count`` records (processes stay in
  lockstep); without it the first ``n % shard_count`` shards hold one more and every record
  belongs to exactly one shard.
  """
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  _check_shard(shard_index, shard_count)
  if drop_remainder:
    size = n // shard_count
    return range(shard_index * size, (shard_index + 1) * size)
  size, extra = divmod(n, shard_count)
  start = shard_index * size + min(shard_index, extra)
  return range(start, start + size + (shard_index < extra))


def _epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
  if not shuffle:
    return np.arange(n)
  key = jax.random.fold_in(jax.random.key(seed), epoch)
  return np.asarray(jax.random.permutation(key, n))


def _check_batching(n, batch_size, step, shard_index, shard_count) -> tuple[int, int]:
  """Validates arguments; returns (global batch size, steps per epoch)."""
  _check_shard(shard_index, shard_count)
  global_batch = batch_size * shard_count
  if batch_size < 1 or global_batch > n:
    raise errors.ConfigError(
      f"batch size {batch_size} x {shard_count} processes does not fit {n} examples"
    )
  if step < 0:
    raise ValueError(f"step must be non-negative, got {step}")
  return global_batch, n // global_batch


def batch_indices(
  n: int,
  batch_size: int,
  seed: int,
  step: int,
  shuffle: bool = True,
  shard_index: int = 0,
  shard_count: int = 1,
) -> np.ndarray:
  """Record indices of this shard's batch at global ``step`` (a pure function).

  Step ``s`` takes global batch ``s mod steps_per_epoch`` of epoch
  ``s // steps_per_epoch`` (an epoch is a fresh permutation keyed by (seed,
  epoch), remainder dropped); the global batch has ``batch_size * shard_count``
  records and shard ``i`` gets the ``i``-th contiguous block of it.
  """
  global_batch, steps_per_epoch = _check_batching(n, batch_size, step, shard_index, shard_count)
  epoch, pos = divmod(step, steps_per_epoch)
  order = _epoch_order(seed, epoch, n, shuffle)
  start = pos * global_batch + shard_index * batch_size
  return order[start : start + batch_size]


def _check_arrays(arrays: Mapping[str, np.ndarray], keys: Sequence[str]) -> int:
  missing = [k for k in keys if k not in arrays]
  if missing:
    raise KeyError(f"arrays have no {missing}; available: {list(arrays)}")
  n = len(arrays[keys[0]])
  for k in keys:
    if len(arrays[k]) != n:
      raise ValueError(f"arrays differ in length: {keys[0]} has {n}, {k} has {len(arrays[k])}")
  return n


def batches_from(
  arrays: Mapping[str, np.ndarray],
  batch_size: int,
  seed: int,
  start_step: int = 0,
  shuffle: bool = True,
  keys: Sequence[str] | None = None,
  shard_index: int = 0,
  shard_count: int = 1,
  num_steps: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields the batches of steps ``start_step, start_step + 1, ...`` (forever by default).

  ``batches_from(a, b, seed, start_step=k)`` yields exactly what
  ``batches_from(a, b, seed)`` yields after skipping ``k`` batches, without
  reading them. For multi-process runs pass ``shard_index=jax.process_index()``,
  ``shard_count=jax.process_count()``: each process gets its ``batch_size``
  block of the same global batch.
  """
  keys = tuple(arrays) if keys is None else tuple(keys)
  n = _check_arrays(arrays, keys)
  # Validate now, not at the first next(): errors belong to the caller's line.
  global_batch, steps_per_epoch = _check_batching(
    n, batch_size, start_step, shard_index, shard_count
  )

  def gen():
    step, cached_epoch, order = start_step, None, None
    while num_steps is None or step < start_step + num_steps:
      epoch, pos = divmod(step, steps_per_epoch)
      if epoch != cached_epoch:  # one permutation per epoch, not per batch
        cached_epoch, order = epoch, _epoch_order(seed, epoch, n, shuffle)
      start = pos * global_batch + shard_index * batch_size
      idx = np.sort(order[start : start + batch_size])  # sorted reads are kinder to memmaps
      perm = np.argsort(np.argsort(order[start : start + batch_size]))
      yield {k: np.asarray(arrays[k][idx])[perm] for k in keys}
      step += 1

  return gen()
