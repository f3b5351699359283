"""Steganalyzers trained on cover/stego pairs: can a learned detector tell them apart?

A ``Detector`` is one steganalyzer (``models.steganalyzers``) with its training recipe,
compiled once and fitted (or loaded: ``toolkit.fit_or_load``) afresh for each set of stegos,
always from the same initial state with the same batch indices, flips/rotations and crops,
so two fits differ only in their stego images. Batches are pair-constrained: cover i and
stego i enter the same batch under the same random flip/rotation and the same random crop
(``crop`` px, 0 = whole image), so the halves of a batch differ only by what the embedding
did (for LSB matching the stego *is* cover i plus the embedding). The detectors are fully
convolutional with global pooling, so they are evaluated on whole images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stegjax import data as data_lib
from stegjax.errors import ConfigError
from stegjax.models import steganalyzers
from stegjax.train import sharding, toolkit


def d4_crop(images: np.ndarray, transforms: np.ndarray, offsets: np.ndarray, crop: int):
  """Each image under one of the 8 flips/rotations (D4), then a crop x crop window (0: whole)."""
  out = []
  for im, t, (y, x) in zip(images, transforms, offsets):
    im = np.rot90(im, int(t) % 4, axes=(0, 1))
    if t >= 4:
      im = im[:, ::-1]
    out.append(im[y : y + crop, x : x + crop] if crop else im)
  return np.ascontiguousarray(np.stack(out))


def train_config(base, overrides, where: str) -> ml_collections.ConfigDict:
  """``base`` (a train config) updated with ``overrides`` (e.g. one detector's own crop).

  A shorter ``num_steps`` also shortens the warmup and checkpoints only at the end.
  """
  tcfg = ml_collections.ConfigDict(base.to_dict())
  over = dict(overrides or {})
  bad = sorted(set(over) - set(tcfg))
  if bad:
    raise ConfigError(f"{where}: unknown fields {bad}")
  tcfg.update(over)
  if "num_steps" in over:
    tcfg.warmup_steps = min(int(tcfg.warmup_steps), int(tcfg.num_steps) // 10)
    tcfg.checkpoint_every = int(tcfg.num_steps)
  return tcfg


def _sigmoid_loss(model):
  def loss_fn(params, extra, batch, rng, step):
    logits, upd = model.apply(
      {"params": params, **extra}, batch["image"], train=True, mutable=["batch_stats"]
    )
    loss = optax.sigmoid_binary_cross_entropy(logits, batch["label"]).mean()
    acc = jnp.mean((logits > 0) == (batch["label"] > 0.5))
    return loss, ({"acc": acc}, {"batch_stats": upd["batch_stats"]})

  return loss_fn


class Detector:
  """Steganalyzer ``name`` (sizes ``model_cfg``) and its recipe ``train_cfg``, for images of
  ``image_shape`` (H, W, C); ``where`` names the config section in error messages."""

  def __init__(self, name, model_cfg, train_cfg, image_shape, seed, mesh_cfg, where="train"):
    self.name, self.seed, self.tcfg = name, int(seed), train_cfg
    self.model = model = steganalyzers.make_steganalyzer(name, dict(model_cfg))
    h, w, ch = image_shape
    self.hw = (h, w)
    self.crop = crop = int(train_cfg.get("crop", 0))
    if crop and not 0 < crop <= min(h, w):
      raise ConfigError(f"{where}.crop must be in 1..{min(h, w)} (0: none), got {crop}")
    self.batch_size = bs = int(train_cfg.batch_size)
    if bs % 2 or bs < 2:
      raise ConfigError(f"{where}.batch_size must be even, got {bs}")
    self.where = where
    shape = (crop, crop, ch) if crop else (h, w, ch)

    def init_fn(rng):
      # An 'rbg' key for the init: XLA on CPU compiles a threefry-driven init of a deep conv
      # net several times slower (the init values are as random, and still key-determined).
      r = jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")
      v = model.init(r, jnp.zeros((1, *shape), jnp.uint8), train=False)
      return v["params"], {"batch_stats": v["batch_stats"]}

    mesh = sharding.make_mesh(mesh_cfg)
    rules = mesh_cfg.get("rules", "replicate")
    self.recipe = toolkit.Recipe(
      init_fn, _sigmoid_loss(model), train_cfg, mesh, jax.random.PRNGKey(self.seed), rules
    )
    self._score = jax.jit(lambda v, x: model.apply({"params": v[0], **v[1]}, x, train=False))

  def _batch_fn(self, cover_tr, stego_tr):
    half = self.batch_size // 2
    labels = np.concatenate([np.zeros(half, np.float32), np.ones(half, np.float32)])
    augment = bool(self.tcfg.get("augment", True))
    crop, seed = self.crop, self.seed
    span = max(1, min(self.hw) - crop + 1)

    def batch_fn(step):
      i = data_lib.batch_indices(len(cover_tr), half, seed, step)
      rng = np.random.default_rng([seed, step])
      t = rng.integers(0, 8 if augment else 1, half)
      off = rng.integers(0, span, (half, 2)) if crop else np.zeros((half, 2), int)
      pair = [d4_crop(x[i], t, off, crop) for x in (cover_tr, stego_tr)]
      # every process draws the same global batch and keeps its own block of it
      return {
        "image": sharding.process_rows(np.concatenate(pair)),
        "label": sharding.process_rows(labels),
      }

    return batch_fn

  def fit(self, cover_tr, stego_tr, *, root: str, name: str, settings) -> toolkit.Fitted:
    """Trained on the pairs (cover_tr[i], stego_tr[i]), or loaded from ``root/<name>_<fp>``."""
    if len(cover_tr) != len(stego_tr):
      raise ValueError(
        f"pairs need as many covers as stegos, got {len(cover_tr)} and {len(stego_tr)}"
      )
    if self.batch_size // 2 > len(cover_tr):
      raise ConfigError(
        f"{self.where}.batch_size must be at most 2 * the training pairs, got {self.batch_size}"
      )
    return toolkit.fit_or_load(
      self.recipe,
      self._batch_fn(cover_tr, stego_tr),
      root=root,
      name=name,
      settings=settings,
      desc=f"detector {name}",
    )

  def scores(self, fitted: toolkit.Fitted, images: np.ndarray) -> np.ndarray:
    """Logits (larger = more likely stego) of whole images, spread over the devices."""
    batch = min(self.batch_size, len(images))
    return sharding.batched_apply(self._score, (fitted.params, fitted.extra), images, batch)
