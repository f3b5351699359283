"""M3: cross-modal error correction (CMSTEG eqs. 14-16), in a form no channel is tied to.

The sender, having simulated the channel and M2, knows which image tokens the
receiver will get wrong. Each wrong token is coded, earliest first
(predecessor priority), as

- ``d1``: its position relative to the previous *coded* error (the first one
  absolute, in ``ceil(log2(h*w))`` bits), kept when ``d1 < 2**l1``;
- ``d2``: the rank of the correct token in the prior's order at that position (the
  samplable top-k tokens by their exact integer frequency, ties by lower token id, as
  ``stego.sampler.Dist`` ranks them), kept when ``d2 < 2**l2``.

CMSTEG ranks the correct token by the codebook distance to the *wrongly recovered* one, so
its corrections hold only for the errors of the channel the sender simulated: through
another channel (the untouched PNG of an image prepared for JPEG) the receiver's token at
a coded position differs, and the correction turns it into a wrong one. The prior's order
depends only on the tokens before the position, which the receiver replays (corrected,
in order) whatever the channel, so a correction here names the true token for any channel:
at a position the channel left intact it changes nothing. The sender may therefore code
the errors of several simulated channels at once (``plan`` takes several recovered
grids: the prepared channel's errors first, then the others').

Errors beyond a threshold are dropped (not corrected), and so are errors at or after
``horizon`` (tokens past the last bit the message needs). The caption's payload is the
class label, then the coded list (a count followed by the pairs), encrypted with a
ChaCha20 keystream under a key derived from the shared secret and the message counter,
then a short authenticator (HMAC-SHA256 over the counter and the ciphertext, truncated to
``tag_bits``): ``seal`` / ``open_sealed``. A payload that merely parses (about 0.5% of
random bit strings do) is rejected unless its tag verifies, so a receiver that reads the
caption under the wrong topic or counter never applies garbage corrections.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from stegjax.stego import prf

_INFO = b"stegjax/v1/m3-corrections"
_AUTH_INFO = b"stegjax/v1/m3-authenticator"


@dataclasses.dataclass(frozen=True)
class Plan:
  """Corrections for one image: coded (position, rank) pairs and what was dropped."""

  positions: tuple[int, ...]
  ranks: tuple[int, ...]
  dropped: tuple[int, ...]  # error positions left uncorrected
  num_errors: int


def position_bits(num_tokens: int) -> int:
  """Bits for the first (absolute) position: ceil(log2(h*w))."""
  return max(1, math.ceil(math.log2(num_tokens)))


def count_bits(num_tokens: int) -> int:
  return max(1, math.ceil(math.log2(num_tokens + 1)))


def coded_bits(n: int, num_tokens: int, l1: int = 8, l2: int = 8) -> int:
  """Length of the coded list of ``n`` corrections (before encryption)."""
  if n == 0:
    return count_bits(num_tokens)
  return count_bits(num_tokens) + position_bits(num_tokens) + l2 + (n - 1) * (l1 + l2)


def tau_paper(rho: float, ell: int, h: int, w: int, l1: int = 8, l2: int = 8) -> int:
  """Eq. (16) as printed: tau = 1 + (rho*ell - floor(log2(h*w)) + l2) / (l1 + l2), floored."""
  return int(math.floor(1 + (rho * ell - math.floor(math.log2(h * w)) + l2) / (l1 + l2)))


def tau(payload_bits: int, num_tokens: int, l1: int = 8, l2: int = 8) -> int:
  """Corrections that fit in ``payload_bits`` with this module's coding (eq. 16, made exact).

  Eq. (16) counts the first position in floor(log2(h*w)) bits and adds l2 where the
  derivation (first pair = position + rank, then (l1 + l2) per pair) subtracts it;
  here the first position takes ceil(log2(h*w)) bits and a count prefix is included.
  """
  n = 0
  while n < num_tokens and coded_bits(n + 1, num_tokens, l1, l2) <= payload_bits:
    n += 1
  return n


def plan(
  true_tokens,
  recovered_tokens,
  true_ranks,
  l1: int = 8,
  l2: int = 8,
  max_corrections: int | None = None,
  horizon: int | None = None,
) -> Plan:
  """Plans the corrections of one image (eq. 14).

  Args:
    true_tokens: int[T] in raster order.
    recovered_tokens: int[T], or int[C, T] for C simulated channels (the first one is the
      channel prepared for: its errors are kept first when the caption runs short).
    true_ranks: int[T], each true token's rank in its step's prior order
      (``embed.prior_ranks``; -1 where it is not samplable).
    max_corrections: cap set by the caption's capacity (eq. 16); errors beyond it dropped.
    horizon: errors at positions >= horizon are not coded (the message ends before them).
  """
  t_true = np.asarray(true_tokens).reshape(-1)
  t_rec = np.asarray(recovered_tokens)
  t_rec = t_rec.reshape(-1, t_rec.shape[-1]) if t_rec.ndim > 1 else t_rec.reshape(1, -1)
  if t_rec.shape[1] != t_true.shape[0]:
    raise ValueError(f"token grids differ in size: {t_true.shape} vs {t_rec.shape}")
  ranks = np.asarray(true_ranks).reshape(-1)
  wrong = t_rec != t_true[None]
  errors = np.nonzero(wrong.any(0))[0]
  limit = len(t_true) if horizon is None else int(horizon)
  codable = [
    p for p in errors.tolist() if p < limit and 0 <= ranks[p] < 2**l2
  ]  # the correct token outside the top-k set or beyond the rank threshold cannot be coded
  # Priority: the prepared channel's errors, then those more other channels share; earliest
  # first within each (a wrong token spoils every bit after it).
  priority = sorted(codable, key=lambda p: (not wrong[0, p], -int(wrong[:, p].sum()), p))
  if max_corrections is not None:
    priority = priority[: max(0, int(max_corrections))]
  chosen = sorted(priority)
  while True:  # a gap of 2**l1 or more cannot be coded: drop the later one, recheck
    gaps = [j for j in range(1, len(chosen)) if chosen[j] - chosen[j - 1] >= 2**l1]
    if not gaps:
      break
    chosen.pop(gaps[0])
  dropped = tuple(p for p in errors.tolist() if p not in set(chosen))
  return Plan(tuple(chosen), tuple(int(ranks[p]) for p in chosen), dropped, int(len(errors)))


def _uint_bits(value: int, width: int) -> list[int]:
  if not 0 <= value < 2**width:
    raise ValueError(f"{value} does not fit in {width} bits")
  return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def to_bits(p: Plan, num_tokens: int, l1: int = 8, l2: int = 8) -> np.ndarray:
  """The coded list: count, first (absolute position, rank), then (d1, d2) pairs."""
  out = _uint_bits(len(p.positions), count_bits(num_tokens))
  prev = None
  for pos, rank in zip(p.positions, p.ranks):
    out += (
      _uint_bits(pos, position_bits(num_tokens)) if prev is None else _uint_bits(pos - prev, l1)
    )
    out += _uint_bits(rank, l2)
    prev = pos
  return np.asarray(out, np.uint8)


def from_bits(bits, num_tokens: int, l1: int = 8, l2: int = 8) -> tuple[list[int], list[int]]:
  """Inverse of ``to_bits``: (positions, ranks). Extra trailing bits are ignored.

  Raises ValueError if the bits are too short for the count they announce.
  """
  bits = np.asarray(bits, np.uint8).reshape(-1)
  pos = 0

  def take(width):
    nonlocal pos
    if pos + width > len(bits):
      raise ValueError(f"correction bits truncated: need {pos + width}, have {len(bits)}")
    v = 0
    for b in bits[pos : pos + width]:
      v = (v << 1) | int(b)
    pos += width
    return v

  n = take(count_bits(num_tokens))
  positions, ranks, prev = [], [], None
  for _ in range(n):
    p = take(position_bits(num_tokens)) if prev is None else prev + take(l1)
    if p >= num_tokens:
      raise ValueError(f"decoded correction position {p} is outside the {num_tokens} tokens")
    positions.append(p)
    ranks.append(take(l2))
    prev = p
  return positions, ranks


def _keystream(secret: bytes, counter: int, nbits: int) -> np.ndarray:
  key = prf.words_to_bytes(prf.make_key(secret, _INFO))
  nonce = b"\x00" * 4 + b"m3\x00\x00" + int(counter).to_bytes(8, "little")
  enc = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()
  stream = enc.update(b"\x00" * ((nbits + 7) // 8))
  return np.unpackbits(np.frombuffer(stream, np.uint8))[:nbits]


def encrypt(bits, secret: bytes, counter: int) -> np.ndarray:
  """XOR with a keystream of (secret, counter): the caption carries uniform-looking bits."""
  bits = np.asarray(bits, np.uint8).reshape(-1)
  return bits ^ _keystream(secret, counter, len(bits))


decrypt = encrypt


def uint_bits(value: int, width: int) -> np.ndarray:
  return np.asarray(_uint_bits(int(value), width), np.uint8)


def _bits_value(bits) -> int:
  v = 0
  for b in np.asarray(bits).reshape(-1):
    v = (v << 1) | int(b)
  return v


def authenticator(cipher_bits, secret: bytes, counter: int, tag_bits: int) -> np.ndarray:
  """Truncated HMAC-SHA256 over (counter, length, ciphertext bits) under its own key."""
  cipher_bits = np.asarray(cipher_bits, np.uint8).reshape(-1)
  if not 0 < tag_bits <= 256:
    raise ValueError(f"tag_bits must be in 1..256, got {tag_bits}")
  h = hmac.HMAC(prf.words_to_bytes(prf.make_key(secret, _AUTH_INFO)), hashes.SHA256())
  h.update(int(counter).to_bytes(8, "big") + len(cipher_bits).to_bytes(4, "big"))
  h.update(np.packbits(cipher_bits).tobytes())
  return np.unpackbits(np.frombuffer(h.finalize(), np.uint8))[:tag_bits]


def sealed_bits(n: int, num_tokens: int, label_bits: int, tag_bits: int, l1=8, l2=8) -> int:
  """Length of a sealed payload with ``n`` corrections."""
  return label_bits + coded_bits(n, num_tokens, l1, l2) + tag_bits


def seal(label, p: Plan, secret, counter, num_tokens, label_bits, tag_bits, l1=8, l2=8):
  """The caption payload: encrypt(label, coded corrections), then its authenticator."""
  plain = np.concatenate([uint_bits(label, label_bits), to_bits(p, num_tokens, l1, l2)])
  cipher = encrypt(plain, secret, counter)
  return np.concatenate([cipher, authenticator(cipher, secret, counter, tag_bits)])


def open_sealed(bits, secret, counter, num_tokens, label_bits, num_classes, tag_bits, l1=8, l2=8):
  """Inverse of ``seal``: (label, positions, ranks); ValueError unless the tag verifies.

  Extra trailing bits (the caption carries more than the payload) are ignored.
  """
  bits = np.asarray(bits, np.uint8).reshape(-1)
  head = label_bits + count_bits(num_tokens)
  if len(bits) < head + tag_bits:
    raise ValueError("caption payload too short")
  n = _bits_value(decrypt(bits[:head], secret, counter)[label_bits:])
  if n > num_tokens:
    raise ValueError("caption payload announces more corrections than tokens")
  size = label_bits + coded_bits(n, num_tokens, l1, l2)
  if len(bits) < size + tag_bits:
    raise ValueError("caption payload truncated")
  want = authenticator(bits[:size], secret, counter, tag_bits)
  got = bits[size : size + tag_bits]
  if not constant_time.bytes_eq(np.packbits(want).tobytes(), np.packbits(got).tobytes()):
    raise ValueError("caption payload does not authenticate")
  plain = decrypt(bits[:size], secret, counter)
  label = _bits_value(plain[:label_bits])
  if label >= num_classes:
    raise ValueError("label out of range")
  positions, ranks = from_bits(plain[label_bits:], num_tokens, l1, l2)
  return label, positions, ranks
