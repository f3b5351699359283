"""Report writers shared by the experiments: report.md, report.json, PNG grids.

Only process 0 writes (multi-host jobs run the same code on every process).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any, Sequence

import numpy as np


def is_writer() -> bool:
  import jax

  return jax.process_index() == 0


def environment() -> dict:
  """Versions and devices, recorded in every report and benchmark."""
  import flax
  import jax
  import optax

  dev = jax.devices()[0]
  return {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "flax": flax.__version__,
    "optax": optax.__version__,
    "backend": jax.default_backend(),
    "device": getattr(dev, "device_kind", str(dev)),
    "device_count": jax.device_count(),
    "process_count": jax.process_count(),
    "cpu_count": os.cpu_count(),
    "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _jsonable(x: Any):
  if isinstance(x, dict):
    return {str(k): _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
    arr = np.asarray(x)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  return x


def write_json(path: str, obj: Any) -> None:
  if not is_writer():
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(_jsonable(obj), f, indent=2, sort_keys=False)


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return str(v)

  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines)


def write_report(workdir: str, title: str, sections: Sequence[tuple[str, str]], data: dict) -> str:
  """Writes workdir/report.md (title + sections) and workdir/report.json (data + environment)."""
  if not is_writer():
    return os.path.join(workdir, "report.md")
  os.makedirs(workdir, exist_ok=True)
  env = environment()
  parts = [
    f"# {title}",
    "",
    f"_{env['time']} · jax {env['jax']} · {env['backend']} ({env['device']}) x{env['device_count']}_",
    "",
  ]
  for heading, body in sections:
    parts += [f"## {heading}", "", body.rstrip(), ""]
  path = os.path.join(workdir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(parts))
  write_json(os.path.join(workdir, "report.json"), dict(data, environment=env))
  return path


def to_uint8(images) -> np.ndarray:
  """Float images in [-1, 1] (model range) or [0, 1], or uint8, to uint8."""
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x
  if x.min() < -0.01:
    x = (x + 1.0) / 2.0
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def save_grid(images, path: str, ncol: int = 8, scale: int = 1, pad: int = 2) -> str:
  """Saves [N, H, W, 3] images as one PNG grid (nearest-neighbour upscaled by ``scale``)."""
  from PIL import Image

  x = to_uint8(images)
  n, h, w, _ = x.shape
  ncol = max(1, min(ncol, n))
  nrow = (n + ncol - 1) // ncol
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
  for i in range(n):
    r, c = divmod(i, ncol)
    grid[
      pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w
    ] = x[i]
  img = Image.fromarray(grid)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  if is_writer():
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img.save(path)
  return path


def save_pngs(images, folder: str):
  """Each of [N, H, W, 3] uint8 images as folder/00000.png, 00001.png, ..."""
  from PIL import Image

  if not is_writer():
    return
  os.makedirs(folder, exist_ok=True)
  for i, im in enumerate(to_uint8(images)):
    Image.fromarray(im).save(os.path.join(folder, f"{i:05d}.png"))


def roc_plot(curves: dict, path: str):
  """One ROC panel per key of ``curves`` = {panel: {label: (fpr, tpr)}}, saved as ``path``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 4), squeeze=False)
  for ax, (panel, lines) in zip(axes[0], curves.items()):
    for label, (fpr, tpr) in lines.items():
      ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_title(panel)
    ax.set_xlabel("P_FA")
    ax.set_ylabel("1 - P_MD")
    ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  if is_writer():
    fig.savefig(path, dpi=100)
  plt.close(fig)
