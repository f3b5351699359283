"""Channels: what happens to an image or to channel symbols between sender and receiver.

One interface (``base.ImageChannel``, ``base.WirelessChannel``) and one registry by name:

  from stegjax import channels
  channels.image_channel("jpeg75").apply(images_uint8, key)      # the real operation (host, PIL)
  channels.image_channel("jpeg75").stand_in()                   # M2's differentiable stand-in
  channels.wireless_channel("rayleigh").apply(z, snr_db, key)   # jittable

Importing this package registers every family below.
"""

from stegjax.channels import real  # noqa: F401  png, jpegNN, gaussS, scaleF
from stegjax.channels import blur  # noqa: F401  blurS
from stegjax.channels import wireless as _wireless  # noqa: F401  awgn, rayleigh, mixed
from stegjax.channels.base import Channel, ImageChannel, StandIn, WirelessChannel  # noqa: F401
from stegjax.channels.registry import (  # noqa: F401
  forms,
  get,
  image_channel,
  register,
  wireless_channel,
)
