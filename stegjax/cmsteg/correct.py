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
class _Field:
  """One coded value: ``value - offset`` in ``width`` bits, or Exp-Golomb of ``order``."""

  width: int | None  # None: Exp-Golomb
  order: int = 0
  offset: int = 0  # gaps are >= 1, so 1 is subtracted before coding them

  def ok(self, value: int) -> bool:
    v = int(value) - self.offset
    return v >= 0 and (self.width is None or v < 2**self.width)

  def length(self, value: int) -> int:
    if self.width is not None:
      return self.width
    return _golomb_len(int(value) - self.offset, self.order)

  def write(self, value: int) -> list[int]:
    v = int(value) - self.offset
    return _golomb(v, self.order) if self.width is None else _uint_bits(v, self.width)

  def read(self, reader: "_Reader") -> int:
    v = reader.golomb(self.order) if self.width is None else reader.uint(self.width)
    return v + self.offset


@dataclasses.dataclass(frozen=True)
class Code:
  """How the (d1, d2) pairs are written.

  ``fixed`` is the paper's: d1 in ``l1`` bits, d2 in ``l2`` bits, larger values not coded.
  ``golomb`` writes d1 - 1 and d2 as Exp-Golomb codes of orders ``g1`` and ``g2``: the
  errors M2 leaves are close together and the true token is often among the prior's
  first few, so most pairs take fewer than l1 + l2 bits, and no gap or rank is too
  large to code.
  """

  kind: str = "fixed"
  l1: int = 8
  l2: int = 8
  g1: int = 2
  g2: int = 1

  def __post_init__(self):
    if self.kind not in ("fixed", "golomb"):
      raise ValueError(f"correction code must be 'fixed' or 'golomb', got {self.kind!r}")

  @classmethod
  def from_config(cls, cm) -> "Code":
    g1, g2 = cm.get("golomb_orders", (2, 1))
    kind = str(cm.get("correction_code", "fixed"))
    return cls(kind=kind, l1=int(cm.l1), l2=int(cm.l2), g1=int(g1), g2=int(g2))

  @property
  def gap(self) -> _Field:
    return _Field(self.l1) if self.kind == "fixed" else _Field(None, self.g1, offset=1)

  @property
  def rank(self) -> _Field:
    return _Field(self.l2) if self.kind == "fixed" else _Field(None, self.g2)

  def describe(self) -> str:
    if self.kind == "golomb":
      return f"(d1, d2) as Exp-Golomb codes of orders {self.g1} and {self.g2}"
    return f"l1 = {self.l1}, l2 = {self.l2}"


FIXED = Code()


def _golomb_len(value: int, order: int) -> int:
  return 2 * (int(value) + (1 << order)).bit_length() - order - 1


def _golomb(value: int, order: int) -> list[int]:
  """Exp-Golomb code of order ``order``: zeros, then ``value + 2**order`` in binary."""
  if value < 0:
    raise ValueError(f"Exp-Golomb codes non-negative values, got {value}")
  v = int(value) + (1 << order)
  n = v.bit_length()
  return [0] * (n - order - 1) + _uint_bits(v, n)


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
  """Length of the paper's fixed-width coded list of ``n`` corrections (before encryption)."""
  if n == 0:
    return count_bits(num_tokens)
  return count_bits(num_tokens) + position_bits(num_tokens) + l2 + (n - 1) * (l1 + l2)


def list_bits(positions, ranks, num_tokens: int, code: Code = FIXED) -> int:
  """Length of the coded list of these (sorted) corrections under ``code``."""
  n = count_bits(num_tokens)
  prev = None
  for pos, rank in zip(positions, ranks):
    n += position_bits(num_tokens) if prev is None else code.gap.length(pos - prev)
    n += code.rank.length(rank)
    prev = pos
  return n


def tau_paper(rho: float, ell: int, h: int, w: int, l1: int = 8, l2: int = 8) -> int:
  """Eq. (16) as printed: tau = 1 + (rho*ell - floor(log2(h*w)) + l2) / (l1 + l2), floored."""
  return int(math.floor(1 + (rho * ell - math.floor(math.log2(h * w)) + l2) / (l1 + l2)))


def tau(payload_bits: int, num_tokens: int, l1: int = 8, l2: int = 8) -> int:
  """Corrections that fit in ``payload_bits`` with the fixed-width coding (eq. 16, made exact).

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
  code: Code = FIXED,
  max_corrections: int | None = None,
  horizon: int | None = None,
  max_bits: int | None = None,
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
    max_bits: keep the most corrections (in priority order) whose coded list fits.
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
  # The correct token outside the top-k set (or, fixed-width, beyond the rank threshold)
  # cannot be coded.
  codable = [p for p in errors.tolist() if p < limit and code.rank.ok(ranks[p])]
  # Priority: the prepared channel's errors, then those more other channels share; earliest
  # first within each (a wrong token spoils every bit after it).
  priority = sorted(codable, key=lambda p: (not wrong[0, p], -int(wrong[:, p].sum()), p))
  if max_corrections is not None:
    priority = priority[: max(0, int(max_corrections))]
  # The longest priority prefix that fits (a code's length is not monotone in the prefix).
  for n in range(len(priority), -1, -1):
    chosen = _codable_prefix(priority[:n], code)
    if max_bits is None or list_bits(chosen, ranks[chosen], len(t_true), code) <= max_bits:
      break
  kept = set(chosen)
  dropped = tuple(p for p in errors.tolist() if p not in kept)
  return Plan(tuple(chosen), tuple(int(ranks[p]) for p in chosen), dropped, int(len(errors)))


def _codable_prefix(priority, code: Code) -> list[int]:
  """``priority`` sorted, dropping the later error of any gap the code cannot write."""
  chosen = sorted(priority)
  while True:
    gaps = [j for j in range(1, len(chosen)) if not code.gap.ok(chosen[j] - chosen[j - 1])]
    if not gaps:
      return chosen
    chosen.pop(gaps[0])


def _uint_bits(value: int, width: int) -> list[int]:
  if not 0 <= value < 2**width:
    raise ValueError(f"{value} does not fit in {width} bits")
  return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def to_bits(p: Plan, num_tokens: int, code: Code = FIXED) -> np.ndarray:
  """The coded list: count, first (absolute position, rank), then (d1, d2) pairs."""
  out = _uint_bits(len(p.positions), count_bits(num_tokens))
  prev = None
  for pos, rank in zip(p.positions, p.ranks):
    out += (
      _uint_bits(pos, position_bits(num_tokens)) if prev is None else code.gap.write(pos - prev)
    )
    out += code.rank.write(rank)
    prev = pos
  return np.asarray(out, np.uint8)


class _Reader:
  """Reads unsigned fields off a bit string; ValueError past its end."""

  def __init__(self, bits):
    self.bits, self.pos = np.asarray(bits, np.uint8).reshape(-1), 0

  def uint(self, width: int) -> int:
    if self.pos + width > len(self.bits):
      raise ValueError(f"correction bits truncated: need {self.pos + width}, have {len(self.bits)}")
    v = _bits_value(self.bits[self.pos : self.pos + width])
    self.pos += width
    return v

  def golomb(self, order: int) -> int:
    zeros = 0
    while self.uint(1) == 0:
      zeros += 1
      if zeros > 32:
        raise ValueError("Exp-Golomb prefix too long")
    width = zeros + order
    return ((1 << width) | self.uint(width)) - (1 << order)


def _read_list(reader: _Reader, num_tokens: int, code: Code) -> tuple[list[int], list[int]]:
  n = reader.uint(count_bits(num_tokens))
  if n > num_tokens:
    raise ValueError("correction list announces more corrections than tokens")
  positions, ranks, prev = [], [], None
  for _ in range(n):
    p = reader.uint(position_bits(num_tokens)) if prev is None else prev + code.gap.read(reader)
    if p >= num_tokens:
      raise ValueError(f"decoded correction position {p} is outside the {num_tokens} tokens")
    positions.append(p)
    ranks.append(code.rank.read(reader))
    prev = p
  return positions, ranks


def from_bits(bits, num_tokens: int, code: Code = FIXED) -> tuple[list[int], list[int]]:
  """Inverse of ``to_bits``: (positions, ranks). Extra trailing bits are ignored.

  Raises ValueError if the bits are too short for the count they announce.
  """
  return _read_list(_Reader(bits), num_tokens, code)


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
  """Length of a sealed payload with ``n`` fixed-width corrections."""
  return label_bits + coded_bits(n, num_tokens, l1, l2) + tag_bits


def max_sealed_bits(num_tokens: int, label_bits: int, tag_bits: int, code: Code, top_k: int):
  """The longest sealed payload: every token corrected (gaps of 1, ranks up to ``top_k``)."""
  if code.kind == "fixed":
    return sealed_bits(num_tokens, num_tokens, label_bits, tag_bits, code.l1, code.l2)
  worst = code.rank.length(int(top_k) - 1)
  head = count_bits(num_tokens) + position_bits(num_tokens) + worst
  return label_bits + head + (num_tokens - 1) * (code.gap.length(1) + worst) + tag_bits


def seal(label, p: Plan, secret, counter, num_tokens, label_bits, tag_bits, code: Code = FIXED):
  """The caption payload: encrypt(label, coded corrections), then its authenticator."""
  plain = np.concatenate([uint_bits(label, label_bits), to_bits(p, num_tokens, code)])
  cipher = encrypt(plain, secret, counter)
  return np.concatenate([cipher, authenticator(cipher, secret, counter, tag_bits)])


def open_sealed(
  bits, secret, counter, num_tokens, label_bits, num_classes, tag_bits, code: Code = FIXED
):
  """Inverse of ``seal``: (label, positions, ranks); ValueError unless the tag verifies.

  Extra trailing bits (the caption carries more than the payload) are ignored. The
  keystream is a per-bit XOR, so the whole string is decrypted and the list parsed to find
  where the payload ends; the tag there must verify.
  """
  bits = np.asarray(bits, np.uint8).reshape(-1)
  if len(bits) < label_bits + count_bits(num_tokens) + tag_bits:
    raise ValueError("caption payload too short")
  reader = _Reader(decrypt(bits, secret, counter))
  label = reader.uint(label_bits)
  positions, ranks = _read_list(reader, num_tokens, code)
  size = reader.pos
  if len(bits) < size + tag_bits:
    raise ValueError("caption payload truncated")
  want = authenticator(bits[:size], secret, counter, tag_bits)
  got = bits[size : size + tag_bits]
  if not constant_time.bytes_eq(np.packbits(want).tobytes(), np.packbits(got).tobytes()):
    raise ValueError("caption payload does not authenticate")
  if label >= num_classes:
    raise ValueError("label out of range")
  return label, positions, ranks
