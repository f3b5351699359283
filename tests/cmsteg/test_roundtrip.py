"""One image through the real pipeline: hide_image, the channel it was prepared for, reveal_image.

The sender generates one row; the receiver replays 17 candidate counters (another batch
geometry), repeats M2 and the class inference the sender simulated, reads the caption and
must get the AEAD-verified message back for every channel the config prepares. This is the
check that failed before the fixed batch geometry (a png image that did not extract from
its own PNG). :smoke runs in the fast suite; the default size is slow (it trains the CPU
default's models, about 30 minutes on 2 cores, unless ``model_dir`` already holds them).
"""

import importlib.util
import os

import jax
import numpy as np
import pytest

from stegjax import channels, errors
from stegjax.cmsteg import api, keyfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(size):
  spec = importlib.util.spec_from_file_location("cfg", os.path.join(REPO, "configs", "cmsteg.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(size)


def _round_trip(models, channel, counter, message):
  secret = keyfile.party_secret(b"r" * 32, "a")
  sim_key, real_key = jax.random.split(jax.random.PRNGKey(counter))
  sent = api.hide_image(models, message, secret, counter, channel, sim_key)
  ch = channels.image_channel(channel)
  received = ch.apply(sent.image[None], real_key)[0]
  counters = np.arange(max(0, counter - 8), counter + 9)  # 17 rows around the true one
  got = api.reveal_image(models, received, sent.caption_ids, secret, counters, channel)
  assert got.message == message and got.counter == counter, (channel, sent, got)
  return sent, got


@pytest.fixture(scope="module")
def smoke_models(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("roundtrip"))
  return api.load_models(_config("smoke"), wd)


# Slow because it trains its own smoke models; the fast suite keeps the property through the
# command line (tests/experiments/test_cmsteg_main.py embeds and extracts on every :smoke channel).
@pytest.mark.slow
def test_every_prepared_channel_smoke(smoke_models):
  for i, channel in enumerate(smoke_models.config.cmsteg.channels):
    if channels.image_channel(channel).stochastic:
      continue  # the sender cannot simulate a random draw it does not know
    sent, got = _round_trip(smoke_models, channel, 20 + i, f"hi {channel}".encode())
    assert got.corrected or sent.errors == 0


@pytest.mark.slow
def test_every_prepared_channel_default():
  config = _config("cpu")
  models = api.load_models(config, os.path.join(REPO, "workdir", "cmsteg"))
  for i, channel in enumerate(config.cmsteg.channels):
    if channels.image_channel(channel).stochastic:
      continue
    _round_trip(models, channel, 40 + i, b"x" * int(config.cmsteg.message_bytes))


# Slow for the same reason (its own smoke models); the fast suite checks the property on
# tokens (tests/cmsteg/test_transfer.py: corrections through a channel not prepared for).
# Known shortfall, kept visible: on the barely trained :smoke models one of the three channels
# loses two of this message's four images (errors the sender did not simulate, beyond list
# decoding's budget), so only 2 of 3 shares come back. strict: a fix makes this XPASS, fail.
@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=errors.IncompleteMessageError)
def test_prepared_for_jpeg85_extracts_from_png_and_other_qualities(smoke_models):
  from stegjax.channels import real
  from stegjax.cmsteg import transfer

  assert not smoke_models.config.cmsteg.prepare_channels  # jpeg85's corrections only
  secret = keyfile.party_secret(b"p" * 32, "a")
  message = b"prepared for jpeg85 only"
  sent = transfer.send(smoke_models, message, secret, 3, "jpeg85", jax.random.PRNGKey(3))
  caps = list(sent["captions"])
  for name in ("png", "jpeg75", "jpeg95"):  # the untouched PNG, and PIL JPEG at 75 and 95
    received = real.apply(name, sent["images"], jax.random.PRNGKey(4))
    got = transfer.receive(smoke_models, received, caps, secret, [2, 3, 4], name)
    assert got["message"] == message and got["counter"] == 3, (name, got["how"])
