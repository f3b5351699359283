"""The channel interfaces: what happens to an image (or to channel symbols) in transit.

Two kinds of channel share one registry (``stegjax.channels.registry``):

- ``ImageChannel``: what a platform does to a uint8 image (PNG, JPEG, noise, resizing, blur).
  ``apply(images_uint8, key) -> images_uint8`` runs the real operation on the host (PIL is
  the real encoder, so it is not jittable); ``stand_in()`` is the jittable, differentiable
  version CMSTEG's M2 optimizes through.
- ``WirelessChannel``: what a radio link does to real channel symbols at an SNR (AWGN,
  Rayleigh block fading); ``apply(z, snr_db, key) -> z`` is jittable and differentiable.

Every channel has its canonical ``name`` (what the registry parses back to an equal channel)
and ``stochastic`` (whether ``apply`` needs a PRNG key, i.e. two calls can differ).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np

from stegjax import errors
from stegjax.channels import jpeg

RESIZE_METHODS = ("bicubic", "bilinear", "cubic", "linear", "lanczos3")


def fmt_float(v: float) -> str:
  """The shortest text that parses back to ``v`` (canonical names: gauss0.01, scale2.0)."""
  return repr(float(v))


class Channel(abc.ABC):
  """Base of every channel: a canonical name and whether it is stochastic."""

  FORM: ClassVar[str] = ""  # the name form shown in errors and docs, e.g. "jpegNN (...)"
  stochastic: ClassVar[bool] = False

  @property
  @abc.abstractmethod
  def name(self) -> str:
    """Canonical name: ``registry.get(ch.name) == ch``."""

  @classmethod
  @abc.abstractmethod
  def parse(cls, name: str) -> "Channel | None":
    """This family's channel for a lower-case name, or None when the name is not of its form.

    Raises ``ConfigError`` when the form matches but the parameter is invalid (jpeg101).
    """


@dataclasses.dataclass(frozen=True)
class StandIn:
  """A differentiable stand-in split for compilation: ``form(x, param, key) -> x``.

  ``form`` is hashable and static (a jit static argument): channels that differ only in a
  traced ``param`` (every JPEG quality, every noise std) share one compiled function.
  ``x`` is float [..., H, W, 3] in [0, 1]; the result has x's shape.
  """

  form: Callable[[Any, Any, Any], Any]
  param: float = 0.0

  def __call__(self, x, key=None):
    return self.form(x, self.param, key)

  def __iter__(self):  # form, param = channel.stand_in()
    return iter((self.form, self.param))


class ImageChannel(Channel):
  """A lossy operation on uint8 RGB images [B, H, W, 3] (or one image [H, W, 3])."""

  @abc.abstractmethod
  def _apply(self, x: np.ndarray, key, resize_back: bool) -> np.ndarray:
    """The operation on a checked uint8 batch [B, H, W, 3]."""

  @abc.abstractmethod
  def _stand_in(self, jpeg_mode: str, resize_method: str, simulate_noise: bool) -> StandIn:
    """This channel's differentiable stand-in (options already validated)."""

  def apply(self, images_uint8, key=None) -> np.ndarray:
    """The real operation; the output has the input's shape (resized channels resize back,
    as the receiver does). ``key`` (a jax PRNG key) is required when ``stochastic``."""
    return self._run(images_uint8, key, resize_back=True)

  def apply_unresized(self, images_uint8, key=None) -> np.ndarray:
    """Like ``apply``, but a resizing channel returns the image at its resized size."""
    return self._run(images_uint8, key, resize_back=False)

  def _run(self, images, key, resize_back):
    x, single = check_images(images)
    if self.stochastic and key is None:
      raise errors.InputError(f"channel {self.name!r} is random and needs a PRNG key")
    out = self._apply(x, key, resize_back)
    return out[0] if single else out

  def stand_in(
    self, jpeg_mode: str = "ss", resize_method: str = "bicubic", simulate_noise: bool = False
  ) -> StandIn:
    """The differentiable stand-in M2 optimizes through (JPEG-SS for JPEG by default).

    ``jpeg_mode``: one of ``channels.jpeg.MODES``; ``resize_method``: ``jax.image.resize``'s
    method for resizing channels; ``simulate_noise``: noise channels add their noise (needs
    a key) instead of the identity (under squared error, the identity is the noise's
    maximum-likelihood stand-in).
    """
    if jpeg_mode not in jpeg.MODES:
      raise errors.ConfigError(f"unknown jpeg_mode {jpeg_mode!r}; expected one of {jpeg.MODES}")
    if resize_method not in RESIZE_METHODS:
      raise errors.ConfigError(
        f"unknown resize_method {resize_method!r}; expected one of {RESIZE_METHODS}"
      )
    return self._stand_in(jpeg_mode, resize_method, bool(simulate_noise))

  def differentiable(self, **options) -> Callable:
    """``fn(x, key=None) -> x``: the stand-in as one jittable function (see ``stand_in``)."""
    sin = self.stand_in(**options)
    return lambda x, key=None: sin(x, key)


class WirelessChannel(Channel):
  """A radio channel on real symbols z [B, ...] of unit average power (``wireless`` module).

  ``fading``: True for block fading (one gain per example), False for AWGN, None for a
  mixture of channels (no single capacity formula).
  """

  stochastic: ClassVar[bool] = True
  fading: ClassVar[bool | None] = False

  @abc.abstractmethod
  def apply(self, z, snr_db, key):
    """Jittable: the received symbols, z's shape; ``snr_db`` scalar or per-example [B]."""


def check_images(images) -> tuple[np.ndarray, bool]:
  """(uint8 [B, H, W, 3], whether a single image was given) or an InputError."""
  x = np.asarray(images)
  if x.dtype != np.uint8:
    raise errors.InputError(f"image channels take uint8 images, got dtype {x.dtype}")
  if x.ndim == 3:
    x, single = x[None], True
  elif x.ndim == 4:
    single = False
  else:
    raise errors.InputError(
      f"image channels take images [B, H, W, 3] or [H, W, 3], got shape {x.shape}"
    )
  if x.shape[-1] != 3 or x.shape[1] < 1 or x.shape[2] < 1:
    raise errors.InputError(f"image channels take RGB images [..., H, W, 3], got shape {x.shape}")
  return x, single
