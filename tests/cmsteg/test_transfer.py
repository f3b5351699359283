"""A message across images end to end on tiny untrained models (M2 replaced by a known channel).

M2 on untrained models recovers almost nothing, so these tests give the receiver the sent
tokens with chosen damage (``receive_tokens`` patched): what they check is the multi-image
logic around the models: nonce search in any order, lost images, list decoding, captions.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stegjax import errors
from stegjax.cmsteg import api, recipes, transfer
from stegjax.cmsteg import embed as m1

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["astronaut", "coffee", "chelsea", "rocket"]
SECRET = b"t" * 32
MESSAGE = bytes(range(40))


def _config():
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", "cmsteg.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  config = mod.get_config("smoke")
  cm = config.cmsteg
  cm.image_payload_bytes, cm.redundancy = 16, 1
  config.counter_window = 2
  cm.caption_length = 48
  cm.embed_batch = 8
  cm.list_budget, cm.list_positions, cm.list_max_moves = 64, 8, 2
  cm.list_sigma2 = 1.0
  return config


@pytest.fixture(scope="module")
def models():
  config = _config()
  vq_model = recipes.vq_model(config)
  vq_params = vq_model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  vq = recipes.Trained(vq_model, vq_params, {})
  grid = (8, 8)
  prior_model = recipes.prior_model(config, config.vq.model, grid, len(NAMES))
  pp = prior_model.init(
    jax.random.PRNGKey(1), jnp.zeros((1, 64), jnp.int32), jnp.zeros((1,), jnp.int32)
  )["params"]
  prior = recipes.Trained(
    prior_model, pp, dict(grid=grid, class_names=NAMES, train_labels=[0, 1, 2, 3])
  )
  cap_model = recipes.caption_model(config)
  cp = cap_model.init(
    jax.random.PRNGKey(2), jnp.zeros((1, 8), jnp.int32), jnp.zeros((1,), jnp.int32)
  )["params"]
  cap = recipes.Trained(cap_model, cp, {})
  cm = config.cmsteg
  cap_sampler = m1.Sampler(
    variant=cm.variant, precision=24, top_k=int(cm.caption_top_k), cfg_scale=1.0, temperature=1.0
  )
  return api.Models(
    vq, prior, cap, recipes.vq_codebook(vq), m1.Sampler.from_config(cm), cap_sampler, config
  )


@pytest.fixture(scope="module")
def sent(models):
  orig = api.correction_captions

  def perfect_sim(models_, tokens, sim_tok, labels, sim_labels, secret, nonces, length, **kw):
    return orig(models_, tokens, tokens, labels, labels, secret, nonces, length, **kw)

  with pytest.MonkeyPatch.context() as mp:  # the sender's channel simulation gets all tokens
    mp.setattr(
      api, "receive_tokens", lambda m, x, c: (np.zeros((len(x), 64), np.int32), None, None)
    )
    mp.setattr(api, "correction_captions", perfect_sim)
    return transfer.send(models, MESSAGE, SECRET, 5, "png", jax.random.PRNGKey(0))


def _receive(models, sent, order, damage=None, captions=True, monkeypatch=None, shift=1):
  toks = sent["tokens"][order].copy()
  if damage:
    for i, p in damage:
      toks[i, p] = (toks[i, p] + shift) % models.codebook.shape[0]
  labels = sent["labels"][order]
  monkeypatch.setattr(api, "receive_tokens", lambda m, x, c: (toks, labels, None))
  v = models.codebook.shape[0]

  def distances(models_, im):  # the truth is the runner-up wherever a token was damaged
    i = next(j for j in range(len(order)) if np.array_equal(sent["images"][order[j]], im.pixels))
    d = np.full((64, v), 4.0)
    d[np.arange(64), sent["tokens"][order[i]]] = 0.1
    d[np.arange(64), toks[i]] = 0.0
    return d

  monkeypatch.setattr(transfer, "_distances", distances)
  caps = [sent["captions"][i] for i in order] if captions else None
  return transfer.receive(models, sent["images"][order], caps, SECRET, [4, 5, 6], "png")


def test_send_writes_unselected_images_for_every_unit(sent):
  st = sent["schedule"]
  assert st["images"] == len(sent["images"]) >= sent["layout"].units
  assert st["images"] - st["short"] == sent["layout"].units
  assert list(sent["nonces"]) == [5 * 4096 + i for i in range(st["images"])]


def test_any_order_with_captions(models, sent, monkeypatch):
  order = np.random.default_rng(0).permutation(len(sent["images"]))
  out = _receive(models, sent, order, monkeypatch=monkeypatch)
  assert out["message"] == MESSAGE and out["counter"] == 5
  assert out["used"] >= sent["layout"].k and out["tried"] == 0


@pytest.mark.slow
def test_one_image_lost_and_no_captions(models, sent, monkeypatch):
  n = len(sent["images"])
  order = np.asarray([i for i in range(n) if i != 1])
  out = _receive(models, sent, order, captions=False, monkeypatch=monkeypatch)
  assert out["message"] == MESSAGE and out["images"] == n - 1


@pytest.mark.slow
def test_list_decoding_repairs_a_damaged_token(models, sent, monkeypatch):
  n = len(sent["images"])
  order = np.arange(n)
  # Two images damaged, one lost: only list decoding can rebuild the message.
  keep = np.asarray([i for i in order if i != n - 1])
  out = _receive(models, sent, keep, damage=[(0, 3), (2, 10)], monkeypatch=monkeypatch)
  assert out["message"] == MESSAGE
  assert "list decoding" in out["how"] and out["tried"] > 0


PREPARED = (2, 5, 9, 14)  # where the sender's simulated channel (and M2) got tokens wrong


@pytest.fixture(scope="module")
def sent_prepared(models):
  """The message with corrections for a simulated channel that damaged PREPARED."""
  orig = api.correction_captions
  v = models.codebook.shape[0]

  def simulated(models_, tokens, sim_tok, labels, sim_labels, secret, nonces, length, **kw):
    sim = tokens.copy()
    sim[:, list(PREPARED)] = (sim[:, list(PREPARED)] + 1) % v
    return orig(models_, tokens, sim, labels, labels, secret, nonces, length, **kw)

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(
      api, "receive_tokens", lambda m, x, c: (np.zeros((len(x), 64), np.int32), None, None)
    )
    mp.setattr(api, "correction_captions", simulated)
    return transfer.send(models, MESSAGE[:8], SECRET, 5, "jpeg85", jax.random.PRNGKey(0))


def test_corrections_hold_through_a_channel_the_sender_did_not_prepare(
  models, sent_prepared, monkeypatch
):
  sent = sent_prepared
  assert all(p.positions == PREPARED for p in sent["plans"])
  n = len(sent["images"])
  order = np.arange(n)[::-1]
  # Another channel: two of the prepared tokens wrong, to other values than the simulation
  # saw (a correction relative to the simulated wrong token would now pick a wrong one), the
  # other two intact. Each correction names the true token, so every image reads at once.
  damage = [(i, p) for i in range(n) for p in PREPARED[1:3]]
  out = _receive(models, sent, order, damage=damage, monkeypatch=monkeypatch, shift=2)
  assert out["message"] == MESSAGE[:8] and out["tried"] == 0
  assert out["how"] == ["corrections"] * n
  # The untouched image (a PNG for a JPEG-prepared embed): the corrections change nothing.
  out = _receive(models, sent, order, monkeypatch=monkeypatch)
  assert out["message"] == MESSAGE[:8] and out["how"] == ["corrections"] * n


def test_wrong_key_fails_cleanly(models, sent, monkeypatch):
  toks, labels = sent["tokens"], sent["labels"]
  monkeypatch.setattr(api, "receive_tokens", lambda m, x, c: (toks, labels, None))
  with pytest.raises(errors.WrongKeyError):
    transfer.receive(models, sent["images"][:2], None, b"w" * 32, [5], "png")
