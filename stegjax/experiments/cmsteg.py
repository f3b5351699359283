"""Experiment: CMSTEG end to end, and the embed / extract / share commands.

``config.mode``:
- ``evaluate`` (default): hides random messages in N generated images, sends them
  through every channel, recovers with M1 (plain re-encoding), M1+M2, M1+M2+M3 and
  reports token recovery R_q, effective capacity Cap and full-message success per
  channel beside the paper's Table 2, the caption-length table (Table 4), eq. (16)
  against the measured corrections, timings, and stego images with their captions.
- ``embed``: spends the key file's next counter, hides ``message_file`` across as many
  stego images as it needs under this party's keys, prepares M3 for ``cmsteg.channel``,
  writes ``out/stego_000.png ...`` with each caption beside it (``stego_000.txt``).
- ``extract``: reads ``image`` (a folder or a comma-separated list; captions from the
  ``.txt`` beside each image), tries every sender party of the key file at counters around
  its last accepted one, rejects a replay, writes ``out/message.bin`` (or stdout) and says
  how many images it used.
- ``share``: writes the key file ``out`` for another party ``party`` (same secret).
"""

from __future__ import annotations

import os
import time

import numpy as np
import tqdm
from absl import logging
from PIL import Image

from stegjax import errors
from stegjax.cmsteg import api, commands, evaluate, evaluate_messages, keyfile, recipes
from stegjax.cmsteg import caption as caption_lib
from stegjax.cmsteg import embed as m1
from stegjax.cmsteg import report as cmsteg_report
from stegjax.metrics import report
from stegjax.stego import framing

MODES = ("evaluate", "embed", "extract", "share")


def run(config, workdir: str):
  if config.mode not in MODES:
    raise errors.ConfigError(f"unknown --config.mode={config.mode!r}; valid: {', '.join(MODES)}")
  if config.mode == "share":
    return _share_command(config)
  os.makedirs(workdir, exist_ok=True)
  if config.mode == "embed":  # inputs are checked before the models load
    return _embed_command(config, _embed_inputs(config), lambda: api.load_models(config, workdir))
  if config.mode == "extract":
    inputs = _extract_inputs(config)
    return _extract_command(config, inputs, api.load_models(config, workdir))
  t0, load_start = time.time(), os.getloadavg()[0]
  kinds = ("tokenizer", "prior", "captioner")
  trained = not all(recipes.is_cached(config, workdir, k) for k in kinds)
  models = api.load_models(config, workdir)
  t_models = time.time() - t0
  res = _evaluate(config, workdir, models)
  timings = dict(models_s=t_models, total_s=time.time() - t0, load_start=load_start)
  timings.update(load_end=os.getloadavg()[0], trained_models=trained)
  cmsteg_report.write(workdir, config, res, timings)
  logging.info("report: %s", os.path.join(workdir, "report.md"))
  return res


# ----------------------------------------------------------------------------- evaluation


def _evaluate(config, workdir: str, models: api.Models) -> dict:
  cm = config.cmsteg
  n = int(cm.num_images)
  rs = np.random.RandomState(config.seed + 11)
  secret = bytes(rs.randint(0, 256, 32, dtype=np.uint8))
  counters = np.arange(n, dtype=np.int64)
  labels = np.asarray([api.draw_label(secret, c, models.candidates) for c in counters], np.int32)
  messages = [bytes(rs.randint(0, 256, int(cm.message_bytes), dtype=np.uint8)) for _ in range(n)]

  sent, speed = _hide_timed(models, messages, secret, counters, labels)
  capacity = _capacity(models, secret, counters, labels, rs)
  if report.is_writer():  # every process computes the same images; process 0 writes
    Image.fromarray(sent["images"][0]).save(os.path.join(workdir, "stego_example.png"))
  report.save_grid(sent["images"][:16], os.path.join(workdir, "stego_grid.png"), ncol=8, scale=4)
  per_channel, captions, received = _channels(config, workdir, models, sent, labels, secret)
  t0 = time.time()
  table4 = evaluate.caption_length_table(
    models,
    sent,
    labels,
    secret,
    counters,
    cm.length_table_channel,
    tuple(cm.caption_lengths),
    config.seed,
    received.get(cm.length_table_channel),
  )
  example = captions.get("jpeg85", next(iter(captions.values())))
  t_tok = models.grid[0] * models.grid[1]
  return dict(
    speed,
    num_images=n,
    grid=list(models.grid),
    message_bytes=int(cm.message_bytes),
    framed_bits=int(sent["framed_bits"][0]),
    embedded_bits=evaluate.stats(sent["n_embedded"]),
    message_fits=float(np.mean(sent["n_embedded"] >= sent["framed_bits"])),
    capacity_bits=evaluate.stats(capacity),
    bits_per_token=float(np.mean(capacity)) / t_tok,
    table4_seconds=time.time() - t0,
    channels=per_channel,
    caption_lengths=table4,
    captions_example=[caption_lib.decode_text(c) for c in example],
    messages=evaluate_messages.evaluate(models, config.seed),
    settings=cm.to_dict(),
  )


def _plain(models, labels, counters):
  n = len(labels)
  zeros = np.zeros((n, 1), np.uint8)
  key = np.zeros(8, np.uint32)
  return m1.embed(models.prior, key, zeros, np.zeros(n, np.int32), labels, counters, models.sampler)


def _hide_timed(models, messages, secret, counters, labels):
  """M1 of every message, and plain sampling in the same loop (each warmed up, then timed)."""
  api.hide(models, messages, secret, counters, labels)
  t0 = time.time()
  sent = api.hide(models, messages, secret, counters, labels)
  t_m1 = time.time() - t0
  sent["messages"] = messages
  _plain(models, labels, counters)
  t0 = time.time()
  _plain(models, labels, counters)
  t_plain = time.time() - t0
  logging.info("M1: %d images, %.1f s; embedded bits %s", len(labels), t_m1, sent["n_embedded"])
  n = len(labels)
  return sent, dict(m1_seconds_per_image=t_m1 / n, plain_sampling_seconds_per_image=t_plain / n)


def _capacity(models, secret, counters, labels, rs):
  """Bits the same images could carry: a long random payload under unused counters (so no
  (key, counter) pair of a sent message is reused)."""
  n, t = len(labels), models.grid[0] * models.grid[1]
  long_bits = rs.randint(0, 2, (n, 24 * t)).astype(np.uint8)
  key = framing.sampling_key(secret)
  lengths = np.full(n, long_bits.shape[1])
  return m1.embed(models.prior, key, long_bits, lengths, labels, counters + n, models.sampler)[1]


def _channels(config, workdir, models, sent, labels, secret):
  cm = config.cmsteg
  counters = np.arange(len(labels), dtype=np.int64)
  per_channel, captions, received = {}, {}, {}
  for name in tqdm.tqdm(cm.channels, desc="channels"):
    logging.info("channel %s", name)
    r = evaluate.evaluate_channel(
      models, sent, labels, secret, counters, name, int(cm.caption_length), config.seed
    )
    captions[name], received[name] = r.pop("_captions"), r.pop("_received")
    per_channel[name] = r
    if report.is_writer():  # a long run that stops later still leaves its finished channels
      report.write_json(os.path.join(workdir, "partial.json"), {"channels": per_channel})
  return per_channel, captions, received


# ----------------------------------------------------------------------------- commands


def _share_command(config):
  if not config.out:
    raise errors.ConfigError("--config.out (the new key file) is required for share")
  other = keyfile.share(config.key_file, config.out, config.party)
  print(f"stegjax: wrote {config.out} for party {other.party!r} (give it to that party only)")
  return other


def _out_folder(path: str) -> str:
  if not path:
    raise errors.ConfigError("--config.out (an output folder) is required for embed")
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.InputError(f"--config.out must be a folder, but {path} is a file")
  os.makedirs(path, exist_ok=True)
  return path


def _embed_inputs(config):
  if not config.message_file or not os.path.isfile(config.message_file):
    raise errors.MissingFileError(f"message file not found: {config.message_file!r}")
  with open(config.message_file, "rb") as f:
    message = f.read()
  if os.path.exists(config.key_file):
    keyfile.load(config.key_file)  # a broken or unsafe key file fails before any work
  return message, _out_folder(config.out)


def _embed_command(config, inputs, load_models):
  message, out = inputs
  return commands.embed(config, load_models(), message, out)


def _extract_inputs(config):
  return commands.read_inputs(config)


def _extract_command(config, inputs, models: api.Models):
  return commands.extract(config, models, inputs)
