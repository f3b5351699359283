"""Benchmark: differentiable JPEG throughput against PIL's real JPEG round trip.

Measures images/s of ``stegjax.channels.jpeg.diff_jpeg`` (forward, and forward+backward)
on 256x256 crops of real photographs at several batch sizes, and PIL's single-core
encode+decode rate on the same images in the same process; also records how close
each mode's output is to PIL's (PSNR).

  python benchmarks/channels.py                 # CPU sizes, a couple of minutes
  python benchmarks/channels.py --size=gpu      # accelerator sizes
  python benchmarks/channels.py --out=bench_out/channels.json

Target: on a GPU, forward+backward at batch 64 >= 10x PIL's single-core rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import PIL
from PIL import features

from stegjax.channels import jpeg, real

SIZES = {
  # (resolution, batch sizes, modes, timed repeats)
  "cpu": dict(res=(256,), batches=(1, 64), modes=("ss",), repeats=3, pil_images=64),
  "gpu": dict(
    res=(256, 512), batches=(1, 64, 256), modes=("ss", "ste", "mask"), repeats=20, pil_images=128
  ),
}


def photo_crops(res: int, n: int) -> np.ndarray:
  """n uint8 [res, res, 3] crops of the bundled photographs (cycled, shifted windows)."""
  import skimage.data
  from sklearn.datasets import load_sample_images

  photos = [
    getattr(skimage.data, k)()
    for k in (
      "astronaut",
      "coffee",
      "chelsea",
      "rocket",
      "immunohistochemistry",
      "hubble_deep_field",
    )
  ]
  photos += list(load_sample_images().images)
  out = []
  i = 0
  while len(out) < n:
    p = photos[i % len(photos)]
    h, w = p.shape[:2]
    if h < res or w < res:
      p = np.asarray(PIL.Image.fromarray(p).resize((max(w, res), max(h, res))))
      h, w = p.shape[:2]
    k = i // len(photos)
    top = (k * 37) % (h - res + 1)
    left = (k * 53) % (w - res + 1)
    out.append(p[top : top + res, left : left + res])
    i += 1
  return np.stack(out)


def _time(fn, *args, repeats):
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  compile_s = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return compile_s, float(np.median(times)), float(np.min(times))


def pil_rate(images: np.ndarray, quality: int) -> float:
  """Images/s of PIL JPEG encode+decode, one core (this process, sequential)."""
  real.apply(f"jpeg{quality}", images[:2])  # warm up
  t0 = time.perf_counter()
  real.apply(f"jpeg{quality}", images)
  return len(images) / (time.perf_counter() - t0)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
  ap.add_argument("--quality", type=int, default=75)
  ap.add_argument("--out", default="bench_out/channels.json")
  args = ap.parse_args(argv)
  cfg = SIZES[args.size]
  q = args.quality
  dev = jax.devices()[0]
  result = dict(
    benchmark="channels",
    size=args.size,
    quality=q,
    device=dict(platform=dev.platform, kind=dev.device_kind, count=jax.device_count()),
    versions=dict(
      python=platform.python_version(),
      jax=jax.__version__,
      numpy=np.__version__,
      pillow=PIL.__version__,
      libjpeg_turbo=features.version("libjpeg_turbo"),
    ),
    cpu_count=os.cpu_count(),
    figures=[],
  )

  fwd = jax.jit(jpeg.diff_jpeg, static_argnames="mode")

  def loss(x, target, quality, mode):
    return jnp.mean((jpeg.diff_jpeg(x, quality, mode) - target) ** 2)

  fwd_bwd = jax.jit(jax.value_and_grad(loss), static_argnames="mode")

  for res in cfg["res"]:
    imgs_pil = photo_crops(res, cfg["pil_images"])
    pil = pil_rate(imgs_pil, q)
    ref = real.apply(f"jpeg{q}", imgs_pil[:8]).astype(np.float32) / 255.0
    print(f"[{res}x{res}] PIL encode+decode (1 core): {pil:8.1f} img/s", flush=True)
    result["figures"].append(dict(name="pil_roundtrip", res=res, images_per_s=pil))
    for mode in cfg["modes"]:
      acc = jax.device_get(fwd(jnp.asarray(imgs_pil[:8], jnp.float32) / 255.0, q, mode=mode))
      psnr = 10 * np.log10(1.0 / np.mean((acc - ref) ** 2, axis=(1, 2, 3)))
      for b in cfg["batches"]:
        x = jnp.asarray(photo_crops(res, b), jnp.float32) / 255.0
        target = fwd(x, q, mode="ste")
        qf = jnp.float32(q)
        for kind, fn, fargs in (
          ("forward", lambda v, t, qq: fwd(v, qq, mode=mode), (x, target, qf)),
          ("forward_backward", lambda v, t, qq: fwd_bwd(v, t, qq, mode=mode), (x, target, qf)),
        ):
          comp, med, best = _time(fn, *fargs, repeats=cfg["repeats"])
          rate = b / med
          fig = dict(
            name=f"diff_jpeg_{mode}_{kind}",
            res=res,
            batch=b,
            mode=mode,
            pass_kind=kind,
            images_per_s=rate,
            median_s=med,
            min_s=best,
            compile_s=comp,
            ratio_vs_pil=rate / pil,
            psnr_vs_pil_db_min=float(psnr.min()),
            psnr_vs_pil_db_mean=float(psnr.mean()),
          )
          result["figures"].append(fig)
          print(
            f"[{res}x{res}] {mode:4s} {kind:16s} batch {b:4d}: {rate:9.1f} img/s "
            f"({rate / pil:6.2f}x PIL), compile {comp:5.1f}s, "
            f"PSNR vs PIL min {psnr.min():.1f} dB",
            flush=True,
          )

  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(f"wrote {args.out}")
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
