"""Named sizes shared by the configs in ``configs/`` (big_vision style).

Sizes: ``smoke`` (seconds, used by tests), ``cpu`` (the default: minutes on a
2-core laptop), ``gpu`` (one accelerator), ``paper`` (the published shapes).
Every field is a plain ConfigDict entry, overridable from the command line.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from stegjax import errors

SIZES = ("smoke", "cpu", "gpu", "paper")


def parse_size(arg: str | None) -> str:
  size = (arg or "cpu").strip() or "cpu"
  if size not in SIZES:
    raise errors.ConfigError(f"unknown config size {size!r}; valid: {', '.join(SIZES)}")
  return size


def sibling(config_file: str, name: str):
  """The module ``<name>.py`` beside ``config_file`` (config files are loaded by path, not as a package)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"stegjax_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def base(experiment: str, size: str, models: tuple[str, ...] = ()) -> ml_collections.ConfigDict:
  """The fields every config starts with, plus the model sections named in ``models``.

  ``experiment`` picks ``stegjax.experiments.<experiment>``; the workdir name carries the size
  (``cmsteg``, ``cmsteg_smoke``); ``models`` from ``data``, ``vq``, ``prior``, ``captioner``.
  """
  c = ml_collections.ConfigDict()
  c.experiment = experiment
  c.name = experiment if size == "cpu" else f"{experiment}_{size}"
  c.size = size
  c.seed = 0
  c.mesh = mesh()
  c.model_dir = model_dir(size)  # trained models, shared across experiments
  sections = {"data": data, "vq": vq, "prior": prior, "captioner": caption}
  for name in models:
    c[name] = sections[name](size)
  return c


def mesh(rules: str = "replicate") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(data=-1, model=1, rules=rules))


def model_dir(size: str) -> str:
  """Where trained tokenizers/priors/captioners are cached, shared across experiments.

  Relative to the working directory, like the default workdir; "" keeps them
  inside each experiment's workdir (smoke: tests run in temporary folders).
  """
  return "" if size == "smoke" else f"workdir/models_{size}"


def data(size: str) -> ml_collections.ConfigDict:
  """The real-photo patch dataset (DESIGN.md "Data"); fields from ``stegjax.data.default_config``.

  The patch size is the stego image size: cpu 48 px = 12x12 tokens (144 tokens carry a
  framed message; 8x8 carried too few bits for the 176 bits of framing).
  """
  from stegjax import data as data_lib

  cfg = data_lib.default_config()
  cfg.patch_size = {"smoke": 32, "cpu": 48, "gpu": 256, "paper": 384}[size]
  cfg.patches_per_photo = {"smoke": 32, "cpu": 2048, "gpu": 2048, "paper": 8192}[size]
  cfg.heldout_patches_per_photo = {"smoke": 16, "cpu": 256, "gpu": 256, "paper": 1024}[size]
  return cfg


def train(size: str, steps: dict, lr: float, batch: dict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      num_steps=steps[size],
      batch_size=batch[size],
      lr=lr,
      warmup_steps=min(200, steps[size] // 10),
      schedule="cosine",
      final_lr_frac=0.1,
      weight_decay=0.0,
      b1=0.9,
      b2=0.95,
      grad_clip=1.0,
      checkpoint_every=max(10, steps[size] // 4),
      max_to_keep=2,
      log_every=max(1, min(100, steps[size] // 10)),
      eval_every=0,
    )
  )


def vq(size: str) -> ml_collections.ConfigDict:
  """VQ tokenizer in the LlamaGen VQ-16 form, scaled (downsampling 2**(len(ch_mult)-1))."""
  model = {
    "smoke": dict(
      ch=16,
      ch_mult=(1, 2, 2),
      num_res_blocks=1,
      z_channels=32,
      codebook_size=64,
      codebook_dim=8,
      norm_groups=8,
    ),
    "cpu": dict(
      ch=32,
      ch_mult=(1, 2, 2),
      num_res_blocks=1,
      z_channels=64,
      codebook_size=512,
      codebook_dim=8,
      norm_groups=16,
    ),
    "gpu": dict(
      ch=128,
      ch_mult=(1, 1, 2, 2, 4),
      num_res_blocks=2,
      z_channels=256,
      codebook_size=4096,
      codebook_dim=8,
    ),
    "paper": dict(
      ch=128,
      ch_mult=(1, 1, 2, 2, 4),
      num_res_blocks=2,
      z_channels=256,
      codebook_size=16384,
      codebook_dim=8,
    ),
  }[size]
  model.update(beta=0.25, l2_norm=True, dropout=0.0)
  vq_train = train(
    size,
    steps={"smoke": 12, "cpu": 1500, "gpu": 40000, "paper": 400000},
    lr={"smoke": 1e-3, "cpu": 2e-3, "gpu": 2e-4, "paper": 1e-4}[size],
    batch={"smoke": 8, "cpu": 16, "gpu": 128, "paper": 128},
  )
  # Train on random crops (the VQ is fully convolutional): cpu 24 px windows of the 48 px
  # patches (32 px took 11.2 of a 35.8-min fresh run for the same final PSNR, ~26.5 dB);
  # gpu 128 of 256 as LlamaGen trains at 256 for 384.
  vq_train.crop = {"smoke": 0, "cpu": 24, "gpu": 128, "paper": 256}[size]
  cfg = ml_collections.ConfigDict(
    dict(
      model=model,
      train=vq_train,
      # Optional PatchGAN hinge loss from a configured step (0 weight disables it).
      gan_weight={"smoke": 0.0, "cpu": 0.0, "gpu": 0.1, "paper": 0.5}[size],
      gan_start_step={"smoke": 0, "cpu": 0, "gpu": 20000, "paper": 20000}[size],
      disc_ch=64,
      codebook_weight=1.0,
    )
  )
  return cfg


def prior(size: str, num_classes: int = 0) -> ml_collections.ConfigDict:
  """Class-conditional Llama-style AR prior over the tokenizer's tokens."""
  model = {
    "smoke": dict(dim=32, n_layer=2, n_head=2),
    "cpu": dict(dim=128, n_layer=3, n_head=4),
    "gpu": dict(dim=768, n_layer=12, n_head=12),  # LlamaGen-B
    "paper": dict(dim=3200, n_layer=24, n_head=32, head_dim=100),  # LlamaGen-3B
  }[size]
  model.update(
    multiple_of={"smoke": 16, "cpu": 64, "gpu": 256, "paper": 256}[size],
    class_dropout_prob=0.1,
    norm_eps=1e-5,
    rope_base=10000,
  )
  # vocab_size, num_classes and grid are filled from the tokenizer and the data at run time.
  model.update(num_classes=num_classes)
  return ml_collections.ConfigDict(
    dict(
      model=model,
      train=train(
        size,
        steps={"smoke": 12, "cpu": 1500, "gpu": 50000, "paper": 300000},
        lr={"smoke": 3e-3, "cpu": 2e-3, "gpu": 3e-4, "paper": 1e-4}[size],
        batch={"smoke": 8, "cpu": 16, "gpu": 256, "paper": 256},
      ),
      sample=dict(
        cfg_scale={"smoke": 1.5, "cpu": 1.5, "gpu": 2.0, "paper": 4.0}[size],
        top_k={"smoke": 32, "cpu": 256, "gpu": 1000, "paper": 2000}[size],
        temperature=1.0,
      ),
    )
  )


def caption(size: str) -> ml_collections.ConfigDict:
  """The M3 caption LM (characters, topic-conditioned) and how captions are drawn."""
  model = {
    "smoke": dict(dim=32, n_layer=1, n_head=2),
    "cpu": dict(dim=128, n_layer=2, n_head=4),
    "gpu": dict(dim=384, n_layer=6, n_head=6),
    "paper": dict(dim=768, n_layer=12, n_head=12),
  }[size]
  model.update(multiple_of=32, norm_eps=1e-5, rope_base=10000)
  return ml_collections.ConfigDict(
    dict(
      model=model,
      window={"smoke": 64, "cpu": 128, "gpu": 512, "paper": 512}[size],
      train=train(
        size,
        steps={"smoke": 8, "cpu": 1000, "gpu": 20000, "paper": 50000},
        lr={"smoke": 3e-3, "cpu": 3e-3, "gpu": 5e-4, "paper": 3e-4}[size],
        batch={"smoke": 8, "cpu": 16, "gpu": 128, "paper": 256},
      ),
    )
  )
