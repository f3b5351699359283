"""Resumable per-process batches over arrays: determinism, sharding, resume."""

import numpy as np
import pytest

from stegjax import data, errors


@pytest.mark.parametrize("drop", [False, True])
def test_shard_ranges_are_disjoint_blocks_that_cover_or_equalize(drop):
  for n, count in ((23, 3), (24, 4), (5, 5), (7, 2)):
    ranges = [data.shard_range(n, i, count, drop) for i in range(count)]
    flat = [i for r in ranges for i in r]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)  # contiguous, disjoint
    sizes = {len(r) for r in ranges}
    if drop:  # lockstep: equal shards, at most count - 1 records left out
      assert sizes == {n // count} and n - len(flat) < count
    else:  # every record once, sizes differ by at most one
      assert flat == list(range(n)) and max(sizes) - min(sizes) <= 1
  assert data.shard_range(10) == range(10)  # default: this process's shard of 1
  with pytest.raises(ValueError, match="shard_index"):
    data.shard_range(10, 2, 2)


def _arrays(n):
  return {
    "image": np.arange(n, dtype=np.int64)[:, None] * np.ones((1, 3), np.int64),
    "label": np.arange(n, dtype=np.int32),
  }


def test_resumed_batches_equal_the_uninterrupted_stream():
  a = _arrays(26)
  full = [b["label"].tolist() for b in data.batches_from(a, 4, seed=9, num_steps=20)]
  for k in (0, 1, 5, 6, 13):  # 6 steps per epoch: resume inside and at epoch boundaries
    resumed = [
      b["label"].tolist() for b in data.batches_from(a, 4, seed=9, start_step=k, num_steps=20 - k)
    ]
    assert resumed == full[k:]
  for k in range(20):
    assert data.batch_indices(26, 4, 9, k).tolist() == full[k]
  # Each epoch draws distinct records in a fresh order.
  e0, e1 = sum(full[:6], []), sum(full[6:12], [])
  assert len(set(e0)) == 24 and len(set(e1)) == 24 and e0 != e1
  batch = next(data.batches_from(a, 4, seed=9))
  np.testing.assert_array_equal(batch["image"][:, 0], batch["label"])  # rows stay aligned


def test_batches_from_shards_split_the_global_batch():
  a = _arrays(30)
  glob = [b["label"].tolist() for b in data.batches_from(a, 6, seed=1, num_steps=8)]
  parts = [
    [
      b["label"].tolist()
      for b in data.batches_from(a, 2, seed=1, shard_index=i, shard_count=3, num_steps=8)
    ]
    for i in range(3)
  ]
  for step in range(8):
    assert sum((p[step] for p in parts), []) == glob[step]


def test_batches_from_over_memmaps_and_bad_args(tiny_photos):
  train, _, _, _, _ = tiny_photos
  it = data.batches_from(train, 5, seed=0, keys=("image", "label"))
  b = next(it)
  assert set(b) == {"image", "label"} and b["image"].shape == (5, 8, 8, 3)
  idx = data.batch_indices(len(train["label"]), 5, 0, 0)
  np.testing.assert_array_equal(b["image"], train["image"][idx])
  with pytest.raises(errors.ConfigError, match="does not fit"):
    data.batches_from(train, 10_000, seed=0)
  with pytest.raises(KeyError, match="nope"):
    data.batches_from(train, 2, seed=0, keys=("nope",))
  with pytest.raises(ValueError, match="step"):
    data.batches_from(train, 2, seed=0, start_step=-1)
