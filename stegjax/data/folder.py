"""Users' own images: every image file under a folder, labelled by its top-level subfolder.

  rel, class_names, labels = folder.list_images("~/photos")   # sorted relative paths
  for rel_path, image, label in folder.load_images("~/photos"): ...   # uint8[H,W,3] RGB

``label`` is the index of the image's top-level subfolder (sorted names), or 0 when every
image lies directly in the folder. ``folder_split`` holds whole files out for evaluation.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterator, Sequence

import jax
import numpy as np
from PIL import Image

from stegjax import errors

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def list_images(folder: str) -> tuple[list[str], list[str], list[int]]:
  """Lists image files under ``folder``: (sorted relative paths, class names, labels)."""
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise errors.MissingFileError(f"image folder {folder!r} does not exist or is not a directory")
  rel = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for f in files:
      if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
        rel.append(os.path.relpath(os.path.join(root, f), folder))
  rel.sort()
  if not rel:
    raise errors.InputError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {folder!r}")
  tops = [r.split(os.sep)[0] if os.sep in r else None for r in rel]
  if all(t is None for t in tops):
    return rel, ["0"], [0] * len(rel)
  if any(t is None for t in tops):
    loose = [r for r, t in zip(rel, tops) if t is None][:3]
    raise errors.InputError(
      f"{folder!r} mixes images in subfolders (labels) with images directly in "
      f"it (e.g. {loose}); move every image into a class subfolder"
    )
  names = sorted(set(tops))
  return rel, names, [names.index(t) for t in tops]


def read_rgb(path: str) -> np.ndarray:
  """One image file as uint8[H, W, 3] (greyscale, palette and RGBA files converted)."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except Exception as e:  # pylint: disable=broad-except
    raise errors.InputError(f"cannot read image {path!r}: {type(e).__name__}: {e}") from e


def load_images(folder: str) -> Iterator[tuple[str, np.ndarray, int]]:
  """``(relative path, uint8[H,W,3], label)`` for every image under ``folder``, in sorted order."""
  folder = os.path.abspath(os.path.expanduser(folder))
  rel, _, labels = list_images(folder)
  for r, label in zip(rel, labels):
    yield r, read_rgb(os.path.join(folder, r)), label


def contents_fingerprint(folder: str, rel: Sequence[str]) -> str:
  """Changes when a file is added, removed, resized or touched (names a new dataset)."""
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
      raise errors.ConfigError(f"data.heldout file(s) {missing} are not among the folder's images")
    held = sorted(rel.index(h) for h in heldout)
  else:
    if not 0.0 <= heldout_fraction < 1.0:
      raise errors.ConfigError(
        f"data.folder_heldout_fraction must be in [0, 1), got {heldout_fraction}"
      )
    k = int(round(heldout_fraction * n))
    if heldout_fraction > 0 and n >= 2:
      k = max(k, 1)
    perm = np.asarray(jax.random.permutation(jax.random.key(seed), n))
    held = sorted(int(i) for i in perm[:k])
  train = [i for i in range(n) if i not in set(held)]
  if not train:
    raise errors.ConfigError("every image of the folder is held out; nothing is left to train on")
  return train, held
