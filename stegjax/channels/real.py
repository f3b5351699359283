"""The real lossy operations a platform applies to an image, and their differentiable stand-ins.

Channel families (CMSTEG's Table 2; the registry parses their names so users can sweep):

  png       lossless PNG encode + decode (identity on the pixels)
  jpegNN    PIL/libjpeg JPEG at quality NN (1..100), 4:2:0 chroma subsampling, decoded by PIL
  gaussS    i.i.d. Gaussian noise of std S on [0, 1] pixels, then clip and round (needs a key)
  scaleF    PIL bicubic resize by factor F; ``apply`` resizes back to the input size (the
            receiver resizes back), ``apply_unresized`` returns the resized image

Each is a ``base.ImageChannel``: ``apply`` works on uint8 images [B, H, W, 3] or [H, W, 3] on
the host (PIL is the real encoder), so it is not jittable; ``stand_in()`` is the jittable
version CMSTEG M2 optimizes through. ``apply(name, ...)`` and ``differentiable(name, ...)``
here are shorthands for ``registry.image_channel(name).apply`` / ``.differentiable``.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from stegjax.channels import base
from stegjax.channels import jpeg as _jpeg
from stegjax.channels import registry

CHANNELS = ("png", "jpeg95", "jpeg85", "jpeg75", "gauss0.01", "scale0.5", "scale2.0")

FLOAT = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


def parse_float(name: str, prefix: str) -> float | None:
  """The number after ``prefix`` in ``name`` (gauss0.01 -> 0.01), or None if not that form."""
  m = re.fullmatch(re.escape(prefix) + "(" + FLOAT + ")", name)
  return None if m is None else float(m.group(1))


# ----------------------------------------------------------------------------- PIL pieces


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
  """PIL's baseline JPEG file for one uint8 [H, W, 3] image at ``quality``, 4:2:0."""
  buf = io.BytesIO()
  Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=int(quality), subsampling=2)
  return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
  """Decodes PNG/JPEG bytes to uint8 [H, W, 3] with PIL."""
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"))


def png_bytes(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(image, "RGB").save(buf, format="PNG")
  return buf.getvalue()


def scaled_size(h: int, w: int, factor: float) -> tuple[int, int]:
  """(H', W') of an image resized by ``factor`` (rounded, at least 1 pixel)."""
  return max(1, int(round(h * factor))), max(1, int(round(w * factor)))


def _pil_resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
  return np.asarray(Image.fromarray(image, "RGB").resize((w, h), Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- stand-in forms


@dataclasses.dataclass(frozen=True)
class Identity:
  """The identity stand-in (lossless channels; noise under squared error)."""

  def __call__(self, x, param, key):
    del param, key
    return x


@dataclasses.dataclass(frozen=True)
class DiffJpeg:
  """``diff_jpeg(x, quality, mode)``; the quality is the traced parameter."""

  mode: str = "ss"

  def __call__(self, x, param, key):
    del key
    return _jpeg.diff_jpeg(x, param, self.mode)


@dataclasses.dataclass(frozen=True)
class AddNoise:
  """x + std * N(0, 1) (unclipped); the std is the traced parameter."""

  def __call__(self, x, param, key):
    if key is None:
      raise ValueError("the simulated-noise stand-in needs a PRNG key")
    return x + param * jax.random.normal(key, x.shape, x.dtype)


@dataclasses.dataclass(frozen=True)
class Rescale:
  """``jax.image.resize`` down by ``factor`` then back (static: it changes shapes)."""

  factor: float
  method: str = "bicubic"

  def __call__(self, x, param, key):
    del param, key
    h, w = x.shape[-3], x.shape[-2]
    sh, sw = scaled_size(h, w, self.factor)
    lead = x.shape[:-3]
    small = jax.image.resize(x, (*lead, sh, sw, x.shape[-1]), self.method)
    return jnp.clip(jax.image.resize(small, x.shape, self.method), 0.0, 1.0)  # PIL clamps too


# ----------------------------------------------------------------------------- channels


@registry.register
@dataclasses.dataclass(frozen=True)
class Png(base.ImageChannel):
  """Lossless PNG encode + decode."""

  FORM = "png"

  @property
  def name(self) -> str:
    return "png"

  @classmethod
  def parse(cls, name):
    return cls() if name == "png" else None

  def _apply(self, x, key, resize_back):
    return np.stack([decode(png_bytes(im)) for im in x])

  def _stand_in(self, jpeg_mode, resize_method, simulate_noise):
    return base.StandIn(Identity())


@registry.register
@dataclasses.dataclass(frozen=True)
class Jpeg(base.ImageChannel):
  """PIL baseline JPEG at ``quality``, 4:2:0, decoded by PIL; stand-in ``diff_jpeg``."""

  quality: int
  FORM = "jpegNN (integer quality 1..100, e.g. jpeg75)"

  @property
  def name(self) -> str:
    return f"jpeg{self.quality}"

  @classmethod
  def parse(cls, name):
    m = re.fullmatch(r"jpeg(\d+)", name)
    if m is None:
      return None
    q = int(m.group(1))
    if not 1 <= q <= 100:
      raise registry.bad_parameter(name, cls, f"JPEG quality {q} outside 1..100")
    return cls(q)

  def _apply(self, x, key, resize_back):
    return np.stack([decode(jpeg_bytes(im, self.quality)) for im in x])

  def _stand_in(self, jpeg_mode, resize_method, simulate_noise):
    return base.StandIn(DiffJpeg(jpeg_mode), float(self.quality))


@registry.register
@dataclasses.dataclass(frozen=True)
class Gauss(base.ImageChannel):
  """i.i.d. N(0, std^2) noise on [0, 1] pixels, clipped and rounded back to uint8."""

  std: float
  FORM = "gaussS (noise std S >= 0 on [0, 1] pixels, e.g. gauss0.01)"
  stochastic = True

  @property
  def name(self) -> str:
    return "gauss" + base.fmt_float(self.std)

  @classmethod
  def parse(cls, name):
    s = parse_float(name, "gauss")
    if s is None:
      return None
    if not np.isfinite(s):
      raise registry.bad_parameter(name, cls, "noise std must be finite")
    return cls(s)

  def _apply(self, x, key, resize_back):
    noise = np.asarray(jax.random.normal(key, x.shape, jnp.float32)) * np.float32(self.std)
    y = x.astype(np.float32) / 255.0 + noise
    return np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)

  def _stand_in(self, jpeg_mode, resize_method, simulate_noise):
    if simulate_noise:
      return base.StandIn(AddNoise(), self.std)
    return base.StandIn(Identity())


@registry.register
@dataclasses.dataclass(frozen=True)
class Scale(base.ImageChannel):
  """PIL bicubic resize by ``factor``; ``apply`` resizes back to the input size."""

  factor: float
  FORM = "scaleF (resize factor F > 0, e.g. scale0.5)"

  @property
  def name(self) -> str:
    return "scale" + base.fmt_float(self.factor)

  @classmethod
  def parse(cls, name):
    f = parse_float(name, "scale")
    if f is None:
      return None
    if not (np.isfinite(f) and f > 0):
      raise registry.bad_parameter(name, cls, "scale factor must be finite and > 0")
    return cls(f)

  def _apply(self, x, key, resize_back):
    _, h, w, _ = x.shape
    sh, sw = scaled_size(h, w, self.factor)
    out = [_pil_resize(im, sh, sw) for im in x]
    if resize_back:
      out = [_pil_resize(im, h, w) for im in out]
    return np.stack(out)

  def _stand_in(self, jpeg_mode, resize_method, simulate_noise):
    return base.StandIn(Rescale(self.factor, resize_method))


# ----------------------------------------------------------------------------- shorthands


def parse(name: str) -> base.ImageChannel:
  """The image channel named ``name`` (``registry.image``)."""
  return registry.image_channel(name)


def apply(name: str, images_uint8, key=None) -> np.ndarray:
  """``registry.image_channel(name).apply(images_uint8, key)``: output has the input's shape."""
  return registry.image_channel(name).apply(images_uint8, key)


def apply_unresized(name: str, images_uint8, key=None) -> np.ndarray:
  """Like :func:`apply`, but ``scaleF`` returns the image at the resized size."""
  return registry.image_channel(name).apply_unresized(images_uint8, key)


def differentiable(name: str, **options) -> Callable:
  """``registry.image_channel(name).differentiable(**options)``: jittable ``fn(x, key=None) -> x``."""
  return registry.image_channel(name).differentiable(**options)
