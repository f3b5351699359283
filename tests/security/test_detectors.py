"""Pair-constrained steganalyzer training: augmentations, per-detector recipes, bad settings."""

import ml_collections
import numpy as np
import pytest

from stegjax.errors import ConfigError
from stegjax.security import detectors


def test_pairs_share_flip_rotation_and_crop():
  rng = np.random.default_rng(0)
  cover = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
  stego = cover.copy()
  stego[:, 3, 5, 1] ^= 1  # one changed value per image
  t = np.arange(6) + 2  # transforms 2..7 (rotations and flips)
  off = rng.integers(0, 3, (6, 2))
  c = detectors.d4_crop(cover, t, off, 6)
  s = detectors.d4_crop(stego, t, off, 6)
  assert c.shape == s.shape == (6, 6, 6, 3)
  # Same transform and window for both halves of a pair: they differ only where the
  # embedding changed the cover (here inside or outside the window, never elsewhere).
  diff = (c != s).sum(axis=(1, 2, 3))
  assert set(diff.tolist()) <= {0, 1}
  whole = detectors.d4_crop(cover, t, np.zeros((6, 2), int), 0)
  assert whole.shape == cover.shape
  np.testing.assert_array_equal(whole[0], np.rot90(cover[0], 2, axes=(0, 1)))
  np.testing.assert_array_equal(whole[3], np.rot90(cover[3], 1, axes=(0, 1))[:, ::-1])


def _train(**kw):
  base = dict(num_steps=100, warmup_steps=20, checkpoint_every=50, batch_size=8, crop=0)
  return ml_collections.ConfigDict({**base, **kw})


def test_train_config_overrides():
  t = detectors.train_config(_train(), {"crop": 16}, "x")
  assert (t.crop, t.num_steps, t.warmup_steps) == (16, 100, 20)
  t = detectors.train_config(_train(), {"num_steps": 50}, "x")
  assert (t.num_steps, t.warmup_steps, t.checkpoint_every) == (50, 5, 50)
  with pytest.raises(ConfigError, match="sec.tion: unknown fields"):
    detectors.train_config(_train(), {"crops": 1}, "sec.tion")


@pytest.mark.parametrize("bad", [dict(crop=40), dict(batch_size=7)])
def test_bad_recipe_raises(bad):
  mesh = ml_collections.ConfigDict(dict(data=-1, model=1))
  with pytest.raises(ConfigError, match="steganalysis.train"):
    detectors.Detector(
      "xunet",
      dict(features=(4, 4, 8)),
      _train(**bad),
      (32, 32, 3),
      0,
      mesh,
      "steganalysis.train",
    )
