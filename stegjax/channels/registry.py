"""The one registry of channels by name: everything that picks a channel asks here.

A channel family is a ``base.Channel`` subclass decorated with ``@register``; its ``parse``
classmethod recognizes its own names (``jpeg75``) and returns None for others. The families
register when ``stegjax.channels`` is imported (its ``__init__`` imports each module).

  from stegjax import channels
  ch = channels.get("jpeg75")            # any channel
  y = channels.image_channel("gauss0.01").apply(x_uint8, key)
  z = channels.wireless_channel("rayleigh").apply(z, snr_db, key)
"""

from __future__ import annotations

from stegjax import errors
from stegjax.channels import base

_FAMILIES: list[type[base.Channel]] = []


def register(cls: type[base.Channel]) -> type[base.Channel]:
  """Class decorator: adds a channel family to the registry (in the order of registration)."""
  if cls not in _FAMILIES:
    _FAMILIES.append(cls)
  return cls


def forms(kind: type[base.Channel] = base.Channel) -> tuple[str, ...]:
  """The name forms of every registered family of ``kind`` (for errors and docs)."""
  return tuple(f.FORM for f in _FAMILIES if issubclass(f, kind))


def get(name: str, kind: type[base.Channel] = base.Channel) -> base.Channel:
  """The channel named ``name`` (case and surrounding spaces ignored); ConfigError otherwise."""
  if not isinstance(name, str):
    raise _unknown(name, kind, "not a string")
  n = name.strip().lower()
  for family in _FAMILIES:
    ch = family.parse(n)
    if ch is None:
      continue
    if not isinstance(ch, kind):
      why = f"kind {_kind_word(type(ch))}, expected kind {_kind_word(kind)}"
      raise _unknown(name, kind, why)
    return ch
  raise _unknown(name, kind)


def image_channel(name: str) -> base.ImageChannel:
  """The image channel named ``name`` (png, jpegNN, gaussS, scaleF, blurS, ...)."""
  return get(name, base.ImageChannel)


def wireless_channel(name: str) -> base.WirelessChannel:
  """The wireless channel named ``name`` (awgn, rayleigh, mixed)."""
  return get(name, base.WirelessChannel)


def _kind_word(kind) -> str:
  if issubclass(kind, base.ImageChannel):
    return "image"
  if issubclass(kind, base.WirelessChannel):
    return "wireless"
  return "any"


def _unknown(name, kind, why: str = "") -> errors.ConfigError:
  extra = f" ({why})" if why else ""
  return errors.ConfigError(
    f"unknown channel {name!r}{extra}; valid forms: {', '.join(forms(kind))}"
  )


def bad_parameter(name: str, family: type[base.Channel], why: str) -> errors.ConfigError:
  """The error a family raises when its form matches but the parameter is invalid."""
  for kind in (base.ImageChannel, base.WirelessChannel):
    if issubclass(family, kind):
      return _unknown(name, kind, why)
  return _unknown(name, base.Channel, why)
