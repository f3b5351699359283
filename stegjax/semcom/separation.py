"""The separation baseline: PIL JPEG + an ideal (capacity-achieving) channel code.

For an image of n = H*W*3 source symbols sent over k = ratio * n complex channel
uses at SNR, an ideal code delivers ``k * log2(1 + SNR)`` bits error-free. The
sender picks the largest JPEG quality whose payload fits; the receiver decodes it
exactly. If nothing fits, or (Rayleigh, no CSI at the sender) the faded
instantaneous capacity ``k * log2(1 + |h|^2 SNR)`` falls below the payload, the
receiver gets nothing and outputs mid-grey: the "cliff".

Payload = the JPEG entropy-coded segment + 1 byte for the quality. With
``optimize=False`` PIL writes the standard Huffman tables and quantization tables
that are a fixed function of the quality, so the header (about 600 bytes, more
than a 32x32 image's payload) carries nothing the receiver does not already know;
counting it would only make the baseline worse.
"""

from __future__ import annotations

import io

import jax
import numpy as np
from PIL import Image

QUALITIES = tuple(range(100, 0, -1))


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


def jpeg_payload_bits(image: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
  """(payload bits, decoded uint8 image) of one uint8[H,W,3] image at ``quality``."""
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), optimize=False)
  data = buf.getvalue()
  decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
  return 8 * (_entropy_coded_length(data) + 1), decoded


def rate_table(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """bits[N, Q] and decoded float[N, Q, H, W, 3] in [0,1] for every quality in QUALITIES."""
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"separation baseline needs uint8[N,H,W,3] images, got {images.dtype}{images.shape}")
  bits = np.zeros((len(images), len(QUALITIES)), np.int64)
  dec = np.zeros((len(images), len(QUALITIES)) + images.shape[1:], np.float32)
  for i, img in enumerate(images):
    for j, q in enumerate(QUALITIES):
      bits[i, j], d = jpeg_payload_bits(img, q)
      dec[i, j] = d / 255.0
  return bits, dec


def capacity_bits(num_pixels_x3: int, ratio: float, snr_db) -> np.ndarray:
  """k log2(1 + SNR) with k = ratio * n complex channel uses."""
  k = ratio * num_pixels_x3
  return k * np.log2(1.0 + 10.0 ** (np.asarray(snr_db, np.float64) / 10.0))


def reconstruct(bits: np.ndarray, decoded: np.ndarray, snr_db: float, ratio: float,
                channel: str, key: jax.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(recon float[N,H,W,3], chosen quality [N] (0 = nothing fits), delivered bool[N])."""
  if channel not in ("awgn", "rayleigh"):
    raise ValueError(f"unknown channel {channel!r}; valid: 'awgn', 'rayleigh'")
  n_img = bits.shape[0]
  n = int(np.prod(decoded.shape[2:]))
  budget = capacity_bits(n, ratio, snr_db)
  fits = bits <= budget  # qualities descend, so the first fit is the largest quality
  any_fit = fits.any(axis=1)
  j = np.where(any_fit, fits.argmax(axis=1), 0)
  quality = np.where(any_fit, np.asarray(QUALITIES)[j], 0)
  delivered = any_fit.copy()
  if channel == "rayleigh":
    h = np.asarray(jax.random.normal(key, (n_img, 2))) / np.sqrt(2.0)
    gain = np.sum(h ** 2, axis=1)
    snr_inst = 10.0 ** (snr_db / 10.0) * gain
    cap = ratio * n * np.log2(1.0 + snr_inst)
    delivered &= bits[np.arange(n_img), j] <= cap  # outage: the code fails
  grey = np.full(decoded.shape[2:], 0.5, np.float32)
  recon = np.where(delivered[:, None, None, None], decoded[np.arange(n_img), j], grey[None])
  return recon, quality, delivered
