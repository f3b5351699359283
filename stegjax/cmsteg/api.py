"""CMSTEG sender and receiver: what the commands and the evaluation call.

One image, one chunk (what a caller loops over for a message across images):

- ``hide_image(models, payload, secret, counter, channel)`` -> ``Sent``: the class drawn
  from the PRF of (secret, counter) (``draw_label``) unless given; M1 (frame + encrypt,
  Discop in the AR prior, decode to an image); the sender's simulation of the channel, M2
  and the receiver's class inference; M3 (the corrections that simulation needs, sealed
  with an authenticator, hidden in a caption).
- ``reveal_image(models, image, caption_ids, secret, counters, channel)`` -> ``Revealed``:
  M2, class inference, the caption read under every topic the sender could have used
  (inferred one first) and only authenticated payloads applied, then extraction with the
  corrections and without, under the caption's, the inferred and the PRF label, for every
  candidate counter; only AEAD-verified bytes come out (``errors.WrongKeyError`` else).

``secret`` is always a party's secret (``keyfile.party_secret``): keys, the label draw and
the caption's randomness all derive from it. The batched pieces (``hide``,
``correction_captions``, ``read_corrections``, ``reveal_bits``) serve the evaluation.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from cryptography.hazmat.primitives import hashes, hmac

from stegjax import errors
from stegjax import channels
from stegjax.cmsteg import caption as caption_lib
from stegjax.cmsteg import correct
from stegjax.cmsteg import embed as m1
from stegjax.cmsteg import recipes, recover
from stegjax.metrics import report
from stegjax.stego import framing, prf

CAPTION_INFO = b"stegjax/v1/caption-sampling"
LABEL_INFO = b"stegjax/v1/class-label"


MessageTooLongError = errors.MessageTooLongError


@dataclasses.dataclass
class Models:
  vq: recipes.Trained
  prior: recipes.Trained
  captioner: recipes.Trained
  codebook: np.ndarray
  sampler: m1.Sampler
  caption_sampler: m1.Sampler
  config: object

  @property
  def grid(self):
    return tuple(self.prior.info["grid"])

  @property
  def candidates(self) -> list[int]:
    """The classes a stego image can have (the prior's trained classes)."""
    return [int(c) for c in self.prior.info["train_labels"]]

  def caption_prior(self, length: int) -> recipes.Trained:
    """The caption LM drawing ``length`` characters (same weights; rotary tables only)."""
    model = recipes.caption_model(self.config, length)
    return recipes.Trained(model, self.captioner.params, self.captioner.info)


def published_models(config):
  """(tokenizer, prior) from LlamaGen checkpoints (``--config.checkpoints.vq/gpt``)."""
  from stegjax.models import convert_llamagen  # pylint: disable=g-import-not-at-top

  ck = config.checkpoints
  if not (ck.vq and ck.gpt):
    raise errors.ConfigError("--config.checkpoints.vq and --config.checkpoints.gpt are both needed")
  dtype = jnp.bfloat16 if jax.default_backend() != "cpu" else jnp.float32
  vq_m, vq_p, gpt_m, gpt_p = convert_llamagen.load_checkpoints(
    ck.vq, ck.gpt, image_size=int(config.data.patch_size), dtype=dtype
  )
  vq = recipes.Trained(vq_m, vq_p, {"downsample": vq_m.downsample_factor})
  classes = list(range(gpt_m.num_classes))
  prior = recipes.Trained(
    gpt_m,
    gpt_p,
    dict(
      grid=tuple(gpt_m.grid),
      num_classes=gpt_m.num_classes,
      train_labels=classes,
      class_names=[f"class{c}" for c in classes],
      patch_size=int(config.data.patch_size),
    ),
  )
  return vq, prior


def load_models(config, workdir: str) -> Models:
  """Trains (first run) or loads (later runs) the tokenizer, the prior and the captioner.

  With ``config.checkpoints.vq/gpt`` set, the tokenizer and prior are LlamaGen's
  published models (converted on the fly or from a converted directory).
  """
  if config.checkpoints.vq or config.checkpoints.gpt:
    vq, prior = published_models(config)
  else:
    vq, prior = recipes.prior(config, workdir)
  cap = recipes.captioner(config, workdir)
  cm = config.cmsteg
  vocab = caption_lib.VOCAB_SIZE
  cap_sampler = m1.Sampler(
    variant=cm.variant,
    precision=int(cm.precision),
    top_k=min(int(cm.caption_top_k), vocab),
    cfg_scale=1.0,
    temperature=1.0,
    rows=int(cm.rows),
  )
  return Models(
    vq, prior, cap, recipes.vq_codebook(vq), m1.Sampler.from_config(cm), cap_sampler, config
  )


def decode_images(models: Models, tokens) -> np.ndarray:
  """Token grids [B, T] -> uint8 images [B, H, W, 3] (what is saved as PNG)."""
  h, w = models.grid
  x = models.vq.model.apply(
    {"params": models.vq.params}, jnp.asarray(tokens).reshape(-1, h, w), method="decode_indices"
  )
  return report.to_uint8(np.clip(np.asarray(x), -1.0, 1.0))


def draw_label(secret: bytes, counter: int, candidates) -> int:
  """A class drawn uniformly from ``candidates`` by the PRF of (secret, counter).

  HMAC-SHA256 under a key of its own gives 64-bit words; rejection sampling removes the
  modulo bias, so every class is exactly equally likely and a warden who sees the classes
  of one sender's images learns nothing about their counters.
  """
  cands = list(candidates)
  n = len(cands)
  key = prf.words_to_bytes(prf.make_key(secret, LABEL_INFO))
  limit = (2**64 // n) * n
  for attempt in range(1 << 16):
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(int(counter).to_bytes(8, "big") + attempt.to_bytes(4, "big"))
    word = int.from_bytes(h.finalize()[:8], "big")
    if word < limit:
      return int(cands[word % n])
  raise AssertionError("unreachable: 2**16 rejections")


def hide(models: Models, messages, secret: bytes, counters, labels, strict: bool = False) -> dict:
  """M1 for a batch of messages. ``strict`` raises when a message does not fit its image."""
  framed = [framing.pack(m, secret, int(c)) for m, c in zip(messages, counters)]
  lengths = np.asarray([len(f) for f in framed], np.int32)
  bits = np.zeros((len(framed), int(lengths.max())), np.uint8)
  for i, f in enumerate(framed):
    bits[i, : len(f)] = f
  key = framing.sampling_key(secret)
  tokens, n = m1.embed(
    models.prior, key, bits, lengths, labels, np.asarray(counters), models.sampler
  )
  if strict and np.any(n < lengths):
    i = int(np.argmax(lengths - n))
    raise MessageTooLongError(
      f"message too long for the image: the framed message needs {lengths[i]} bits but the "
      f"image carried {n[i]} ({len(messages[i])}-byte message; {lengths[i] - 8 * len(messages[i])}"
      f" bits of framing); shorten it or use a larger config"
    )
  return {
    "tokens": tokens,
    "images": decode_images(models, tokens),
    "bits": framed,
    "framed_bits": lengths,
    "n_embedded": n,
  }


def label_bits(models: Models) -> int:
  """Bits of the class label the caption carries ahead of the corrections."""
  return max(1, int(np.ceil(np.log2(max(2, models.prior.model.num_classes)))))


def topics_for_labels(models: Models, labels) -> np.ndarray:
  names = models.prior.info["class_names"]
  return np.asarray([caption_lib.topic_of_class(names[int(l)]) for l in labels], np.int32)


def caption_topics(models: Models) -> list[int]:
  """Every topic a sender can condition its caption on (those of the candidate classes)."""
  return sorted({int(t) for t in topics_for_labels(models, models.candidates)})


def _payload_sizes(models: Models) -> tuple[int, int, int]:
  cm = models.config.cmsteg
  return label_bits(models), int(cm.caption_tag_bits), models.grid[0] * models.grid[1]


def correction_captions(
  models: Models,
  true_tokens,
  sim_tokens,
  labels,
  sim_labels,
  secret: bytes,
  counters,
  length: int,
  horizons=None,
  true_ranks=None,
) -> dict:
  """M3, sender side: plan corrections, fit them into a caption of ``length`` chars, draw it.

  ``sim_tokens`` int[B, T] (or int[B, C, T], C simulated channels, the prepared one
  first) and ``sim_labels`` come from the sender's own channel simulation and M2: the
  caption is conditioned on the topic of the class inferred from them (the first
  channel's), as the receiver will do first. The payload (``correct.seal``) is the true
  class label (so the receiver replays the prior under the right class even when its own
  inference is wrong), the coded corrections (ranks in the prior's order, valid through
  any channel), and an authenticator over both. ``horizons`` int[B]: no correction at or
  after it (the tokens past the message's last bit). ``true_ranks``: ``embed.prior_ranks`` of
  ``true_tokens`` when already computed.

  A caption's capacity depends on the bits it carries (they pick the characters), so a
  payload that does not fit is cut to what the last draw carried and drawn again; each
  retry keeps strictly fewer corrections, so the loop ends (at worst with the label alone).
  """
  cm = models.config.cmsteg
  lb, tb, t = _payload_sizes(models)
  if true_ranks is None:
    true_ranks = m1.prior_ranks(models.prior, true_tokens, labels, models.sampler)
  hz = [None] * len(true_tokens) if horizons is None else [int(h) for h in horizons]
  code = correct.Code.from_config(cm)
  plan = lambda i, limit=None, max_bits=None: correct.plan(
    true_tokens[i], sim_tokens[i], true_ranks[i], code, limit, hz[i], max_bits
  )
  plans = [plan(i) for i in range(len(true_tokens))]
  cap_prior = models.caption_prior(length)
  key = prf.make_key(secret, CAPTION_INFO)
  topics = topics_for_labels(models, sim_labels)
  # A fixed width (every token corrected) keeps one compiled caption loop per length.
  top_k = int(models.sampler.top_k) or int(models.prior.model.vocab_size)
  width = correct.max_sealed_bits(t, lb, tb, code, top_k)
  while True:
    sealed = [
      correct.seal(int(l), p, secret, int(c), t, lb, tb, code)
      for p, c, l in zip(plans, counters, labels)
    ]
    lengths = np.asarray([len(x) for x in sealed], np.int32)
    bits = np.zeros((len(sealed), width), np.uint8)
    for i, x in enumerate(sealed):
      bits[i, : len(x)] = x
    text, n = m1.embed(
      cap_prior, key, bits, lengths, topics, np.asarray(counters), models.caption_sampler
    )
    short = np.nonzero(n < lengths)[0]
    if len(short) == 0:
      break
    for i in short:  # keep the earliest corrections that fit what this caption carried
      have = len(plans[i].positions)
      if have == 0:
        raise errors.ConfigError(
          f"a {length}-word caption cannot carry even the {lb}-bit class label and the "
          f"{tb}-bit authenticator ({n[i]} bits carried); raise --config.cmsteg.caption_length"
        )
      plans[i] = plan(i, have - 1, int(n[i]) - lb - tb)
  return {
    "captions": text,
    "plans": plans,
    "caption_bits": n,
    "coded_bits": lengths,
    "topics": topics,
  }


def read_corrections(models: Models, captions, topics, secret: bytes, counters, length: int):
  """Receiver side of M3: (labels int32[B], ranks int32[B, T], ok bool[B]).

  ``ok`` is True only where every caption character could have been drawn under this
  key, counter and topic (the extraction's ok flags) and the payload's authenticator
  verifies; elsewhere ``labels`` is -1 and ``ranks`` all -1 (no corrections).
  """
  cm = models.config.cmsteg
  lb, tb, t = _payload_sizes(models)
  b = len(captions)
  _, bits, drawable = m1.extract(
    models.caption_prior(length),
    None,
    prf.make_key(secret, CAPTION_INFO),
    np.asarray(captions),
    np.asarray(topics),
    np.asarray(counters),
    models.caption_sampler,
  )
  ranks = np.full((b, t), -1, np.int32)
  labels = np.full(b, -1, np.int32)
  ok = np.zeros(b, bool)
  n_cls = models.prior.model.num_classes
  code = correct.Code.from_config(cm)
  for i in range(b):
    if not drawable[i].all():
      continue  # a character this topic/counter could never have drawn: not our caption
    try:
      label, pos, rk = correct.open_sealed(
        bits[i], secret, int(counters[i]), t, lb, n_cls, tb, code
      )
    except ValueError:
      continue
    ranks[i, pos], labels[i], ok[i] = rk, label, True
  return labels, ranks, ok


def read_corrections_any_topic(
  models: Models, captions, first_topics, secret: bytes, counters, length: int
) -> dict:
  """``read_corrections`` under ``first_topics``, then every other caption topic for the
  rows that did not authenticate. Returns labels, ranks, ok, the topic used (-1 none) and
  ``fallback`` (True where only another topic authenticated)."""
  captions, counters = np.asarray(captions), np.asarray(counters)
  first_topics = np.asarray(first_topics, np.int32)
  labels, ranks, ok = read_corrections(models, captions, first_topics, secret, counters, length)
  used = np.where(ok, first_topics, -1)
  for topic in caption_topics(models):
    todo = np.nonzero(~ok & (first_topics != topic))[0]
    if len(todo) == 0:
      continue
    lab, rk, good = read_corrections(
      models, captions[todo], np.full(len(todo), topic), secret, counters[todo], length
    )
    for j, i in enumerate(todo):
      if good[j] and not ok[i]:
        labels[i], ranks[i], ok[i], used[i] = lab[j], rk[j], True, topic
  fallback = ok & (used != first_topics)
  return {"labels": labels, "ranks": ranks, "ok": ok, "topics": used, "fallback": fallback}


def reveal_bits(models: Models, tokens, labels, secret: bytes, counters, ranks=None):
  """Corrected tokens and every bit they carry (M1 extraction with in-loop corrections)."""
  key = framing.sampling_key(secret)
  return m1.extract(
    models.prior,
    models.codebook,
    key,
    tokens,
    labels,
    np.asarray(counters),
    models.sampler,
    ranks=ranks,
  )


def leading_correct(got, want) -> int:
  """Cap: number of bits extracted correctly before the first wrong (or missing) bit."""
  n = min(len(got), len(want))
  diff = np.nonzero(np.asarray(got[:n]) != np.asarray(want[:n]))[0]
  return int(diff[0]) if len(diff) else n


def try_unpack(bits, secret: bytes, counter: int):
  """The verified message, or None (never returns unverified bytes)."""
  return unpack_or_reason(bits, secret, counter)[0]


def unpack_or_reason(bits, secret: bytes, counter: int):
  """(verified message, None) or (None, the framing error)."""
  try:
    return framing.unpack(bits, secret, int(counter)), None
  except framing.FramingError as e:
    return None, e


def failure_hint(why, counter: int) -> str | None:
  """What to tell the user about a framing failure worth naming: a header that decrypted
  (so key and counter are right) over a carrier short of N bits."""
  if isinstance(why, framing.TooShortError) and why.need > framing.HEADER_BITS:
    return f"under counter {counter} the header decrypts, but: {why}"
  return None


# ----------------------------------------------------------------------------- one image


def receive_tokens(models: Models, images, channel: str):
  """M2 and the class inference, as the receiver runs them (and the sender simulates).

  Row by row (M2 batch 1, inference in the sampler's fixed geometry), so the sender's
  simulation and the receiver compute bit-identical tokens and classes. Returns (tokens
  int32[B, T], classes int[B], M2's latents float32[B, T, d]).
  """
  cm = models.config.cmsteg
  rec = recover.recover(models.vq, images, channel, cm.m2_steps, cm.m2_lr, cm.m2_patience, 1)
  tok = rec["tokens"].reshape(len(images), -1)
  labels = m1.infer_labels(models.prior, tok, models.candidates, models.sampler.rows)
  return tok, labels, rec["latents"].reshape(len(images), tok.shape[1], -1)


@dataclasses.dataclass
class Sent:
  image: np.ndarray  # uint8 [H, W, 3]
  caption_ids: np.ndarray  # int32 [L]
  label: int
  counter: int
  framed_bits: int
  carried_bits: int
  corrections: int  # tokens the caption corrects ...
  errors: int  # ... of those the sender's simulated channel + M2 got wrong

  @property
  def caption(self) -> str:
    return caption_lib.decode_text(self.caption_ids)


def hide_image(
  models: Models, payload: bytes, secret: bytes, counter: int, channel: str, sim_key, label=None
) -> Sent:
  """One stego image and its caption (see the module doc). ``sim_key``: the channel draw of
  the sender's simulation; ``label``: a fixed class (else ``draw_label``)."""
  if label is None:
    label = draw_label(secret, counter, models.candidates)
  sent = hide(models, [payload], secret, [counter], np.asarray([label]), strict=True)
  sim = channels.image_channel(channel).apply(sent["images"], sim_key)
  sim_tok, sim_label, _ = receive_tokens(models, sim, channel)
  m3 = correction_captions(
    models,
    sent["tokens"],
    sim_tok,
    np.asarray([label]),
    sim_label,
    secret,
    [counter],
    int(models.config.cmsteg.caption_length),
  )
  p = m3["plans"][0]
  return Sent(
    sent["images"][0],
    np.asarray(m3["captions"][0], np.int32),
    int(label),
    int(counter),
    int(sent["framed_bits"][0]),
    int(sent["n_embedded"][0]),
    len(p.positions),
    p.num_errors,
  )


@dataclasses.dataclass
class Revealed:
  message: bytes
  counter: int
  label: int
  corrected: bool  # the caption's corrections were applied
  topic_fallback: bool  # the caption authenticated only under another topic than inferred
  rows: int  # (counter, label, corrections) combinations replayed


def _reveal_rows(models, secret, counters, inferred, read):
  """(counter index, label, ranks or None) to replay: the caption's, then without it."""
  rows = []
  for i, c in enumerate(counters):
    if read is not None and read["ok"][i]:
      rows.append((i, int(read["labels"][i]), read["ranks"][i]))
    for lab in dict.fromkeys((inferred, draw_label(secret, int(c), models.candidates))):
      rows.append((i, int(lab), None))
  return rows


def check_image(models: Models, image) -> np.ndarray:
  """``image`` as uint8[H, W, 3] of this config's size, else ``errors.InputError``."""
  p = int(models.config.data.patch_size)
  image = np.asarray(image)
  if image.shape != (p, p, 3) or image.dtype != np.uint8:
    raise errors.InputError(
      f"image is {image.dtype}{list(image.shape)} but this config's stego images are "
      f"uint8[{p}, {p}, 3] (resize it back, or use the config it was made with)"
    )
  return image


def reveal_image(
  models: Models, image, caption_ids, secret: bytes, counters, channel: str, received=None
):
  """The message in one received image (and caption ids, or None), tried under ``counters``.

  ``received``: ``receive_tokens`` of this image when already computed (several parties'
  secrets tried on one image). Returns ``Revealed``; raises ``errors.WrongKeyError`` when
  nothing verifies (saying how many bits were missing where a header decrypted) and
  ``errors.InputError`` for an image of the wrong shape.
  """
  image = check_image(models, image)
  counters = np.asarray(counters, np.int64)
  tok, inferred, _ = received or receive_tokens(models, image[None], channel)
  read = None
  if caption_ids is not None:
    n, ids = len(counters), np.asarray(caption_ids, np.int32)
    first = np.full(n, topics_for_labels(models, inferred)[0])
    read = read_corrections_any_topic(
      models, np.repeat(ids[None], n, 0), first, secret, counters, len(ids)
    )
  rows = _reveal_rows(models, secret, counters, int(inferred[0]), read)
  t = tok.shape[1]
  ranks = np.stack([np.full(t, -1, np.int32) if r is None else r for _, _, r in rows])
  idx = np.asarray([i for i, _, _ in rows])
  labels = np.asarray([lab for _, lab, _ in rows])
  _, bits, _ = reveal_bits(
    models, np.repeat(tok, len(rows), 0), labels, secret, counters[idx], ranks=ranks
  )
  hints = []
  for j, (i, lab, r) in enumerate(rows):
    msg, why = unpack_or_reason(bits[j], secret, int(counters[i]))
    if msg is not None:
      fb = bool(read is not None and r is not None and read["fallback"][i])
      return Revealed(msg, int(counters[i]), lab, r is not None, fb, len(rows))
    hint = failure_hint(why, int(counters[i]))
    if hint:
      hints.append(hint)
  raise errors.WrongKeyError(
    f"no message could be recovered with this key (counters {counters[0]}..{counters[-1]}, "
    f"{len(rows)} replays): wrong key, or too many tokens were damaged ("
    + ("no caption given" if caption_ids is None else "the caption could not correct them")
    + (f"; {hints[0]}" if hints else "")
    + ")"
  )
