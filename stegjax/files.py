"""Files stegjax writes: atomically, and named by a fingerprint of what made them.

Lives below every package (no jax, no orbax) so that data/, security/ and train/ all use
the same two functions; ``stegjax.train.toolkit`` re-exports them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from typing import Any, Callable


def atomic_write(path: str, data: bytes | str | Callable[[Any], None], mode: int | None = None):
  """Writes ``path`` so that readers see the old file or the whole new one, never a part.

  ``data`` is bytes, text (UTF-8) or ``writer(binary_file)`` (``lambda f: np.save(f, a)``).
  The bytes go to a temporary file in the same directory, are fsynced, then ``os.replace``
  puts it in place. ``mode`` (e.g. ``0o600``) is applied when the temporary file is created,
  so a secret is never readable by others, not even for a moment; by default the file gets
  the usual ``0o666`` less the umask. On any failure the temporary file is removed.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
  try:
    if mode is not None:
      os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
    with os.fdopen(fd, "wb") as f:
      if callable(data):
        data(f)
      else:
        f.write(data.encode() if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  with contextlib.suppress(OSError):  # the rename itself survives a power cut
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(dir_fd)
    finally:
      os.close(dir_fd)


def fingerprint(*parts) -> str:
  """10 hex digits of SHA-256 over ``parts`` (ConfigDicts, dicts, numbers, strings) as JSON."""
  blob = json.dumps(
    [p.to_dict() if hasattr(p, "to_dict") else p for p in parts], sort_keys=True, default=str
  )
  return hashlib.sha256(blob.encode()).hexdigest()[:10]
