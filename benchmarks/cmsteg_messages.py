"""The default evaluation's real messages under several settings, side by side.

    python benchmarks/cmsteg_messages.py \
        --variant "cmsteg.prepare_channels=('png','jpeg75','jpeg95')" \
        --variant "cmsteg.prepare_channels=()"
    python benchmarks/cmsteg_messages.py --size=smoke --workdir=/tmp/bench --variant ""

Loads (or trains) the models of ``configs/cmsteg.py`` at ``--size`` from ``--workdir`` once,
then for each ``--variant`` (``;``-separated ``field=value`` overrides of the config, values
read as Python literals) runs ``cmsteg.evaluate_messages.evaluate`` as the default run does:
the same messages, sent once, received through every message channel in a shuffled order and
with ``redundancy`` images lost. Prints message success, how each image was read and seconds
per image for each channel, and the wall time as a ratio to the first variant (the baseline,
run in the same process); writes JSON with the load and versions.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import json
import os
import platform
import time

import jax

from stegjax.cmsteg import api, evaluate_messages


def _config(size):
  path = os.path.join(os.path.dirname(__file__), "..", "configs", "cmsteg.py")
  spec = importlib.util.spec_from_file_location("cmsteg_config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(size)


def overrides(spec: str) -> dict:
  """``"a.b=1;c=('x',)"`` -> {"a.b": 1, "c": ("x",)}; a value that is no literal stays text."""
  out = {}
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    if "=" not in part:
      raise SystemExit(f"--variant: {part!r} is not field=value")
    key, text = (s.strip() for s in part.split("=", 1))
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  return out


def _apply(config, changes: dict):
  for key, value in changes.items():
    *path, leaf = key.split(".")
    node = config
    for p in path:
      node = node[p]
    if leaf not in node:
      raise SystemExit(f"--variant: the config has no field {key!r}")
    node[leaf] = value


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--size", default="cpu")
  ap.add_argument("--workdir", default="workdir/cmsteg")
  ap.add_argument("--variant", action="append", default=None, help="overrides; repeatable")
  ap.add_argument("--out", default="bench_out/cmsteg_messages.json")
  args = ap.parse_args()
  variants = args.variant or [""]
  base = _config(args.size)
  models = api.load_models(base, args.workdir)
  rows, first = [], None
  for spec in variants:
    config = _config(args.size)
    changes = overrides(spec)
    _apply(config, changes)
    models = dataclasses.replace(models, config=config)
    load0, t0 = os.getloadavg()[0], time.time()
    res = evaluate_messages.evaluate(models, config.seed)
    wall = time.time() - t0
    first = first or wall
    res.pop("captions", None)
    rows.append(dict(variant=spec, wall_s=wall, ratio_to_first=wall / first, load=load0, **res))
    print(f"variant {spec or '(defaults)'}: {wall:.0f} s ({wall / first:.2f}x the first)")
    print(
      f"  {res['images_per_message']['mean']:.1f} images per message, send "
      f"{res['send_seconds_per_image']:.1f} s/image"
    )
    for name, ch in list(res["channels"].items()) + [("lost", res["lost"])]:
      print(
        f"  {name:10s} ok {ch['message_ok']:.2f}  read {ch['how']}  "
        f"list {ch['list_candidates']:.0f}  {ch['seconds_per_image']:.1f} s/image"
      )
  out = dict(
    rows=rows,
    size=args.size,
    load_end=os.getloadavg()[0],
    cpus=os.cpu_count(),
    backend=jax.default_backend(),
    devices=[str(d) for d in jax.devices()],
    versions=dict(jax=jax.__version__, python=platform.python_version()),
  )
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
  main()
