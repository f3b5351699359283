"""Patches of whole images: random multi-scale square crops, resized and maybe flipped.

Each patch is a random square crop of ``side = round(P / scale)`` source pixels (``scale``
drawn uniformly from the configured ``scales``, clipped to the image), resized to ``P x P``
with PIL's bicubic filter and flipped horizontally with probability 1/2. The draws are
``jax.random`` functions of (seed, split, image index), so a config always gives the same
bytes. ``split_arrays`` returns a split as arrays:

  image uint8[N,P,P,3], label int32[N], source int32[N] (index of the source image),
  crop int32[N,3] = (y0, x0, side) in the source image, flipped bool[N]

ordered by a salted MD5 of each patch's key (``<image>/<index>``): a stable interleaving of
the images, the record order the earlier TFDS-built datasets had, so their figures carry over.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import jax
import numpy as np
from PIL import Image

from stegjax import errors

SPLITS = ("train", "heldout")


def validate_options(
  patch_size: int, scales: Sequence[float], patches_per_image: int, heldout_patches_per_image: int
):
  if int(patch_size) != patch_size or patch_size < 1:
    raise errors.ConfigError(f"data.patch_size must be a positive integer, got {patch_size!r}")
  if not scales or any(not np.isfinite(s) or s <= 0 for s in scales):
    raise errors.ConfigError(
      f"data.scales must be a non-empty list of positive numbers, got {list(scales)!r}"
    )
  for name, v in (
    ("patches_per_photo", patches_per_image),
    ("heldout_patches_per_photo", heldout_patches_per_image),
  ):
    if int(v) != v or v < 0:
      raise errors.ConfigError(f"data.{name} must be a non-negative integer, got {v!r}")


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


def image_patches(key, image: np.ndarray, n: int, patch_size: int, scales, flip: bool) -> dict:
  """``n`` patches of one image: image, crop, flipped arrays (in draw order)."""
  h, w = image.shape[:2]
  p = crop_params(key, n, h, w, patch_size, scales, flip)
  patches = [
    extract_patch(image, int(y), int(x), int(s), patch_size, bool(f))
    for y, x, s, f in zip(p["y0"], p["x0"], p["side"], p["flipped"])
  ]
  return {
    "image": np.stack(patches) if n else np.zeros((0, patch_size, patch_size, 3), np.uint8),
    "crop": np.stack([p["y0"], p["x0"], p["side"]], -1).astype(np.int32).reshape(n, 3),
    "flipped": p["flipped"],
  }


def split_arrays(
  split: str,
  images: Iterable[tuple[str, np.ndarray, int, int]],
  n: int,
  patch_size: int,
  scales: Sequence[float],
  flip: bool,
  seed: int,
) -> dict[str, np.ndarray]:
  """The patches of one split from ``(name, uint8[H,W,3], label, source)`` per image."""
  key = jax.random.fold_in(jax.random.key(seed), SPLITS.index(split))
  parts, keys = [], []
  for name, image, label, source in images:
    part = image_patches(jax.random.fold_in(key, source), image, n, patch_size, scales, flip)
    part["label"] = np.full(n, label, np.int32)
    part["source"] = np.full(n, source, np.int32)
    parts.append(part)
    keys += [f"{name}/{i:07d}" for i in range(n)]
  if not parts:  # e.g. a folder with nothing held out
    parts = [{**image_patches(key, np.zeros((1, 1, 3), np.uint8), 0, patch_size, (1.0,), False)}]
    parts[0].update(label=np.zeros(0, np.int32), source=np.zeros(0, np.int32))
  salt = hashlib.md5(split.encode())

  def rank(k):
    h = salt.copy()
    h.update(k.encode())
    return int(h.hexdigest(), 16)

  order = np.asarray(sorted(range(len(keys)), key=lambda i: rank(keys[i])), np.int64)
  return {k: np.concatenate([p[k] for p in parts])[order] for k in parts[0]}
