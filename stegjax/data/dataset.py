"""The one entry point experiments call: config -> prepared patch dataset.

  from stegjax import data
  config.data = data.default_config()               # in configs/*.py
  train, heldout, info = data.get_dataset(config.data, workdir)
  rows = sharding.process_rows(np.sort(data.batch_indices(len(train["label"]), 64, 0, step)))

The patches (``stegjax.data.patches``) of the bundled photos (``photos``) or of a user's
folder (``folder``, when ``config.data.folder`` is set) are built once under
``data_dir/<name>`` (the name hashes every option that changes the bytes, and for a folder
its listing, so a changed config builds a new dataset beside the old one), stored as one
``.npy`` file per field and split, and opened as read-only memory maps: each process reads
only the rows of its own batches. ``info.json`` is written last and marks a complete build.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections
import numpy as np

from stegjax import errors, files
from stegjax.data import folder as folder_lib
from stegjax.data import patches
from stegjax.data import photos as photos_lib

INFO = "info.json"
FIELDS = ("image", "label", "source", "crop", "flipped")
_PATCH_OPTIONS = (
  "patch_size",
  "patches_per_photo",
  "heldout_patches_per_photo",
  "scales",
  "flip",
  "seed",
)


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
  if hasattr(config_data, "get"):
    return config_data.get(name, default)
  return getattr(config_data, name, default)


def spec(config_data) -> dict:
  """The validated options a ``config.data`` describes, plus ``name`` (its directory)."""
  unknown = sorted(set(config_data.keys()) - _KNOWN) if hasattr(config_data, "keys") else []
  if unknown:
    raise errors.ConfigError(f"unknown config.data field(s) {unknown}; known: {sorted(_KNOWN)}")
  d = default_config()
  s = {k: _field(config_data, k, d[k]) for k in _PATCH_OPTIONS}
  patches.validate_options(
    s["patch_size"], s["scales"], s["patches_per_photo"], s["heldout_patches_per_photo"]
  )
  s.update(
    patch_size=int(s["patch_size"]),
    patches_per_photo=int(s["patches_per_photo"]),
    heldout_patches_per_photo=int(s["heldout_patches_per_photo"]),
    scales=[float(x) for x in s["scales"]],
    flip=bool(s["flip"]),
    seed=int(s["seed"]),
  )
  folder = _field(config_data, "folder", "")
  heldout = list(_field(config_data, "heldout", d.heldout))
  if not folder:
    photos_lib.split_names(heldout)  # validates the names
    s.update(heldout=heldout)
    return {**s, "name": f"photos_p{s['patch_size']}_{files.fingerprint(s)}"}
  # The bundled-photo default names no files of a user's folder: use the fraction.
  folder = os.path.abspath(os.path.expanduser(folder))
  rel, _, _ = folder_lib.list_images(folder)
  s.update(
    folder=folder,
    heldout=[] if tuple(heldout) == photos_lib.DEFAULT_HELDOUT else heldout,
    heldout_fraction=float(_field(config_data, "folder_heldout_fraction", 0.1)),
  )
  folder_lib.folder_split(len(rel), s["seed"], s["heldout"], s["heldout_fraction"], rel)
  contents = folder_lib.contents_fingerprint(folder, rel)
  return {**s, "name": f"folder_p{s['patch_size']}_{files.fingerprint(s, contents)}"}


def _photo_splits(s: dict) -> tuple[dict, dict]:
  train, held = photos_lib.split_names(s["heldout"])
  names = {"train": train, "heldout": held}
  label = photos_lib.PHOTO_NAMES.index  # a photo's label is also its source index

  def images(split):
    for name, image in photos_lib.load_photos(names[split]):
      yield name, image, label(name), label(name)

  sources = {split: images(split) for split in patches.SPLITS}
  meta = {"class_names": list(photos_lib.PHOTO_NAMES), "heldout_images": list(held)}
  return sources, meta


def _folder_splits(s: dict) -> tuple[dict, dict]:
  rel, class_names, labels = folder_lib.list_images(s["folder"])
  train, held = folder_lib.folder_split(
    len(rel), s["seed"], s["heldout"], s["heldout_fraction"], rel
  )

  def images(indices):
    for i in indices:
      yield rel[i], folder_lib.read_rgb(os.path.join(s["folder"], rel[i])), labels[i], i

  sources = {"train": images(train), "heldout": images(held)}
  meta = {"class_names": class_names, "heldout_images": [rel[i] for i in held], "files": rel}
  return sources, meta


def _build(s: dict, dataset_dir: str):
  sources, meta = (_folder_splits if "folder" in s else _photo_splits)(s)
  counts = {}
  for split in patches.SPLITS:
    n = s["patches_per_photo" if split == "train" else "heldout_patches_per_photo"]
    arrays = patches.split_arrays(
      split, sources[split], n, s["patch_size"], s["scales"], s["flip"], s["seed"]
    )
    for k in FIELDS:
      files.atomic_write(
        os.path.join(dataset_dir, f"{split}.{k}.npy"), lambda f, a=arrays[k]: np.save(f, a)
      )
    counts[split] = int(len(arrays["label"]))
  info = {**meta, "options": {k: v for k, v in s.items() if k != "name"}, "counts": counts}
  files.atomic_write(os.path.join(dataset_dir, INFO), json.dumps(info, indent=1))


def prepare(config_data, data_dir: str) -> str:
  """Builds the dataset under ``data_dir`` unless present; returns its directory.

  In a multi-process job process 0 builds and the others wait at a barrier
  (``data_dir`` must then be on a filesystem all processes share).
  """
  import jax  # pylint: disable=g-import-not-at-top

  s = spec(config_data)
  dataset_dir = os.path.join(os.path.abspath(data_dir), s["name"])
  if jax.process_index() == 0 and not os.path.exists(os.path.join(dataset_dir, INFO)):
    _build(s, dataset_dir)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices("stegjax.data.prepare")
  return dataset_dir


def load_arrays(dataset_dir: str, split: str) -> dict[str, np.ndarray]:
  """``{"image": uint8[N,P,P,3], "label": int32[N], ...}``: read-only memory maps of a split."""
  if split not in patches.SPLITS:
    raise ValueError(f"split {split!r} is not one of {patches.SPLITS}")
  if not os.path.exists(os.path.join(dataset_dir, INFO)):
    raise errors.MissingFileError(f"{dataset_dir!r} holds no prepared dataset ({INFO})")
  return {k: np.load(os.path.join(dataset_dir, f"{split}.{k}.npy"), mmap_mode="r") for k in FIELDS}


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
  train = load_arrays(dataset_dir, "train")
  heldout = load_arrays(dataset_dir, "heldout")
  with open(os.path.join(dataset_dir, INFO)) as f:
    meta = json.load(f)
  info = {
    "dataset_dir": dataset_dir,
    "patch_size": int(meta["options"]["patch_size"]),
    "num_classes": len(meta["class_names"]),
    "class_names": list(meta["class_names"]),
    "num_train": int(len(train["label"])),
    "num_heldout": int(len(heldout["label"])),
    "heldout_images": list(meta["heldout_images"]),
    "train_labels": sorted({int(x) for x in np.unique(train["label"])}),
  }
  return train, heldout, info
