"""Time per stego image with a LlamaGen-shaped prior: Discop embedding vs plain sampling.

    python benchmarks/llamagen_stego.py                 # CPU sizes, a couple of minutes on 2 cores
    python benchmarks/llamagen_stego.py --size=gpu      # GPT-B (published shape, random weights),
                                                        # 384x384 = 24x24 tokens, top-k 2000, CFG 4,
                                                        # batch 1 and 32, bf16; VQ-16 decoder

Every method is one jitted ``transformer.generate`` scan over the h*w tokens with the same
model, CFG, top-k and temperature; only the per-token choice differs:

* ``plain``: ``jax.random.categorical`` on the processed logits (the baseline);
* ``discop_<variant>``: the ``stego.sampler`` protocol's ``choose`` (exact integer frequencies, ChaCha20
  draws, Discop copies) embedding random message bits.

Reports seconds per image for token generation, the VQ decode to pixels, their sum (one
stego image), bits embedded per image, and each Discop variant's time over plain sampling
(Discop's paper reports 1.0-1.3x). Random weights give flatter distributions than a trained
model (more bits per token and deeper Huffman trees), so Discop's cost here is an upper
estimate. Prints and writes JSON (--out).
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

from stegjax.models import presets
from stegjax.models import transformer as tr
from stegjax.models import vq as vq_lib
from stegjax.stego import prf, sampler

SIZES = {
  # a small prior and tokenizer so the whole run takes a couple of minutes on 2 CPU cores
  "cpu": dict(
    gpt=dict(vocab_size=1024, num_classes=10, dim=128, n_layer=4, n_head=4, grid=(8, 8)),
    vq=dict(
      ch=32, ch_mult=(1, 1, 2), num_res_blocks=1, z_channels=64, codebook_size=1024, codebook_dim=8
    ),
    top_k=200,
    cfg_scale=1.5,
    batches=(1, 8),
    dtype="float32",
  ),
  # the paper's setting: GPT-B at 384x384 (24x24 tokens), VQ-16, top-k 2000, bf16 activations
  "gpu": dict(
    gpt="GPT-B",
    vq="VQ-16",
    image_size=384,
    top_k=2000,
    cfg_scale=4.0,
    batches=(1, 32),
    dtype="bfloat16",
  ),
}
VARIANTS = ("recursive", "recursive_bisect", "basic")


def random_gpt_params(model, seed: int = 0):
  """Normal(0, 0.02) weights of the model's shape (LlamaGen zero-inits the head; timing needs logits)."""
  rng = np.random.default_rng(seed)

  def fill(path, s):
    if path[-1].key == "weight":  # RMSNorm gains
      return jnp.ones(s.shape, jnp.float32)
    return jnp.asarray(rng.standard_normal(s.shape, np.float32) * 0.02)

  return jax.tree_util.tree_map_with_path(fill, presets.abstract_params(model))


def random_vq_params(model, seed: int = 0):
  """The module's own initializers, run once at the smallest image (params do not depend on size)."""
  f = model.downsample_factor
  return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, f, f, 3), jnp.float32))["params"]


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


def build(size: str, dtype):
  cfg = SIZES[size]
  if isinstance(cfg["gpt"], str):
    vq = presets.vq_model(cfg["vq"], dtype=dtype)
    gpt = presets.gpt_model(cfg["gpt"], cfg["image_size"], vq.downsample_factor, dtype=dtype)
  else:
    vq = vq_lib.VQModel(**cfg["vq"], dtype=dtype)
    gpt = tr.Transformer(**cfg["gpt"], dtype=dtype)
  if vq.codebook_size != gpt.vocab_size:
    raise ValueError(f"codebook {vq.codebook_size} != GPT vocabulary {gpt.vocab_size}")
  return vq, gpt


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
  ap.add_argument("--batches", default=None, help="comma list (default from --size)")
  ap.add_argument(
    "--variants", default=",".join(VARIANTS), help=f"Discop variants, from {VARIANTS}"
  )
  ap.add_argument("--top_k", type=int, default=None)
  ap.add_argument("--cfg_scale", type=float, default=None)
  ap.add_argument("--precision", type=int, default=24)
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--out", default="bench_out/llamagen_stego.json")
  args = ap.parse_args(argv)

  cfg = SIZES[args.size]
  batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else cfg["batches"]
  variants = tuple(v for v in args.variants.split(",") if v)
  for v in variants:
    if v not in VARIANTS:
      raise ValueError(f"unknown Discop variant {v!r}; valid: {', '.join(VARIANTS)}")
  top_k = args.top_k or cfg["top_k"]
  cfg_scale = cfg["cfg_scale"] if args.cfg_scale is None else args.cfg_scale
  dtype = jnp.dtype(cfg["dtype"])
  vq, gpt = build(args.size, dtype)
  gpt_params = {"params": random_gpt_params(gpt)}
  vq_params = {"params": random_vq_params(vq)}
  n = gpt.num_tokens
  h, w = gpt.grid
  key = prf.make_key(b"llamagen_stego benchmark")
  stego = {v: sampler.get(v, precision=args.precision, top_k=top_k) for v in variants}

  def choose_fn(s):  # the protocol's step, with the key fixed
    return lambda logits, t, st: s.choose(logits, t, st, key)

  choose = {v: choose_fn(stego[v]) for v in variants}
  decode = jax.jit(lambda p, idx: vq.apply(p, idx, method="decode_indices"))

  results = []
  for b in batches:
    labels = jnp.arange(b, dtype=jnp.int32) % gpt.num_classes
    rng = np.random.default_rng(b)
    common = dict(cfg_scale=cfg_scale, top_k=top_k, temperature=1.0)
    toks, first, med, runs = timed(
      lambda: tr.generate(gpt, gpt_params, labels, jax.random.key(1), **common)[0], args.repeats
    )
    plain = dict(
      batch=b,
      method="plain",
      first_call_s=first,
      median_s=med,
      runs_s=runs,
      per_image_s=med / b,
      tokens_per_s=b * n / med,
      bits_per_image=0.0,
    )
    _, d_first, d_med, d_runs = timed(
      lambda: decode(vq_params, toks.reshape(b, h, w)), args.repeats
    )
    rows = [plain]
    for v in variants:
      width = stego[v].bits_per_step(gpt.vocab_size)
      bits = rng.integers(0, 2, (b, n * width), dtype=np.uint8)  # never runs out
      state = stego[v].init_state(jnp.asarray(bits), jnp.arange(b, dtype=jnp.uint32))

      def run(v=v, state=state):
        return tr.generate(
          gpt, gpt_params, labels, None, choose_fn=choose[v], choose_state=state, **common
        )

      (stoks, st), first, med, runs = timed(run, args.repeats)
      embedded = np.asarray(stego[v].embedded(st))
      rows.append(
        dict(
          batch=b,
          method=f"discop_{v}",
          first_call_s=first,
          median_s=med,
          runs_s=runs,
          per_image_s=med / b,
          tokens_per_s=b * n / med,
          bits_per_image=float(embedded.mean()),
          bits_per_token=float(embedded.mean() / n),
          ratio_vs_plain=med / plain["median_s"],
        )
      )
    for r in rows:
      r.update(
        vq_decode_s=d_med,
        vq_decode_first_call_s=d_first,
        vq_decode_per_image_s=d_med / b,
        stego_image_s=r["per_image_s"] + d_med / b,
      )
      results.append(r)
      print(json.dumps({k: v for k, v in r.items() if k != "runs_s"}), flush=True)

  report = dict(
    benchmark="llamagen_stego",
    size=args.size,
    device=str(jax.devices()[0]),
    device_kind=jax.devices()[0].device_kind,
    backend=jax.default_backend(),
    jax=jax.__version__,
    python=platform.python_version(),
    cpu_count=os.cpu_count(),
    gpt=dict(
      params=presets.param_count(gpt),
      dim=gpt.dim,
      n_layer=gpt.n_layer,
      n_head=gpt.n_head,
      vocab_size=gpt.vocab_size,
      grid=list(gpt.grid),
      tokens=n,
    ),
    vq=dict(
      params=presets.param_count(vq),
      ch_mult=list(vq.ch_mult),
      image=[h * vq.downsample_factor, w * vq.downsample_factor],
    ),
    dtype=str(dtype),
    top_k=top_k,
    cfg_scale=cfg_scale,
    precision=args.precision,
    repeats=args.repeats,
    baseline="plain categorical sampling in the same generate scan",
    results=results,
  )
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {args.out}")
  for r in results:
    ratio = f"  x{r['ratio_vs_plain']:.2f} vs plain" if "ratio_vs_plain" in r else ""
    print(
      f"batch {r['batch']:3d} {r['method']:26s} {r['per_image_s'] * 1e3:9.1f} ms/image tokens "
      f"+ {r['vq_decode_per_image_s'] * 1e3:7.1f} ms decode  {r['bits_per_image']:8.1f} bits{ratio}"
    )
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
