"""Data: bundled photos, TFDS array_record patch builders and input pipelines.

Entry point for experiments: ``get_dataset(config.data, workdir) -> (train,
heldout, info)`` (see ``stegjax.data.dataset``); ``default_config()`` gives the
``config.data`` fields.
"""

from stegjax.data.dataset import builder_for, default_config, get_dataset, get_sources, prepare
from stegjax.data.photos import DEFAULT_HELDOUT, PHOTO_NAMES, load_photo, load_photos
from stegjax.data.pipeline import batch_indices, batches_from, load_arrays, make_loader

__all__ = [
  "DEFAULT_HELDOUT",
  "PHOTO_NAMES",
  "batch_indices",
  "batches_from",
  "builder_for",
  "default_config",
  "get_dataset",
  "get_sources",
  "load_arrays",
  "load_photo",
  "load_photos",
  "make_loader",
  "prepare",
]
