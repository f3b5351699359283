"""Key files: the shared secret, this party's id, its next counter, and replay windows.

A key file is JSON, created with mode 0600 from the start (never chmod-ed afterwards)::

    {"version": 2, "secret": "<64 hex>", "party": "a", "counter": 3,
     "peers": {"b": {"top": 7, "seen": 131}}}

- ``counter`` is this party's next message counter. ``reserve`` takes an exclusive
  ``fcntl`` lock (on ``<path>.lock``, which is never replaced, so every process locks the
  same inode), writes ``counter + 1`` atomically (temp file, fsync, ``os.replace``) and only
  then hands the counter out: two concurrent embeds get different counters, and an embed
  killed at any point leaves its counter spent, never reusable.
- ``party`` enters the key derivation (``party_secret``): every key a message uses derives
  from HKDF(secret, party), so the parties sharing one secret never share a counter space
  (a reply from the receiver's copy cannot collide with the sender's counters).
  ``share`` makes another party's copy (same secret, a new party id, counter 0); each copy
  lists the other as a peer.
- ``peers`` holds, per sender party, a sliding replay window as in IPsec (RFC 4303) and DTLS
  (RFC 6347): the highest counter accepted (``top``) and a bitmap of the ``WINDOW`` counters
  at and below it (``seen``, bit i = counter top - i). ``accept`` rejects a counter already
  seen or older than the window with ``errors.ReplayError``.

Version-1 files (``{"secret", "counter"}``) load as party ``"a"`` with no peers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets as secrets_lib
import stat

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stegjax import errors
from stegjax.train import toolkit

VERSION = 2
WINDOW = 64  # counters remembered below the highest accepted one (IPsec's default size)
MAX_COUNTER = 2**32  # the framing nonce and the sampler's PRF nonce are 32-bit
DEFAULT_PARTY = "a"
_PARTY_INFO = b"stegjax/v1/party/"


@dataclasses.dataclass
class KeyFile:
  path: str
  secret: bytes
  party: str
  counter: int
  peers: dict  # party -> {"top": int, "seen": int}

  def to_json(self) -> dict:
    return {
      "version": VERSION,
      "secret": self.secret.hex(),
      "party": self.party,
      "counter": self.counter,
      "peers": self.peers,
    }

  def senders(self) -> list[str]:
    """Parties whose messages this file can read: its peers, then itself (a plain copy)."""
    return sorted(p for p in self.peers if p != self.party) + [self.party]


def party_secret(secret: bytes, party: str) -> bytes:
  """The 32-byte secret every key of ``party``'s messages derives from."""
  return HKDF(
    algorithm=hashes.SHA256(), length=32, salt=None, info=_PARTY_INFO + party.encode()
  ).derive(secret)


def _check_party(party: str) -> str:
  if not (isinstance(party, str) and 0 < len(party) <= 64 and party.isprintable()):
    raise errors.KeyFileError(f"party id must be 1-64 printable characters, got {party!r}")
  return party


def _write_atomic(path: str, data: dict):
  """Temp file created 0600, fsync, ``os.replace`` (a reader sees the old file or the new)."""
  toolkit.atomic_write(path, json.dumps(data), mode=0o600)


@contextlib.contextmanager
def _locked(path: str):
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise errors.KeyFileError(f"key file folder does not exist: {folder}")
  fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # closing releases the lock


def _parse(path: str, raw: dict) -> KeyFile:
  try:
    secret = bytes.fromhex(raw["secret"])
    counter = int(raw["counter"])
    party = raw.get("party", DEFAULT_PARTY)
    peers = {
      str(p): {"top": int(w["top"]), "seen": int(w["seen"])}
      for p, w in raw.get("peers", {}).items()
    }
  except (KeyError, ValueError, TypeError, AttributeError):
    raise errors.KeyFileError(
      f"key file {path} is not a stegjax key (JSON with hex 'secret', 'party', 'counter')"
    ) from None
  if len(secret) < 16 or not 0 <= counter <= MAX_COUNTER:
    raise errors.KeyFileError(f"key file {path}: secret under 16 bytes or counter out of range")
  return KeyFile(path, secret, _check_party(party), counter, peers)


def load(path: str) -> KeyFile:
  """Reads a key file; ``errors.KeyFileError`` names what is wrong (missing, unsafe, bad JSON)."""
  if not path:
    raise errors.KeyFileError("--config.key_file is required for embed/extract")
  if not os.path.isfile(path):
    raise errors.KeyFileError(f"key file not found: {path}")
  mode = stat.S_IMODE(os.stat(path).st_mode)
  if mode & 0o077:
    raise errors.KeyFileError(
      f"key file {path} is readable by others (mode {mode:04o}); run: chmod 600 {path}"
    )
  try:
    with open(path) as f:
      raw = json.load(f)
  except (OSError, ValueError) as e:
    raise errors.KeyFileError(f"key file {path} cannot be read as JSON: {e}") from None
  if not isinstance(raw, dict):
    raise errors.KeyFileError(f"key file {path} is not a JSON object")
  return _parse(path, raw)


def create(path: str, party: str = DEFAULT_PARTY, secret: bytes | None = None) -> KeyFile:
  """A new key file (fresh 32-byte secret unless given); refuses to overwrite one."""
  with _locked(path):
    if os.path.exists(path):
      raise errors.KeyFileError(f"key file already exists: {path}")
    kf = KeyFile(path, secret or secrets_lib.token_bytes(32), _check_party(party), 0, {})
    _write_atomic(path, kf.to_json())
  return kf


def reserve(path: str, create_missing: bool = False) -> tuple[KeyFile, int]:
  """(key file, counter): the counter is spent on disk before this returns."""
  with _locked(path):
    if not os.path.exists(path):
      if not create_missing:
        raise errors.KeyFileError(f"key file not found: {path}")
      _write_atomic(
        path, KeyFile(path, secrets_lib.token_bytes(32), DEFAULT_PARTY, 0, {}).to_json()
      )
    kf = load(path)
    counter = kf.counter
    if counter >= MAX_COUNTER:
      raise errors.KeyFileError(f"key file {path} has used all 2**32 counters; make a new key")
    kf.counter = counter + 1
    _write_atomic(path, kf.to_json())
  return kf, counter


def share(path: str, new_path: str, party: str) -> KeyFile:
  """Writes another party's copy of ``path`` (same secret, party id ``party``, counter 0)."""
  _check_party(party)
  with _locked(path):
    kf = load(path)
    if party == kf.party or party in kf.peers:
      raise errors.KeyFileError(f"party id {party!r} is already used with this secret")
    kf.peers[party] = {"top": -1, "seen": 0}
    _write_atomic(path, kf.to_json())
  peers = {p: {"top": -1, "seen": 0} for p in kf.peers if p != party}
  peers[kf.party] = {"top": -1, "seen": 0}
  with _locked(new_path):
    if os.path.exists(new_path):
      raise errors.KeyFileError(f"key file already exists: {new_path}")
    other = KeyFile(new_path, kf.secret, party, 0, peers)
    _write_atomic(new_path, other.to_json())
  return other


def window(kf: KeyFile, party: str) -> dict:
  return kf.peers.get(party, {"top": -1, "seen": 0})


def is_replay(win: dict, counter: int) -> str | None:
  """Why ``counter`` must be rejected under the window ``win``, or None if it is fresh."""
  top, seen = int(win["top"]), int(win["seen"])
  if counter > top:
    return None
  if top - counter >= WINDOW:
    return f"counter {counter} is older than the replay window ({WINDOW} below {top})"
  if (seen >> (top - counter)) & 1:
    return f"counter {counter} was already accepted"
  return None


def advance(win: dict, counter: int) -> dict:
  """The window after accepting ``counter`` (which ``is_replay`` found fresh)."""
  top, seen = int(win["top"]), int(win["seen"])
  if counter > top:
    seen = ((seen << (counter - top)) | 1) & ((1 << WINDOW) - 1) if top >= 0 else 1
    top = counter
  else:
    seen |= 1 << (top - counter)
  return {"top": top, "seen": seen}


def accept(path: str, party: str, counter: int) -> KeyFile:
  """Records ``counter`` from ``party`` as accepted; ``errors.ReplayError`` if it is not fresh."""
  with _locked(path):
    kf = load(path)
    why = is_replay(window(kf, party), counter)
    if why is not None:
      raise errors.ReplayError(
        f"replayed image rejected: it authenticates, but {why} from party {party!r}"
      )
    kf.peers[party] = advance(window(kf, party), counter)
    _write_atomic(path, kf.to_json())
  return kf


def candidates(kf: KeyFile, search: int) -> list[tuple[str, list[int]]]:
  """(party, counters) the receiver tries: ``search`` counters at and below each sender's
  highest accepted one (so a replay is recognized) and ``search`` above it."""
  out = []
  for party in kf.senders():
    top = int(window(kf, party)["top"])
    if party == kf.party:
      top = max(top, kf.counter - 1)  # a plain copy's own counter tracks the sender's
    lo = max(0, top + 1 - search)
    out.append((party, list(range(lo, min(MAX_COUNTER, top + 1 + search)))))
  return out
