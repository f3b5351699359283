"""Accelerator efficiency of the AR prior and M2: training MFU, KV-cached sampling, Discop, M2.

    python benchmarks/scale.py                   # small CPU shape, a couple of minutes on 2 cores
    python benchmarks/scale.py --size=gpu        # LlamaGen GPT-B (12 x 768, 256 tokens), bf16, VQ-16

Measures, in one process:

- **training**: the shared trainer's jitted step (AdamW, donated state, batch over
  'data') on the class-conditional prior with random tokens; tokens/s and model-FLOPs
  utilization. FLOPs per token = 6 * (matmul parameters: every Dense kernel, head
  included, embedding tables excluded) + 12 * n_layer * dim * seq_len (attention
  scores and values, forward + backward, the full T x T product as computed here).
  MFU is given against ``--peak_tflops`` (default from the device kind: H100/H200
  989 bf16 dense; none on CPU) and against a large matmul measured in this process.
- **sampling**: ``transformer.generate`` (one jitted KV-cached scan) with CFG and
  top-k at each batch; ms/step and tokens/s against the bandwidth limit: parameter
  bytes read per step (matmul weights in the sampling dtype) / HBM bandwidth
  (``--hbm_bw``, default 3.35e12 B/s, H100 SXM; also the copy bandwidth measured
  here). A second limit adds the KV cache read by an average step.
- **discop**: the same loop with Discop embedding inside (``discop.make_choose_fn``,
  exact integer frequencies, ChaCha20 draws), per variant; ratio to plain sampling.
- **m2**: CMSTEG M2 latent optimization (``cmsteg.recover._optimize``, JPEG-SS
  stand-in) on random images: image-steps/s and images/s at the paper's 10,000 steps.

The peer (issue 9): LlamaGen's PyTorch generation on one H100, GPT-B bf16, CFG 4,
top-k 2000: 21.3 ms/step eager, 1.44 ms/step torch.compile at batch 1, 1.36 ms/step
compiled at batch 32. Prints and writes JSON (``--out``).
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
import ml_collections
import numpy as np
import optax

from stegjax.cmsteg import recover
from stegjax.models import transformer as tr
from stegjax.models import vq as vq_lib
from stegjax.stego import discop
from stegjax.train import sharding, trainer

SIZES = {
  "cpu": dict(
    prior=dict(vocab_size=1024, num_classes=10, dim=128, n_layer=4, n_head=4, grid=(8, 8)),
    dtype="float32",
    train_batch=16,
    train_steps=4,
    sample_batches=(1, 16, 64),
    cfg_scale=4.0,
    top_k=256,
    variants=("recursive_bisect", "recursive", "basic"),
    vq=dict(
      ch=32,
      ch_mult=(1, 2, 2),
      num_res_blocks=1,
      z_channels=32,
      codebook_size=1024,
      codebook_dim=8,
      norm_groups=8,
    ),
    image=32,
    m2_batch=8,
    m2_steps=10,
    matmul=1024,
    copy_mb=64,
  ),
  "gpu": dict(
    # LlamaGen GPT-B c2i: 12 x 768, vocab 16384, 1000 classes, 16 x 16 tokens.
    prior=dict(vocab_size=16384, num_classes=1000, dim=768, n_layer=12, n_head=12, grid=(16, 16)),
    dtype="bfloat16",
    train_batch=256,
    train_steps=20,
    sample_batches=(1, 64, 256),
    cfg_scale=4.0,
    top_k=2000,
    variants=("recursive_bisect", "recursive", "basic"),
    vq=dict(),  # VQ-16 defaults: ch 128, ch_mult (1,1,2,2,4), 16384 x 8 codebook
    image=256,
    m2_batch=32,
    m2_steps=50,
    matmul=8192,
    copy_mb=1024,
  ),
}

# bf16 dense peak TFLOP/s by device kind (vendor figures, no sparsity).
PEAK_TFLOPS = {
  "H100": 989.4,
  "H200": 989.4,
  "A100": 312.0,
  "L4": 121.0,
  "TPU v4": 275.0,
  "TPU v5 lite": 197.0,
  "TPU v5p": 459.0,
}
PEER_MS_PER_STEP = {
  "llamagen_gpt_b_eager_b1": 21.3,
  "llamagen_gpt_b_compiled_b1": 1.44,
  "llamagen_gpt_b_compiled_b32": 1.36,
}
PAPER_M2_STEPS = 10_000


def _time(fn, repeats: int):
  """(first call incl. compile, median of ``repeats`` further calls), seconds."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  runs = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    runs.append(time.perf_counter() - t0)
  return first, float(np.median(runs))


def _random_params(init, *args, seed=0, dtype=jnp.float32):
  """Random weights of the model's shapes (normal * 0.02, norms 1): a non-zero head, real logits."""
  shapes = jax.eval_shape(init, jax.random.key(0), *args)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = sharding.path_str(path)
    if name.endswith("/weight") or name.endswith("/scale"):
      return jnp.ones(s.shape, dtype)
    if name.endswith("/bias"):
      return jnp.zeros(s.shape, dtype)
    return jnp.asarray(rng.standard_normal(s.shape, np.float32) * 0.02, dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _matmul_params(params) -> int:
  return sum(
    int(np.prod(x.shape))
    for p, x in jax.tree_util.tree_leaves_with_path(params)
    if sharding.path_str(p).endswith("/kernel")
  )


def _bytes(params, dtype, only_kernels=True) -> int:
  return sum(
    int(np.prod(x.shape)) * jnp.dtype(dtype).itemsize
    for p, x in jax.tree_util.tree_leaves_with_path(params)
    if not only_kernels or sharding.path_str(p).endswith("/kernel")
  )


def measure_matmul(n: int, dtype) -> float:
  """Achieved FLOP/s of one n x n x n matmul in ``dtype`` (the in-process compute baseline)."""
  k1, k2 = jax.random.split(jax.random.key(0))
  a = jax.random.normal(k1, (n, n), dtype)
  b = jax.random.normal(k2, (n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  _, t = _time(lambda: f(a, b), 5)
  return 2.0 * n**3 / t


def measure_copy_bw(mb: int) -> float:
  """Achieved bytes/s of an elementwise pass (read + write) over ``mb`` MiB of float32."""
  x = jnp.ones((mb * 2**18,), jnp.float32)
  f = jax.jit(lambda x: x * 1.0001)
  _, t = _time(lambda: f(x), 5)
  return 2.0 * x.size * 4 / t


def bench_train(model, cfg, mesh, rules, repeats, peak_flops, matmul_flops):
  t_len = model.num_tokens
  b = int(cfg["train_batch"])
  init_args = (jnp.zeros((1, t_len), jnp.int32), jnp.zeros((1,), jnp.int32))

  def init_fn(rng):
    p = model.init({"params": rng, "dropout": rng}, *init_args)["params"]
    # LlamaGen zero-inits the head (gradients would vanish elsewhere at step 1).
    p["output"]["kernel"] = 0.02 * jax.random.normal(rng, p["output"]["kernel"].shape)
    return p, {}

  def loss_fn(params, extra, batch, rng, step):
    logits = model.apply(
      {"params": params}, batch["tokens"], batch["label"], train=True, rngs={"dropout": rng}
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), batch["tokens"]
    ).mean()
    return loss, ({}, extra)

  tcfg = ml_collections.ConfigDict(
    dict(
      lr=1e-4, num_steps=1000, warmup_steps=0, schedule="constant", weight_decay=0.05, grad_clip=1.0
    )
  )
  tx = trainer.make_optimizer(tcfg)
  state = trainer.create_train_state(init_fn, tx, jax.random.PRNGKey(0), mesh, rules)
  step = trainer.make_train_step(loss_fn, tx, mesh, state)
  rs = np.random.RandomState(0)
  per_process = b // jax.process_count()
  batch = sharding.put_batch(
    {
      "tokens": rs.randint(0, model.vocab_size, (per_process, t_len)).astype(np.int32),
      "label": rs.randint(0, model.num_classes, (per_process,)).astype(np.int32),
    },
    mesh,
  )
  t0 = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m["loss"])
  first = time.perf_counter() - t0
  state, m = step(state, batch)  # one more warm step
  jax.block_until_ready(m["loss"])
  n_steps = int(cfg["train_steps"]) * max(1, repeats // 2)
  t0 = time.perf_counter()
  for _ in range(n_steps):
    state, m = step(state, batch)
  jax.block_until_ready(m["loss"])
  dt = (time.perf_counter() - t0) / n_steps
  n_mm = _matmul_params(state.params)
  flops_per_token = 6 * n_mm + 12 * model.n_layer * model.dim * t_len
  tokens_per_s = b * t_len / dt
  achieved = flops_per_token * tokens_per_s
  return dict(
    batch=b,
    seq_len=t_len,
    step_s=dt,
    first_step_s=first,
    tokens_per_s=tokens_per_s,
    matmul_params=n_mm,
    flops_per_token=flops_per_token,
    achieved_tflops=achieved / 1e12,
    mfu=None if peak_flops is None else achieved / peak_flops,
    mfu_vs_measured_matmul=achieved / matmul_flops,
    loss=float(m["loss"]),
    rules=rules,
  )


def bench_sampling(model, params, cfg, repeats, hbm_bw, measured_bw, variants):
  t_len, n_layer = model.num_tokens, model.n_layer
  dtype = model.dtype
  cfg_scale, top_k = float(cfg["cfg_scale"]), int(cfg["top_k"])
  variables = {"params": params}
  param_bytes = _bytes(params, dtype)
  key = jnp.asarray(np.arange(8), jnp.uint32)
  rows_per_label = 2 if cfg_scale != 1.0 else 1
  out = []
  for b in cfg["sample_batches"]:
    labels = jnp.arange(b, dtype=jnp.int32) % model.num_classes
    # KV cache read by the average step: both k and v, all layers, half the sequence.
    kv_bytes = (
      rows_per_label
      * b
      * n_layer
      * 2
      * (t_len / 2)
      * model.kv_heads
      * model.hd
      * jnp.dtype(dtype).itemsize
    )
    limit = param_bytes / hbm_bw
    limit_kv = (param_bytes + kv_bytes) / hbm_bw
    first, t = _time(
      lambda: tr.generate(
        model, variables, labels, jax.random.key(0), cfg_scale=cfg_scale, top_k=top_k
      )[0],
      repeats,
    )
    row = dict(
      batch=b,
      steps=t_len,
      plain=dict(s=t, first_call_s=first, ms_per_step=1e3 * t / t_len, tokens_per_s=b * t_len / t),
      bandwidth_limit_ms_per_step=1e3 * limit,
      bandwidth_limit_with_kv_ms_per_step=1e3 * limit_kv,
      measured_bw_limit_ms_per_step=1e3 * param_bytes / measured_bw,
    )
    row["plain"]["x_of_bandwidth_limit"] = (t / t_len) / limit
    row["plain"]["x_of_bandwidth_limit_with_kv"] = (t / t_len) / limit_kv
    row["plain"]["x_of_measured_bw_limit"] = (t / t_len) / (param_bytes / measured_bw)
    bits = jnp.asarray(np.random.RandomState(b).randint(0, 2, (b, 4096)), jnp.uint8)
    nonce = jnp.arange(b, dtype=jnp.uint32)
    for variant in variants:
      choose = discop.make_choose_fn(key, variant, precision=24, top_k=top_k)
      state = discop.init_embed_state(bits, nonce)
      res = {}

      def run():
        toks, st = tr.generate(
          model,
          variables,
          labels,
          None,
          choose_fn=choose,
          cfg_scale=cfg_scale,
          top_k=top_k,
          choose_state=state,
        )
        res["bits"] = st.cursor
        return toks

      first, t = _time(run, repeats)
      bits_per_token = float(np.mean(np.asarray(res["bits"]))) / t_len
      row[f"discop_{variant}"] = dict(
        s=t,
        first_call_s=first,
        ms_per_step=1e3 * t / t_len,
        tokens_per_s=b * t_len / t,
        bits_per_token=bits_per_token,
        bits_per_s=b * t_len * bits_per_token / t,
        x_of_plain=t / row["plain"]["s"],
        x_of_bandwidth_limit=(t / t_len) / limit,
      )
    out.append(row)
    print(json.dumps(row), flush=True)
  return out, param_bytes


def bench_m2(cfg, dtype, mesh, repeats):
  del mesh  # M2 runs one image at a time on one device
  model = vq_lib.VQModel(**cfg["vq"], dtype=dtype)
  size = int(cfg["image"])
  params = _random_params(model.init, jnp.zeros((1, size, size, 3)))["params"]
  b, steps = int(cfg["m2_batch"]), int(cfg["m2_steps"])
  x = np.random.RandomState(0).uniform(0, 1, (b, size, size, 3)).astype(np.float32)

  def run():
    forms, index = recover.forms_for("jpeg75")
    # M2 runs one image at a time (bit-identical whatever the batch), so a batch is b calls.
    return [
      recover._optimize(  # pylint: disable=protected-access
        model,
        params,
        x[i : i + 1],
        jnp.int32(index),
        jnp.float32(recover.stand_in("jpeg75").param),
        jnp.int32(steps),
        jnp.float32(0.002),
        jnp.int32(0),
        forms=forms,
      )[1]
      for i in range(b)
    ]

  first, t = _time(run, repeats)
  return dict(
    batch=b,
    image=size,
    steps=steps,
    s=t,
    first_call_s=first,
    image_steps_per_s=b * steps / t,
    ms_per_step=1e3 * t / steps,
    images_per_s_at_paper_steps=b * steps / t / PAPER_M2_STEPS,
    paper_steps=PAPER_M2_STEPS,
    vq_params=int(sum(np.prod(v.shape) for v in jax.tree.leaves(params))),
  )


def _peak(kind: str, flag):
  if flag:
    return float(flag) * 1e12
  for name, tf in PEAK_TFLOPS.items():
    if name.lower() in kind.lower():
      return tf * 1e12
  return None


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
  ap.add_argument("--parts", default="train,sample,m2", help="comma list of train,sample,m2")
  ap.add_argument("--variants", default=None, help="Discop variants, comma list (default by size)")
  ap.add_argument("--batches", default=None, help="sampling batches, comma list (default by size)")
  ap.add_argument("--train_batch", type=int, default=None)
  ap.add_argument("--train_steps", type=int, default=None)
  ap.add_argument("--m2_batch", type=int, default=None)
  ap.add_argument("--m2_steps", type=int, default=None)
  ap.add_argument("--rules", default="fsdp", help="sharding preset for training")
  ap.add_argument("--mesh_model", type=int, default=1, help="'model' axis size for training")
  ap.add_argument(
    "--hbm_bw",
    type=float,
    default=None,
    help="memory bytes/s for the bandwidth limit (default: 3.35e12, H100 SXM HBM3, on "
    "an accelerator; the copy bandwidth measured here on CPU)",
  )
  ap.add_argument("--peak_tflops", type=float, default=None, help="peak TFLOP/s for MFU")
  ap.add_argument("--repeats", type=int, default=2)
  ap.add_argument("--out", default="bench_out/scale.json")
  args = ap.parse_args(argv)

  cfg = dict(SIZES[args.size])
  if args.batches:
    cfg["sample_batches"] = tuple(int(b) for b in args.batches.split(","))
  for k in ("train_batch", "train_steps", "m2_batch", "m2_steps"):
    if getattr(args, k):
      cfg[k] = getattr(args, k)
  variants = tuple(args.variants.split(",")) if args.variants else cfg["variants"]
  parts = set(args.parts.split(","))
  dtype = jnp.dtype(cfg["dtype"])
  dev = jax.devices()[0]
  peak = (
    _peak(dev.device_kind, args.peak_tflops)
    if jax.default_backend() != "cpu"
    else (args.peak_tflops * 1e12 if args.peak_tflops else None)
  )
  mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, model=args.mesh_model)))
  model = tr.Transformer(**cfg["prior"], dtype=dtype)
  n_tok = model.num_tokens

  matmul_flops = measure_matmul(int(cfg["matmul"]), dtype)
  copy_bw = measure_copy_bw(int(cfg["copy_mb"]))
  hbm_bw = args.hbm_bw or (copy_bw if jax.default_backend() == "cpu" else 3.35e12)
  print(
    f"device {dev.device_kind} x{jax.device_count()}: matmul {matmul_flops / 1e12:.3f} TFLOP/s, "
    f"copy {copy_bw / 1e9:.1f} GB/s",
    flush=True,
  )
  report = dict(
    benchmark="scale",
    size=args.size,
    device=str(dev),
    device_kind=dev.device_kind,
    backend=jax.default_backend(),
    device_count=jax.device_count(),
    process_count=jax.process_count(),
    jax=jax.__version__,
    python=platform.python_version(),
    cpu_count=os.cpu_count(),
    dtype=str(dtype),
    model=dict(cfg["prior"], grid=list(cfg["prior"]["grid"]), tokens=n_tok),
    baselines=dict(
      matmul_tflops=matmul_flops / 1e12,
      matmul_n=int(cfg["matmul"]),
      copy_bw_gbs=copy_bw / 1e9,
      hbm_bw_gbs=hbm_bw / 1e9,
      peak_tflops=None if peak is None else peak / 1e12,
    ),
    peer_ms_per_step=PEER_MS_PER_STEP,
    mesh=dict(mesh.shape),
    repeats=args.repeats,
  )

  if "train" in parts:
    report["train"] = bench_train(model, cfg, mesh, args.rules, args.repeats, peak, matmul_flops)
    print(json.dumps(report["train"]), flush=True)
  if "sample" in parts:
    params = _random_params(
      model.init, jnp.zeros((1, 2), jnp.int32), jnp.zeros((1,), jnp.int32), dtype=dtype
    )["params"]  # sampling reads weights in the compute dtype
    report["sample"], pbytes = bench_sampling(
      model, params, cfg, args.repeats, hbm_bw, copy_bw, variants
    )
    report["sample_settings"] = dict(
      cfg_scale=cfg["cfg_scale"],
      top_k=cfg["top_k"],
      precision=24,
      prf="chacha20",
      param_bytes_per_step=pbytes,
    )
  if "m2" in parts:
    report["m2"] = bench_m2(cfg, dtype, mesh, args.repeats)
    print(json.dumps(report["m2"]), flush=True)

  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      json.dump(report, f, indent=2)
    print(f"wrote {args.out}")
  _summary(report)
  return report


def _summary(r):
  if "train" in r:
    t = r["train"]
    mfu = "n/a" if t["mfu"] is None else f"{100 * t['mfu']:.1f}%"
    print(
      f"train: {t['tokens_per_s']:.0f} tok/s, {t['achieved_tflops']:.3f} TFLOP/s, MFU {mfu} "
      f"(peak), {100 * t['mfu_vs_measured_matmul']:.1f}% of measured matmul"
    )
  for row in r.get("sample", []):
    p = row["plain"]
    line = (
      f"sample b={row['batch']:3d}: plain {p['ms_per_step']:.2f} ms/step "
      f"({p['tokens_per_s']:.0f} tok/s, {p['x_of_bandwidth_limit']:.1f}x bw limit "
      f"{row['bandwidth_limit_ms_per_step']:.3f} ms)"
    )
    for k, v in row.items():
      if k.startswith("discop_"):
        line += f"; {k[7:]} {v['ms_per_step']:.2f} ms/step (x{v['x_of_plain']:.2f}, {v['bits_per_token']:.2f} b/tok)"
    print(line)
  if "m2" in r:
    m = r["m2"]
    print(
      f"m2: {m['image_steps_per_s']:.3g} image-steps/s, {m['images_per_s_at_paper_steps']:.3g} "
      f"images/s at {m['paper_steps']} steps"
    )


if __name__ == "__main__":
  main(sys.argv[1:])
