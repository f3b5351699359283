"""The embed and extract commands: a file in, stego images and captions out, and back.

``embed`` spends one key-file counter per message (its images use the nonce block of that
counter), hides the file across as many images as it needs (``transfer.send``) and writes
``out/stego_000.png, stego_001.png, ...``, each with its caption beside it
(``stego_000.txt``). ``extract`` takes a folder or a comma-separated list of images (their
captions are read from the ``.txt`` files of the same name, when present), tries each sender
party of the key file, and says how many images it used. M2's stand-in comes from the files
(a JPEG's quality from its quantization tables; a PNG needs none) unless
``cmsteg.receiver_channel`` names one.
"""

from __future__ import annotations

import collections
import functools
import io
import os
import sys

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

from stegjax import errors
from stegjax.channels import real
from stegjax.cmsteg import api, evaluate, keyfile, transfer
from stegjax.cmsteg import caption as caption_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_paths(spec: str) -> list[str]:
  """A folder's images (sorted by name) or the comma-separated list ``spec``."""
  if not spec:
    raise errors.ConfigError("--config.image (a folder of stego images, or a list) is required")
  if os.path.isdir(spec):
    names = sorted(n for n in os.listdir(spec) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
      raise errors.MissingFileError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {spec}")
    return [os.path.join(spec, n) for n in names]
  paths = [p for p in spec.split(",") if p]
  for p in paths:
    if not os.path.isfile(p):
      raise errors.MissingFileError(f"image not found: {p!r}")
  return paths


@functools.lru_cache(maxsize=1)
def _jpeg_tables() -> dict[int, tuple]:
  """PIL's luminance quantization table at every JPEG quality (what an encoder writes)."""
  x = np.zeros((16, 16, 3), np.uint8)
  out = {}
  for q in range(1, 101):
    with Image.open(io.BytesIO(real.jpeg_bytes(x, q))) as im:
      out[q] = tuple(im.quantization[0])
  return out


def channel_of_files(paths, default: str) -> str:
  """M2's stand-in the received files imply: ``jpegQ`` for JPEG files (Q read back from
  their quantization tables, the most common one), ``png`` for lossless files, ``default``
  when a JPEG's tables match no quality PIL writes."""
  qualities = []
  for p in paths:
    with Image.open(p) as im:
      if im.format != "JPEG":
        qualities.append(None)
        continue
      table = tuple(im.quantization.get(0, ()))
    tables = _jpeg_tables()
    best = min(tables, key=lambda q: sum(abs(a - b) for a, b in zip(tables[q], table)))
    qualities.append(best if tables[best] == table else -1)
  q = max(set(qualities), key=qualities.count)
  return "png" if q is None else (default if q < 0 else f"jpeg{q}")


def read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise errors.InputError(f"{path} is not an image stegjax can read ({e})") from None


def read_caption(image_path: str, folder: str = ""):
  """(caption ids or None, a note) from ``<name>.txt`` beside the image (or in ``folder``).

  Windows line ends are folded back; any other change to the text makes the caption
  unusable (the receiver then goes on without its corrections, and the note says why).
  """
  stem = os.path.splitext(os.path.basename(image_path))[0] + ".txt"
  path = os.path.join(folder or os.path.dirname(image_path), stem)
  if not os.path.isfile(path):
    return None, f"no caption {path}"
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", errors="replace").replace("\r\n", "\n")
  try:
    return caption_lib.encode_text(text), ""
  except errors.InputError as e:
    logging.warning("caption %s ignored: %s", path, e)
    return None, f"caption {path} ignored ({e})"


def read_inputs(config):
  """(key file, images uint8[N, H, W, 3], caption ids per image, notes), checked up front."""
  kf = keyfile.load(config.key_file)
  paths = image_paths(config.image)
  images = [read_image(p) for p in paths]
  caps = [read_caption(p, config.caption) for p in paths]
  shapes = {im.shape for im in images}
  if len(shapes) > 1:
    raise errors.InputError(f"the images differ in size: {sorted(shapes)}")
  if config.out and os.path.exists(config.out) and not os.path.isdir(config.out):
    raise errors.InputError(f"--config.out must be a folder, but {config.out} is a file")
  return kf, paths, np.stack(images), [c for c, _ in caps], [n for _, n in caps if n]


def embed(config, models: api.Models, message: bytes, out: str) -> dict:
  cm = config.cmsteg
  if config.label >= 0:
    raise errors.ConfigError(
      "--config.label cannot be fixed for a message across images: each image's class is "
      "drawn by the PRF of its nonce (leave it at -1)"
    )
  kf, counter = keyfile.reserve(config.key_file, create_missing=True)  # spent before generating
  secret = keyfile.party_secret(kf.secret, kf.party)
  sim_key = evaluate.channel_keys(config.seed, cm.channel)[0]
  sent = transfer.send(models, message, secret, counter, cm.channel, sim_key)
  n = len(sent["images"])
  for i in range(n):
    Image.fromarray(sent["images"][i]).save(os.path.join(out, f"stego_{i:03d}.png"))
    with open(os.path.join(out, f"stego_{i:03d}.txt"), "w", newline="") as f:
      f.write(caption_lib.decode_text(sent["captions"][i]))
  lay, st = sent["layout"], sent["schedule"]
  print(
    f"stegjax: hid {len(message)} bytes in {n} images ({out}/stego_000.png .. "
    f"stego_{n - 1:03d}.png, each caption beside it as .txt) with counter {counter} of party "
    f"{kf.party!r}: {lay.k} shares + {lay.r} parity of {lay.payload_bytes} bytes per image, "
    f"so any {lay.r} image(s) may be lost; {st['short']} image(s) carried less than a chunk "
    f"and were sent anyway; corrections prepared for {cm.channel}"
  )
  return sent


def extract(config, models: api.Models, inputs) -> bytes:
  kf, paths, images, caps, notes = inputs
  channel = config.cmsteg.receiver_channel or channel_of_files(paths, config.cmsteg.channel)
  logging.info("M2 stand-in: %s", channel)
  pixels = np.stack([api.check_image(models, x) for x in images])
  received = api.receive_tokens(models, pixels, channel)
  failures = []
  for party, counters in keyfile.candidates(kf, int(config.counter_window)):
    secret = keyfile.party_secret(kf.secret, party)
    try:
      got = transfer.receive(models, images, caps, secret, counters, channel, received)
    except errors.WrongKeyError as e:
      failures.append(f"party {party!r}: {e}")
      continue
    keyfile.accept(config.key_file, party, got["counter"])  # a replay raises ReplayError
    _write(config, got["message"])
    how = collections.Counter(got["how"])
    print(
      f"\nstegjax: recovered {len(got['message'])} bytes from {got['used']} of {len(paths)} "
      f"images (party {party!r}, counter {got['counter']}; "
      + ", ".join(f"{v} {k}" for k, v in sorted(how.items()))
      + f"; list decoding tried {got['tried']} candidates)"
      + (f" to {config.out}/message.bin" if config.out else ""),
      file=sys.stderr,
    )
    return got["message"]
  raise errors.WrongKeyError("; ".join(failures) + (f" [{'; '.join(notes)}]" if notes else ""))


def _write(config, message: bytes) -> None:
  if config.out:
    os.makedirs(config.out, exist_ok=True)
    with open(os.path.join(config.out, "message.bin"), "wb") as f:
      f.write(message)
  else:
    sys.stdout.buffer.write(message)
    sys.stdout.flush()
