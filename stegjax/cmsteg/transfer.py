"""Whole files across many stego images: the sender's loop and the receiver's search.

Sender (``send``): ``message.Message`` cuts one AEAD frame into tagged chunks; every image is
an unselected Discop sample of the prior under its own nonce ``counter + seq`` and class
``api.draw_label(secret, nonce)``; an image that carries less than its chunk is still sent
and its chunk goes again (``message.Schedule``). Each image gets an M3 caption prepared for
the expected channel and, within the caption's capacity, for ``cmsteg.prepare_channels``
(a correction names the true token in the prior's order, so it holds through any channel);
tokens past the chunk's last bit are not corrected.

Receiver (``receive``): M2 on every image; then each image's nonce is found (its caption
authenticates under exactly one nonce; without a caption, its chunk tag does), trying the
nonce its position in the folder suggests first; then the chunk is extracted with the
caption's corrections and without them; an image whose chunk tag still fails (a channel the
sender did not foresee damaged tokens it did not correct) is list-decoded
(``listdecode.search``) around both, guessing only at uncorrected positions before the
chunk's end; ``message.assemble`` rebuilds and verifies the frame from any ``k`` complete
shares.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from stegjax import errors
from stegjax.channels import real
from stegjax.cmsteg import api, listdecode
from stegjax.cmsteg import embed as m1
from stegjax.cmsteg import message as message_lib
from stegjax.stego import framing


def send(models: api.Models, message: bytes, secret: bytes, counter: int, channel: str, sim_key):
  """Stego images (and captions) carrying ``message``; see the module doc.

  Returns a dict: images uint8[N, H, W, 3], tokens int32[N, T], nonces, labels, captions
  int32[N, L], layout, schedule stats, per-image carried bits and M3 plans.
  """
  cm = models.config.cmsteg
  msg = message_lib.Message(
    message, secret, counter, int(cm.image_payload_bytes), int(cm.redundancy)
  )
  sched = message_lib.Schedule(msg.layout)
  batch = int(cm.embed_batch)
  key = framing.sampling_key(secret)
  toks, nonces, carried = [], [], []
  while not sched.done:
    jobs = sched.take(batch)
    nn = np.asarray([msg.nonce(s) for s, _ in jobs], np.int64)
    bits = np.stack([msg.chunk(u, s) for s, u in jobs])
    labels = [api.draw_label(secret, int(n), models.candidates) for n in nn]
    lengths = np.full(len(jobs), bits.shape[1], np.int32)
    t, n = m1.embed(models.prior, key, bits, lengths, labels, nn, models.sampler)
    sched.record(jobs, n)
    toks.append(t)
    nonces.append(nn)
    carried.append(n)
  tokens, nonces = np.concatenate(toks), np.concatenate(nonces)
  labels = np.asarray([api.draw_label(secret, int(n), models.candidates) for n in nonces])
  images = api.decode_images(models, tokens)
  replay = m1.replay(models.prior, key, tokens, labels, nonces, models.sampler)
  sims, sim_labels = [], None
  for i, name in enumerate(prepared_channels(channel, cm.get("prepare_channels", ()))):
    k = jax.random.fold_in(sim_key, i) if i else sim_key
    tok, inferred, _ = api.receive_tokens(models, real.apply(name, images, k), name)
    sims.append(tok)
    sim_labels = inferred if sim_labels is None else sim_labels
  m3 = api.correction_captions(
    models,
    tokens,
    np.stack(sims, 1),
    labels,
    sim_labels,
    secret,
    nonces,
    int(cm.caption_length),
    horizons=horizons(replay["counts"], msg.layout.chunk_bits),
    true_ranks=replay["order"],
  )
  return {
    "images": images,
    "tokens": tokens,
    "nonces": nonces,
    "labels": labels,
    "captions": np.asarray(m3["captions"], np.int32),
    "plans": m3["plans"],
    "caption_bits": m3["caption_bits"],
    "carried_bits": np.concatenate(carried),
    "layout": msg.layout,
    "schedule": sched.stats(),
  }


def prepared_channels(channel: str, extra) -> list[str]:
  """The channels the sender simulates: ``channel`` first, then ``extra`` (no repeats)."""
  extra = [c for c in (extra.split(",") if isinstance(extra, str) else extra) if c]
  return list(dict.fromkeys([channel] + extra))


def horizons(counts, chunk_bits: int) -> np.ndarray:
  """int[B]: tokens needed to carry the first ``chunk_bits`` bits (all T when short of them).

  ``counts`` int[B, T]: the bits each token carries. A wrong token at or after the horizon
  cannot touch the chunk, so it needs no correction and no list-decoding guess.
  """
  cum = np.cumsum(np.asarray(counts), axis=1)
  full = cum[:, -1] >= chunk_bits
  return np.where(full, np.argmax(cum >= chunk_bits, axis=1) + 1, cum.shape[1])


# ----------------------------------------------------------------------------- receiver


@dataclasses.dataclass
class Image:
  """What the receiver knows about one received image."""

  pixels: np.ndarray  # uint8[H, W, 3] as received
  tokens: np.ndarray  # int32[T] after M2
  inferred: int  # the class the receiver infers from its tokens (the caption's topic)
  caption: np.ndarray | None
  hint: int  # position among the received images: the seq it most likely has
  nonce: int | None = None
  label: int | None = None
  ranks: np.ndarray | None = None  # the authenticated caption's corrections
  chunk: message_lib.Chunk | None = None
  how: str = ""  # corrections | plain | list decoding | failed
  tried: int = 0  # list-decoding candidates
  latents: np.ndarray | None = None  # float32[T, d]: M2's latent (for list decoding)


def _offsets(window: int) -> list[int]:
  return [0] + [s * d for d in range(1, window + 1) for s in (1, -1)]


def _rounds(ims, counters, window: int, try_fn) -> None:
  """Tries nonces ``nonce(m, hint + offset)``, nearest offsets first, for every ``m``."""
  for off in _offsets(window):
    todo = [
      (im, m)
      for im in ims
      if im.nonce is None and 0 <= im.hint + off < message_lib.MAX_SEQ
      for m in counters
    ]
    todo = [(im, m) for im, m in todo if im.nonce is None]
    if not todo:
      if all(im.nonce is not None for im in ims):
        return
      continue
    try_fn([im for im, _ in todo], [message_lib.nonce(m, im.hint + off) for im, m in todo])


def _search(ims, counters, window: int, try_fn, probes: int = 3) -> None:
  """Each image's nonce: the message counter from the first image that resolves (among
  ``probes`` tried under every candidate counter), then every image's seq near its hint."""
  known = None
  for im in [im for im in ims if im.nonce is None][:probes]:
    _rounds([im], counters, window, try_fn)
    if im.nonce is not None:
      known = im.nonce // message_lib.MAX_SEQ
      break
  if known is not None:
    _rounds(ims, [known], window, try_fn)


def _caption_try(models, secret: bytes, any_topic: bool):
  """try_fn: an image's nonce is the one under which its caption authenticates."""

  def try_fn(ims, nonces):
    nonces = np.asarray(nonces, np.int64)
    topics = api.topics_for_labels(models, [im.inferred for im in ims])
    caps = np.stack([im.caption for im in ims])
    if any_topic:
      r = api.read_corrections_any_topic(models, caps, topics, secret, nonces, caps.shape[1])
      got = zip(r["ok"], r["labels"], r["ranks"])
    else:
      labels, ranks, ok = api.read_corrections(models, caps, topics, secret, nonces, caps.shape[1])
      got = zip(ok, labels, ranks)
    for im, n, (ok, label, ranks) in zip(ims, nonces, got):
      if ok and im.nonce is None:
        im.nonce, im.label, im.ranks = int(n), int(label), np.asarray(ranks)

  return try_fn


def _plain_try(models, secret: bytes):
  """try_fn without captions: the nonce is the one under which the chunk tag verifies."""

  def try_fn(ims, nonces):
    rows = [(dataclasses.replace(im, nonce=int(n)), im.tokens, None) for im, n in zip(ims, nonces)]
    for im, n, c in zip(ims, nonces, _chunks(models, secret, rows)):
      if c is not None and c.verified and im.nonce is None:
        im.nonce, im.chunk, im.how = int(n), c, "plain"

  return try_fn


def _chunks(models, secret, rows):
  """rows of (image, tokens, ranks or None) -> chunk read under each image's nonce."""
  if not rows:
    return []
  t = len(rows[0][1])
  ranks = np.stack([np.full(t, -1, np.int32) if r is None else r for _, _, r in rows])
  nonces = np.asarray([im.nonce for im, _, _ in rows], np.int64)
  labels = np.asarray([api.draw_label(secret, int(n), models.candidates) for n in nonces])
  tokens = np.stack([tk for _, tk, _ in rows])
  # Rows without corrections run the cheaper loop; ranks of -1 leave a token as received.
  use = any(r is not None for _, _, r in rows)
  _, bits, _ = api.reveal_bits(models, tokens, labels, secret, nonces, ranks if use else None)
  return [message_lib.read_chunk(b, secret, int(n)) for b, n in zip(bits, nonces)]


def _distances(models, im: Image) -> np.ndarray:
  """float[T, V] squared distances of M2's latent to every codebook vector.

  M2's latent, not a fresh encoding of the pixels: the received tokens are its nearest
  vectors, so every alternative costs a positive margin. A plain re-encoding disagrees with
  M2 at many positions, and those moves would cost nothing and fill the budget.
  """

  def dist(m, z):
    return m.quantizer.distances(z)[1]

  if im.latents is None:  # tokens received without M2's latents: re-encode the pixels
    z = models.vq.model.apply(
      {"params": models.vq.params},
      jnp.asarray(im.pixels[None], jnp.float32) / 127.5 - 1.0,
      method="encode",
    )
  else:
    z = jnp.asarray(im.latents)
  d = models.vq.model.apply({"params": models.vq.params}, z, method=dist)
  return np.asarray(d).reshape(-1, d.shape[-1])


def _horizon(models, im: Image, secret: bytes, ranks, chunk_bits) -> int:
  """Positions worth guessing at: those before the chunk's end in a replay of the tokens,
  with a margin (a wrong token earlier moves the later bit counts); all without
  ``chunk_bits``."""
  t = len(im.tokens)
  if chunk_bits is None:
    return t
  label = api.draw_label(secret, int(im.nonce), models.candidates)
  rk = None if ranks is None else np.asarray(ranks)[None]
  out = m1.replay(
    models.prior, framing.sampling_key(secret), im.tokens[None], [label], [im.nonce],
    models.sampler, rk,
  )  # fmt: skip
  h = int(horizons(out["counts"], chunk_bits)[0])
  return min(t, int(np.ceil(1.25 * h)) + 4)


def _list_decode(models, im: Image, secret: bytes, chunk_bits=None) -> None:
  """Searches substitutions around the corrected and the plain tokens until the tag verifies.

  The caption's corrections name true tokens through any channel, so no guess is spent at a
  corrected position; positions past the chunk's end (``_horizon``) are not guessed at.
  """
  cm = models.config.cmsteg
  dist = _distances(models, im)
  bases = ([im.ranks] if im.ranks is not None else []) + [None]
  for ranks in bases:
    fixed = np.zeros(len(im.tokens), bool) if ranks is None else ranks >= 0
    fixed[_horizon(models, im, secret, ranks, chunk_bits) :] = True
    allowed = np.broadcast_to(~fixed[:, None], dist.shape)
    moves = listdecode.moves_from_distances(
      dist, im.tokens, int(cm.list_positions), 2, float(cm.list_sigma2), allowed=allowed
    )

    def verify(cands, ranks=ranks):
      rows = [(im, listdecode.apply_moves(im.tokens, cand), ranks) for cand in cands]
      return [c if c is not None and c.verified else None for c in _chunks(models, secret, rows)]

    res = listdecode.search(
      moves, verify, int(cm.list_budget), models.sampler.rows, int(cm.list_max_moves)
    )
    im.tried += res.tried
    if res.found:
      im.chunk, im.how = res.value, "list decoding"
      return


def receive(
  models: api.Models, images, captions, secret: bytes, counters, channel: str, received=None
):
  """The message in received images (any order, any ``r`` missing) and their captions.

  ``captions``: per image int32 ids or None. ``counters``: the message counters the receiver
  considers (its key file's window); each image's seq is searched within
  ``counter_window`` plus the images' count of its position. ``channel`` picks M2's
  stand-in; ``received``: ``api.receive_tokens`` of the images when already computed.
  Returns a dict with the message, its counter, ``used`` (images whose chunk verified),
  ``how`` per image and ``tried`` (list-decoding candidates); raises
  ``errors.WrongKeyError`` / ``errors.IncompleteMessageError`` when it cannot.
  """
  pixels = np.stack([api.check_image(models, x) for x in images])
  tok, inferred, latents = received or api.receive_tokens(models, pixels, channel)
  caps = list(captions) if captions is not None else [None] * len(pixels)
  ims = [
    Image(
      pixels[i],
      tok[i],
      int(inferred[i]),
      None if c is None else np.asarray(c, np.int32),
      i,
      latents=None if latents is None else latents[i],
    )  # fmt: skip
    for i, c in enumerate(caps)
  ]
  window = int(models.config.counter_window) + len(ims)
  with_caption = [im for im in ims if im.caption is not None]
  _search(with_caption, counters, window, _caption_try(models, secret, any_topic=False))
  # Captions conditioned on another topic than inferred: every topic, near the hints only.
  near = int(models.config.counter_window)
  _search(with_caption, _known(ims, counters), near, _caption_try(models, secret, True))
  found = [im for im in ims if im.nonce is not None]
  rows = [(im, im.tokens, im.ranks) for im in found]
  for (im, _, _), c in zip(rows, _chunks(models, secret, rows)):
    if c is not None and c.verified:
      im.chunk, im.how = c, "corrections"
  rows = [(im, im.tokens, None) for im in found if im.chunk is None]
  for (im, _, _), c in zip(rows, _chunks(models, secret, rows)):
    if c is not None and c.verified:
      im.chunk, im.how = c, "plain"
  _search(ims, _known(ims, counters), window, _plain_try(models, secret))
  return _finish(models, ims, secret)


def _no_chunk(ims) -> errors.StegjaxError:
  """Why nothing verified: no image recognized (wrong key), or recognized but too damaged."""
  seen = sum(im.nonce is not None for im in ims)
  if not seen:
    return errors.WrongKeyError(
      f"none of the {len(ims)} images authenticates under this key (no caption or chunk "
      "verified under any counter tried): wrong key, or every image was damaged beyond repair"
    )
  return errors.IncompleteMessageError(
    f"{seen} of {len(ims)} images were recognized (their captions authenticate) but no chunk "
    f"verified, with the caption's corrections, without them, or after list decoding "
    f"({sum(im.tried for im in ims)} candidates): the channel damaged more tokens than the "
    "corrections and the list-decoding budget cover"
  )


def _known(ims, counters) -> list[int]:
  """The message counter images already resolved agree on (all candidates while none has)."""
  got = [im.nonce // message_lib.MAX_SEQ for im in ims if im.nonce is not None]
  return [max(set(got), key=got.count)] if got else list(counters)


def _chunk_bits(ims) -> int | None:
  """The chunk size verified images agree on (None while none has verified)."""
  geom = message_lib.geometry_of([im.chunk for im in ims])
  return None if geom is None else message_lib.chunk_bits(geom[3])


def _finish(models, ims, secret) -> dict:
  """Assembles; list-decodes failed images (nonce known) only while shares are missing."""
  cm = models.config.cmsteg
  pending = [im for im in ims if im.chunk is None and im.nonce is not None]
  while True:
    try:
      out = message_lib.assemble([im.chunk for im in ims], secret, int(cm.redundancy))
      break
    except errors.IncompleteMessageError:
      if not pending:
        raise
      _list_decode(models, pending.pop(0), secret, _chunk_bits(ims))
    except errors.WrongKeyError:
      if not pending:
        raise _no_chunk(ims) from None
      _list_decode(models, pending.pop(0), secret, None)
  for im in ims:
    im.how = im.how or ("failed" if im.nonce is not None else "not ours")
  out.update(
    images=len(ims),
    used=sum(im.chunk is not None for im in ims),
    how=[im.how for im in ims],
    tried=sum(im.tried for im in ims),
  )
  return out
