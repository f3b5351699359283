"""Data: bundled photos, users' image folders, patch datasets as ``.npy`` memory maps, and
deterministic per-process batches.

Entry point for experiments: ``get_dataset(config.data, workdir) -> (train, heldout, info)``
(see ``stegjax.data.dataset``); ``default_config()`` gives the ``config.data`` fields;
``process_batch_fn`` / ``batch_indices`` give each process its rows of every batch.
"""

from stegjax.data.batches import batch_indices, batches_from, process_batch_fn, shard_range
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
  "process_batch_fn",
  "shard_range",
]
