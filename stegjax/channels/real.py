"""The real lossy operations a platform applies to an image, and their differentiable stand-ins.

Channel names (CMSTEG's Table 2 and a parser so users can sweep):

  png       lossless PNG encode + decode (identity on the pixels)
  jpegNN    PIL/libjpeg JPEG at quality NN (1..100), 4:2:0 chroma subsampling, decoded by PIL
  gaussS    i.i.d. Gaussian noise of std S on [0, 1] pixels, then clip and round (needs a key)
  scaleF    PIL bicubic resize by factor F; ``apply`` resizes back to the input size (the
            receiver resizes back), ``apply_unresized`` returns the resized image

``apply`` works on uint8 images [B, H, W, 3] or [H, W, 3] on the host (PIL is the real
encoder), so it is not jittable. ``differentiable(name)`` returns the jittable stand-in used by
CMSTEG M2 for that channel.
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

from stegjax.channels import jpeg as _jpeg

CHANNELS = ("png", "jpeg95", "jpeg85", "jpeg75", "gauss0.01", "scale0.5", "scale2.0")

VALID_FORMS = (
  "png",
  "jpegNN (integer quality 1..100, e.g. jpeg75)",
  "gaussS (noise std S >= 0 on [0, 1] pixels, e.g. gauss0.01)",
  "scaleF (resize factor F > 0, e.g. scale0.5)",
)

_FLOAT = r"(\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"


@dataclasses.dataclass(frozen=True)
class Channel:
  """A parsed channel name: ``kind`` in {"png", "jpeg", "gauss", "scale"} and its parameter."""

  name: str
  kind: str
  param: float | int | None = None


def _bad(name, why=""):
  extra = f" ({why})" if why else ""
  return ValueError(f"unknown channel {name!r}{extra}; valid forms: {', '.join(VALID_FORMS)}")


def parse(name: str) -> Channel:
  """Parses a channel name such as "jpeg75", "gauss0.01", "scale0.5" or "png"."""
  if not isinstance(name, str):
    raise _bad(name, "not a string")
  n = name.strip().lower()
  if n == "png":
    return Channel(name, "png")
  m = re.fullmatch(r"jpeg(\d+)", n)
  if m:
    q = int(m.group(1))
    if not 1 <= q <= 100:
      raise _bad(name, f"JPEG quality {q} outside 1..100")
    return Channel(name, "jpeg", q)
  m = re.fullmatch(r"gauss(" + _FLOAT + ")", n)
  if m:
    s = float(m.group(1))
    if not np.isfinite(s):
      raise _bad(name, "noise std must be finite")
    return Channel(name, "gauss", s)
  m = re.fullmatch(r"scale(" + _FLOAT + ")", n)
  if m:
    f = float(m.group(1))
    if not (np.isfinite(f) and f > 0):
      raise _bad(name, "scale factor must be finite and > 0")
    return Channel(name, "scale", f)
  raise _bad(name)


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


# ----------------------------------------------------------------------------- apply


def _check_images(images) -> tuple[np.ndarray, bool]:
  x = np.asarray(images)
  if x.dtype != np.uint8:
    raise ValueError(f"real channels take uint8 images, got dtype {x.dtype}")
  if x.ndim == 3:
    x, single = x[None], True
  elif x.ndim == 4:
    single = False
  else:
    raise ValueError(f"real channels take images [B, H, W, 3] or [H, W, 3], got shape {x.shape}")
  if x.shape[-1] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
    raise ValueError(f"real channels take RGB images [..., H, W, 3], got shape {x.shape}")
  return x, single


def _apply(name, images, key, resize_back):
  ch = parse(name)
  x, single = _check_images(images)
  b, h, w, _ = x.shape
  if ch.kind == "png":
    out = np.stack([decode(png_bytes(im)) for im in x])
  elif ch.kind == "jpeg":
    out = np.stack([decode(jpeg_bytes(im, ch.param)) for im in x])
  elif ch.kind == "gauss":
    if key is None:
      raise ValueError(f"channel {name!r} adds random noise and needs a PRNG key")
    noise = np.asarray(jax.random.normal(key, x.shape, jnp.float32)) * np.float32(ch.param)
    y = x.astype(np.float32) / 255.0 + noise
    out = np.round(np.clip(y, 0.0, 1.0) * 255.0).astype(np.uint8)
  else:  # scale
    sh, sw = scaled_size(h, w, ch.param)
    out = [_pil_resize(im, sh, sw) for im in x]
    if resize_back:
      out = [_pil_resize(im, h, w) for im in out]
    out = np.stack(out)
  return out[0] if single else out


def apply(name: str, images_uint8, key=None) -> np.ndarray:
  """Applies the named real channel to uint8 images [B, H, W, 3] (or [H, W, 3]).

  The output has the input's shape: ``scaleF`` resizes back to the input size with PIL
  bicubic, as the receiver does. ``key`` (a jax PRNG key) is required by ``gaussS``.
  """
  return _apply(name, images_uint8, key, resize_back=True)


def apply_unresized(name: str, images_uint8, key=None) -> np.ndarray:
  """Like :func:`apply`, but ``scaleF`` returns the image at the resized size."""
  return _apply(name, images_uint8, key, resize_back=False)


# ----------------------------------------------------------------------------- differentiable


def differentiable(
  name: str, jpeg_mode: str = "ss", resize_method: str = "bicubic", simulate_noise: bool = False
) -> Callable:
  """The differentiable stand-in for channel ``name``: ``fn(x, key) -> x``.

  ``x`` is float [..., H, W, 3] in [0, 1]; ``fn`` is jittable and returns x's shape.
  jpegNN -> ``diff_jpeg(x, NN, jpeg_mode)`` (JPEG-SS by default, as CMSTEG M2);
  png -> identity; scaleF -> ``jax.image.resize`` down by F then back (antialiased,
  ``resize_method`` "bicubic" or "bilinear"); gaussS -> identity, or the same noise
  (unclipped) when ``simulate_noise`` (then ``key`` is used).
  """
  ch = parse(name)
  if jpeg_mode not in _jpeg.MODES:
    raise ValueError(f"unknown jpeg_mode {jpeg_mode!r}; expected one of {_jpeg.MODES}")
  if resize_method not in ("bicubic", "bilinear", "cubic", "linear", "lanczos3"):
    raise ValueError(f"unknown resize_method {resize_method!r}")

  if ch.kind == "png":
    return lambda x, key=None: x
  if ch.kind == "jpeg":
    return lambda x, key=None: _jpeg.diff_jpeg(x, ch.param, jpeg_mode)
  if ch.kind == "gauss":
    if not simulate_noise:
      return lambda x, key=None: x

    def noisy(x, key):
      if key is None:
        raise ValueError(f"differentiable({name!r}, simulate_noise=True) needs a PRNG key")
      return x + ch.param * jax.random.normal(key, x.shape, x.dtype)

    return noisy

  def rescale(x, key=None):
    h, w = x.shape[-3], x.shape[-2]
    sh, sw = scaled_size(h, w, ch.param)
    lead = x.shape[:-3]
    small = jax.image.resize(x, (*lead, sh, sw, x.shape[-1]), resize_method)
    return jnp.clip(jax.image.resize(small, x.shape, resize_method), 0.0, 1.0)  # PIL clamps too

  return rescale
