"""stegjax's own exceptions: the ones the command line prints as one line.

Anything raised from here means the user gave something stegjax cannot use (a bad config value,
an unreadable image, the wrong key, a message too long for the images); ``stegjax.main`` prints
``stegjax: error: <Class>: <message>`` and exits 2. Any other exception is a bug and keeps its
traceback. Each class also derives from the builtin a caller would expect (``ValueError``,
``FileNotFoundError``), so library users can catch either.
"""

from __future__ import annotations


class StegjaxError(Exception):
  """Base of every error caused by the user's input rather than by stegjax."""


class ConfigError(StegjaxError, ValueError):
  """A config field has a value stegjax cannot run with (names the field)."""


class InputError(StegjaxError, ValueError):
  """An input file or value is unusable: not an image, a bad caption, a wrong shape."""


class MissingFileError(StegjaxError, FileNotFoundError):
  """A file the command needs does not exist."""


class KeyFileError(StegjaxError, ValueError):
  """The key file is missing, malformed, locked or has unsafe permissions."""


class WrongKeyError(StegjaxError, ValueError):
  """Nothing authenticates under this key: wrong key, wrong counter or a corrupted stego object."""


class ReplayError(StegjaxError, ValueError):
  """The message authenticates but its counter was already accepted from this sender."""


class MessageTooLongError(StegjaxError, ValueError):
  """The message does not fit the capacity that was requested or configured."""


class CheckpointMismatchError(StegjaxError, ValueError):
  """A checkpoint does not match the config or the expected published layout."""


class IncompleteMessageError(StegjaxError, ValueError):
  """Too few of a message's images came through intact to rebuild it (names how many)."""
