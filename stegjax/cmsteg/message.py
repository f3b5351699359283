"""Messages of any size across many stego images: one AEAD frame, chunks, an erasure code.

The whole message is one ``framing.pack`` frame (encrypted header + ChaCha20-Poly1305 body),
so one tag verifies all of it. The frame is split into ``k`` data shares and ``zfec`` adds
``r`` parity shares: any ``k`` of the ``n = k + r`` shares rebuild it. A share is carried by
``parts`` images (1 unless the message needs more than 256 shares). Each image carries one
*chunk*, a fixed-size bit string::

    header  48 bits  k-1 u8 | share index u8 | part u4 | parts-1 u4 | seq u12 | payload bytes-1 u12
    payload 8*P bits one part of one share
    tag     24 bits  HMAC-SHA256(tag key, nonce || header || payload)[:3]  (encrypt-then-MAC)

Header and payload are XORed with a ChaCha20 keystream of the image's own sampler nonce
``counter * MAX_SEQ + seq`` (``counter`` is the key file's message counter, one per message;
each message owns a block of ``MAX_SEQ`` nonces), so every bit Discop hides looks uniform
and no two images share draws; the frame's AEAD uses ``counter``. The header's ``seq``
must equal the nonce's low bits (a 12-bit check on the nonce the receiver tried), the share
index and part let the receiver take the images in any order, and the tag tells it which
images came through intact (and list decoding when one did not).

Capacity: ``P`` is fixed before any image is drawn (a config value, never a sample's own
capacity). Each image is an unselected Discop sample: when one carries less than a chunk
(``Schedule.record``), it is still sent and the same part goes again in the next image. A
part is thus complete in exactly one image, so losing any ``r`` images loses at most ``r``
shares. Nothing here imports a model; the images come from ``cmsteg.api``.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import itertools
import math

import numpy as np
import zfec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from stegjax import errors
from stegjax.stego import framing, prf

HEADER_BITS = 48
TAG_BITS = 24
MAX_SHARES = 256  # zfec works in GF(2^8): at most 256 shares
MAX_PARTS = 16
MAX_SEQ = 4096  # images per message: the nonce block each message counter owns
MAX_COUNTER = 2**32 // MAX_SEQ  # messages per key (the sampler nonce is 32 bits)
MAX_PAYLOAD_BYTES = 4096
_INFO_STREAM = b"stegjax/v1/chunk-stream"
_INFO_TAG = b"stegjax/v1/chunk-tag"


@dataclasses.dataclass(frozen=True)
class Layout:
  """How a frame of ``frame_bytes`` is cut: ``k`` data + ``r`` parity shares of ``parts``."""

  frame_bytes: int
  k: int
  r: int
  parts: int
  payload_bytes: int

  @property
  def n(self) -> int:
    return self.k + self.r

  @property
  def share_bytes(self) -> int:
    return self.parts * self.payload_bytes

  @property
  def chunk_bits(self) -> int:
    return chunk_bits(self.payload_bytes)

  @property
  def units(self) -> int:
    """Chunks to deliver: every part of every share."""
    return self.n * self.parts


def chunk_bits(payload_bytes: int) -> int:
  """Bits one image must carry for a chunk of ``payload_bytes``."""
  return HEADER_BITS + 8 * int(payload_bytes) + TAG_BITS


def layout(message_len: int, payload_bytes: int, redundancy: int) -> Layout:
  """The cut of a ``message_len``-byte message, or MessageTooLongError with the limits."""
  p, r = int(payload_bytes), int(redundancy)
  if not 1 <= p <= MAX_PAYLOAD_BYTES:
    raise errors.ConfigError(f"payload bytes per image must be in 1..{MAX_PAYLOAD_BYTES}, got {p}")
  if not 0 <= r < MAX_SHARES:
    raise errors.ConfigError(f"redundancy (images that may be lost) must be in 0..255, got {r}")
  frame = framing.framed_bits(int(message_len)) // 8
  for parts in range(1, MAX_PARTS + 1):
    k = max(1, math.ceil(frame / (parts * p)))
    if k + r <= MAX_SHARES:
      return Layout(frame, k, r, parts, p)
  most = (MAX_SHARES - r) * MAX_PARTS * p - (framing.framed_bits(0) // 8)
  raise errors.MessageTooLongError(
    f"a {message_len}-byte message needs more than {MAX_SHARES} shares of {MAX_PARTS} images "
    f"at {p} payload bytes per image; at most {max(0, most)} bytes fit with redundancy {r} "
    "(use larger images or split the file)"
  )


def nonce(counter: int, seq: int) -> int:
  """Sampler nonce of image ``seq`` of message ``counter``."""
  return int(counter) * MAX_SEQ + int(seq)


def _key(secret: bytes, info: bytes) -> bytes:
  return prf.words_to_bytes(prf.make_key(secret, info))


def _stream(secret: bytes, nonce: int, nbytes: int) -> bytes:
  iv = b"\x00" * 4 + b"chnk" + int(nonce).to_bytes(8, "little")
  enc = Cipher(algorithms.ChaCha20(_key(secret, _INFO_STREAM), iv), mode=None).encryptor()
  return enc.update(b"\x00" * nbytes)


def _tag(secret: bytes, nonce: int, body: bytes) -> bytes:
  mac = hmac.new(_key(secret, _INFO_TAG), int(nonce).to_bytes(8, "little") + body, hashlib.sha256)
  return mac.digest()[: TAG_BITS // 8]


def _xor(a: bytes, b: bytes) -> bytes:
  return bytes(x ^ y for x, y in zip(a, b))


def _pack_header(k: int, index: int, part: int, parts: int, seq: int, p: int) -> bytes:
  v = ((k - 1) << 40) | (index << 32) | (part << 28) | ((parts - 1) << 24) | (seq << 12) | (p - 1)
  return v.to_bytes(6, "big")


def _unpack_header(h: bytes) -> dict:
  v = int.from_bytes(h, "big")
  return dict(
    k=((v >> 40) & 0xFF) + 1,
    index=(v >> 32) & 0xFF,
    part=(v >> 28) & 0xF,
    parts=((v >> 24) & 0xF) + 1,
    seq=(v >> 12) & 0xFFF,
    payload_bytes=(v & 0xFFF) + 1,
  )


# ----------------------------------------------------------------------------- sender


class Message:
  """The sender's view of one message: its layout, shares and the chunk for any image."""

  def __init__(self, message: bytes, secret: bytes, counter: int, payload_bytes: int, r: int):
    self.layout = layout(len(message), payload_bytes, r)
    if not 0 <= int(counter) < MAX_COUNTER:
      raise errors.KeyFileError(
        f"message counter {counter} outside 0..{MAX_COUNTER - 1}: this key has sent all the "
        "multi-image messages it can; make a new key file"
      )
    self.secret, self.counter = secret, int(counter)
    lay = self.layout
    frame = framing.bits_to_bytes(framing.pack(message, secret, self.counter))
    frame = frame + b"\x00" * (lay.k * lay.share_bytes - len(frame))  # hidden by the keystream
    data = tuple(frame[i * lay.share_bytes : (i + 1) * lay.share_bytes] for i in range(lay.k))
    self.shares = list(zfec.Encoder(lay.k, lay.n).encode(data)) if lay.r else list(data)

  def nonce(self, seq: int) -> int:
    """The sampler nonce of image ``seq`` (also its caption's)."""
    return nonce(self.counter, seq)

  def chunk(self, unit: int, seq: int) -> np.ndarray:
    """uint8 bits (0/1) of unit ``unit`` (share ``unit // parts``, part ``unit % parts``)."""
    lay = self.layout
    index, part = divmod(int(unit), lay.parts)
    if not 0 <= seq < MAX_SEQ:
      raise errors.MessageTooLongError(f"a message may span at most {MAX_SEQ} images")
    p = lay.payload_bytes
    plain = (
      _pack_header(lay.k, index, part, lay.parts, int(seq), p)
      + self.shares[index][part * p : (part + 1) * p]
    )
    nonce = self.nonce(seq)
    body = _xor(plain, _stream(self.secret, nonce, len(plain)))
    return framing.bytes_to_bits(body + _tag(self.secret, nonce, body))


class Schedule:
  """Which unit each image carries; a unit whose image fell short goes again in the next.

  ``take(b)`` hands out (seq, unit) for the next ``b`` images; ``record(jobs, carried)`` is
  told how many bits each of those images really carried. Every image taken is sent.
  """

  def __init__(self, lay: Layout, max_images: int | None = None):
    self.layout = lay
    self.pending = collections.deque(range(lay.units))
    self.seq = 0
    self.images: list[tuple[int, int, bool]] = []  # (seq, unit, complete)
    self.max_images = min(MAX_SEQ, max_images or 4 * lay.units + 16)

  @property
  def done(self) -> bool:
    return not self.pending

  def take(self, batch: int) -> list[tuple[int, int]]:
    jobs = []
    while self.pending and len(jobs) < batch:
      if self.seq >= self.max_images:
        short = sum(1 for *_, ok in self.images if not ok)
        raise errors.MessageTooLongError(
          f"{short} of {len(self.images)} images carried less than a {self.layout.chunk_bits}-bit "
          f"chunk; the payload per image ({self.layout.payload_bytes} bytes) is too large for "
          "these images"
        )
      jobs.append((self.seq, self.pending.popleft()))
      self.seq += 1
    return jobs

  def record(self, jobs, carried) -> None:
    retry = []
    for (seq, unit), n in zip(jobs, carried):
      ok = int(n) >= self.layout.chunk_bits
      self.images.append((seq, unit, ok))
      if not ok:
        retry.append(unit)
    self.pending.extendleft(reversed(retry))

  def stats(self) -> dict:
    full = sum(1 for *_, ok in self.images if ok)
    return {"images": len(self.images), "complete": full, "short": len(self.images) - full}


# ----------------------------------------------------------------------------- receiver


@dataclasses.dataclass(frozen=True)
class Chunk:
  """One image's chunk as read under ``nonce``; ``verified`` iff its tag checks."""

  nonce: int
  k: int
  index: int
  part: int
  parts: int
  seq: int
  payload_bytes: int
  payload: bytes
  verified: bool

  @property
  def counter(self) -> int:
    return self.nonce // MAX_SEQ

  @property
  def geometry(self) -> tuple[int, int, int, int]:
    return (self.counter, self.k, self.parts, self.payload_bytes)


def read_chunk(bits, secret: bytes, nonce: int) -> Chunk | None:
  """The chunk an image's extracted bits hold under ``nonce`` (None when too short to parse).

  Trailing bits beyond the chunk (the image's leftover capacity) are ignored.
  """
  bits = np.asarray(bits, np.uint8).reshape(-1)
  if bits.size < HEADER_BITS or nonce < 0:
    return None
  head_ct = framing.bits_to_bytes(bits[:HEADER_BITS])
  h = _unpack_header(_xor(head_ct, _stream(secret, nonce, HEADER_BITS // 8)))
  if h["seq"] != nonce % MAX_SEQ or h["part"] >= h["parts"]:
    return None  # not this nonce's header
  n_body = HEADER_BITS + 8 * h["payload_bytes"]
  body_bits = bits[:n_body]
  body = framing.bits_to_bytes(body_bits) if body_bits.size == n_body else None
  tag = bits[n_body : n_body + TAG_BITS]
  verified = body is not None and tag.size == TAG_BITS
  verified = verified and hmac.compare_digest(framing.bits_to_bytes(tag), _tag(secret, nonce, body))
  payload = b""
  if body is not None:
    payload = _xor(body, _stream(secret, nonce, len(body)))[HEADER_BITS // 8 :]
  return Chunk(nonce=int(nonce), payload=payload, verified=bool(verified), **h)


def consistent(chunk: Chunk | None, geometry) -> bool:
  """Whether an unverified chunk's header matches the message's (counter, k, parts, P)."""
  return chunk is not None and chunk.geometry == tuple(geometry)


def geometry_of(chunks) -> tuple | None:
  """The (counter, k, parts, payload_bytes) most verified chunks agree on."""
  votes = collections.Counter(c.geometry for c in chunks if c is not None and c.verified)
  return votes.most_common(1)[0][0] if votes else None


def shares_of(chunks, geometry) -> dict[int, bytes]:
  """Complete shares (every part verified) among ``chunks`` of the message ``geometry``."""
  _, _, parts, p = geometry
  found: dict[int, dict[int, bytes]] = collections.defaultdict(dict)
  for c in chunks:
    if c is not None and c.verified and c.geometry == tuple(geometry):
      found[c.index][c.part] = c.payload
  return {
    i: b"".join(got[j] for j in range(parts)) for i, got in found.items() if len(got) == parts
  }


def assemble(chunks, secret: bytes, redundancy: int | None = None, budget: int = 64) -> dict:
  """Rebuilds and verifies the message from the chunks read from the received images.

  Returns ``{"message", "counter", "k", "shares", "used"}`` (``used``: share indices decoded).
  Raises ``errors.WrongKeyError`` when no chunk verifies, ``errors.IncompleteMessageError``
  when fewer than ``k`` shares are complete (naming how many), and the framing errors when
  the rebuilt frame does not authenticate. Never returns unverified bytes.
  """
  total = len(chunks)  # images offered, including those whose chunk did not parse
  chunks = [c for c in chunks if c is not None]
  geom = geometry_of(chunks)
  if geom is None:
    raise errors.WrongKeyError(
      f"none of the {total} images authenticates under this key "
      "(wrong key or counter, or every image was damaged beyond repair)"
    )
  counter, k, _, _ = geom
  shares = shares_of(chunks, geom)
  if len(shares) < k:
    lost = f"any {redundancy} may be lost" if redundancy is not None else "sent with parity"
    raise errors.IncompleteMessageError(
      f"only {len(shares)} of the {k} shares needed are complete ({lost}); "
      f"{sum(c.verified for c in chunks)} of {total} images verified"
    )
  err = None
  # A forged share would need a 2^-24 tag collision; should one pass, other subsets are tried.
  for combo in itertools.islice(itertools.combinations(sorted(shares), k), budget):
    blocks = [shares[i] for i in combo]
    data = zfec.Decoder(k, MAX_SHARES).decode(blocks, list(combo)) if combo[-1] >= k else blocks
    try:
      msg = framing.unpack(framing.bytes_to_bits(b"".join(data)), secret, counter)
    except framing.FramingError as e:
      err = e
      continue
    return {"message": msg, "counter": counter, "k": k, "shares": len(shares), "used": combo}
  raise err
