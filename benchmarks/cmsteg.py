"""CMSTEG speed: M1 time per stego image vs plain sampling, M2 images/s, M3 time.

    python benchmarks/cmsteg.py                    # CPU: the default config's model shapes
    python benchmarks/cmsteg.py --size=gpu --out bench_out/cmsteg_gpu.json

Random weights of the configured shapes (speed does not depend on training). M1 is
timed against plain sampling in the same generation loop (the all-zero message, which
is plain sampling by construction); M2 at batch 1 and a larger batch for a fixed number
of Adam steps (per-step time scales linearly, so 10,000-step figures are extrapolated
and labelled so); M3 is the sender's planning (top-k sets + distance ranks) plus the
caption's embedding. Prints and writes JSON with device and versions.

``--early_stop`` (needs the trained models of ``configs/cmsteg.py`` in
``--model_dir``, i.e. a finished default run) also runs M2 on real stego images
through ``--channel`` with and without the early stop (``--patience`` steps with
no token changing in any image) and reports the steps each ran and R_q.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.cmsteg import correct, recover
from stegjax.cmsteg import embed as m1
from stegjax.metrics import report
from stegjax.stego import framing
from stegjax.cmsteg import recipes

SIZES = {
  "cpu": dict(config="cpu", batches=(1, 16), m2_steps=50, images=8),
  "gpu": dict(config="gpu", batches=(1, 32), m2_steps=200, images=32),
}


def _config(size):
  spec = importlib.util.spec_from_file_location(
    "cmsteg_config", os.path.join(os.path.dirname(__file__), "..", "configs", "cmsteg.py")
  )
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(size)


def _timed(fn, repeats=2):
  fn()  # compile + warm up
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t0)
  return best


def _random_models(config):
  p = int(config.data.patch_size)
  vq_model = recipes.vq_model(config)
  vq_params = vq_model.init(jax.random.PRNGKey(0), jnp.zeros((1, p, p, 3)))["params"]
  vq = recipes.Trained(vq_model, vq_params, {"downsample": vq_model.downsample_factor})
  g = p // vq_model.downsample_factor
  prior_model = recipes.prior_model(config, config.vq.model, (g, g), num_classes=10)
  prior_params = prior_model.init(
    jax.random.PRNGKey(1), jnp.zeros((1, g * g), jnp.int32), jnp.zeros((1,), jnp.int32)
  )["params"]
  prior = recipes.Trained(prior_model, prior_params, {"grid": (g, g)})
  return vq, prior


def early_stop(config, args) -> dict:
  """R_q and steps of M2 with and without the early stop, on the trained models."""
  from stegjax.channels import real  # pylint: disable=g-import-not-at-top
  from stegjax.cmsteg import api  # pylint: disable=g-import-not-at-top

  config.model_dir = args.model_dir
  for kind in ("tokenizer", "prior", "captioner"):
    if not recipes.is_cached(config, "", kind):
      raise SystemExit(
        f"--early_stop: no trained {kind} under {args.model_dir} for this config; "
        f"run python -m stegjax.main --config=configs/cmsteg.py first"
      )
  models = api.load_models(config, "")
  n = args.images
  labels = np.asarray(models.prior.info["train_labels"])[
    np.arange(n) % len(models.prior.info["train_labels"])
  ]
  sent = api.hide(models, [b"x"] * n, b"bench-early-stop", np.arange(n), labels)
  x = real.apply(args.channel, sent["images"], jax.random.PRNGKey(0))
  cm = config.cmsteg
  out = {"channel": args.channel, "images": n, "patience": args.patience}
  for name, pat in (("full", 0), ("early_stop", args.patience)):
    t0 = time.perf_counter()
    r = recover.recover(models.vq, x, args.channel, args.steps, cm.m2_lr, pat, cm.m2_batch)
    out[name] = {
      "steps_run": int(r["steps"]),
      "seconds_incl_compile": time.perf_counter() - t0,
      "R_q": float(np.mean(r["tokens"].reshape(n, -1) == sent["tokens"])),
      "R_q_m1": float(np.mean(r["tokens_m1"].reshape(n, -1) == sent["tokens"])),
    }
  out["steps_saved"] = out["full"]["steps_run"] - out["early_stop"]["steps_run"]
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--early_stop", action="store_true", help="also measure M2's early stop")
  ap.add_argument("--model_dir", default="workdir/models_cpu")
  ap.add_argument("--channel", default="jpeg75")
  ap.add_argument("--steps", type=int, default=400)
  ap.add_argument("--patience", type=int, default=50)
  ap.add_argument("--images", type=int, default=8)
  ap.add_argument("--size", default="cpu", choices=sorted(SIZES))
  ap.add_argument("--out", default="bench_out/cmsteg.json")
  args = ap.parse_args()
  sz = SIZES[args.size]
  config = _config(sz["config"])
  vq, prior = _random_models(config)
  s = m1.Sampler.from_config(config.cmsteg)
  n = sz["images"]
  g = prior.info["grid"]
  t = g[0] * g[1]
  key = framing.sampling_key(b"bench")
  labels, nonces = np.arange(n) % 10, np.arange(n)
  bits = np.random.RandomState(0).randint(0, 2, (n, 16 * t)).astype(np.uint8)
  res = {
    "size": args.size,
    "environment": report.environment(),
    "grid": list(g),
    "top_k": s.top_k,
    "variant": s.variant,
    "images": n,
  }

  t_embed = _timed(lambda: m1.embed(prior, key, bits, np.full(n, bits.shape[1]), labels, nonces, s))
  t_plain = _timed(
    lambda: m1.embed(
      prior, key, np.zeros((n, 1), np.uint8), np.zeros(n, np.int32), labels, nonces, s
    )
  )
  res["m1_s_per_image"] = t_embed / n
  res["plain_sampling_s_per_image"] = t_plain / n
  res["m1_over_plain"] = t_embed / t_plain

  imgs = report.to_uint8(
    np.clip(
      np.asarray(
        vq.model.apply(
          {"params": vq.params}, jnp.zeros((n,) + tuple(g), jnp.int32), method="decode_indices"
        )
      ),
      -1,
      1,
    )
  )
  steps = sz["m2_steps"]
  res["m2"] = {}
  for b in sz["batches"]:
    x = np.repeat(imgs[:1], b, 0)
    sec = _timed(lambda: recover.recover(vq, x, "jpeg75", steps, batch_size=b), repeats=1)
    res["m2"][f"batch{b}"] = {
      "steps": steps,
      "seconds": sec,
      "ms_per_step": 1e3 * sec / steps,
      "images_per_s_at_these_steps": b / sec,
      "s_per_image_10k_steps_extrapolated": sec / steps * 1e4 / b,
    }

  toks, _ = m1.embed(prior, key, bits, np.full(n, bits.shape[1]), labels, nonces, s)
  rec = toks.copy()
  rec[:, ::7] = (rec[:, ::7] + 1) % recipes.vq_codebook(vq).shape[0]

  def plan():
    ranks = m1.prior_ranks(prior, toks, labels, s)
    return [correct.plan(toks[i], rec[i], ranks[i]) for i in range(n)]

  res["m3_plan_s_per_image"] = _timed(plan, repeats=1) / n
  if args.early_stop:
    res["early_stop"] = early_stop(config, args)
  print(json.dumps(res, indent=2))
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(res, f, indent=2)


if __name__ == "__main__":
  main()
