"""Data: bundled photos, users' image folders, patch datasets as ``.npy`` memory maps, and
deterministic per-process batches.

Entry point for experiments: ``get_dataset(config.data, workdir) -> (train, heldout, info)``
(see ``stegjax.data.dataset``); ``default_config()`` gives the ``config.data`` fields;
``batch_indices`` gives the rows of every batch (each process keeps its block).
"""

from stegjax.data.batches import batch_indices, batches_from, shard_range
from stegjax.data.dataset import default_config, get_dataset, load_arrays, prepare
from stegjax.data.folder import list_images, load_images
from stegjax.data.photos import DEFAULT_HELDOUT, PHOTO_NAMES, load_photo, load_photos

__all__ = [
  "DEFAULT_HELDOUT",
  "PHOTO_NAMES",
  "batch_indices",
  "batches_from",
  "default_config",
  "get_dataset",
  "list_images",
  "load_arrays",
  "load_images",
  "load_photo",
  "load_photos",
  "prepare",
  "shard_range",
]
