r"""Convert published LlamaGen PyTorch checkpoints (VQ tokenizer, c2i GPT) to stegjax.

    python -m stegjax.models.convert_llamagen --vq=vq_ds16_c2i.pt --gpt=c2i_B_384.pt \
        --image_size=384 --out=ckpt/llamagen_b384

reads local ``.pt``/``.pth``/``.bin`` (needs torch, the optional ``torch`` extra) or
``.safetensors`` files (read with the ``safetensors`` package, no torch), maps every key onto the stegjax
parameter tree (conv OIHW -> HWIO, linear [out, in] -> [in, out], fused ``wqkv`` kept
fused as ``transformer.Attention`` expects), drops buffers (``freqs_cis``,
``causal_mask``, KV caches, ``quantize.codebook_used``), checks every shape, and writes

    OUT/config.json      model kwargs, source files, parameter counts
    OUT/vq/, OUT/gpt/    orbax checkpoints of the bare ``params`` trees (float32)

``load_converted(OUT)`` returns ``(vq_model, vq_params, gpt_model, gpt_params)``
(``load_checkpoints(vq, gpt)`` takes either converted directories or the raw files);
apply them as ``model.apply({"params": params}, ...)``. Shapes not stored in the files
(the GPT's head count and token grid) come from the published presets
(``stegjax.models.presets``) and ``--image_size``; everything else is read from the
checkpoint and then verified key by key: a missing, unexpected or mis-shaped key fails
with the full list.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from stegjax import errors
from stegjax.models import presets
from stegjax.models import transformer as transformer_lib
from stegjax.models import vq as vq_lib

# Buffers in LlamaGen state dicts that stegjax recomputes or does not need.
DROPPED = (
  re.compile(r"(^|\.)freqs_cis$"),
  re.compile(r"(^|\.)causal_mask$"),
  re.compile(r"(^|\.)kv_cache\.[kv]_cache$"),
  re.compile(r"^quantize\.codebook_used$"),
)
# Wrappers that prefix keys: DDP/deepspeed ("module."), torch.compile ("_orig_mod."), FSDP.
_PREFIXES = ("module.", "_orig_mod.", "_fsdp_wrapped_module.")
# Where training scripts put the model's state dict inside a checkpoint file.
_CONTAINERS = ("model", "module", "state_dict", "model_state_dict")
_INDEXED = re.compile(r"^(.*)_(\d+)$")


CheckpointMismatchError = errors.CheckpointMismatchError


# ------------------------------------------------------------------ reading files


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  """A .safetensors file -> numpy arrays (float types as float32), without torch."""
  import ml_dtypes  # ships with jax
  import safetensors

  try:
    with safetensors.safe_open(path, framework="np") as f:
      raw = {name: f.get_tensor(name) for name in f.keys()}
  except safetensors.SafetensorError as e:
    raise errors.InputError(f"{path}: not a safetensors file ({e})") from None
  return {
    name: a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating) or a.dtype == ml_dtypes.bfloat16
    else a
    for name, a in raw.items()
  }


def _read_torch(path: str, trust_pickle: bool) -> Any:
  try:
    import torch
  except ImportError:
    raise ImportError(
      f"reading {path} needs PyTorch (pip install 'stegjax[torch]'); "
      "or convert the file to .safetensors first"
    ) from None
  import argparse as _argparse

  try:
    if trust_pickle:  # runs arbitrary pickled code: only for files you trust
      return torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    # LlamaGen training checkpoints also pickle their argparse.Namespace of arguments.
    with torch.serialization.safe_globals([_argparse.Namespace]):
      return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
  except RuntimeError as e:
    if "mmap" not in str(e):
      raise
    with torch.serialization.safe_globals([_argparse.Namespace]):  # legacy (non-zip) format
      return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
  except Exception as e:  # pickle refusal under weights_only
    if trust_pickle or "weights_only" not in str(e):
      raise
    raise ValueError(
      f"{path}: torch refused to unpickle it safely ({str(e).splitlines()[0]}); "
      "if you trust the file, pass --trust_pickle"
    ) from None


def _to_numpy(value: Any, name: str) -> Any:
  if isinstance(value, np.ndarray):
    return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
  if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
    t = value.detach().cpu()
    return (t.float() if t.is_floating_point() else t).numpy()
  return value  # not an array: reported as a bad entry if the model needs it


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, Any]:
  """The model's flat state dict inside a checkpoint object, wrapper prefixes stripped.

  Accepts a flat ``{key: tensor}`` dict or a training checkpoint holding one under
  ``model`` (LlamaGen DDP), ``module`` (deepspeed), ``state_dict`` or ``model_state_dict``.
  """
  if not isinstance(obj, Mapping):
    raise ValueError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
  for c in _CONTAINERS:
    if c in obj and isinstance(obj[c], Mapping):
      obj = obj[c]
      break
  out = {}
  for k, v in obj.items():
    if not isinstance(k, str):
      raise ValueError(f"{source}: state dict key {k!r} is not a string")
    name = k
    changed = True
    while changed:
      changed = False
      for p in _PREFIXES:
        if name.startswith(p):
          name, changed = name[len(p) :], True
      name = name.replace("._orig_mod.", ".").replace("._fsdp_wrapped_module.", ".")
    if name in out:
      raise ValueError(f"{source}: keys {k!r} and another both map to {name!r}")
    out[name] = v
  return out


def read_state_dict(path: str, trust_pickle: bool = False) -> dict[str, Any]:
  """A local checkpoint file -> flat ``{torch key: numpy array}`` (floats as float32)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"checkpoint file not found: {path}")
  if path.endswith(".safetensors"):
    obj = _read_safetensors(path)
  elif path.endswith((".pt", ".pth", ".bin", ".ckpt")):
    obj = _read_torch(path, trust_pickle)
  else:
    raise ValueError(
      f"{path}: unknown checkpoint format (expected .pt, .pth, .bin, .ckpt or .safetensors)"
    )
  sd = unwrap_state_dict(obj, path)
  return {k: _to_numpy(v, k) for k, v in sd.items()}


# ------------------------------------------------------------------ key mapping


def _path_names(path) -> tuple[str, ...]:
  return tuple(getattr(p, "key", getattr(p, "name", str(p))) for p in path)


def torch_key(flax_path: tuple[str, ...]) -> str:
  """stegjax parameter path -> LlamaGen state-dict key (see the tables in vq.py / transformer.py)."""
  *mods, leaf = flax_path
  parts = []
  for m in mods:
    hit = _INDEXED.match(m)
    parts.extend([hit.group(1), hit.group(2)] if hit else [m])
  if parts[:1] == ["quantizer"]:  # VectorQuantizer's codebook is nn.Embedding quantize.embedding
    parts[0] = "quantize"
  if leaf in ("kernel", "scale", "embedding"):
    parts.extend(["embedding", "weight"] if parts == ["quantize"] else ["weight"])
  else:
    parts.append(leaf)  # bias, RMSNorm weight
  return ".".join(parts)


def _to_flax(leaf: str, w: np.ndarray) -> np.ndarray:
  if leaf == "kernel" and w.ndim == 4:
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO
  if leaf == "kernel" and w.ndim == 2:
    return w.T  # Linear [out, in] -> Dense [in, out]
  return w


def _to_torch(leaf: str, w: np.ndarray) -> np.ndarray:
  if leaf == "kernel" and w.ndim == 4:
    return np.transpose(w, (3, 2, 0, 1))
  if leaf == "kernel" and w.ndim == 2:
    return w.T
  return w


def _torch_shape(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  if leaf == "kernel" and len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  if leaf == "kernel" and len(shape) == 2:
    return (shape[1], shape[0])
  return tuple(shape)


def expected_keys(model) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """``{torch key: (stegjax path, torch shape)}`` for every parameter of ``model``."""
  out = {}
  for path, s in jax.tree_util.tree_flatten_with_path(presets.abstract_params(model))[0]:
    names = _path_names(path)
    out[torch_key(names)] = (names, _torch_shape(names[-1], s.shape))
  return out


def is_dropped(key: str) -> bool:
  return any(p.search(key) for p in DROPPED)


def _fmt(keys, limit: int = 40) -> str:
  keys = sorted(keys)
  more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


def to_flax_params(state_dict: Mapping[str, Any], model, what: str = "model") -> dict:
  """Maps a LlamaGen state dict onto ``model``'s params (numpy float32 tree).

  Raises ``CheckpointMismatchError`` naming every missing, unexpected and mis-shaped key.
  """
  want = expected_keys(model)
  have = {k: v for k, v in state_dict.items() if not is_dropped(k)}
  missing = [k for k in want if k not in have]
  unexpected = [k for k in have if k not in want]
  bad = []
  for k, (_, shape) in want.items():
    if k in have:
      v = have[k]
      if not isinstance(v, np.ndarray) or not np.issubdtype(v.dtype, np.floating):
        bad.append(
          f"{k}: expected a float tensor of shape {shape}, got {type(v).__name__}"
          f"{'' if not isinstance(v, np.ndarray) else ' of dtype ' + str(v.dtype)}"
        )
      elif tuple(v.shape) != shape:
        bad.append(f"{k}: expected shape {shape}, got {tuple(v.shape)}")
  if missing or unexpected or bad:
    lines = [
      f"{what} checkpoint does not match the {type(model).__name__} config "
      f"({len(missing)} missing, {len(unexpected)} unexpected, {len(bad)} mis-shaped keys)"
    ]
    if missing:
      lines.append(f"missing keys: {_fmt(missing)}")
    if unexpected:
      lines.append(f"unexpected keys: {_fmt(unexpected)}")
    if bad:
      lines.append(
        "mis-shaped keys: "
        + "; ".join(bad[:40])
        + (f" ... and {len(bad) - 40} more" if len(bad) > 40 else "")
      )
    raise CheckpointMismatchError("\n  ".join(lines))
  params: dict = {}
  for k, (names, _) in want.items():
    node = params
    for n in names[:-1]:
      node = node.setdefault(n, {})
    node[names[-1]] = np.ascontiguousarray(_to_flax(names[-1], have[k]), dtype=np.float32)
  return params


def to_torch_state_dict(params: Mapping) -> dict[str, np.ndarray]:
  """Inverse of ``to_flax_params``: a stegjax params tree -> LlamaGen-named numpy state dict."""
  out = {}
  for path, w in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = _path_names(path)
    out[torch_key(names)] = np.ascontiguousarray(_to_torch(names[-1], np.asarray(w, np.float32)))
  return out


# ------------------------------------------------------------------ configs from state dicts


def _shape(sd, key) -> tuple[int, ...] | None:
  v = sd.get(key)
  return tuple(v.shape) if hasattr(v, "shape") else None


def _indices(sd, pattern: str) -> list[int]:
  r = re.compile(pattern)
  return sorted({int(m.group(1)) for k in sd for m in [r.match(k)] if m})


def infer_vq_config(state_dict: Mapping[str, Any], preset: str = "VQ-16") -> dict[str, Any]:
  """``VQModel`` kwargs: the preset, with every size the state dict shows taken from it.

  (ch, ch_mult, num_res_blocks, z_channels and the codebook shape are all visible in the
  weights; GroupNorm groups and l2 normalization are not and stay as in the preset.)
  """
  cfg = presets.vq_config(preset)
  sd = state_dict
  s = _shape(sd, "encoder.conv_in.weight")
  if s:
    cfg["ch"] = s[0]
  levels = _indices(sd, r"^encoder\.conv_blocks\.(\d+)\.")
  if levels and levels == list(range(len(levels))):
    mult = []
    for lv in levels:
      s = _shape(sd, f"encoder.conv_blocks.{lv}.res.0.conv1.weight")
      if s is None or s[0] % cfg["ch"]:
        mult = None
        break
      mult.append(s[0] // cfg["ch"])
    if mult:
      cfg["ch_mult"] = tuple(mult)
  res = _indices(sd, r"^encoder\.conv_blocks\.0\.res\.(\d+)\.")
  if res:
    cfg["num_res_blocks"] = len(res)
  s = _shape(sd, "encoder.conv_out.weight")
  if s:
    cfg["z_channels"] = s[0]
  s = _shape(sd, "quantize.embedding.weight")
  if s and len(s) == 2:
    cfg["codebook_size"], cfg["codebook_dim"] = s
  return cfg


def infer_gpt_config(
  state_dict: Mapping[str, Any],
  image_size: int = 384,
  downsample: int = 16,
  preset: str | None = None,
  n_head: int | None = None,
) -> tuple[str | None, dict]:
  """(preset name or None, ``Transformer`` kwargs) for a LlamaGen c2i state dict.

  The head count is not visible in the weights: it comes from ``preset``, else from
  ``n_head``, else from the published preset with the checkpoint's (dim, n_layer).
  The grid is ``image_size // downsample`` per side.
  """
  sd = state_dict
  emb = _shape(sd, "tok_embeddings.weight")
  layers = _indices(sd, r"^layers\.(\d+)\.")
  if preset is None and n_head is None:
    if emb is None or not layers:
      raise CheckpointMismatchError(
        "GPT checkpoint lacks tok_embeddings.weight or layers.N.*: "
        "not a LlamaGen GPT state dict? (pass --gpt_model to see the full key check)"
      )
    found = [
      n
      for n, p in presets.GPT_PRESETS.items()
      if p["dim"] == emb[1] and p["n_layer"] == len(layers)
    ]
    if not found:
      raise ValueError(
        f"no published GPT has dim={emb[1]} and n_layer={len(layers)}; pass --n_head "
        f"(published: {', '.join(f'{n} {p}' for n, p in presets.GPT_PRESETS.items())})"
      )
    preset = found[0]
  if preset is not None:
    cfg = presets.gpt_config(preset, image_size, downsample)
    if n_head is not None:
      cfg["n_head"] = n_head
  else:
    cfg = presets.gpt_config("GPT-B", image_size, downsample)
    cfg.update(
      dim=emb[1] if emb else cfg["dim"], n_layer=len(layers) or cfg["n_layer"], n_head=n_head
    )
  if emb is not None:
    cfg["vocab_size"] = emb[0]
  s = _shape(sd, "cls_embedding.embedding_table.weight")
  if s is not None:
    cfg["num_classes"] = s[0] - 1  # the last row is the null class
  # SwiGLU width: published models follow the preset rule; other widths are expressed exactly
  # through multiple_of (find_multiple(int(8 dim / 3), hidden) == hidden when hidden >= 8 dim / 3).
  s = _shape(sd, "layers.0.feed_forward.w1.weight")
  if s is not None and s[0] != transformer_lib.ffn_hidden_dim(
    cfg["dim"], cfg["multiple_of"], cfg["ffn_dim_multiplier"]
  ):
    base = int(2 * (4 * cfg["dim"]) / 3)
    cfg["multiple_of"] = s[0]
    cfg["ffn_dim_multiplier"] = None if s[0] >= base else s[0] / base
  # GQA: wqkv rows = (n_head + 2 n_kv_head) * head_dim with head_dim = dim // n_head.
  s = _shape(sd, "layers.0.attention.wqkv.weight")
  hd = cfg["dim"] // cfg["n_head"] if cfg["dim"] % cfg["n_head"] == 0 else None
  if s is not None and hd and s[0] % hd == 0 and (s[0] // hd - cfg["n_head"]) % 2 == 0:
    kv = (s[0] // hd - cfg["n_head"]) // 2
    if kv > 0 and cfg["n_head"] % kv == 0 and kv != cfg["n_head"]:
      cfg["n_kv_head"] = kv
  return preset, cfg


# ------------------------------------------------------------------ convert, save, load


def convert_vq(state_dict: Mapping[str, Any], preset: str = "VQ-16", **overrides):
  """(VQModel, params) from a LlamaGen VQ state dict."""
  cfg = dict(infer_vq_config(state_dict, preset), **overrides)
  model = vq_lib.VQModel(**cfg)
  return model, to_flax_params(state_dict, model, "VQ")


def convert_gpt(
  state_dict: Mapping[str, Any],
  image_size: int = 384,
  downsample: int = 16,
  preset: str | None = None,
  n_head: int | None = None,
  **overrides,
):
  """(Transformer, params, preset name) from a LlamaGen c2i GPT state dict."""
  name, cfg = infer_gpt_config(state_dict, image_size, downsample, preset, n_head)
  cfg.update(overrides)
  model = transformer_lib.Transformer(**cfg)
  return model, to_flax_params(state_dict, model, "GPT"), name


def _jsonable(cfg: Mapping[str, Any]) -> dict:
  return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k != "dtype"}


def _module_config(model) -> dict:
  import dataclasses

  skip = {"parent", "name", "dtype"}
  return _jsonable(
    {
      f.name: getattr(model, f.name)
      for f in dataclasses.fields(model)
      if f.name not in skip and f.init
    }
  )


def save_converted(
  out_dir: str,
  vq: tuple | None = None,
  gpt: tuple | None = None,
  meta: Mapping[str, Any] | None = None,
) -> str:
  """Writes ``(model, params)`` pairs as OUT/{vq,gpt}/ orbax checkpoints plus OUT/config.json."""
  import orbax.checkpoint as ocp

  if vq is None and gpt is None:
    raise ValueError("nothing to save: give vq and/or gpt")
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  config: dict[str, Any] = {"format": "stegjax.convert_llamagen/1", **(meta or {})}
  ckptr = ocp.StandardCheckpointer()
  for name, pair in (("vq", vq), ("gpt", gpt)):
    if pair is None:
      continue
    model, params = pair[0], pair[1]
    ckptr.save(os.path.join(out_dir, name), params, force=True)
    ckptr.wait_until_finished()
    entry = dict(config.get(name, {}))
    entry.update(
      model=_module_config(model),
      params=int(sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params))),
    )
    config[name] = entry
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  return out_dir


def _tuples(cfg: Mapping[str, Any]) -> dict:
  return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def load_converted(out_dir: str, dtype: Any = jnp.float32):
  """``(vq_model, vq_params, gpt_model, gpt_params)`` from a ``save_converted`` directory.

  ``dtype`` is the models' activation dtype (bfloat16 on accelerators); params stay float32.
  A part that was not converted is returned as ``(None, None)``.
  """
  import orbax.checkpoint as ocp

  out_dir = os.path.abspath(out_dir)
  path = os.path.join(out_dir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"{out_dir} is not a converted LlamaGen checkpoint (no config.json); "
      "run python -m stegjax.models.convert_llamagen first"
    )
  with open(path) as f:
    config = json.load(f)
  ckptr = ocp.StandardCheckpointer()
  result = []
  for name, cls in (("vq", vq_lib.VQModel), ("gpt", transformer_lib.Transformer)):
    if name not in config:
      result += [None, None]
      continue
    model = cls(**_tuples(config[name]["model"]), dtype=dtype)
    abstract = presets.abstract_params(model)
    try:
      params = ckptr.restore(os.path.join(out_dir, name), abstract)
    except (ValueError, KeyError) as e:
      raise CheckpointMismatchError(
        f"{out_dir}/{name} does not match its config.json: {e}"
      ) from None
    result += [model, params]
  return tuple(result)


def load_checkpoints(
  vq: str = "",
  gpt: str = "",
  image_size: int | None = None,
  dtype: Any = jnp.float32,
  trust_pickle: bool = False,
):
  """``(vq_model, vq_params, gpt_model, gpt_params)`` for ``--config.checkpoints.vq/gpt``.

  Each path may be a directory written by this module's CLI (its ``vq``/``gpt`` part is
  used) or a LlamaGen ``.pt``/``.safetensors`` file (converted in memory: no cache is
  written). An empty path gives ``(None, None)`` for that part. ``image_size`` (default:
  the converted grid, or 384 for a raw file) must agree with a converted GPT's grid.
  """
  out: list = [None, None, None, None]
  downsample = 16
  for i, (name, path) in enumerate((("vq", vq), ("gpt", gpt))):
    if not path:
      continue
    if os.path.isdir(path):
      loaded = load_converted(path, dtype)
      model, params = loaded[2 * i], loaded[2 * i + 1]
      if model is None:
        raise ValueError(
          f"{path} holds no converted {name.upper()} (config.json has no {name!r} entry)"
        )
    else:
      sd = read_state_dict(path, trust_pickle)
      if name == "vq":
        model, params = convert_vq(sd, dtype=dtype)
      else:
        model, params, _ = convert_gpt(sd, image_size or 384, downsample, dtype=dtype)
      params = jax.tree.map(jnp.asarray, params)
      del sd
    if name == "vq":
      downsample = model.downsample_factor
    elif image_size is not None and tuple(model.grid) != (image_size // downsample,) * 2:
      raise ValueError(
        f"{path} was converted for a {model.grid[0]}x{model.grid[1]} token grid, not "
        f"image_size={image_size} / {downsample}; convert it again with --image_size"
      )
    out[2 * i], out[2 * i + 1] = model, params
  return tuple(out)


def convert_files(
  vq_path: str | None = None,
  gpt_path: str | None = None,
  image_size: int = 384,
  vq_preset: str = "VQ-16",
  gpt_preset: str | None = None,
  n_head: int | None = None,
  trust_pickle: bool = False,
) -> dict:
  """Reads and converts the given files: ``{'vq': (model, params), 'gpt': (model, params), 'meta': ...}``."""
  if not vq_path and not gpt_path:
    raise ValueError("give a VQ checkpoint (--vq), a GPT checkpoint (--gpt) or both")
  out: dict[str, Any] = {"meta": {}}
  downsample = 16
  if vq_path:
    sd = read_state_dict(vq_path, trust_pickle)
    model, params = convert_vq(sd, vq_preset)
    del sd
    downsample = model.downsample_factor
    out["vq"] = (model, params)
    out["meta"]["vq"] = dict(
      source=os.path.abspath(vq_path), bytes=os.path.getsize(vq_path), preset=vq_preset
    )
  if gpt_path:
    sd = read_state_dict(gpt_path, trust_pickle)
    model, params, name = convert_gpt(sd, image_size, downsample, gpt_preset, n_head)
    del sd
    out["gpt"] = (model, params)
    out["meta"]["gpt"] = dict(
      source=os.path.abspath(gpt_path),
      bytes=os.path.getsize(gpt_path),
      preset=name,
      image_size=image_size,
      downsample=downsample,
    )
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(
    prog="python -m stegjax.models.convert_llamagen",
    description="Convert LlamaGen VQ / c2i GPT checkpoints to stegjax (orbax).",
  )
  ap.add_argument(
    "--vq", default="", help="VQ tokenizer checkpoint (.pt or .safetensors), e.g. vq_ds16_c2i.pt"
  )
  ap.add_argument(
    "--gpt", default="", help="c2i GPT checkpoint (.pt or .safetensors), e.g. c2i_B_384.pt"
  )
  ap.add_argument("--out", required=True, help="output directory")
  ap.add_argument(
    "--image_size", type=int, default=384, help="image side the GPT samples (grid = size / 16)"
  )
  ap.add_argument("--vq_model", default="VQ-16", choices=sorted(presets.VQ_PRESETS))
  ap.add_argument(
    "--gpt_model",
    default=None,
    choices=sorted(presets.GPT_PRESETS),
    help="published GPT shape (default: matched from the checkpoint's width and depth)",
  )
  ap.add_argument(
    "--n_head", type=int, default=None, help="head count for a GPT that is not a published shape"
  )
  ap.add_argument(
    "--trust_pickle",
    action="store_true",
    help="allow arbitrary pickled objects in .pt files (only for files you trust)",
  )
  args = ap.parse_args(argv)
  try:
    res = convert_files(
      args.vq or None,
      args.gpt or None,
      args.image_size,
      args.vq_model,
      args.gpt_model,
      args.n_head,
      args.trust_pickle,
    )
    out = save_converted(args.out, res.get("vq"), res.get("gpt"), res["meta"])
  except (ValueError, FileNotFoundError, ImportError) as e:
    print(f"convert_llamagen: error: {e}", file=sys.stderr)
    return 1
  for name in ("vq", "gpt"):
    if name in res:
      model, params = res[name]
      n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
      print(f"{name}: {type(model).__name__} {res['meta'][name].get('preset') or ''} {n:,} params")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
