"""CMSTEG sender and receiver, batched: what the commands and the evaluation call.

Sender: ``hide`` (M1: frame + encrypt the message, draw the token grid with
Discop, decode to an image), then ``correction_captions`` (M3: simulate the
channel and M2, code the tokens the receiver will get wrong, hide that code in
a caption). Receiver: ``recover.recover`` (M2), then ``reveal`` (read the
caption's corrections, apply them inside the AR replay, extract the bits,
verify and decrypt the message).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from stegjax import errors
from stegjax.cmsteg import caption as caption_lib
from stegjax.cmsteg import correct
from stegjax.cmsteg import embed as m1
from stegjax.cmsteg import recipes
from stegjax.metrics import report
from stegjax.stego import framing, prf

CAPTION_INFO = b"stegjax/v1/caption-sampling"


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

  def caption_prior(self, length: int) -> recipes.Trained:
    """The caption LM drawing ``length`` characters (same weights; rotary tables only)."""
    model = recipes.caption_model(self.config, length)
    return recipes.Trained(model, self.captioner.params, self.captioner.info)


def published_models(config):
  """(tokenizer, prior) from LlamaGen checkpoints (``--config.checkpoints.vq/gpt``)."""
  from stegjax.models import convert_llamagen  # pylint: disable=g-import-not-at-top

  ck = config.checkpoints
  if not (ck.vq and ck.gpt):
    raise ValueError("--config.checkpoints.vq and --config.checkpoints.gpt are both needed")
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
  vocab = len(caption_lib.ALPHABET)
  cap_sampler = m1.Sampler(
    variant=cm.variant,
    precision=int(cm.precision),
    top_k=min(int(cm.caption_top_k), vocab),
    cfg_scale=1.0,
    temperature=1.0,
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


def correction_captions(
  models: Models, true_tokens, sim_tokens, labels, sim_labels, secret: bytes, counters, length: int
) -> dict:
  """M3, sender side: plan corrections, fit them into a caption of ``length`` chars, draw it.

  ``sim_tokens``/``sim_labels`` come from the sender's own channel simulation and M2: the
  caption is conditioned on the class inferred from them, as the receiver will do. The
  caption's payload is the true class label (so the receiver replays the prior under the
  right class even when its own inference is wrong), then the coded corrections.

  A caption's capacity depends on the bits it carries (they pick the characters), so a
  payload that does not fit is cut to what the last draw carried and drawn again; each
  retry keeps strictly fewer corrections, so the loop ends (at worst with the label alone).
  """
  cm = models.config.cmsteg
  t = true_tokens.shape[1]
  allowed = m1.allowed_sets(models.prior, true_tokens, labels, models.sampler)
  plans = [
    correct.plan(true_tokens[i], sim_tokens[i], allowed[i], models.codebook, cm.l1, cm.l2)
    for i in range(len(true_tokens))
  ]
  cap_prior = models.caption_prior(length)
  key = prf.make_key(secret, CAPTION_INFO)
  topics = topics_for_labels(models, sim_labels)
  lb = label_bits(models)
  # A fixed width (every token corrected) keeps one compiled caption loop per length.
  width = lb + correct.coded_bits(t, t, cm.l1, cm.l2)
  while True:
    coded = [
      correct.encrypt(
        np.concatenate([_uint(int(l), lb), correct.to_bits(p, t, cm.l1, cm.l2)]), secret, int(c)
      )
      for p, c, l in zip(plans, counters, labels)
    ]
    lengths = np.asarray([len(c) for c in coded], np.int32)
    bits = np.zeros((len(coded), width), np.uint8)
    for i, c in enumerate(coded):
      bits[i, : len(c)] = c
    text, n = m1.embed(
      cap_prior, key, bits, lengths, topics, np.asarray(counters), models.caption_sampler
    )
    short = np.nonzero(n < lengths)[0]
    if len(short) == 0:
      break
    for i in short:  # keep the earliest corrections that fit what this caption carried
      have = len(plans[i].positions)
      if have == 0:
        raise RuntimeError(
          f"a {length}-char caption cannot carry even the {lb}-bit class label "
          f"({n[i]} bits carried); use longer captions"
        )
      limit = min(correct.tau(int(n[i]) - lb, t, cm.l1, cm.l2), have - 1)
      plans[i] = correct.plan(
        true_tokens[i],
        sim_tokens[i],
        allowed[i],
        models.codebook,
        cm.l1,
        cm.l2,
        max_corrections=limit,
      )
  return {
    "captions": text,
    "plans": plans,
    "caption_bits": n,
    "coded_bits": lengths,
    "topics": topics,
  }


def _uint(value: int, width: int) -> np.ndarray:
  return np.asarray([(value >> (width - 1 - i)) & 1 for i in range(width)], np.uint8)


def read_corrections(
  models: Models, captions, topics, secret: bytes, counters, length: int, inferred_labels=None
):
  """Receiver side of M3: (labels int32[B], ranks int32[B, T], ok bool[B]).

  ``labels`` is the caption's class label, or where the caption is unreadable (``ok``
  False) ``inferred_labels`` (the receiver's own guess from its tokens), else -1.
  """
  cm = models.config.cmsteg
  b, t = len(captions), models.grid[0] * models.grid[1]
  key = prf.make_key(secret, CAPTION_INFO)
  _, bits, _ = m1.extract(
    models.caption_prior(length),
    None,
    key,
    np.asarray(captions),
    topics,
    np.asarray(counters),
    models.caption_sampler,
  )
  ranks = np.full((b, t), -1, np.int32)
  labels = np.full(b, -1, np.int32)
  ok = np.ones(b, bool)
  lb = label_bits(models)
  for i in range(b):
    try:
      plain = correct.decrypt(bits[i], secret, int(counters[i]))
      if len(plain) < lb:
        raise ValueError("caption too short")
      label = int("".join(map(str, plain[:lb])), 2)
      pos, rk = correct.from_bits(plain[lb:], t, cm.l1, cm.l2)
      if label >= models.prior.model.num_classes:
        raise ValueError("label out of range")
      ranks[i, pos] = rk
      labels[i] = label
    except ValueError:
      ok[i] = False  # unreadable caption: extract without corrections, with the inferred label
  if inferred_labels is not None:
    labels = np.where(ok, labels, np.asarray(inferred_labels, np.int32))
  return labels, ranks, ok


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
  try:
    return framing.unpack(bits, secret, int(counter))
  except framing.FramingError:
    return None
