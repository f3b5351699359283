"""Real messages across images: what the default evaluation measures beside Tables 2 and 4.

``evaluate(models, seed)`` hides ``cmsteg.num_messages`` random messages of
``cmsteg.file_bytes`` each across as many images as they need (``transfer.send``,
corrections prepared for ``cmsteg.channel`` and ``cmsteg.prepare_channels``), sends every
image through each channel of
``cmsteg.message_channels``, and runs the receiver (``transfer.receive``) as a user would:
M2's stand-in is the one the received file implies (a PNG none, a JPEG its quality, which
``extract`` reads from the file's quantization tables; the receiver is not told the channel
otherwise), the images come in a shuffled order, and on the prepared channel once more with
``cmsteg.redundancy`` images deleted. It reports images per message, bits per image, message success per channel,
how each image was read (the caption's corrections, none, list decoding) and the candidates
list decoding tried; plus the caption model's held-out perplexity and example captions.
"""

from __future__ import annotations

import collections
import time

import jax
import numpy as np

from stegjax import errors
from stegjax.channels import real
from stegjax.cmsteg import api, transfer
from stegjax.cmsteg import caption as caption_lib
from stegjax.cmsteg import evaluate as evaluate_lib


def _receive(models, sent, x, secret, counter, order, name) -> dict:
  caps = [sent["captions"][i] for i in order]
  t0 = time.time()
  try:
    out = transfer.receive(models, x[order], caps, secret, [counter], name)
    ok = out["message"] == sent["message"]
    row = dict(ok=bool(ok), used=out["used"], tried=out["tried"], how=out["how"], error="")
  except errors.StegjaxError as e:  # the receiver refused: a failure to report, not a crash
    row = dict(ok=False, used=0, tried=0, how=[], error=f"{type(e).__name__}: {e}")
  row["seconds_per_image"] = (time.time() - t0) / len(order)
  return row


def _summary(rows) -> dict:
  how = collections.Counter(h for r in rows for h in r["how"])
  return {
    "message_ok": float(np.mean([r["ok"] for r in rows])),
    "images_used": float(np.mean([r["used"] for r in rows])),
    "list_candidates": float(np.mean([r["tried"] for r in rows])),
    "seconds_per_image": float(np.mean([r["seconds_per_image"] for r in rows])),
    "how": dict(how),
    "errors": [r["error"] for r in rows if r["error"]],
  }


def _send_all(models, secret, messages, seed):
  cm = models.config.cmsteg
  sim_key = evaluate_lib.channel_keys(seed, cm.channel)[0]
  t0, sent = time.time(), []
  for j, m in enumerate(messages):
    s = transfer.send(models, m, secret, j, cm.channel, jax.random.fold_in(sim_key, j))
    s["message"] = m
    sent.append(s)
  n = sum(len(s["images"]) for s in sent)
  return sent, (time.time() - t0) / n


def captions_report(models, sent) -> dict:
  """Held-out perplexity, payload per caption and example captions (with a vocabulary check)."""
  cfg = models.config.captioner
  window = int(cfg.window)
  prior = models.caption_prior(window)
  vocab = caption_lib.vocabulary(caption_lib.VOCAB_SIZE)
  ppl = caption_lib.heldout_perplexity(prior.model, prior.params, vocab.size, window)
  ids = np.concatenate([s["captions"] for s in sent])
  texts = [vocab.decode(c) for c in ids]
  corpus = caption_lib.corpus_words()
  words = [w for c in ids for w in vocab.words(c) if w != caption_lib.NEWLINE]
  bits = np.concatenate([s["caption_bits"] for s in sent])
  return {
    "heldout_perplexity": ppl,
    "vocabulary": vocab.size,
    "corpus": caption_lib.corpus_stats(vocab.size),
    "words_per_caption": int(ids.shape[1]),
    "chars_per_caption": float(np.mean([len(t) for t in texts])),
    "payload_bits_per_caption": evaluate_lib.stats(bits),
    "words_in_corpus": float(np.mean([w in corpus for w in words])),
    "retokenize_exact": bool(all(np.array_equal(vocab.encode(t), c) for t, c in zip(texts, ids))),
    "examples": texts[:8],
  }


def evaluate(models: api.Models, seed: int) -> dict:
  cm = models.config.cmsteg
  rs = np.random.RandomState(seed + 17)
  secret = bytes(rs.randint(0, 256, 32, dtype=np.uint8))
  nbytes = int(cm.file_bytes)
  messages = [bytes(rs.randint(0, 256, nbytes, dtype=np.uint8)) for _ in range(cm.num_messages)]
  sent, send_s = _send_all(models, secret, messages, seed)
  per_channel = {}
  for name in cm.message_channels:
    rows = []
    for j, s in enumerate(sent):
      x = real.apply(name, s["images"], evaluate_lib.channel_keys(seed + j, name)[1])
      order = rs.permutation(len(x))
      rows.append(_receive(models, s, x, secret, j, order, name))
    per_channel[name] = _summary(rows)
  rows = []
  r = int(cm.redundancy)
  for j, s in enumerate(sent):  # the prepared channel with r images lost
    x = real.apply(cm.channel, s["images"], evaluate_lib.channel_keys(seed + j, cm.channel)[1])
    order = rs.permutation(len(x))[r:]
    rows.append(_receive(models, s, x, secret, j, order, cm.channel))
  images = [len(s["images"]) for s in sent]
  lay = sent[0]["layout"]
  return {
    "messages": len(sent),
    "message_bytes": nbytes,
    "images_per_message": evaluate_lib.stats(images),
    "message_bits_per_image": 8 * nbytes / float(np.mean(images)),
    "chunk_bits": lay.chunk_bits,
    "payload_bits_per_image": 8 * lay.payload_bytes,
    "carried_bits": evaluate_lib.stats(np.concatenate([s["carried_bits"] for s in sent])),
    "short_images": int(sum(s["schedule"]["short"] for s in sent)),
    "k": lay.k,
    "redundancy": r,
    "prepared_channel": cm.channel,
    "prepared_channels": transfer.prepared_channels(cm.channel, cm.get("prepare_channels", ())),
    "send_seconds_per_image": send_s,
    "channels": per_channel,
    "lost": dict(_summary(rows), lost=r, channel=cm.channel),
    "captions": captions_report(models, sent),
  }
