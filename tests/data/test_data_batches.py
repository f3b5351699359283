"""grain loader, .npy cache and resumable batch streams: determinism, sharding, resume."""

import os

import numpy as np
import pytest

from stegjax import data
from stegjax.data import pipeline


def _id_source(n):
  """A random-access source whose label is the record id (image encodes it too)."""
  return [
    {"image": np.full((2, 2, 3), i % 256, np.uint8), "label": np.int64(i), "extra": "dropped"}
    for i in range(n)
  ]


def _ids(loader):
  return [b["label"].tolist() for b in loader]


def test_loader_yields_image_label_batches_deterministically():
  src = _id_source(23)
  batches = list(data.make_loader(src, 4, seed=7, num_epochs=2, shard_index=0, shard_count=1))
  assert len(batches) == (23 * 2) // 4  # batches run on across the epoch boundary
  b = batches[0]
  assert set(b) == {"image", "label"}
  assert b["image"].shape == (4, 2, 2, 3) and b["image"].dtype == np.uint8
  assert b["label"].shape == (4,) and b["label"].dtype == np.int32
  np.testing.assert_array_equal(b["image"][:, 0, 0, 0], b["label"] % 256)
  again = _ids(data.make_loader(src, 4, seed=7, num_epochs=2, shard_index=0, shard_count=1))
  assert again == [x["label"].tolist() for x in batches]
  other = _ids(data.make_loader(src, 4, seed=8, num_epochs=2, shard_index=0, shard_count=1))
  assert other != again
  flat = sum(again, [])
  assert flat != sorted(flat)  # shuffled
  unshuffled = _ids(
    data.make_loader(src, 4, seed=7, shuffle=False, num_epochs=1, shard_index=0, shard_count=1)
  )
  assert sum(unshuffled, []) == list(range(20))


def test_one_epoch_without_drop_reads_every_record_once():
  src = _id_source(23)
  ids = sum(
    _ids(
      data.make_loader(
        src, 5, seed=1, num_epochs=1, drop_remainder=False, shard_index=0, shard_count=1
      )
    ),
    [],
  )
  assert sorted(ids) == list(range(23))


@pytest.mark.parametrize("n,shards", [(23, 3), (24, 4)])
def test_shards_are_disjoint_and_cover_the_data(n, shards):
  src = _id_source(n)
  per_shard = [
    sum(
      _ids(
        data.make_loader(
          src, 2, seed=5, num_epochs=1, drop_remainder=False, shard_index=i, shard_count=shards
        )
      ),
      [],
    )
    for i in range(shards)
  ]
  flat = sum(per_shard, [])
  assert sorted(flat) == list(range(n))  # cover, and disjoint (no id twice)
  # With drop_remainder every process gets the same number of full batches (lockstep).
  counts = {
    len(_ids(data.make_loader(src, 2, seed=5, num_epochs=1, shard_index=i, shard_count=shards)))
    for i in range(shards)
  }
  assert counts == {(n // shards) // 2}


@pytest.mark.parametrize("drop", [False, True])
def test_shard_ranges_match_grain_shard_options(drop):
  import grain.python as grain

  for n, count in ((23, 3), (24, 4), (5, 5), (7, 2)):
    for i in range(count):
      sampler = grain.IndexSampler(
        num_records=n, shuffle=False, num_epochs=1, shard_options=grain.ShardOptions(i, count, drop)
      )
      keys = []
      for k in range(i, n + count, count):  # this shard's global sampler indices
        try:
          keys.append(sampler[k].record_key)
        except IndexError:
          break
      assert list(pipeline.shard_range(n, i, count, drop)) == keys, (n, count, i)


def test_infinite_loader_reshuffles_each_epoch():
  src = _id_source(12)
  it = iter(data.make_loader(src, 4, seed=3, shard_index=0, shard_count=1))
  epochs = [sum((next(it)["label"].tolist() for _ in range(3)), []) for _ in range(3)]
  assert all(sorted(e) == list(range(12)) for e in epochs)
  assert len({tuple(e) for e in epochs}) == 3


@pytest.mark.slow
def test_worker_processes_give_the_same_stream():
  src = _id_source(50)
  kw = dict(seed=1, num_epochs=2, shard_index=1, shard_count=2)
  assert _ids(data.make_loader(src, 4, worker_count=2, **kw)) == _ids(
    data.make_loader(src, 4, **kw)
  )


def test_loader_defaults_to_jax_process_shard_and_rejects_bad_args():
  src = _id_source(8)
  assert sorted(sum(_ids(data.make_loader(src, 2, seed=0, num_epochs=1)), [])) == list(range(8))
  with pytest.raises(ValueError, match="shard_index"):
    data.make_loader(src, 2, seed=0, shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="batch_size"):
    data.make_loader(src, 0, seed=0)


def test_loader_over_tfds_source_matches_arrays(tiny_photos, tiny_config):
  train, _, _, config, data_dir = tiny_photos
  src = data.get_sources(config, data_dir)["train"]
  n = len(src)
  got = [
    data.make_loader(
      src, 3, seed=2, num_epochs=1, drop_remainder=False, shard_index=i, shard_count=2
    )
    for i in range(2)
  ]
  images = np.concatenate([b["image"] for loader in got for b in loader])
  assert images.shape == (n, 8, 8, 3)
  key = lambda a: sorted(x.tobytes() for x in a)
  assert key(images) == key(np.asarray(train["image"]))


def test_load_arrays_caches_npy_memmaps(tiny_photos):
  train, _, info, _, _ = tiny_photos
  d = info["dataset_dir"]
  assert isinstance(train["image"], np.memmap)
  assert os.path.exists(os.path.join(d, "arrays", "train.image.npy"))
  # The cache holds exactly what the record source decodes, in record order.
  import tensorflow_datasets as tfds

  decoded = pipeline.decode_all(
    tfds.builder_from_directory(d).as_data_source(split="train"), chunk=7
  )
  assert set(decoded) == set(train)
  for k in decoded:
    np.testing.assert_array_equal(decoded[k], train[k])
  with pytest.raises(ValueError, match="split 'test'"):
    data.load_arrays(d, "test")
  with pytest.raises(FileNotFoundError):
    data.load_arrays(os.path.dirname(d), "train")


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
  with pytest.raises(ValueError, match="does not fit"):
    data.batches_from(train, 10_000, seed=0)
  with pytest.raises(KeyError, match="nope"):
    data.batches_from(train, 2, seed=0, keys=("nope",))
  with pytest.raises(ValueError, match="step"):
    data.batches_from(train, 2, seed=0, start_step=-1)
