"""Sampler benchmark: capacity and speed of Discop (basic, recursive Huffman, recursive
bisection), Meteor and arithmetic coding on synthetic next-token distributions.

    python benchmarks/samplers.py                  # CPU sizes, a couple of minutes
    python benchmarks/samplers.py --size=gpu --out bench_out/samplers_gpu.json

Settings: vocabulary 16384 truncated to top-k 2000 (about 6 bits of entropy) and
vocabulary 50257 with top-p 0.92. For each method: bits per token, entropy,
utilization (bits / entropy), embed and extract tokens/s at batch 1 and the large
batch. Baseline measured in the same process: the per-token NumPy/Python loop of the
same recursive algorithms (``stegjax.stego.reference``); ``speedup_vs_numpy_loop`` is
batched recursive embed tokens/s over that loop's tokens/s. ``choose_step_ms`` is one
jitted AR-loop step of ``make_choose_fn`` (softmax -> to_frequencies -> embed_step) at
``choose_batch`` (8 on CPU, 64 on GPU), to compare with the model's decoding step.
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

from stegjax.stego import arithmetic, discop, meteor, prf, quantize, reference

SIZES = {
  "cpu": dict(steps=4, batches=(1, 64), numpy_tokens=4, repeats=1, choose_batch=8),
  "gpu": dict(steps=32, batches=(1, 64, 256), numpy_tokens=20, repeats=5, choose_batch=64),
}
SETTINGS = {
  "topk2000_v16384": dict(v=16384, top_k=2000, top_p=None, exponent=1.25),
  "topp0.92_v50257": dict(v=50257, top_k=None, top_p=0.92, exponent=1.1),
}
KEY = prf.make_key(b"benchmark key")


def _entropy(f):
  p = f[f > 0] / f.sum()
  return float(-(p * np.log2(p)).sum())


def _time(fn, repeats):
  out = fn()
  jax.block_until_ready(out)  # compile + warm up
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best, out


def _methods(support):
  m = {}
  for var in discop.VARIANTS:
    kw = dict(support=support)
    m[var] = (
      lambda f, b, n, var=var, kw=kw: discop.embed(f, b, KEY, n, var, **kw),
      lambda f, t, n, var=var, kw=kw: discop.extract(f, t, KEY, n, var, **kw),
    )
  m["meteor"] = (
    lambda f, b, n: meteor.embed(f, b, KEY, n),
    lambda f, t, n: meteor.extract(f, t, KEY, n),
  )
  m["arithmetic"] = (
    lambda f, b, n: arithmetic.embed(f, b, KEY, n),
    lambda f, t, n: arithmetic.extract(f, t, KEY, n),
  )
  return m


def _numpy_loop(freqs, n_tokens, variant):
  """Per-token reference loop (embed) of a recursive variant: tokens/s."""
  step = reference.STEPS[variant]
  n_words = 2 * discop.max_bits_per_step(variant, 24, freqs.shape[-1])
  rng = np.random.default_rng(0)
  bits = list(rng.integers(0, 2, 64 * n_tokens))
  flat = freqs.reshape(-1, freqs.shape[-1])
  t0 = time.perf_counter()
  cur = 0
  for i in range(n_tokens):
    words = reference.draw_words(KEY, 0, i, n_words)
    _, n = step(flat[i % len(flat)], words, bits[cur : cur + n_words])
    cur += n
  return n_tokens / (time.perf_counter() - t0)


def run(size: str, out_path: str, only=None):
  cfg = SIZES[size]
  res = dict(
    benchmark="samplers",
    size=size,
    device=str(jax.devices()[0]),
    platform=jax.default_backend(),
    jax=jax.__version__,
    python=platform.python_version(),
    settings={},
  )
  for name, s in SETTINGS.items():
    if only and name not in only:
      continue
    bmax = max(cfg["batches"])
    probs = reference.synthetic_probs(s["v"], bmax * cfg["steps"], seed=1, exponent=s["exponent"])
    freqs = np.asarray(quantize.to_frequencies(probs, top_k=s["top_k"], top_p=s["top_p"]))
    freqs = freqs.reshape(bmax, cfg["steps"], s["v"])
    kept = int((freqs > 0).sum(-1).max())
    support = s["top_k"] or int(2 ** np.ceil(np.log2(kept)))  # a static bound on kept tokens
    ent = float(np.mean([_entropy(r) for r in freqs.reshape(-1, s["v"])]))
    entry = dict(entropy_bits=ent, max_kept=kept, support=support, methods={})
    print(
      f"== {name}: entropy {ent:.2f} bits, up to {kept} kept tokens, support {support}", flush=True
    )
    msg = np.random.default_rng(2).integers(0, 2, size=(bmax, 64 * cfg["steps"])).astype(np.uint8)
    for meth, (emb, ext) in _methods(support).items():
      row = dict()
      for b in cfg["batches"]:
        f, m, nonce = jnp.asarray(freqs[:b]), jnp.asarray(msg[:b]), jnp.arange(b, dtype=jnp.uint32)
        te, (tok, n) = _time(lambda: emb(f, m, nonce), cfg["repeats"])
        tx, (bits, n2) = _time(lambda: ext(f, tok, nonce), cfg["repeats"])
        ok = all(np.array_equal(np.asarray(bits[i, : n[i]]), msg[i, : int(n[i])]) for i in range(b))
        ntok = b * cfg["steps"]
        row[f"b{b}"] = dict(embed_tok_s=ntok / te, extract_tok_s=ntok / tx, round_trip_ok=bool(ok))
        if b == bmax:
          row["bits_per_token"] = float(np.asarray(n).sum() / ntok)
          row["utilization"] = row["bits_per_token"] / ent
          if meth in ("recursive", "recursive_bisect"):  # exact expectation over the draws
            tree = "huffman" if meth == "recursive" else "bisect"
            flat = freqs.reshape(-1, s["v"])
            row["expected_bits_per_token"] = float(
              np.mean([discop.tree_capacity(r, tree) for r in flat])
            )
            row["expected_utilization"] = row["expected_bits_per_token"] / ent
      entry["methods"][meth] = row
      exp = (
        f" (expected {row['expected_utilization']:.3f})" if "expected_utilization" in row else ""
      )
      print(
        f"  {meth:17s} bits/token {row['bits_per_token']:.3f} util {row['utilization']:.3f}{exp}  "
        + "  ".join(
          f"b{b}: embed {row[f'b{b}']['embed_tok_s']:.0f} tok/s extract {row[f'b{b}']['extract_tok_s']:.0f}"
          for b in cfg["batches"]
        ),
        flush=True,
      )
    for var in ("recursive", "recursive_bisect"):
      base = _numpy_loop(freqs, cfg["numpy_tokens"], var)
      big = entry["methods"][var][f"b{bmax}"]["embed_tok_s"]
      entry["methods"][var]["numpy_loop_tok_s"] = base
      entry["methods"][var]["speedup_vs_numpy_loop"] = big / base
      print(
        f"  {var}: NumPy per-token loop {base:.1f} tok/s; batched b{bmax} is {big / base:.1f}x",
        flush=True,
      )
    # one AR-loop step of the choose_fn (logits in, token out)
    cb = cfg["choose_batch"]
    logits = jnp.asarray(np.log(probs[:cb] + 1e-30))
    for var in discop.VARIANTS:
      choose = discop.make_choose_fn(KEY, var, top_k=s["top_k"], top_p=s["top_p"], support=support)
      st = discop.init_embed_state(msg[:cb], np.arange(cb))
      fn = jax.jit(choose)
      t_step, _ = _time(lambda: fn(logits, jnp.int32(3), st), cfg["repeats"] + 1)
      entry["methods"][var]["choose_step_ms"] = 1e3 * t_step
      entry["methods"][var]["choose_step_batch"] = cb
      print(f"  {var}: choose_fn step at batch {cb}: {1e3 * t_step:.2f} ms", flush=True)
    res["settings"][name] = entry
  os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
  with open(out_path, "w") as fh:
    json.dump(res, fh, indent=1)
  print("wrote", out_path)
  return res


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
  ap.add_argument("--out", default="bench_out/samplers.json")
  ap.add_argument("--only", nargs="*", choices=sorted(SETTINGS), help="run only these settings")
  a = ap.parse_args(argv)
  run(a.size, a.out, a.only)


if __name__ == "__main__":
  sys.exit(main())
