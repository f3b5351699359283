"""Messages across images: extraction time per image, and what list decoding costs.

    python benchmarks/cmsteg_transfer.py --workdir=workdir/cmsteg          # the CPU default
    python benchmarks/cmsteg_transfer.py --size=smoke --workdir=/tmp/bench  # seconds-long check

Loads (or trains) the models of ``configs/cmsteg.py`` at ``--size`` from ``--workdir``, hides
one ``--bytes`` message across the images it needs (prepared for ``--prepared``), then for
each channel of ``--channels`` and each list-decoding budget of ``--budgets`` runs the
receiver and records seconds per received image, candidates tried, images used and whether
the message came back. Noise levels are channels (gauss0.005, gauss0.01, gauss0.02), so the
table shows time against both budget and noise. Prints and writes JSON with the load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

import jax
import numpy as np

from stegjax.channels import real
from stegjax.cmsteg import api, transfer


def _config(size):
  path = os.path.join(os.path.dirname(__file__), "..", "configs", "cmsteg.py")
  spec = importlib.util.spec_from_file_location("cmsteg_config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(size)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", default="cpu")
  ap.add_argument("--workdir", default="workdir/cmsteg")
  ap.add_argument("--bytes", type=int, default=256)
  ap.add_argument("--prepared", default="jpeg85")
  ap.add_argument("--channels", default="png,jpeg85,jpeg75,gauss0.005,gauss0.01,gauss0.02")
  ap.add_argument("--budgets", default="1,16,64,256")
  ap.add_argument("--out", default="bench_out/cmsteg_transfer.json")
  args = ap.parse_args()
  config = _config(args.size)
  models = api.load_models(config, args.workdir)
  secret = bytes(range(32))
  message = bytes(np.random.default_rng(0).integers(0, 256, args.bytes, dtype=np.uint8))
  t0 = time.time()
  sent = transfer.send(models, message, secret, 0, args.prepared, jax.random.PRNGKey(1))
  n = len(sent["images"])
  rows = [{"what": "send", "images": n, "seconds_per_image": (time.time() - t0) / n}]
  print(f"sent {args.bytes} bytes in {n} images, {rows[0]['seconds_per_image']:.1f} s/image")
  for name in args.channels.split(","):
    x = real.apply(name, sent["images"], jax.random.PRNGKey(2))
    for budget in map(int, args.budgets.split(",")):
      config.cmsteg.list_budget = budget
      t0 = time.time()
      try:
        out = transfer.receive(models, x, sent["captions"], secret, 0, args.prepared)
        ok, used, tried = out["message"] == message, out["used"], out["tried"]
      except ValueError as e:  # a user-facing failure: record it, keep measuring
        ok, used, tried = False, 0, -1
        print(f"  {name} budget {budget}: {type(e).__name__}: {e}")
      dt = time.time() - t0
      rows.append(
        dict(
          channel=name, budget=budget, ok=bool(ok), used=used, tried=tried, seconds_per_image=dt / n
        )
      )
      print(
        f"{name:10s} budget {budget:4d}: ok={ok} used={used}/{n} tried={tried} {dt / n:.1f} s/image"
      )
  res = {
    "rows": rows,
    "load_average": os.getloadavg(),
    "cpus": os.cpu_count(),
    "backend": jax.default_backend(),
    "size": args.size,
  }
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(res, f, indent=1)


if __name__ == "__main__":
  main()
