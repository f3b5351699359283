"""The one entry point experiments call: config -> prepared patch dataset.

  from stegjax import data
  config.data = data.default_config()               # in configs/*.py
  train, heldout, info = data.get_dataset(config.data, workdir)
  for batch in data.batches_from(train, 64, seed=0, start_step=state.step,
                                 keys=("image", "label")):
    ...

``get_dataset`` builds the TFDS array_record dataset under ``data_dir`` once
(later calls with the same config reuse it; a changed config builds a new one
beside it), caches both splits as ``.npy`` memory maps and returns them with an
``info`` dict. ``get_sources`` gives the TFDS data sources instead, for
``make_loader`` (grain) or datasets too large for memory maps.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from stegjax.data import builders
from stegjax.data import photos as photos_lib
from stegjax.data import pipeline


def default_config() -> ml_collections.ConfigDict:
  """The ``config.data`` fields (every one overridable: ``--config.data.patch_size=16``)."""
  c = ml_collections.ConfigDict()
  c.folder = ""  # non-empty: patches of every image under this folder
  c.patch_size = 32  # patch side P in pixels
  c.patches_per_photo = 256  # train patches per training image
  c.heldout_patches_per_photo = 64  # heldout patches per held-out image
  c.scales = (1.0, 0.5, 0.25)  # patch pixels per source pixel; crop side = P / scale
  c.flip = True  # random horizontal flips
  c.seed = 0  # crop/flip draws
  c.heldout = photos_lib.DEFAULT_HELDOUT  # bundled photos held out whole (folder: file paths)
  c.folder_heldout_fraction = 0.1  # folder without `heldout` files: this fraction held out
  return c


_KNOWN = set(default_config().keys())


def _field(config_data, name: str, default: Any = None) -> Any:
  return (
    config_data.get(name, default)
    if hasattr(config_data, "get")
    else getattr(config_data, name, default)
  )


def builder_for(config_data, data_dir: str) -> tfds.core.GeneratorBasedBuilder:
  """The (unprepared) TFDS builder a ``config.data`` describes, rooted at ``data_dir``."""
  unknown = sorted(set(config_data.keys()) - _KNOWN) if hasattr(config_data, "keys") else []
  if unknown:
    raise ValueError(f"unknown config.data field(s) {unknown}; known: {sorted(_KNOWN)}")
  d = default_config()
  opts = {
    k: _field(config_data, k, d[k])
    for k in (
      "patch_size",
      "patches_per_photo",
      "heldout_patches_per_photo",
      "scales",
      "flip",
      "seed",
    )
  }
  opts["scales"] = tuple(opts["scales"])
  folder = _field(config_data, "folder", "")
  if folder:
    heldout = _field(config_data, "heldout", ())
    # The bundled-photo default names no files of a user's folder: use the fraction.
    if tuple(heldout) == photos_lib.DEFAULT_HELDOUT:
      heldout = ()
    config = builders.FolderPatchesConfig.make(
      folder,
      heldout=tuple(heldout),
      heldout_fraction=_field(config_data, "folder_heldout_fraction", 0.1),
      **opts,
    )
    cls = builders.FolderPatches
  else:
    config = builders.PhotoPatchesConfig.make(
      heldout=tuple(_field(config_data, "heldout", d.heldout)), **opts
    )
    cls = builders.PhotoPatches
  return cls(config=config, data_dir=data_dir, file_format="array_record")


def prepare(config_data, data_dir: str) -> str:
  """Builds the dataset under ``data_dir`` unless present; returns its directory.

  In a multi-process job process 0 builds and the others wait at a barrier
  (``data_dir`` must then be on a filesystem all processes share).
  """
  import jax  # pylint: disable=g-import-not-at-top

  builder = builder_for(config_data, data_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:
      builder.download_and_prepare()
    multihost_utils.sync_global_devices("stegjax.data.prepare")
  else:
    builder.download_and_prepare()  # a no-op when already prepared
  return os.fspath(builder.data_dir)


def get_sources(config_data, data_dir: str) -> dict[str, Any]:
  """``{"train": ..., "heldout": ...}``: TFDS array_record data sources for ``make_loader``."""
  dataset_dir = prepare(config_data, data_dir)
  builder = tfds.builder_from_directory(dataset_dir)
  return {split: builder.as_data_source(split=split) for split in builders.SPLITS}


def get_dataset(config_data, data_dir: str) -> tuple[dict, dict, dict]:
  """Prepares the patch dataset of ``config_data`` under ``data_dir`` and loads it.

  Args:
    config_data: ``config.data`` (see ``default_config``).
    data_dir: where datasets live, normally the experiment's workdir.

  Returns:
    ``(train, heldout, info)``: ``train`` and ``heldout`` map ``"image"``
    (uint8[N,P,P,3]), ``"label"`` (int32[N]), ``"source"`` (int32[N]), ``"crop"``
    (int32[N,3]) and ``"flipped"`` (bool[N]) to read-only memory maps; ``info``
    holds ``dataset_dir``, ``patch_size``, ``num_classes``, ``class_names``,
    ``num_train``, ``num_heldout``, ``heldout_images`` and ``train_labels``
    (the labels that occur in train).
  """
  dataset_dir = prepare(config_data, data_dir)
  train = pipeline.load_arrays(dataset_dir, "train")
  heldout = pipeline.load_arrays(dataset_dir, "heldout")
  builder = tfds.builder_from_directory(dataset_dir)
  label = builder.info.features["label"]
  meta = builder.info.metadata or {}
  info = {
    "dataset_dir": dataset_dir,
    "patch_size": int(builder.info.features["image"].shape[0]),
    "num_classes": int(label.num_classes),
    "class_names": list(label.names),
    "num_train": int(len(train["label"])),
    "num_heldout": int(len(heldout["label"])),
    "heldout_images": list(meta.get("heldout", [])),
    "train_labels": sorted({int(x) for x in set(train["label"].tolist())}),
  }
  return train, heldout, info
