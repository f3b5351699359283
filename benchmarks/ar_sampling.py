"""Tokens/s of KV-cached AR generation vs recomputing the full prefix every step.

    python benchmarks/ar_sampling.py                 # CPU sizes, a couple of minutes on 2 cores
    python benchmarks/ar_sampling.py --size=gpu      # LlamaGen GPT-B shape, 256 tokens, bf16

Both paths are one jitted lax.scan over the h*w steps with the same sampling
(categorical, fold_in(key, step)); the baseline runs the full teacher-forced forward
over the (causally masked, fixed-length) token buffer at every step and reads the
logits of the current position. Prints and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from stegjax.models import transformer as tr

SIZES = {
  # small model on CPU so both paths finish in about a minute each
  "cpu": dict(
    vocab_size=1024,
    num_classes=10,
    dim=128,
    n_layer=4,
    n_head=4,
    grid=(8, 8),
    dtype="float32",
    batches=(1, 64),
  ),
  # LlamaGen GPT-B: 12 x 768, vocab 16384, 16x16 = 256 tokens, bf16 activations
  "gpu": dict(
    vocab_size=16384,
    num_classes=1000,
    dim=768,
    n_layer=12,
    n_head=12,
    grid=(16, 16),
    dtype="bfloat16",
    batches=(1, 64),
  ),
}


def random_params(model, seed: int = 0):
  """Random weights of the published shape (LlamaGen zero-inits the head; timing wants real logits)."""
  shapes = jax.eval_shape(
    model.init, jax.random.key(0), jnp.zeros((1, 2), jnp.int32), jnp.zeros((1,), jnp.int32)
  )
  rng = np.random.default_rng(seed)

  def fill(path, s):
    if path[-1].key == "weight":
      return jnp.ones(s.shape, jnp.float32)
    return jnp.asarray(rng.standard_normal(s.shape, np.float32) * 0.02)

  return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.partial(jax.jit, static_argnames=("model", "cfg_scale"))
def recompute_generate(model, params, labels, key, cfg_scale=1.0):
  """Baseline: a full forward over the whole token buffer at every step (no cache)."""
  b, n = labels.shape[0], model.num_tokens
  use_cfg = cfg_scale != 1.0
  rows = jnp.concatenate([labels, jnp.full_like(labels, model.num_classes)]) if use_cfg else labels

  def body(buf, step):
    inp = jnp.concatenate([buf, buf]) if use_cfg else buf
    logits = model.apply(params, inp, rows)  # [rows, n, V]; position `step` sees tokens < step
    logits = jax.lax.dynamic_index_in_dim(logits, step, axis=1, keepdims=False)
    logits = tr.process_logits(logits, b, use_cfg, cfg_scale, None, 1.0)
    tok = jax.random.categorical(jax.random.fold_in(key, step), logits).astype(jnp.int32)
    return buf.at[:, step].set(tok), None

  buf, _ = jax.lax.scan(body, jnp.zeros((b, n), jnp.int32), jnp.arange(n, dtype=jnp.int32))
  return buf


def timed(fn, repeats: int):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return out, first, float(np.median(times)), times


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
  ap.add_argument("--batches", type=str, default=None, help="comma list, default from --size")
  ap.add_argument("--cfg_scale", type=float, default=1.0)
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument(
    "--skip_baseline_above",
    type=int,
    default=10**9,
    help="skip the recompute baseline for batches larger than this",
  )
  ap.add_argument("--out", default="bench_out/ar_sampling.json")
  args = ap.parse_args(argv)

  cfg = dict(SIZES[args.size])
  batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else cfg.pop("batches")
  cfg.pop("batches", None)
  dtype = jnp.dtype(cfg.pop("dtype"))
  model = tr.Transformer(**cfg, dtype=dtype)
  params = random_params(model)
  n = model.num_tokens
  results = []
  for b in batches:
    labels = jnp.arange(b, dtype=jnp.int32) % model.num_classes
    key = jax.random.key(0)
    toks, c_first, c_med, c_all = timed(
      lambda: tr.generate(model, params, labels, key, cfg_scale=args.cfg_scale)[0], args.repeats
    )
    row = dict(
      batch=b,
      tokens=n,
      cached_s=c_med,
      cached_first_call_s=c_first,
      cached_runs_s=c_all,
      cached_tokens_per_s=b * n / c_med,
    )
    if b <= args.skip_baseline_above:
      base, r_first, r_med, r_all = timed(
        lambda: recompute_generate(model, params, labels, key, args.cfg_scale), args.repeats
      )
      row.update(
        recompute_s=r_med,
        recompute_first_call_s=r_first,
        recompute_runs_s=r_all,
        recompute_tokens_per_s=b * n / r_med,
        speedup_cached_vs_recompute=r_med / c_med,
        # same keys and sampler: tokens agree unless float noise flips a draw
        token_agreement=float(np.mean(np.asarray(base) == np.asarray(toks))),
      )
    results.append(row)
    print(json.dumps(row), flush=True)

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  report = dict(
    benchmark="ar_sampling",
    size=args.size,
    device=str(jax.devices()[0]),
    device_kind=jax.devices()[0].device_kind,
    backend=jax.default_backend(),
    jax=jax.__version__,
    python=platform.python_version(),
    cpu_count=os.cpu_count(),
    model=dict(cfg, grid=list(cfg["grid"]), dtype=str(dtype), params=n_params),
    cfg_scale=args.cfg_scale,
    repeats=args.repeats,
    baseline="recompute full prefix each step",
    results=results,
  )
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {args.out}")
  for r in results:
    extra = (
      f", recompute {r['recompute_tokens_per_s']:.1f} tok/s, speedup x{r['speedup_cached_vs_recompute']:.2f}"
      if "recompute_s" in r
      else ""
    )
    print(f"batch {r['batch']:3d}: cached {r['cached_tokens_per_s']:.1f} tok/s{extra}")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
