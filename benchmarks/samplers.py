"""Sampler benchmark: utilization and speed of every registered sampler (Discop basic /
recursive Huffman / recursive bisection, Meteor, arithmetic coding, SparSamp, range coding
with rotation, ...) on
synthetic next-token distributions, through the ``stego.sampler`` protocol.

    python benchmarks/samplers.py                  # CPU sizes
    python benchmarks/samplers.py --size=gpu --out bench_out/samplers_gpu.json

Settings (the published ones): vocabulary 16384 truncated to top-k 2000 (about 6 bits of
entropy) and vocabulary 50257 with top-p 0.92 (about 8.3 bits, ~9,500 kept; candidates
bounded by a static ``support``). For each sampler: bits per token, utilization (bits /
entropy of the integer distribution) and embed / extract tokens/s at each batch, in two
modes:

* ``logits``: the whole step as in generation (logits -> candidate selection over the
  vocabulary -> integer frequencies -> the sampler), one jitted scan;
* ``sorted``: the step gets its candidates already selected, quantized and sorted, as the
  public reference implementation of Discop gets its sorted probabilities.

Block samplers (SparSamp, range coding with rotation) decide bits a block at a time, so a
few steps say nothing about their capacity: for them a long run (``long_steps`` tokens a
row, sorted input) gives the utilization over the decided blocks and over the whole run.

Baseline in the same process: the per-token NumPy/Python loop of the same recursive
algorithms (``stegjax.stego.reference``). Printed beside them: the public reference's
figures (comydream/Discop, Cython, one token at a time) measured once on a 2-core CPU.
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

from stegjax.stego import discop, prf, quantize, reference, sampler

SIZES = {
  "smoke": dict(steps=2, batches=(8,), numpy_tokens=2, repeats=1, long_steps=64),
  "cpu": dict(steps=4, batches=(64, 256), numpy_tokens=4, repeats=2, long_steps=2048),
  "gpu": dict(steps=32, batches=(64, 256, 1024), numpy_tokens=20, repeats=5, long_steps=8192),
}
SETTINGS = {
  "topk2000_v16384": dict(v=16384, top_k=2000, top_p=None, exponent=1.25, target=18000),
  "topp0.92_v50257": dict(v=50257, top_k=None, top_p=0.92, exponent=1.1, target=3900),
}
# The public reference (Cython, per token, probabilities already sorted), same 2-core CPU.
REFERENCE = {
  "topk2000_v16384": dict(encode="1,800-1,870", decode="1,540-1,760", utilization=0.951),
  "topp0.92_v50257": dict(encode="372-395", decode="341-364", utilization=0.948),
}
METHODS = (
  "basic",
  "recursive",
  "recursive_bisect",
  "meteor",
  "arithmetic",
  "sparsamp",
  "rotation",
)
# sampler settings beyond the truncation (the near-entropy setting of range coding with rotation)
METHOD_CFG = {"rotation": dict(block_bits=1024)}
BLOCK_SAMPLERS = ("sparsamp", "rotation")
LONG_BATCH = 8
LONG_ROWS = 64  # distinct distributions cycled through in the long run
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


def _sorted_inputs(s, logits):
  """Per-step Dists of logits [B, T, V], stacked over T (selection done outside the timing)."""
  d = jax.jit(jax.vmap(s.dist, in_axes=1, out_axes=1))(logits)
  return jax.block_until_ready(d)


def _scan_sorted(s):
  """Jitted embed/extract over precomputed Dists [B, T, K] (the 'sorted' mode)."""

  @jax.jit
  def emb(d, bits, nonce):
    st = s.init_state(bits, nonce)

    def body(st, xs):
      dd, t = xs
      tok, st = s.choose(sampler.Dist(*dd), t, st, KEY)
      return st, tok

    st, tok = jax.lax.scan(
      body, st, (tuple(jnp.swapaxes(a, 0, 1) for a in d), jnp.arange(d[0].shape[1]))
    )
    return tok.T, s.embedded(st)

  @jax.jit
  def ext(d, tok, nonce):
    def body(xs_, xs):
      dd, tk, t = xs
      b, n, ok, xs_ = s.extract(sampler.Dist(*dd), tk, t, KEY, xs_)
      return xs_, n

    _, n = jax.lax.scan(
      body,
      s.init_extract_state(nonce),
      (tuple(jnp.swapaxes(a, 0, 1) for a in d), tok.T, jnp.arange(d[0].shape[1])),
    )
    return n.sum(0)

  return emb, ext


def _long_run(s, dists, ent_rows, n_steps, batch):
  """Utilization of a block sampler over ``n_steps`` tokens a row (sorted input; rows cycle
  through the ``LONG_ROWS`` distributions): (over decided blocks, over the whole run, tok/s)."""
  n_rows = dists[0].shape[0]

  @jax.jit
  def emb(bits, nonce):
    def body(st, t):
      idx = (t * batch + jnp.arange(batch)) % n_rows
      tok, st = s.choose(sampler.Dist(*(a[idx] for a in dists)), t, st, KEY)
      return st, s.embedded(st)

    return jax.lax.scan(body, s.init_state(bits, nonce), jnp.arange(n_steps))[1]  # [T, B]

  bits = np.random.default_rng(3).integers(0, 2, (batch, 16 * n_steps)).astype(np.uint8)
  dt, emb_t = _time(lambda: emb(bits, jnp.arange(batch, dtype=jnp.uint32)), 1)
  emb_t = np.asarray(emb_t)
  t_idx = np.arange(n_steps)[:, None] * batch + np.arange(batch)[None]
  ent = ent_rows[t_idx % n_rows]  # [T, B]
  total = emb_t[-1].astype(float)
  decided = []
  for b in range(batch):
    grew = np.nonzero(np.diff(np.concatenate([[0], emb_t[:, b]])))[0]
    if len(grew):
      decided.append((total[b], ent[: grew[-1] + 1, b].sum()))
  util_blocks = sum(d[0] for d in decided) / max(sum(d[1] for d in decided), 1e-9)
  return util_blocks, total.sum() / ent.sum(), batch * n_steps / dt


def _numpy_loop(freqs, n_tokens, variant):
  """Per-token reference loop (embed) of a recursive variant: tokens/s."""
  step = reference.STEPS[variant]
  n_words = 2 * discop.max_bits_per_step(variant, 24, int((freqs > 0).sum(-1).max()))
  bits = list(np.random.default_rng(0).integers(0, 2, 64 * n_tokens))
  flat = freqs.reshape(-1, freqs.shape[-1])
  t0 = time.perf_counter()
  cur = 0
  for i in range(n_tokens):
    words = reference.draw_words(KEY, 0, i, n_words)
    _, n = step(flat[i % len(flat)], words, bits[cur : cur + n_words])
    cur += n
  return n_tokens / (time.perf_counter() - t0)


def _setting(name, s_cfg, cfg, methods):
  bmax = max(cfg["batches"])
  probs = reference.synthetic_probs(
    s_cfg["v"], bmax * cfg["steps"], seed=1, exponent=s_cfg["exponent"]
  )
  logits = np.log(np.maximum(probs, 1e-38)).reshape(bmax, cfg["steps"], s_cfg["v"])
  trunc = dict(top_k=s_cfg["top_k"], top_p=s_cfg["top_p"])
  freqs = np.asarray(quantize.to_frequencies(probs, **trunc)).reshape(logits.shape)
  kept = int((freqs > 0).sum(-1).max())
  support = s_cfg["top_k"] or int(-(-kept // 1024) * 1024 + 1024)  # a static bound on kept tokens
  ent = float(np.mean([_entropy(r) for r in freqs.reshape(-1, s_cfg["v"])]))
  entry = dict(
    entropy_bits=ent, max_kept=kept, support=support, reference=REFERENCE[name], methods={}
  )
  print(
    f"== {name}: entropy {ent:.2f} bits, up to {kept} kept tokens, support {support}", flush=True
  )
  print(
    f"   public reference (Cython, sorted input): encode {REFERENCE[name]['encode']} tok/s, "
    f"decode {REFERENCE[name]['decode']} tok/s, utilization {REFERENCE[name]['utilization']}"
  )
  msg = np.random.default_rng(2).integers(0, 2, size=(bmax, 64 * cfg["steps"])).astype(np.uint8)
  for meth in methods:
    s = sampler.get(meth, support=support, **trunc, **METHOD_CFG.get(meth, {}))
    row = dict(settings=METHOD_CFG.get(meth, {}))
    for b in cfg["batches"]:
      lg, m, nonce = jnp.asarray(logits[:b]), jnp.asarray(msg[:b]), jnp.arange(b, dtype=jnp.uint32)
      te, (tok, n) = _time(lambda: sampler.embed(s, lg, m, KEY, nonce), cfg["repeats"])
      tx, (bits, n2, _) = _time(lambda: sampler.extract(s, lg, tok, KEY, nonce), cfg["repeats"])
      ok = all(np.array_equal(np.asarray(bits[i, : n[i]]), msg[i, : int(n[i])]) for i in range(b))
      d = _sorted_inputs(s, lg)
      emb, ext = _scan_sorted(s)
      ts, (tok_s, _) = _time(lambda: emb(d, m, nonce), cfg["repeats"])
      tsx, _ = _time(lambda: ext(d, tok_s, nonce), cfg["repeats"])
      ntok = b * cfg["steps"]
      row[f"b{b}"] = dict(
        logits_embed_tok_s=ntok / te,
        logits_extract_tok_s=ntok / tx,
        sorted_embed_tok_s=ntok / ts,
        sorted_extract_tok_s=ntok / tsx,
        round_trip_ok=bool(ok),
      )
      if b == bmax:
        row["bits_per_token"] = float(np.asarray(n).sum() / ntok)
        row["utilization"] = row["bits_per_token"] / ent
        if meth in ("recursive", "recursive_bisect"):  # exact expectation over the draws
          tree = "huffman" if meth == "recursive" else "bisect"
          flat = freqs.reshape(-1, s_cfg["v"])
          row["expected_utilization"] = (
            float(np.mean([discop.tree_capacity(r, tree) for r in flat])) / ent
          )
    if meth in BLOCK_SAMPLERS:
      rows = jnp.asarray(logits.reshape(-1, s_cfg["v"])[:LONG_ROWS])
      dists = jax.block_until_ready(jax.jit(s.dist)(rows))
      ent_rows = np.array([_entropy(np.asarray(r)) for r in dists.freqs])
      ub, uw, tps = _long_run(s, dists, ent_rows, cfg["long_steps"], LONG_BATCH)
      row["long_run"] = dict(
        steps=cfg["long_steps"],
        batch=LONG_BATCH,
        utilization_decided_blocks=ub,
        utilization_whole_run=uw,
        sorted_embed_tok_s=tps,
      )
    entry["methods"][meth] = row
    exp = f" (exact {row['expected_utilization']:.3f})" if "expected_utilization" in row else ""
    if "long_run" in row:
      lr = row["long_run"]
      exp += (
        f"; over {lr['steps']} tokens a row: {lr['utilization_decided_blocks']:.3f} over the"
        f" decided blocks, {lr['utilization_whole_run']:.3f} over the whole run"
        f" ({lr['sorted_embed_tok_s']:.0f} tok/s at batch {lr['batch']})"
      )
    print(f"  {meth:17s} util {row['utilization']:.3f} over {cfg['steps']} steps{exp}", flush=True)
    for b in cfg["batches"]:
      r = row[f"b{b}"]
      print(
        f"    b{b}: from logits embed {r['logits_embed_tok_s']:8.0f} / extract {r['logits_extract_tok_s']:8.0f} tok/s;"
        f"  sorted input embed {r['sorted_embed_tok_s']:8.0f} / extract {r['sorted_extract_tok_s']:8.0f} tok/s"
        f"  (round trip {'ok' if r['round_trip_ok'] else 'FAILED'})",
        flush=True,
      )
  for var in ("recursive", "recursive_bisect"):
    if var not in entry["methods"]:
      continue
    base = _numpy_loop(freqs, cfg["numpy_tokens"], var)
    row = entry["methods"][var]
    row["numpy_loop_tok_s"] = base
    best = max(row[f"b{b}"]["sorted_embed_tok_s"] for b in cfg["batches"])
    print(
      f"  {var}: NumPy per-token loop {base:.1f} tok/s; best batched sorted-input embed is {best / base:.1f}x"
    )
  if "recursive" in entry["methods"]:
    row = entry["methods"]["recursive"]
    for mode in ("sorted", "logits"):
      best_b = max(cfg["batches"], key=lambda b: row[f"b{b}"][f"{mode}_embed_tok_s"])
      got = row[f"b{best_b}"][f"{mode}_embed_tok_s"]
      verdict = "met" if got >= s_cfg["target"] else f"NOT met: {got / s_cfg['target']:.2f}x of it"
      row[f"target_{mode}"] = dict(
        target=s_cfg["target"], batch=best_b, tok_s=got, met=got >= s_cfg["target"]
      )
      print(
        f"  target >= {s_cfg['target']} tok/s (recursive, {mode} input, batch {best_b}): {got:.0f} -> {verdict}"
      )
  return entry


def run(size: str, out_path: str, only=None, methods=METHODS):
  cfg = SIZES[size]
  load = os.getloadavg()
  res = dict(
    benchmark="samplers",
    size=size,
    device=str(jax.devices()[0]),
    platform=jax.default_backend(),
    cpu_count=os.cpu_count(),
    loadavg_start=load,
    jax=jax.__version__,
    python=platform.python_version(),
    settings={},
  )
  print(
    f"device {res['device']}, {os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
  )
  for name, s in SETTINGS.items():
    if only and name not in only:
      continue
    res["settings"][name] = _setting(name, s, cfg, methods)
  res["loadavg_end"] = os.getloadavg()
  print(f"load average at the end {res['loadavg_end'][0]:.1f}")
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
  ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=sampler.names())
  a = ap.parse_args(argv)
  run(a.size, a.out, a.only, tuple(a.methods))


if __name__ == "__main__":
  sys.exit(main())
