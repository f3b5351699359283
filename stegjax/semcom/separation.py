"""The separation baseline: PIL JPEG + an ideal (capacity-achieving) channel code.

For an image of n = H*W*3 source symbols sent over k = ratio * n complex channel
uses at SNR, an ideal code delivers ``k * log2(1 + SNR)`` bits error-free (the
AWGN capacity of the real channel at that SNR; the same SNR convention as the
DeepJSCC channel, ``stegjax.channels.wireless``). The sender picks the largest
JPEG quality whose size fits; the receiver decodes it exactly. If nothing fits
the receiver gets nothing and outputs mid-grey: the "cliff".

Two ways to count the JPEG size (both reported):

- ``payload`` (default, generous to JPEG): the entropy-coded segment + 1 byte for
  the quality. With ``optimize=False`` PIL writes the standard Huffman tables and
  quantization tables that are a fixed function of the quality, so the header
  carries nothing a receiver that knows the format could not rebuild.
- ``file``: the whole JPEG file, headers included (about 600 bytes, more than a
  32x32 image's whole channel budget at low SNR).

Rayleigh block fading (one h ~ CN(0,1) per image, perfect CSI at the receiver
only, as for DeepJSCC) has two baselines:

- ``outage`` (the primary one): the sender knows the fading statistics, not h; per
  image it picks the quality minimizing the expected MSE
  ``(1 - P_out(b)) MSE_q + P_out(b) MSE_grey`` with
  ``P_out(b) = P(k log2(1 + |h|^2 SNR) < b) = 1 - exp(-(2^(b/k) - 1) / SNR)``;
  the transmission is lost (grey) when the drawn h puts it in outage.
- ``ergodic`` (an idealized upper bound): the budget is ``k E[log2(1 + |h|^2 SNR)]``
  and is always delivered. Not achievable within one block-faded image (the code
  would need many fading states); reported so DeepJSCC is also compared against a
  baseline stronger than any real scheme.

The ideal code ignores the finite-blocklength penalty (a few hundred channel uses
per 32x32 image), which also favours the baseline.
"""

from __future__ import annotations

import dataclasses
import io

import jax
import numpy as np
from PIL import Image

from stegjax import channels
from stegjax import errors

QUALITIES = tuple(range(100, 0, -1))
GREY = 0.5


def _entropy_coded_length(data: bytes) -> int:
  """Bytes of the scan data: from the end of the SOS header to the EOI marker."""
  i = 2  # after SOI
  while i < len(data):
    if data[i] != 0xFF:
      raise ValueError("malformed JPEG: expected a marker")
    marker = data[i + 1]
    seg_len = (data[i + 2] << 8) | data[i + 3]
    if marker == 0xDA:  # SOS: scan data follows its header until EOI (FFD9) at the end
      start = i + 2 + seg_len
      end = data.rindex(b"\xff\xd9")
      return end - start
    i += 2 + seg_len
  raise ValueError("malformed JPEG: no SOS marker")


def jpeg_encode(image: np.ndarray, quality: int) -> tuple[int, int, np.ndarray]:
  """(payload bits, whole-file bits, decoded uint8 image) of one uint8[H,W,3] image."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), optimize=False)
  data = buf.getvalue()
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  return 8 * (_entropy_coded_length(data) + 1), 8 * len(data), decoded


def jpeg_payload_bits(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
  """(payload bits, decoded uint8 image) of one uint8[H,W,3] image at ``quality``."""
  bits, _, decoded = jpeg_encode(image, quality)
  return bits, decoded


@dataclasses.dataclass
class RateTable:
  """Per image i and quality QUALITIES[j]: sizes, decoded images and their MSE."""

  bits: np.ndarray  # int64[N, Q] payload bits
  file_bits: np.ndarray  # int64[N, Q] whole-file bits (headers included)
  decoded: np.ndarray  # float32[N, Q, H, W, 3] in [0, 1]
  mse: np.ndarray  # float64[N, Q] MSE of decoded vs source
  grey_mse: np.ndarray  # float64[N] MSE of the grey image (nothing delivered)

  @property
  def num_symbols(self) -> int:
    return int(np.prod(self.decoded.shape[2:]))


def rate_table(images: np.ndarray) -> RateTable:
  """Encodes every uint8[H,W,3] image at every quality in QUALITIES."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(
      f"separation baseline needs uint8[N,H,W,3] images, got {images.dtype}{images.shape}"
    )
  shape = (len(images), len(QUALITIES))
  bits = np.zeros(shape, np.int64)
  file_bits = np.zeros(shape, np.int64)
  dec = np.zeros(shape + images.shape[1:], np.float32)
  for i, img in enumerate(images):
    for j, q in enumerate(QUALITIES):
      bits[i, j], file_bits[i, j], d = jpeg_encode(img, q)
      dec[i, j] = d / 255.0
  src = images.astype(np.float64)[:, None] / 255.0
  mse = np.mean((dec - src) ** 2, axis=(2, 3, 4))
  grey_mse = np.mean((GREY - src[:, 0]) ** 2, axis=(1, 2, 3))
  return RateTable(bits, file_bits, dec, mse, grey_mse)


def capacity_bits(num_pixels_x3: int, ratio: float, snr_db) -> np.ndarray:
  """k log2(1 + SNR) with k = ratio * n complex channel uses."""
  k = ratio * num_pixels_x3
  return k * np.log2(1.0 + 10.0 ** (np.asarray(snr_db, np.float64) / 10.0))


def ergodic_capacity_bits(num_pixels_x3: int, ratio: float, snr_db: float) -> float:
  """k E[log2(1 + |h|^2 SNR)], |h|^2 ~ Exp(1) (Rayleigh), by 64-point Gauss-Laguerre."""
  g, w = np.polynomial.laguerre.laggauss(64)
  snr = 10.0 ** (snr_db / 10.0)
  return float(ratio * num_pixels_x3 * np.sum(w * np.log2(1.0 + g * snr)))


def outage_probability(bits, num_pixels_x3: int, ratio: float, snr_db: float) -> np.ndarray:
  """P(k log2(1 + |h|^2 SNR) < bits) for h ~ CN(0, 1)."""
  k = ratio * num_pixels_x3
  snr = 10.0 ** (snr_db / 10.0)
  return 1.0 - np.exp(-(np.exp2(np.asarray(bits, np.float64) / k) - 1.0) / snr)


def reconstruct(
  table: RateTable,
  snr_db: float,
  ratio: float,
  channel: str,
  key: jax.Array,
  size: str = "payload",
  rayleigh: str = "outage",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(recon float[N,H,W,3], chosen quality [N] (0 = nothing sent), delivered bool[N]).

  ``size``: 'payload' or 'file' (see the module docstring). ``rayleigh``: 'outage'
  (h drawn from ``key``) or 'ergodic'; ignored for AWGN.
  """
  fading = channels.wireless_channel(channel).fading
  if fading is None:
    raise errors.ConfigError(
      f"the separation baseline models one channel (AWGN or block fading), not {channel!r}"
    )
  if size not in ("payload", "file"):
    raise ValueError(f"unknown JPEG size {size!r}; valid: 'payload', 'file'")
  if rayleigh not in ("outage", "ergodic"):
    raise ValueError(f"unknown Rayleigh baseline {rayleigh!r}; valid: 'outage', 'ergodic'")
  bits = table.bits if size == "payload" else table.file_bits
  n_img = bits.shape[0]
  n = table.num_symbols
  rows = np.arange(n_img)
  if fading and rayleigh == "outage":
    # Expected MSE of each quality over the fading; grey (send nothing) is the fallback.
    p_out = outage_probability(bits, n, ratio, snr_db)
    exp_mse = (1.0 - p_out) * table.mse + p_out * table.grey_mse[:, None]
    j = np.argmin(exp_mse, axis=1)
    send = exp_mse[rows, j] < table.grey_mse
    h = np.asarray(jax.random.normal(key, (n_img, 2))) / np.sqrt(2.0)
    cap = ratio * n * np.log2(1.0 + 10.0 ** (snr_db / 10.0) * np.sum(h**2, axis=1))
    delivered = send & (bits[rows, j] <= cap)
  else:
    if fading:
      budget = ergodic_capacity_bits(n, ratio, snr_db)
    else:
      budget = capacity_bits(n, ratio, snr_db)
    fits = bits <= budget  # qualities descend, so the first fit is the largest quality
    send = fits.any(axis=1)
    j = np.where(send, fits.argmax(axis=1), 0)
    delivered = send.copy()
  quality = np.where(send, np.asarray(QUALITIES)[j], 0)
  grey = np.full(table.decoded.shape[2:], GREY, np.float32)
  recon = np.where(delivered[:, None, None, None], table.decoded[rows, j], grey[None])
  return recon, quality, delivered
