"""Message <-> bits: encrypted header (version, length) and AEAD-encrypted body.

Layout (all bits look uniformly random to anyone without the secret)::

    header  6 bytes = ChaCha20(header_key, counter) XOR [version=1, flags=0, length u32 big endian]
    body    ChaCha20-Poly1305(aead_key, nonce(counter)).encrypt(message, aad=header plaintext)
            = len(message) + 16 bytes

``counter`` is the per-message number (0 <= counter < 2**32) and is also the
sampler's PRF nonce: the sender must never reuse a counter with one secret.
Keys come from the secret with HKDF-SHA256 under distinct ``info`` labels.
"""

from __future__ import annotations

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from stegjax import errors
from stegjax.stego import prf

__all__ = [
  "FramingError",
  "WrongKeyError",
  "CorruptedError",
  "TooShortError",
  "VERSION",
  "HEADER_BITS",
  "TAG_BITS",
  "pack",
  "unpack",
  "framed_bits",
  "sampling_key",
  "bits_to_bytes",
  "bytes_to_bits",
]

VERSION = 1
HEADER_BYTES = 6
HEADER_BITS = 8 * HEADER_BYTES
TAG_BITS = 128
_INFO_AEAD = b"stegjax/v1/aead-key"
_INFO_HEADER = b"stegjax/v1/header-key"


class FramingError(errors.StegjaxError, ValueError):
  """Base class: the bits cannot be turned back into the message."""


class WrongKeyError(FramingError, errors.WrongKeyError):
  """The header does not decrypt: wrong secret or counter (or the header bits are corrupted)."""


class CorruptedError(FramingError):
  """The header is valid but the authentication tag fails: the message bits were altered."""


class TooShortError(FramingError):
  """The carrier held fewer bits than the framed message needs."""

  def __init__(self, have: int, need: int):
    self.have, self.need, self.missing = have, need, need - have
    super().__init__(
      f"carrier too short: {have} bits extracted, the framed message needs {need} "
      f"({need - have} bits missing)"
    )


def sampling_key(secret: bytes) -> np.ndarray:
  """The sampler's PRF key, uint32[8] (same as ``prf.make_key(secret)``)."""
  return prf.make_key(secret, prf.SAMPLING_INFO)


def _keys(secret: bytes):
  aead = prf.words_to_bytes(prf.make_key(secret, _INFO_AEAD))
  header = prf.words_to_bytes(prf.make_key(secret, _INFO_HEADER))
  return aead, header


def _check_counter(counter):
  if (
    not isinstance(counter, (int, np.integer))
    or isinstance(counter, bool)
    or not 0 <= counter < 2**32
  ):
    raise ValueError(f"counter must be an int in [0, 2**32), got {counter!r}")
  return int(counter)


def _nonce(counter: int) -> bytes:
  return b"stg\x00" + counter.to_bytes(8, "little")


def _header_pad(header_key: bytes, counter: int) -> bytes:
  # ChaCha20 keystream block 0 under a key used for nothing else.
  enc = Cipher(
    algorithms.ChaCha20(header_key, b"\x00" * 4 + _nonce(counter)), mode=None
  ).encryptor()
  return enc.update(b"\x00" * HEADER_BYTES)


def bytes_to_bits(data: bytes) -> np.ndarray:
  return np.unpackbits(np.frombuffer(bytes(data), np.uint8))


def bits_to_bytes(bits) -> bytes:
  return np.packbits(np.asarray(bits, np.uint8)).tobytes()


def framed_bits(message_len: int) -> int:
  """Number of bits ``pack`` produces for a message of ``message_len`` bytes."""
  return HEADER_BITS + 8 * message_len + TAG_BITS


def pack(message: bytes, secret: bytes, counter: int) -> np.ndarray:
  """Frame and encrypt ``message``: uint8 bits (0/1), MSB first, ``framed_bits(len)`` long."""
  if not isinstance(message, (bytes, bytearray)):
    raise TypeError(f"message must be bytes, got {type(message).__name__}")
  if len(message) >= 2**32:
    raise ValueError("message longer than 2**32 - 1 bytes")
  counter = _check_counter(counter)
  aead_key, header_key = _keys(secret)
  header = bytes([VERSION, 0]) + len(message).to_bytes(4, "big")
  pad = _header_pad(header_key, counter)
  enc_header = bytes(a ^ b for a, b in zip(header, pad))
  body = ChaCha20Poly1305(aead_key).encrypt(_nonce(counter), bytes(message), header)
  return bytes_to_bits(enc_header + body)


def unpack(bits, secret: bytes, counter: int) -> bytes:
  """Inverse of ``pack``; extra trailing bits (carrier padding) are ignored.

  Raises ``TooShortError`` (with ``.missing``), ``WrongKeyError`` or ``CorruptedError``.
  """
  counter = _check_counter(counter)
  bits = np.asarray(bits)
  if bits.ndim != 1:
    raise ValueError(f"bits must be 1-D, got shape {bits.shape}")
  if bits.size and (bits.min() < 0 or bits.max() > 1):
    raise ValueError("bits must contain only 0 and 1")
  if bits.size < HEADER_BITS:
    raise TooShortError(int(bits.size), HEADER_BITS)
  aead_key, header_key = _keys(secret)
  pad = _header_pad(header_key, counter)
  header = bytes(a ^ b for a, b in zip(bits_to_bytes(bits[:HEADER_BITS]), pad))
  if header[0] != VERSION or header[1] != 0:
    raise WrongKeyError(
      "header does not decrypt: wrong secret or counter, or the header bits are corrupted"
    )
  length = int.from_bytes(header[2:], "big")
  need = framed_bits(length)
  if bits.size < need:
    raise TooShortError(int(bits.size), need)
  body = bits_to_bytes(bits[HEADER_BITS:need])
  try:
    return ChaCha20Poly1305(aead_key).decrypt(_nonce(counter), body, header)
  except InvalidTag:
    raise CorruptedError(
      f"authentication failed for a {length}-byte message: the bits were corrupted "
      "(or the header decrypted by chance under a wrong key)"
    ) from None
