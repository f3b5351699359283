"""Real colour photographs that ship inside installed packages (no downloads).

Eleven photos: nine from ``skimage.data`` (``stereo_motorcycle`` contributes its
left view), two from ``sklearn.datasets.load_sample_images`` and matplotlib's
``grace_hopper.jpg``. They are the default training data of stegjax; the photos
named in ``DEFAULT_HELDOUT`` are held out whole for evaluation.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable, Sequence

import numpy as np

from stegjax import errors

# Fixed order: a photo's index in this tuple is its class label.
PHOTO_NAMES: tuple[str, ...] = (
  "astronaut",
  "coffee",
  "chelsea",
  "rocket",
  "hubble_deep_field",
  "retina",
  "immunohistochemistry",
  "stereo_motorcycle",
  "china",
  "flower",
  "grace_hopper",
)

# Two ordinary natural photos (indoor still life, landscape) so held-out metrics
# measure generalisation to typical content rather than to a microscope slide.
DEFAULT_HELDOUT: tuple[str, ...] = ("coffee", "china")


def _skimage(name: str) -> Callable[[], np.ndarray]:
  def load() -> np.ndarray:
    import skimage.data  # pylint: disable=g-import-not-at-top

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
      img = img[0]
    return img

  return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
  def load() -> np.ndarray:
    # Importing sklearn.datasets takes seconds; the JPEG sits at a fixed place in
    # the package, decoded with PIL exactly as load_sample_images does.
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
      path = os.path.join(spec.submodule_search_locations[0], "datasets", "images", filename)
      if os.path.exists(path):
        return _read_rgb(path)
    from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top

    images = load_sample_images()
    for path, img in zip(images.filenames, images.images):
      if path.endswith(filename):
        return img
    raise errors.MissingFileError(f"sklearn sample image {filename!r} not found")

  return load


def _read_rgb(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as im:
    return np.asarray(im.convert("RGB"))


def _grace_hopper() -> np.ndarray:
  from matplotlib import cbook  # pylint: disable=g-import-not-at-top

  return _read_rgb(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
  "astronaut": _skimage("astronaut"),
  "coffee": _skimage("coffee"),
  "chelsea": _skimage("chelsea"),
  "rocket": _skimage("rocket"),
  "hubble_deep_field": _skimage("hubble_deep_field"),
  "retina": _skimage("retina"),
  "immunohistochemistry": _skimage("immunohistochemistry"),
  "stereo_motorcycle": _skimage("stereo_motorcycle"),
  "china": _sklearn("china.jpg"),
  "flower": _sklearn("flower.jpg"),
  "grace_hopper": _grace_hopper,
}


def load_photo(name: str) -> np.ndarray:
  """Returns one photo as uint8[H, W, 3]; raises a clear error if unavailable."""
  if name not in _LOADERS:
    raise errors.ConfigError(f"unknown photo {name!r}; known photos: {', '.join(PHOTO_NAMES)}")
  try:
    img = _LOADERS[name]()
  except Exception as e:  # pylint: disable=broad-except
    raise errors.MissingFileError(
      f"photo {name!r} could not be loaded from its installed package "
      f"({type(e).__name__}: {e}); stegjax needs scikit-image, scikit-learn and "
      "matplotlib installed with their bundled sample data"
    ) from e
  img = np.asarray(img)
  if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
    raise errors.InputError(
      f"photo {name!r} is {img.dtype}{list(img.shape)}, expected uint8[H,W,3]"
    )
  return np.ascontiguousarray(img)


def load_photos(names: Sequence[str] | None = None) -> list[tuple[str, np.ndarray]]:
  """Returns ``[(name, uint8[H, W, 3]), ...]`` for ``names`` (default: all, in label order)."""
  names = PHOTO_NAMES if names is None else tuple(names)
  return [(n, load_photo(n)) for n in names]


def split_names(
  heldout: Sequence[str] = DEFAULT_HELDOUT, names: Sequence[str] = PHOTO_NAMES
) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """Splits photo names into (train, heldout), validating the held-out names."""
  heldout = tuple(heldout)
  unknown = [h for h in heldout if h not in names]
  if unknown:
    raise errors.ConfigError(f"data.heldout photo(s) {unknown} are not among {list(names)}")
  if len(set(heldout)) != len(heldout):
    raise errors.ConfigError(f"data.heldout photos contain duplicates: {list(heldout)}")
  train = tuple(n for n in names if n not in heldout)
  if not train:
    raise errors.ConfigError("every photo is held out; nothing is left to train on")
  return train, heldout
