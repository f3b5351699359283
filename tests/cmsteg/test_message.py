"""Messages across images: round trip in any order, r lost images survived, clean failures."""

import itertools

import numpy as np
import pytest

from stegjax import errors
from stegjax.cmsteg import message as msg_lib
from stegjax.stego import framing

SECRET = b"k" * 32


def _send(message, payload_bytes=9, r=2, counter=100, capacities=None, batch=3):
  """Runs the sender's schedule against fake images of the given capacities (bits)."""
  m = msg_lib.Message(message, SECRET, counter, payload_bytes, r)
  sched = msg_lib.Schedule(m.layout)
  caps = iter(capacities or [])
  images = []  # (nonce, bits the image really carried)
  while not sched.done:
    jobs = sched.take(batch)
    carried = []
    for seq, unit in jobs:
      bits = m.chunk(unit, seq)
      cap = next(caps, len(bits) + 5)
      pad = np.zeros(max(0, cap - len(bits)), np.uint8)  # leftover capacity: padding bits
      images.append((m.nonce(seq), np.concatenate([bits, pad])[:cap]))
      carried.append(cap)
    sched.record(jobs, carried)
  return m, sched, images


def _receive(images, r=2):
  chunks = [msg_lib.read_chunk(bits, SECRET, nonce) for nonce, bits in images]
  return msg_lib.assemble(chunks, SECRET, r)["message"]


def test_round_trip_any_order():
  message = bytes(range(200))
  m, sched, images = _send(message)
  assert m.layout.k == -(-framing.framed_bits(200) // 8 // 9)
  assert sched.stats()["images"] == m.layout.units == m.layout.k + 2
  for seed in range(3):
    order = np.random.default_rng(seed).permutation(len(images))
    assert _receive([images[i] for i in order]) == message


def test_survives_any_r_deletions_and_fails_cleanly_beyond():
  message = b"a sentence long enough to need several images, not just one."
  m, _, images = _send(message, payload_bytes=12, r=2)
  n = len(images)
  for lost in itertools.combinations(range(n), 2):
    kept = [im for i, im in enumerate(images) if i not in lost]
    assert _receive(kept) == message
  for lost in itertools.combinations(range(n), 3):
    kept = [im for i, im in enumerate(images) if i not in lost]
    with pytest.raises(errors.IncompleteMessageError, match=f"of the {m.layout.k} shares"):
      _receive(kept)


def test_short_images_are_sent_and_spill_to_the_next():
  message = bytes(range(60))
  chunk = msg_lib.chunk_bits(9)
  caps = [chunk, chunk - 1, 30, chunk + 40] + [chunk] * 40
  m, sched, images = _send(message, capacities=caps, batch=2)
  st = sched.stats()
  assert st["short"] == 2 and st["images"] == m.layout.units + 2
  assert len(images) == st["images"]  # every drawn image is sent, none is discarded
  assert _receive(images) == message
  # The short images' units were complete elsewhere: losing them costs nothing, and losing
  # r complete images still leaves enough.
  full = [im for im, (_, _, ok) in zip(images, sched.images) if ok]
  assert _receive(full[2:]) == message


def test_parts_when_shares_run_out():
  lay = msg_lib.layout(3000, 8, 1)
  assert lay.parts > 1 and lay.n <= msg_lib.MAX_SHARES
  message = bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))
  _, _, images = _send(message, payload_bytes=8, r=1, batch=64)
  order = np.random.default_rng(1).permutation(len(images))
  assert _receive([images[i] for i in order[1:]], r=1) == message  # any one lost, any order


def test_too_long_raises():
  with pytest.raises(errors.MessageTooLongError, match="at most"):
    msg_lib.layout(10**6, 8, 1)
  m = msg_lib.Message(b"x" * 40, SECRET, 0, 4, 0)
  sched = msg_lib.Schedule(m.layout)
  with pytest.raises(errors.MessageTooLongError, match="too large for these images"):
    while True:
      jobs = sched.take(4)
      sched.record(jobs, [10] * len(jobs))  # every image too small: refuse, do not loop


def test_never_silently_truncated_or_forged():
  message = bytes(range(100))
  _, _, images = _send(message, r=0)
  with pytest.raises(errors.IncompleteMessageError):
    _receive(images[:-1], r=0)
  nonce, bits = images[0]
  bad = bits.copy()
  bad[60] ^= 1  # one payload bit flipped: that image no longer verifies
  assert not msg_lib.read_chunk(bad, SECRET, nonce).verified
  assert msg_lib.read_chunk(bits, SECRET, nonce).verified
  with pytest.raises(errors.IncompleteMessageError):
    _receive([(nonce, bad)] + images[1:], r=0)
  cut = bits[: msg_lib.chunk_bits(9) - 1]  # the tag's last bit missing
  assert not msg_lib.read_chunk(cut, SECRET, nonce).verified


def test_wrong_key_and_wrong_nonce():
  message = b"hello across images"
  _, _, images = _send(message)
  chunks = [msg_lib.read_chunk(bits, b"w" * 32, nonce) for nonce, bits in images]
  assert not any(c.verified for c in chunks if c)
  with pytest.raises(errors.WrongKeyError):
    msg_lib.assemble(chunks, b"w" * 32)
  nonce, bits = images[1]
  c = msg_lib.read_chunk(bits, SECRET, nonce + 1)
  assert c is None or not c.verified
  good = msg_lib.read_chunk(bits, SECRET, nonce)
  assert good.verified and good.seq == 1 and good.counter == 100
  assert nonce == 100 * msg_lib.MAX_SEQ + 1
  with pytest.raises(errors.KeyFileError):
    msg_lib.Message(b"x", SECRET, msg_lib.MAX_COUNTER, 9, 1)


def test_chunks_look_unrelated_across_images():
  # The same share resent (after a short image) is a different bit string under each nonce.
  m = msg_lib.Message(bytes(50), SECRET, 7, 9, 1)
  a, b = m.chunk(0, 0), m.chunk(0, 1)
  assert len(a) == len(b) == msg_lib.chunk_bits(9)
  assert 0.3 < np.mean(a != b) < 0.7
  assert 0.35 < np.mean(np.concatenate([m.chunk(u, u) for u in range(m.layout.units)])) < 0.65
