"""Training recipes for CMSTEG's models, shared by every experiment that needs them.

``tokenizer(config, workdir)`` trains (or loads) the VQ tokenizer;
``prior(config, workdir)`` trains (or loads) the class-conditional AR prior on
the tokenizer's tokens of the patch dataset (cached as ``.npy``);
``captioner`` the M3 caption LM. A rerun restores the final checkpoint and
trains nothing.

Training or loading is the toolkit's one ``fit_or_load``: models live in
``root/<kind>_<fingerprint>`` (``root`` = ``config.model_dir``, or the workdir when it is
empty) with the fingerprint of everything that shapes the model (data, architecture,
training, seed; the tokenizer's for the prior too): experiments with the same model
settings (cmsteg, steganalysis, ar_prior) share one trained copy, and a changed setting
never restores a checkpoint trained under another.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from stegjax import data as data_lib
from stegjax.cmsteg import caption
from stegjax.metrics import image as image_metrics
from stegjax.models import transformer as transformer_lib
from stegjax.models import vq as vq_lib
from stegjax.train import sharding, toolkit


@dataclasses.dataclass
class Trained:
  """A model, its parameters, and what it was trained on."""

  model: Any
  params: Any
  info: dict


def to_model_range(images_uint8) -> jax.Array:
  """uint8 [0, 255] -> float [-1, 1] (the models' range)."""
  return jnp.asarray(images_uint8, jnp.float32) / 127.5 - 1.0


def dataset(config, workdir: str):
  """The patch dataset (built once under ``workdir/data``, or ``model_dir/data`` when shared)."""
  return data_lib.get_dataset(
    config.data, os.path.join(config.get("model_dir", "") or workdir, "data")
  )


def _batch_fn(arrays, batch_size: int, seed: int, keys):
  n = len(arrays[keys[0]])

  def batch_fn(step):
    # The sorted global batch, then this process's block of it: the same rows in the same
    # places (so the same dropout masks) for any process count.
    idx = sharding.process_rows(np.sort(data_lib.batch_indices(n, batch_size, seed, step)))
    return {k: np.asarray(arrays[k][idx]) for k in keys}

  return batch_fn


def _root(config, workdir: str) -> str:
  return config.get("model_dir", "") or workdir


def _settings(config, kind: str):
  """(settings, train config) of model ``kind``: what its fingerprint covers."""
  vq = {k: v for k, v in config.vq.to_dict().items() if k != "train"}
  tokenizer = [config.data.to_dict(), vq, config.seed]
  if kind == "tokenizer":
    return tokenizer, config.vq.train
  if kind == "prior":
    learned = toolkit.learning_settings(config.vq.train)
    return tokenizer + [learned, config.prior.model.to_dict()], config.prior.train
  if kind == "captioner":
    cap = config.captioner
    words = ["words", caption.VOCAB_SIZE]  # the word-level caption LM and its vocabulary
    return [cap.model.to_dict(), int(cap.window), config.seed] + words, cap.train
  raise ValueError(f"unknown model kind {kind!r}")


def model_path(config, workdir: str, kind: str) -> str:
  """Checkpoint directory of model ``kind`` (tokenizer, prior, captioner); see the module doc."""
  settings, train_cfg = _settings(config, kind)
  return toolkit.checkpoint_dir(_root(config, workdir), kind, settings, train_cfg)


def is_cached(config, workdir: str, kind: str) -> bool:
  """Whether loading model ``kind`` would train nothing."""
  settings, train_cfg = _settings(config, kind)
  return toolkit.is_cached(_root(config, workdir), kind, settings, train_cfg)


def random_crops(images: np.ndarray, size: int, seed: int, step: int) -> np.ndarray:
  """One random ``size x size`` window per image, a deterministic function of (seed, step)."""
  n, h, w = images.shape[:3]
  if not 0 < size <= min(h, w):
    raise ValueError(f"crop size {size} must be in 1..{min(h, w)} for {h}x{w} patches")
  rng = np.random.default_rng([seed, step])
  ys, xs = rng.integers(0, h - size + 1, n), rng.integers(0, w - size + 1, n)
  return np.stack([images[i, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(ys, xs))])


# ----------------------------------------------------------------------------- tokenizer


def vq_model(config) -> vq_lib.VQModel:
  return vq_lib.VQModel(**config.vq.model.to_dict())


def tokenizer(config, workdir: str, train_arrays=None) -> Trained:
  """Trains the VQ tokenizer (MSE + codebook + commitment [+ PatchGAN hinge]) or loads it."""
  cfg = config.vq
  model = vq_model(config)
  if train_arrays is None:
    train_arrays, _, _ = dataset(config, workdir)
  use_gan = cfg.get("gan_weight", 0.0) > 0
  disc = vq_lib.PatchDiscriminator(ndf=cfg.get("disc_ch", 64)) if use_gan else None
  crop = int(cfg.train.get("crop", 0))
  p = crop or int(config.data.patch_size)

  def init_fn(rng):
    x = jnp.zeros((1, p, p, 3), jnp.float32)
    r1, r2 = jax.random.split(rng)
    params = {"g": model.init(r1, x)["params"]}
    if use_gan:
      params["d"] = disc.init(r2, x)["params"]
    return params, {}

  def loss_fn(params, extra, batch, rng, step):
    x = to_model_range(batch["image"])
    x_rec, aux = model.apply({"params": params["g"]}, x, train=True, rngs={"dropout": rng})
    mse = jnp.mean(jnp.square(x_rec - x))
    loss = mse + cfg.codebook_weight * (aux["codebook_loss"] + aux["commit_loss"])
    loss = loss + aux.get("entropy_loss", 0.0)
    metrics = dict(
      mse=mse,
      psnr=image_metrics.psnr_from_mse(jnp.maximum(mse, 1e-10), 2.0),  # [-1, 1] images
      usage=aux["usage"],
      perplexity=aux["perplexity"],
    )
    if use_gan:
      on = (step >= cfg.gan_start_step).astype(jnp.float32)
      d_frozen = jax.lax.stop_gradient(params["d"])
      g_adv = vq_lib.hinge_g_loss(disc.apply({"params": d_frozen}, x_rec))
      d_loss = vq_lib.hinge_d_loss(
        disc.apply({"params": params["d"]}, x),
        disc.apply({"params": params["d"]}, jax.lax.stop_gradient(x_rec)),
      )
      loss = loss + on * (cfg.gan_weight * g_adv + d_loss)
      metrics.update(g_adv=g_adv, d_loss=d_loss)
    return loss, (metrics, extra)

  batch_fn = _batch_fn(train_arrays, cfg.train.batch_size, config.seed, ("image",))
  if crop:  # the VQ is fully convolutional: train on windows, apply to whole patches
    full_batch_fn = batch_fn
    batch_fn = lambda step: {
      "image": random_crops(full_batch_fn(step)["image"], crop, config.seed, step)
    }
  params = _fit(config, workdir, "tokenizer", init_fn, loss_fn, batch_fn)
  return Trained(model, params["g"], {"downsample": model.downsample_factor})


def vq_codebook(vq: Trained) -> np.ndarray:
  """The codebook as the tokenizer uses it (l2-normalized rows), float32[V, d]."""
  return np.asarray(vq.model.apply({"params": vq.params}, method=lambda m: m.quantizer.codebook()))


def _fit(config, workdir: str, kind: str, init_fn, loss_fn, batch_fn):
  settings, train_cfg = _settings(config, kind)
  mesh = sharding.make_mesh(config.mesh)
  rng = jax.random.PRNGKey(config.seed)
  recipe = toolkit.Recipe(
    init_fn, loss_fn, train_cfg, mesh, rng, config.mesh.get("rules", "replicate")
  )
  root = _root(config, workdir)
  return toolkit.fit_or_load(recipe, batch_fn, root=root, name=kind, settings=settings).params


def encode_tokens(vq: Trained, images_uint8, batch_size: int = 128) -> np.ndarray:
  """Token grids int32[N, h, w] of uint8 images, spread over every device of the job.

  ``batch_size`` images per device per call (``sharding.batched_apply``); every process
  gets all N grids.
  """

  @jax.jit
  def enc(params, x):
    z = vq.model.apply({"params": params}, to_model_range(x), method="encode")
    idx, _ = vq.model.apply({"params": params}, z, method="quantize")
    return idx

  tokens = sharding.batched_apply(enc, vq.params, np.asarray(images_uint8), batch_size)
  return tokens.astype(np.int32)


def cached_tokens(config, workdir: str, vq: Trained, arrays, split: str) -> np.ndarray:
  """Tokens of a split, cached as .npy keyed by the tokenizer/data config."""
  settings, train_cfg = _settings(config, "tokenizer")
  key = toolkit.fingerprint(settings, toolkit.learning_settings(train_cfg))
  path = os.path.join(model_path(config, workdir, "prior"), f"tokens_{split}_{key}.npy")
  if os.path.exists(path):
    return np.load(path)
  tokens = encode_tokens(vq, arrays["image"])
  if jax.process_index() == 0:
    toolkit.atomic_write(path, lambda f: np.save(f, tokens))
  return tokens


# ----------------------------------------------------------------------------- AR prior


def prior_model(config, vq_cfg_model, grid, num_classes) -> transformer_lib.Transformer:
  kw = config.prior.model.to_dict()
  kw.update(
    vocab_size=int(vq_cfg_model.codebook_size),
    num_classes=int(num_classes),
    grid=tuple(int(g) for g in grid),
  )
  return transformer_lib.Transformer(**kw)


def token_nll(model, params, tokens, labels) -> jax.Array:
  """Mean negative log-likelihood (nats/token) of flat token sequences [B, T]."""
  logits = model.apply({"params": params}, tokens, labels, train=False)
  return -jnp.mean(transformer_lib.token_log_probs(logits, tokens))


def prior(config, workdir: str) -> tuple[Trained, Trained]:
  """(tokenizer, prior): trains or loads both; the prior learns p(tokens | source photo)."""
  train_arrays, heldout_arrays, info = dataset(config, workdir)
  vq = tokenizer(config, workdir, train_arrays)
  tokens = cached_tokens(config, workdir, vq, train_arrays, "train")
  n, h, w = tokens.shape
  flat = {"tokens": tokens.reshape(n, h * w), "label": np.asarray(train_arrays["label"], np.int32)}
  model = prior_model(config, config.vq.model, (h, w), info["num_classes"])

  def init_fn(rng):
    params = model.init(
      {"params": rng, "dropout": rng}, jnp.zeros((1, h * w), jnp.int32), jnp.zeros((1,), jnp.int32)
    )["params"]
    return params, {}

  def loss_fn(params, extra, batch, rng, step):
    toks = batch["tokens"]
    logits = model.apply(
      {"params": params}, toks, batch["label"], train=True, rngs={"dropout": rng}
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), toks).mean()
    return loss, ({"nll": loss, "bits_per_token": loss / np.log(2)}, extra)

  cfg = config.prior
  batch_fn = _batch_fn(flat, cfg.train.batch_size, config.seed + 1, ("tokens", "label"))
  params = _fit(config, workdir, "prior", init_fn, loss_fn, batch_fn)
  pinfo = dict(
    grid=(h, w),
    num_classes=info["num_classes"],
    class_names=info["class_names"],
    train_labels=info["train_labels"],
    patch_size=info["patch_size"],
  )
  logging.info("prior ready: grid %s, %d classes", (h, w), info["num_classes"])
  return vq, Trained(model, params, pinfo)


# ----------------------------------------------------------------------------- caption LM


def caption_model(config, length: int | None = None) -> transformer_lib.Transformer:
  """The M3 caption LM: the Llama decoder over corpus words with a 1 x L grid, topic-conditioned."""
  kw = config.captioner.model.to_dict()
  kw.update(
    vocab_size=caption.VOCAB_SIZE,
    num_classes=len(caption.topics()),
    grid=(1, int(length or config.captioner.window)),
    class_dropout_prob=0.0,
  )
  return transformer_lib.Transformer(**kw)


def captioner(config, workdir: str) -> Trained:
  """Trains (or loads from ``workdir/captioner``) the caption LM on the WordNet glosses."""
  cfg = config.captioner
  model = caption_model(config)
  window = int(cfg.window)

  def init_fn(rng):
    return model.init(
      {"params": rng, "dropout": rng}, jnp.zeros((1, window), jnp.int32), jnp.zeros((1,), jnp.int32)
    )["params"], {}

  def loss_fn(params, extra, batch, rng, step):
    logits = model.apply(
      {"params": params}, batch["text"], batch["topic"], train=True, rngs={"dropout": rng}
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), batch["text"]
    ).mean()
    return loss, ({"bits_per_char": loss / np.log(2)}, extra)

  def batch_fn(step):  # the global batch on every process, then this process's block
    topic, text = caption.training_windows(
      window, int(cfg.train.batch_size), config.seed * 7919, step
    )
    return {"topic": sharding.process_rows(topic), "text": sharding.process_rows(text)}

  params = _fit(config, workdir, "captioner", init_fn, loss_fn, batch_fn)
  return Trained(model, params, {"topics": caption.topics()})
