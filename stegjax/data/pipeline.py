"""Input pipelines over prepared patch datasets.

* ``make_loader``: a grain pipeline over a random-access source (e.g.
  ``tfds.data_source(...)[split]``), deterministic for a seed and sharded per
  process, yielding ``{"image": uint8[B,P,P,3], "label": int32[B]}``.
* ``load_arrays``: every example of a split decoded once and cached as ``.npy``
  files next to the dataset, then opened as memory maps (about 50x faster than
  reading records in hot loops).
* ``batches_from``: a deterministic batch stream over such arrays that can start
  at any step, so a resumed run sees exactly the batches an uninterrupted run
  would have seen from that step on.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Mapping, Sequence

import grain.python as grain
import jax
import numpy as np

ARRAYS_DIRNAME = "arrays"
LOADER_KEYS = ("image", "label")


def _select_and_cast(element):
  # Keep image and label; label as int32 (TFDS stores ClassLabel as int64).
  return {
    "image": np.asarray(element["image"], np.uint8),
    "label": np.asarray(element["label"], np.int32),
  }


def _check_shard(shard_index: int, shard_count: int):
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index} of {shard_count}")


def shard_range(n: int, shard_index: int, shard_count: int, drop_remainder: bool) -> range:
  """Record ids of one shard: contiguous blocks as ``grain.ShardOptions`` defines them."""
  _check_shard(shard_index, shard_count)
  if drop_remainder:  # equal shards: the last n % shard_count records are left out
    size = n // shard_count
    return range(shard_index * size, (shard_index + 1) * size)
  size, extra = divmod(n, shard_count)  # the first `extra` shards hold one more
  start = shard_index * size + min(shard_index, extra)
  return range(start, start + size + (shard_index < extra))


def make_loader(
  source: Sequence[Mapping[str, Any]],
  batch_size: int,
  seed: int,
  shuffle: bool = True,
  num_epochs: int | None = None,
  shard_index: int | None = None,
  shard_count: int | None = None,
  drop_remainder: bool = True,
  worker_count: int = 0,
) -> grain.IterDataset:
  """A grain pipeline over ``source``; iterate it for batches of this process's shard.

  Built with grain's dataset API (``MapDataset``: shard, shuffle, repeat, map,
  batch); ``grain.DataLoader`` is not used because in grain 0.2.18 it drops a
  record from each larger shard when the record count does not divide evenly
  (its per-shard length is ``num_records // shard_count``).

  Args:
    source: a random-access source (``len`` and ``__getitem__``), e.g. a TFDS
      array_record data source for one split.
    batch_size: examples per batch of this process.
    seed: shuffling seed; the same seed gives the same batches.
    shuffle: shuffle this shard's records, with a new order every epoch.
    num_epochs: passes over the data; None repeats forever.
    shard_index, shard_count: this process's shard (default: the JAX process
      index and count). Shards are disjoint contiguous ranges of record ids, as
      ``grain.ShardOptions`` / ``ShardByJaxProcess`` define them.
    drop_remainder: drop the last partial batch and make every shard the same
      size (dropping up to ``shard_count - 1`` records) so that processes step
      in lockstep; with False every record is read exactly once per epoch.
    worker_count: grain worker processes (0 reads in this process). Batches are
      formed before the workers split the work, so the stream is the same for
      any worker count. Unparsed absl flags are marked parsed (grain's workers
      read them), as ``stegjax.main`` would have done.

  Returns:
    A ``grain.IterDataset``; iterating it yields ``{"image", "label"}`` dicts,
    and its iterator has ``get_state``/``set_state`` for checkpointing.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
  if worker_count < 0:
    raise ValueError(f"worker_count must be non-negative, got {worker_count}")
  shard_index = jax.process_index() if shard_index is None else shard_index
  shard_count = jax.process_count() if shard_count is None else shard_count
  _check_shard(shard_index, shard_count)
  n = len(source)
  if n < shard_count:
    raise ValueError(f"{n} records cannot be split into {shard_count} shards")
  ids = shard_range(n, shard_index, shard_count, drop_remainder)
  ds = grain.MapDataset.source(source)[ids.start : ids.stop]
  if shuffle:
    ds = ds.shuffle(seed=seed)  # followed by repeat: a fresh permutation per epoch
  ds = ds.repeat(num_epochs).map(_select_and_cast)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  it = ds.to_iter_dataset()
  if worker_count > 0:
    from absl import flags  # pylint: disable=g-import-not-at-top

    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags (defaults are fine)
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it


# ----------------------------------------------------------------------------- arrays


def _atomic_save(path: str, array: np.ndarray):
  tmp = f"{path}.tmp{os.getpid()}.npy"
  np.save(tmp, array)
  os.replace(tmp, path)  # readers never see a half-written file


def decode_all(source: Sequence[Mapping[str, Any]], chunk: int = 1024) -> dict[str, np.ndarray]:
  """Reads every record of ``source`` in order into stacked numpy arrays."""
  n = len(source)
  if n == 0:
    raise ValueError("the source is empty")
  parts: dict[str, list[np.ndarray]] = {}
  get_many = getattr(source, "__getitems__", None)
  for start in range(0, n, chunk):
    ids = list(range(start, min(n, start + chunk)))
    records = get_many(ids) if get_many is not None else [source[i] for i in ids]
    for k in records[0]:
      parts.setdefault(k, []).append(np.stack([np.asarray(r[k]) for r in records]))
  out = {k: np.concatenate(v) for k, v in parts.items()}
  for k in ("label", "source"):  # TFDS widens integer scalars to int64
    if k in out:
      out[k] = out[k].astype(np.int32)
  return out


def load_arrays(dataset_dir: str, split: str, mmap: bool = True) -> dict[str, np.ndarray]:
  """All examples of ``split`` as arrays, cached as ``.npy`` beside the dataset.

  Args:
    dataset_dir: a prepared TFDS dataset directory (the one holding
      ``dataset_info.json``), e.g. ``get_dataset(...)[2]["dataset_dir"]``.
    split: split name, e.g. ``"train"`` or ``"heldout"``.
    mmap: open the cached arrays as read-only memory maps.

  Returns:
    ``{"image": uint8[N,P,P,3], "label": int32[N], ...}`` in record order.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if not os.path.exists(os.path.join(dataset_dir, "dataset_info.json")):
    raise FileNotFoundError(f"{dataset_dir!r} is not a prepared TFDS dataset directory")
  cache = os.path.join(dataset_dir, ARRAYS_DIRNAME)
  done = os.path.join(cache, f"{split}.keys.txt")  # written last: marks a complete cache
  if not os.path.exists(done):
    builder = tfds.builder_from_directory(dataset_dir)
    if split not in builder.info.splits:
      raise ValueError(f"split {split!r} not in {dataset_dir!r} (has {list(builder.info.splits)})")
    arrays = decode_all(builder.as_data_source(split=split))
    os.makedirs(cache, exist_ok=True)
    for k, v in arrays.items():
      _atomic_save(os.path.join(cache, f"{split}.{k}.npy"), v)
    with open(f"{done}.tmp{os.getpid()}", "w") as f:
      f.write("\n".join(sorted(arrays)) + "\n")
    os.replace(f"{done}.tmp{os.getpid()}", done)
  with open(done) as f:
    keys = f.read().split()
  return {
    k: np.load(os.path.join(cache, f"{split}.{k}.npy"), mmap_mode="r" if mmap else None)
    for k in keys
  }


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
    raise ValueError(f"batch size {batch_size} x {shard_count} shards does not fit {n} examples")
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
  missing = [k for k in keys if k not in arrays]
  if missing:
    raise KeyError(f"arrays have no {missing}; available: {list(arrays)}")
  n = len(arrays[keys[0]])
  for k in keys:
    if len(arrays[k]) != n:
      raise ValueError(f"arrays differ in length: {keys[0]} has {n}, {k} has {len(arrays[k])}")
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
