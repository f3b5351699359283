"""The published LlamaGen shapes (Sun et al. 2024) that CMSTEG runs on, as stegjax modules.

Tokenizers (``tokenizer/tokenizer_image/vq_model.py``): VQ-16 (the paper's; downsampling
16) and VQ-8, codebook 16384 x 8 with l2-normalized entries. Class-conditional GPTs
(``autoregressive/models/gpt.py``, c2i): B, L, XL, XXL, 3B, each with
``head_dim = dim // n_head``, ``n_kv_head = n_head``, ``multiple_of = 256``, no FFN
multiplier, 1000 ImageNet classes plus the null class for CFG, vocabulary 16384.

    vq = vq_model("VQ-16")
    gpt = gpt_model("GPT-B", image_size=384)          # 24 x 24 = 576 tokens
    param_count(gpt)                                  # 110,888,448 (no allocation)

Parameter counts (``jax.eval_shape``, exact; LlamaGen's rounded figure in brackets):
VQ-16 71,883,403 [72M], GPT-B 110,888,448 [111M], GPT-L 342,910,976 [343M],
GPT-XL 774,699,520 [775M], GPT-XXL 1,410,972,672 [1.4B], GPT-3B 3,096,659,200 [3.1B].
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from stegjax import models
from stegjax.models import transformer as transformer_lib
from stegjax.models import vq as vq_lib

# LlamaGen VQ ModelArgs defaults: ch 128, z_channels 256, 2 res blocks, codebook 16384 x 8, l2.
_VQ_COMMON = dict(
  ch=128,
  num_res_blocks=2,
  z_channels=256,
  codebook_size=16384,
  codebook_dim=8,
  beta=0.25,
  l2_norm=True,
  dropout=0.0,
  norm_groups=32,
)
VQ_PRESETS: dict[str, dict[str, Any]] = {
  "VQ-16": dict(_VQ_COMMON, ch_mult=(1, 1, 2, 2, 4)),
  "VQ-8": dict(_VQ_COMMON, ch_mult=(1, 2, 2, 4)),
}

# LlamaGen GPT_B ... GPT_3B (c2i): n_layer, n_head, dim.
GPT_PRESETS: dict[str, dict[str, Any]] = {
  "GPT-B": dict(n_layer=12, n_head=12, dim=768),
  "GPT-L": dict(n_layer=24, n_head=16, dim=1024),
  "GPT-XL": dict(n_layer=36, n_head=20, dim=1280),
  "GPT-XXL": dict(n_layer=48, n_head=24, dim=1536),
  "GPT-3B": dict(n_layer=24, n_head=32, dim=3200),
}
_GPT_COMMON = dict(
  vocab_size=16384,
  num_classes=1000,
  multiple_of=256,
  ffn_dim_multiplier=None,
  norm_eps=1e-5,
  rope_base=10000.0,
  cls_token_num=1,
  class_dropout_prob=0.1,
  cls_rope="zero",
)

# The sizes LlamaGen states for its models (rounded; used as a sanity check).
PUBLISHED_PARAMS = {
  "VQ-16": "72M",
  "GPT-B": "111M",
  "GPT-L": "343M",
  "GPT-XL": "775M",
  "GPT-XXL": "1.4B",
  "GPT-3B": "3.1B",
}


def _check_name(name: str, table: dict) -> None:
  if name not in table:
    raise ValueError(f"unknown preset {name!r}; valid: {', '.join(table)}")


def vq_config(name: str = "VQ-16", **overrides) -> dict[str, Any]:
  """Keyword arguments of ``vq.VQModel`` for a published tokenizer (overrides win)."""
  _check_name(name, VQ_PRESETS)
  return dict(VQ_PRESETS[name], **overrides)


def vq_model(name: str = "VQ-16", dtype: Any = jnp.float32, **overrides) -> vq_lib.VQModel:
  return vq_lib.VQModel(**vq_config(name, **overrides), dtype=dtype)


def gpt_config(
  name: str = "GPT-B", image_size: int = 384, downsample: int = 16, **overrides
) -> dict[str, Any]:
  """Keyword arguments of ``transformer.Transformer`` for a published c2i GPT.

  ``grid = image_size // downsample`` per side (384 / 16 -> 24 x 24 = 576 tokens, the
  CMSTEG setting; LlamaGen also publishes 256-pixel B and L models: 16 x 16).
  """
  _check_name(name, GPT_PRESETS)
  if image_size < 1 or downsample < 1 or image_size % downsample:
    raise ValueError(
      f"image_size={image_size} must be a positive multiple of downsample={downsample}"
    )
  g = image_size // downsample
  cfg = dict(_GPT_COMMON, **GPT_PRESETS[name], grid=(g, g))
  cfg.update(overrides)
  return cfg


def gpt_model(
  name: str = "GPT-B",
  image_size: int = 384,
  downsample: int = 16,
  dtype: Any = jnp.float32,
  **overrides,
) -> transformer_lib.Transformer:
  return transformer_lib.Transformer(
    **gpt_config(name, image_size, downsample, **overrides), dtype=dtype
  )


def abstract_params(model) -> Any:
  """ShapeDtypeStruct tree of a VQModel's or Transformer's ``params`` (``jax.eval_shape``)."""
  key = jax.random.key(0)
  if isinstance(model, vq_lib.VQModel):
    f = model.downsample_factor
    x = jax.ShapeDtypeStruct((1, f, f, 3), jnp.float32)
    return jax.eval_shape(model.init, key, x)["params"]
  if isinstance(model, transformer_lib.Transformer):
    t = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    y = jax.ShapeDtypeStruct((1,), jnp.int32)
    return jax.eval_shape(model.init, key, t, y)["params"]
  raise ValueError(f"expected a vq.VQModel or transformer.Transformer, got {type(model).__name__}")


def param_count(model) -> int:
  """Number of parameters, from shapes only (nothing is allocated)."""
  return models.param_count(abstract_params(model))
