"""TFDS builders (array_record) that turn whole images into patch datasets.

Two builders share one patch sampler:

* ``PhotoPatches``: the eleven photos that ship with installed packages
  (``stegjax.data.photos``); ``label`` is the index of the source photo in
  ``photos.PHOTO_NAMES``.
* ``FolderPatches``: every image file under a user's folder; ``label`` is the
  index of its top-level subfolder (sorted names), or 0 when all images lie
  directly in the folder.

Each example is ``{"image": uint8[P,P,3], "label": int64, "source": int32,
"crop": int32[3] = (y0, x0, side), "flipped": bool}``: a random square crop of
``side = round(P / scale)`` source pixels (``scale`` drawn uniformly from the
configured ``scales``, clipped to the image), resized to ``P x P`` with
antialiased bicubic filtering and flipped horizontally with probability 1/2.
Splits ``train`` and ``heldout`` come from disjoint sets of whole images. The
crop draws are ``jax.random`` functions of (seed, split, image index), so a
config always builds the same bytes. Preparation and reading need no
TensorFlow (TFDS's array_record writer and ``tfds.data_source`` are TF-free).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterator, Sequence

import jax
import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from stegjax.data import photos as photos_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
SPLITS = ("train", "heldout")

# TFDS derives a builder's checksum path from `code_path`, whose default probes
# `importlib_resources` (a package TFDS does not install) for builders that live
# in a package; naming the file directly avoids it. Nothing is downloaded anyway.
_CODE_PATH = epath.Path(__file__)


# ----------------------------------------------------------------------------- patch sampling


def _validate_patch_options(
  patch_size: int, scales: Sequence[float], patches_per_image: int, heldout_patches_per_image: int
):
  if int(patch_size) != patch_size or patch_size < 1:
    raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
  if not scales or any(not np.isfinite(s) or s <= 0 for s in scales):
    raise ValueError(f"scales must be a non-empty list of positive numbers, got {list(scales)!r}")
  for name, v in (
    ("patches_per_photo", patches_per_image),
    ("heldout_patches_per_photo", heldout_patches_per_image),
  ):
    if int(v) != v or v < 0:
      raise ValueError(f"{name} must be a non-negative integer, got {v!r}")


def crop_params(
  key: jax.Array,
  n: int,
  height: int,
  width: int,
  patch_size: int,
  scales: Sequence[float],
  flip: bool,
) -> dict[str, np.ndarray]:
  """Draws ``n`` crops of an ``height x width`` image: int arrays y0, x0, side, flipped."""
  # One draw of shape (n, 4) per image: a single compiled kernel per n.
  u = np.asarray(jax.random.uniform(key, (n, 4)), np.float64)
  scale_idx = np.minimum((u[:, 0] * len(scales)).astype(np.int64), len(scales) - 1)
  uy, ux = u[:, 1], u[:, 2]
  flipped = (u[:, 3] < 0.5) if flip else np.zeros((n,), bool)
  sides = np.array([int(round(patch_size / float(s))) for s in scales], np.int64)
  side = np.clip(sides[scale_idx], 1, min(height, width))
  # Uniform top-left corner among all valid positions (u < 1, min() guards rounding).
  y0 = np.minimum(np.floor(uy * (height - side + 1)).astype(np.int64), height - side)
  x0 = np.minimum(np.floor(ux * (width - side + 1)).astype(np.int64), width - side)
  return {"y0": y0, "x0": x0, "side": side, "flipped": flipped.astype(bool)}


def extract_patch(
  image: np.ndarray, y0: int, x0: int, side: int, patch_size: int, flipped: bool
) -> np.ndarray:
  """Crops ``image[y0:y0+side, x0:x0+side]``, resizes to ``patch_size`` and maybe flips."""
  crop = image[y0 : y0 + side, x0 : x0 + side]
  if side != patch_size:  # scale 1 stays an exact crop
    crop = np.asarray(
      Image.fromarray(crop).resize((patch_size, patch_size), Image.Resampling.BICUBIC)
    )
  if flipped:
    crop = crop[:, ::-1]
  return np.ascontiguousarray(crop, dtype=np.uint8)


def _image_examples(
  key: jax.Array,
  image: np.ndarray,
  n: int,
  patch_size: int,
  scales: Sequence[float],
  flip: bool,
  label: int,
  source: int,
  prefix: str,
) -> Iterator[tuple[str, dict]]:
  h, w = image.shape[:2]
  p = crop_params(key, n, h, w, patch_size, scales, flip)
  for i in range(n):
    y0, x0, side, fl = int(p["y0"][i]), int(p["x0"][i]), int(p["side"][i]), bool(p["flipped"][i])
    yield (
      f"{prefix}/{i:07d}",
      {
        "image": extract_patch(image, y0, x0, side, patch_size, fl),
        "label": label,
        "source": np.int32(source),
        "crop": np.array([y0, x0, side], np.int32),
        "flipped": fl,
      },
    )


def _features(patch_size: int, class_names: Sequence[str]) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Tensor(shape=(patch_size, patch_size, 3), dtype=np.uint8),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "source": tfds.features.Scalar(dtype=np.int32, doc="index of the source image"),
      "crop": tfds.features.Tensor(
        shape=(3,), dtype=np.int32, doc="(y0, x0, side) of the crop in the source image"
      ),
      "flipped": tfds.features.Scalar(dtype=np.bool_, doc="horizontally flipped"),
    }
  )


def _config_name(prefix: str, fields: dict) -> str:
  # Every option that changes the bytes goes into the name, so a changed config
  # builds a new dataset next to the old one instead of silently reusing it.
  digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
  return f"{prefix}_p{fields['patch_size']}_{digest}"


def _split_key(seed: int, split: str) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), SPLITS.index(split))


# ----------------------------------------------------------------------------- photo patches


@dataclasses.dataclass
class PhotoPatchesConfig(tfds.core.BuilderConfig):
  """Options of the photo patch dataset; build with ``PhotoPatchesConfig.make(...)``."""

  patch_size: int = 32
  patches_per_photo: int = 256
  heldout_patches_per_photo: int = 64
  scales: tuple[float, ...] = (1.0, 0.5, 0.25)
  flip: bool = True
  seed: int = 0
  heldout: tuple[str, ...] = photos_lib.DEFAULT_HELDOUT

  @classmethod
  def make(
    cls,
    patch_size: int = 32,
    patches_per_photo: int = 256,
    heldout_patches_per_photo: int = 64,
    scales: Sequence[float] = (1.0, 0.5, 0.25),
    flip: bool = True,
    seed: int = 0,
    heldout: Sequence[str] = photos_lib.DEFAULT_HELDOUT,
  ) -> "PhotoPatchesConfig":
    _validate_patch_options(patch_size, scales, patches_per_photo, heldout_patches_per_photo)
    photos_lib.split_names(heldout)  # validates names
    fields = dict(
      patch_size=int(patch_size),
      patches_per_photo=int(patches_per_photo),
      heldout_patches_per_photo=int(heldout_patches_per_photo),
      scales=[float(s) for s in scales],
      flip=bool(flip),
      seed=int(seed),
      heldout=list(heldout),
    )
    return cls(
      name=_config_name("photos", fields),
      description=json.dumps(fields),
      **{**fields, "scales": tuple(fields["scales"]), "heldout": tuple(heldout)},
    )


class PhotoPatches(tfds.core.GeneratorBasedBuilder):
  """Patches of the photos bundled with scikit-image, scikit-learn and matplotlib."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  code_path = _CODE_PATH

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return self.dataset_info_from_configs(
      features=_features(c.patch_size, photos_lib.PHOTO_NAMES),
      supervised_keys=("image", "label"),
      description="Random multi-scale crops of bundled photos; label = source photo.",
      metadata=tfds.core.MetadataDict(heldout=list(c.heldout)),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing is downloaded
    train, heldout = photos_lib.split_names(self.builder_config.heldout)
    c = self.builder_config
    return {
      "train": self._generate_examples("train", train, c.patches_per_photo),
      "heldout": self._generate_examples("heldout", heldout, c.heldout_patches_per_photo),
    }

  def _generate_examples(self, split: str, names: Sequence[str], n: int):
    c = self.builder_config
    key = _split_key(c.seed, split)
    for name, image in photos_lib.load_photos(names):
      label = photos_lib.PHOTO_NAMES.index(name)
      yield from _image_examples(
        jax.random.fold_in(key, label), image, n, c.patch_size, c.scales, c.flip, label, label, name
      )


# ----------------------------------------------------------------------------- folder patches


def list_images(folder: str) -> tuple[list[str], list[str], list[int]]:
  """Lists image files under ``folder``: (sorted relative paths, class names, labels)."""
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"image folder {folder!r} does not exist or is not a directory")
  rel = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for f in files:
      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
        rel.append(os.path.relpath(os.path.join(root, f), folder))
  rel.sort()
  if not rel:
    raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}")
  tops = [r.split(os.sep)[0] if os.sep in r else None for r in rel]
  if all(t is None for t in tops):
    return rel, ["0"], [0] * len(rel)
  if any(t is None for t in tops):
    loose = [r for r, t in zip(rel, tops) if t is None][:3]
    raise ValueError(
      f"{folder!r} mixes images in subfolders (labels) with images directly in "
      f"it (e.g. {loose}); move every image into a class subfolder"
    )
  names = sorted(set(tops))
  return rel, names, [names.index(t) for t in tops]


def _folder_fingerprint(folder: str, rel: Sequence[str]) -> str:
  h = hashlib.sha256(os.path.abspath(folder).encode())
  for r in rel:
    st = os.stat(os.path.join(folder, r))
    h.update(f"{r}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
  return h.hexdigest()[:16]


def folder_split(
  n: int, seed: int, heldout: Sequence[str], heldout_fraction: float, rel: Sequence[str]
) -> tuple[list[int], list[int]]:
  """Indices of (train, heldout) images: the named files, else a seeded fraction."""
  if heldout:
    missing = [h for h in heldout if h not in rel]
    if missing:
      raise ValueError(f"held-out file(s) {missing} are not among the folder's images")
    held = sorted(rel.index(h) for h in heldout)
  else:
    if not 0.0 <= heldout_fraction < 1.0:
      raise ValueError(f"folder_heldout_fraction must be in [0, 1), got {heldout_fraction}")
    k = int(round(heldout_fraction * n))
    if heldout_fraction > 0 and n >= 2:
      k = max(k, 1)
    perm = np.asarray(jax.random.permutation(jax.random.key(seed), n))
    held = sorted(int(i) for i in perm[:k])
  train = [i for i in range(n) if i not in set(held)]
  if not train:
    raise ValueError("every image of the folder is held out; nothing is left to train on")
  return train, held


@dataclasses.dataclass
class FolderPatchesConfig(tfds.core.BuilderConfig):
  """Options of a folder patch dataset; build with ``FolderPatchesConfig.make(folder, ...)``."""

  folder: str = ""
  patch_size: int = 32
  patches_per_photo: int = 256
  heldout_patches_per_photo: int = 64
  scales: tuple[float, ...] = (1.0, 0.5, 0.25)
  flip: bool = True
  seed: int = 0
  heldout: tuple[str, ...] = ()
  heldout_fraction: float = 0.1

  @classmethod
  def make(
    cls,
    folder: str,
    patch_size: int = 32,
    patches_per_photo: int = 256,
    heldout_patches_per_photo: int = 64,
    scales: Sequence[float] = (1.0, 0.5, 0.25),
    flip: bool = True,
    seed: int = 0,
    heldout: Sequence[str] = (),
    heldout_fraction: float = 0.1,
  ) -> "FolderPatchesConfig":
    _validate_patch_options(patch_size, scales, patches_per_photo, heldout_patches_per_photo)
    folder = os.path.abspath(os.path.expanduser(folder))
    rel, _, _ = list_images(folder)
    folder_split(len(rel), seed, heldout, heldout_fraction, rel)  # validates
    fields = dict(
      folder=folder,
      patch_size=int(patch_size),
      patches_per_photo=int(patches_per_photo),
      heldout_patches_per_photo=int(heldout_patches_per_photo),
      scales=[float(s) for s in scales],
      flip=bool(flip),
      seed=int(seed),
      heldout=list(heldout),
      heldout_fraction=float(heldout_fraction),
      contents=_folder_fingerprint(folder, rel),
    )
    name = _config_name("folder", fields)
    del fields["contents"]
    return cls(
      name=name,
      description=json.dumps(fields),
      **{**fields, "scales": tuple(fields["scales"]), "heldout": tuple(heldout)},
    )


def _read_rgb(path: str) -> np.ndarray:
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"cannot read image {path!r}: {type(e).__name__}: {e}") from e


class FolderPatches(tfds.core.GeneratorBasedBuilder):
  """Patches of every image under a folder; label = top-level subfolder (or 0)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  code_path = _CODE_PATH

  def _listing(self):
    c = self.builder_config
    rel, class_names, labels = list_images(c.folder)
    train, held = folder_split(len(rel), c.seed, c.heldout, c.heldout_fraction, rel)
    return rel, class_names, labels, train, held

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    rel, class_names, _, train, held = self._listing()
    return self.dataset_info_from_configs(
      features=_features(c.patch_size, class_names),
      supervised_keys=("image", "label"),
      description=f"Random multi-scale crops of the images under {c.folder}.",
      metadata=tfds.core.MetadataDict(
        files=rel, train_sources=train, heldout_sources=held, heldout=[rel[i] for i in held]
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    c = self.builder_config
    rel, _, labels, train, held = self._listing()
    return {
      "train": self._generate_examples("train", rel, labels, train, c.patches_per_photo),
      "heldout": self._generate_examples("heldout", rel, labels, held, c.heldout_patches_per_photo),
    }

  def _generate_examples(self, split, rel, labels, indices, n):
    c = self.builder_config
    key = _split_key(c.seed, split)
    for i in indices:
      image = _read_rgb(os.path.join(c.folder, rel[i]))
      yield from _image_examples(
        jax.random.fold_in(key, i), image, n, c.patch_size, c.scales, c.flip, labels[i], i, rel[i]
      )
