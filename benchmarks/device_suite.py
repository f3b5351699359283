r"""Every accelerator figure of stegjax in one command: one JSON file and one markdown table.

    python benchmarks/device_suite.py                  # one H100/H200: the paper's shapes, <= 8 min
    python benchmarks/device_suite.py --size=tiny      # CPU, seconds (the test suite runs this)

Needs jax, flax, optax, orbax, chex, numpy, pillow and ``cryptography`` (the ChaCha20 PRF's key
derivation); not ml-collections, tensorflow-datasets, array_record or grain. Compilations go
to jax's persistent cache (``--cache_dir``), so a rerun on the same machine compiles little.
Each part runs inside a time budget (``--budget_s``); a part that does not fit, or fails (an
out-of-memory batch, say), is recorded as skipped or failed with its reason, never estimated.

Parts, in the order they run (the security check first):

- ``identity``: the receiver's replay. Logits of one row computed alone (batch 1) against the
  same row inside a batch of 17, through ``transformer.logits_for_tokens`` (the KV-cached scan
  the receiver runs); Discop embeds 17 messages at batch 17 and extraction must return them,
  replayed at batch 17 and, for one row, at batch 1.
- ``sampling``: stego generation (recursive Discop, ChaCha20 draws, exact integer frequencies)
  against plain sampling, GPT-B at 384 px (576 tokens) batch 1 and 32, CFG 4, top-k 2000,
  bf16; ms/step against the HBM bound (matmul weights in bf16 read once per step / HBM
  bandwidth of the device kind) and against the copy bandwidth measured here.
- ``discop_step``: one Discop step alone (logits -> frequencies -> embed, batch 1) against one
  plain AR step of GPT-B.
- ``m2``: CMSTEG M2 (Adam on VQ-16 latents through the JPEG-SS stand-in) at 384 x 384, batch
  1, 8, 32: ms per Adam step and the projection to the paper's 10,000 steps per image.
- ``jpeg``: differentiable JPEG forward + backward at batch 64 (384 x 384) against PIL's
  encode + decode of the same images on the host.
- ``train``: the shared trainer's step on GPT-B at LlamaGen's 256 px shape (256 tokens):
  tokens/s and MFU against the device kind's bf16 dense peak.
- ``sampling_3b``: plain and stego generation at the GPT-3B shape (576 tokens), batch 1.

Peers (their own code, one H100): LlamaGen compiled GPT-B 1.44 ms/step at batch 1, 1.36 at
batch 32, GPT-3B 4.52 ms/step; the PyTorch VQ-16 M2 step 24.3 ms at batch 1 (243 s per image
at 10,000 steps).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stegjax.cmsteg import recover  # noqa: E402
from stegjax.channels import jpeg as jpeg_lib  # noqa: E402
from stegjax.models import presets  # noqa: E402
from stegjax.models import transformer as tr  # noqa: E402
from stegjax.models import vq as vq_lib  # noqa: E402
from stegjax.stego import discop, quantize  # noqa: E402
from stegjax.train import sharding, trainer  # noqa: E402

_TINY_GPT = dict(
  vocab_size=256, num_classes=10, dim=64, n_layer=2, n_head=4, grid=(4, 4), multiple_of=32
)
_TINY_VQ = dict(
  ch=16,
  ch_mult=(1, 2),
  num_res_blocks=1,
  z_channels=16,
  codebook_size=256,
  codebook_dim=8,
  norm_groups=8,
)
SIZES = {
  "full": dict(
    gpt=dict(preset="GPT-B", image_size=384),
    gpt_3b=dict(preset="GPT-3B", image_size=384),
    gpt_train=dict(preset="GPT-B", image_size=256),
    vq=dict(preset="VQ-16"),
    dtype="bfloat16",
    cfg_scale=4.0,
    top_k=2000,
    batches=(1, 32),
    identity_batch=17,
    m2_image=384,
    m2_batches=(1, 8, 32),
    m2_steps=20,
    jpeg_batch=64,
    jpeg_image=384,
    train_batch=64,
    train_steps=10,
    copy_mb=1024,
    repeats=2,
  ),
  "tiny": dict(
    gpt=dict(kw=_TINY_GPT),
    gpt_3b=dict(kw=_TINY_GPT, name="tiny GPT (3B slot)"),  # same shape: no extra compile
    gpt_train=dict(kw=_TINY_GPT),
    vq=dict(kw=_TINY_VQ),
    dtype="float32",
    cfg_scale=4.0,
    top_k=32,
    batches=(1,),
    identity_batch=17,
    m2_image=16,
    m2_batches=(1,),
    m2_steps=3,
    jpeg_batch=4,
    jpeg_image=32,
    train_batch=4,
    train_steps=2,
    copy_mb=16,
    repeats=1,
  ),
}
# Vendor figures by device kind: bf16 dense TFLOP/s (no sparsity) and HBM bytes/s.
DEVICE_PEAKS = {
  "H200": (989.4, 4.8e12),
  "H100": (989.4, 3.35e12),
  "A100": (312.0, 2.0e12),
}
PEERS = {
  "gpt_b_ms_per_step_b1": 1.44,
  "gpt_b_ms_per_step_b32": 1.36,
  "gpt_3b_ms_per_step_b1": 4.52,
  "m2_ms_per_step_b1": 24.3,
  "m2_s_per_image_10k": 243.0,
}
PAPER_M2_STEPS = 10_000
PART_NAMES = ("identity", "sampling", "discop_step", "m2", "jpeg", "train", "sampling_3b")
PRECISION = 24
VARIANT = "recursive"  # CMSTEG's sampler


class _Cfg(dict):
  """The train-config interface ``trainer.make_optimizer`` reads (no ml-collections here)."""

  __getattr__ = dict.__getitem__


# ----------------------------------------------------------------------------- helpers


def _time(fn, repeats: int):
  """(first call incl. compile, median of ``repeats`` further calls), seconds."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  runs = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    runs.append(time.perf_counter() - t0)
  return first, float(np.median(runs))


def gpt_model(spec, dtype):
  if "kw" in spec:
    return tr.Transformer(**spec["kw"], dtype=dtype)
  return presets.gpt_model(spec["preset"], image_size=spec["image_size"], dtype=dtype)


def vq_model(spec, dtype):
  if "kw" in spec:
    return vq_lib.VQModel(**spec["kw"], dtype=dtype)
  return presets.vq_model(spec["preset"], dtype=dtype)


def random_params(model, dtype, seed: int = 0):
  """Random weights of the model's shapes made on the device (normal * 0.02, norms 1)."""
  flat, treedef = jax.tree_util.tree_flatten_with_path(presets.abstract_params(model))

  @jax.jit
  def make(key):
    keys = jax.random.split(key, len(flat))
    out = []
    for (path, s), k in zip(flat, keys):
      name = sharding.path_str(path)
      if name.endswith(("/scale", "/weight")):
        out.append(jnp.ones(s.shape, dtype))
      elif name.endswith("/bias"):
        out.append(jnp.zeros(s.shape, dtype))
      else:
        out.append((0.02 * jax.random.normal(k, s.shape, jnp.float32)).astype(dtype))
    return jax.tree_util.tree_unflatten(treedef, out)

  return make(jax.random.key(seed))


def kernel_bytes(params) -> int:
  """Bytes of every matmul kernel: what one decode step must read from memory."""
  return sum(
    x.size * x.dtype.itemsize
    for p, x in jax.tree_util.tree_leaves_with_path(params)
    if sharding.path_str(p).endswith("/kernel")
  )


def measure_copy_bw(mb: int) -> float:
  """Achieved bytes/s of an elementwise pass (read + write) over ``mb`` MiB of float32."""
  x = jnp.ones((mb * 2**18,), jnp.float32)
  f = jax.jit(lambda x: x * 1.0001)
  _, t = _time(lambda: f(x), 5)
  return 2.0 * x.size * 4 / t


def _key():
  return jnp.asarray(np.arange(8), jnp.uint32)  # a fixed ChaCha20 sampling key


def _message(b: int, n_bits: int, seed: int = 0):
  return jnp.asarray(np.random.RandomState(seed).randint(0, 2, (b, n_bits)), jnp.uint8)


# ----------------------------------------------------------------------------- parts


@functools.lru_cache(maxsize=None)
def _choose_fn(top_k: int):
  """One choose_fn per setting: ``generate`` compiles once per function object (it is static)."""
  return discop.make_choose_fn(_key(), VARIANT, precision=PRECISION, top_k=top_k)


def _stego_generate(model, params, labels, cfg, bits):
  state = discop.init_embed_state(bits, jnp.arange(len(labels), dtype=jnp.uint32))
  return tr.generate(
    model,
    {"params": params},
    labels,
    None,
    choose_fn=_choose_fn(int(cfg["top_k"])),
    cfg_scale=cfg["cfg_scale"],
    top_k=cfg["top_k"],
    choose_state=state,
  )


def part_identity(cfg, dtype):
  model = gpt_model(cfg["gpt"], dtype)
  params = random_params(model, dtype, seed=1)
  b, t, row = int(cfg["identity_batch"]), model.num_tokens, 5
  labels = jnp.arange(b, dtype=jnp.int32) % model.num_classes
  bits = _message(b, 16 * t)
  toks, st = _stego_generate(model, params, labels, cfg, bits)
  n_emb = np.asarray(jnp.minimum(st.cursor, st.bit_len))
  replay = functools.partial(
    tr.logits_for_tokens, model, {"params": params}, cfg_scale=cfg["cfg_scale"], top_k=cfg["top_k"]
  )
  logits_b = np.asarray(replay(labels, toks))
  logits_1 = np.asarray(replay(labels[row : row + 1], toks[row : row + 1]))
  a, c = logits_b[row], logits_1[0]
  both = np.isfinite(a) & np.isfinite(c)
  diff = float(np.max(np.abs(np.where(both, a, 0.0) - np.where(both, c, 0.0))))

  def extracted(logits, tokens, rows):
    freqs = quantize.to_frequencies(
      jax.nn.softmax(jnp.asarray(logits), -1), precision=PRECISION, top_k=cfg["top_k"]
    )
    got, n = discop.extract(freqs, tokens, _key(), rows, VARIANT, precision=PRECISION)
    got, n = np.asarray(got), np.asarray(n)
    return [
      bool(np.array_equal(got[i, : n_emb[r]], np.asarray(bits)[r, : n_emb[r]]))
      for i, r in enumerate(np.asarray(rows))
    ]

  same = extracted(logits_b, toks, jnp.arange(b, dtype=jnp.uint32))
  alone = extracted(logits_1, toks[row : row + 1], jnp.asarray([row], jnp.uint32))
  return dict(
    batch=b,
    row=row,
    tokens=t,
    logits_bit_identical=bool(np.array_equal(logits_b[row], logits_1[0])),
    logits_max_abs_diff=diff,
    top_k_sets_equal=bool(np.array_equal(np.isfinite(a), np.isfinite(c))),
    bits_embedded_mean=float(n_emb.mean()),
    extract_ok_same_batch=bool(all(same)),
    extract_ok_rows_same_batch=int(sum(same)),
    extract_ok_batch1=bool(alone[0]),
  )


def part_sampling(cfg, dtype, spec_name, batches, hbm_bw, copy_bw, repeats):
  model = gpt_model(cfg[spec_name], dtype)
  params = random_params(model, dtype)
  t = model.num_tokens
  pbytes = kernel_bytes(params)
  out = dict(
    model=cfg[spec_name].get("preset", cfg[spec_name].get("name", "tiny GPT")),
    tokens=t,
    kernel_bytes=pbytes,
    hbm_bound_ms_per_step=1e3 * pbytes / hbm_bw,
    copy_bw_bound_ms_per_step=1e3 * pbytes / copy_bw,
    rows=[],
  )
  for b in batches:
    labels = jnp.arange(b, dtype=jnp.int32) % model.num_classes
    plain = lambda: tr.generate(
      model,
      {"params": params},
      labels,
      jax.random.key(0),
      cfg_scale=cfg["cfg_scale"],
      top_k=cfg["top_k"],
    )[0]
    bits = _message(b, 16 * t)
    stego = lambda: _stego_generate(model, params, labels, cfg, bits)[0]
    p_first, p_t = _time(plain, repeats)
    s_first, s_t = _time(stego, repeats)
    out["rows"].append(
      dict(
        batch=b,
        plain_ms_per_step=1e3 * p_t / t,
        stego_ms_per_step=1e3 * s_t / t,
        stego_x_plain=s_t / p_t,
        plain_x_hbm_bound=(p_t / t) / (pbytes / hbm_bw),
        stego_x_hbm_bound=(s_t / t) / (pbytes / hbm_bw),
        plain_first_call_s=p_first,
        stego_first_call_s=s_first,
      )
    )
    print(json.dumps({spec_name: out["rows"][-1]}), flush=True)
  return out


def part_discop_step(cfg, dtype, repeats, steps: int = 64):
  """One Discop step (batch 1, the model's vocabulary) in a scan, against a plain AR step."""
  model = gpt_model(cfg["gpt"], dtype)
  logits = 3.0 * jax.random.normal(jax.random.key(2), (1, model.vocab_size), jnp.float32)
  choose = _choose_fn(int(cfg["top_k"]))
  state = discop.init_embed_state(_message(1, 16 * steps), jnp.zeros((1,), jnp.uint32))

  @jax.jit
  def run(state):
    def body(st, i):
      # A different distribution each step (rolled logits): nothing is loop-invariant.
      tok, st = choose(jnp.roll(logits, i, axis=-1), i, st)
      return st, tok

    return jax.lax.scan(body, state, jnp.arange(steps, dtype=jnp.int32))[1]

  first, t = _time(lambda: run(state), repeats)
  return dict(
    discop_ms_per_step=1e3 * t / steps,
    steps=steps,
    vocab=model.vocab_size,
    top_k=cfg["top_k"],
    first_call_s=first,
  )


def part_m2(cfg, dtype, repeats):
  model = vq_model(cfg["vq"], dtype)
  params = random_params(model, jnp.float32)
  forms, index = recover.forms_for("jpeg75")
  param = recover.stand_in("jpeg75").param
  size, steps = int(cfg["m2_image"]), int(cfg["m2_steps"])
  rows = []
  for b in cfg["m2_batches"]:
    x = jax.random.uniform(jax.random.key(b), (b, size, size, 3), jnp.float32)

    # M2 runs one image at a time (bit-identical whatever the batch), so a batch is b calls.
    def run(x=x):
      return [
        recover._optimize(  # pylint: disable=protected-access
          model,
          params,
          x[i : i + 1],
          jnp.int32(index),
          jnp.float32(param),
          jnp.int32(steps),
          jnp.float32(0.002),
          jnp.int32(0),
          forms=forms,
        )[1]
        for i in range(x.shape[0])
      ]

    try:
      first, t = _time(run, repeats)
    except Exception as e:  # an out-of-memory batch is a result, not the end of the suite
      rows.append(dict(batch=b, failed=_reason(e)))
      continue
    ms = 1e3 * t / steps
    rows.append(
      dict(
        batch=b,
        ms_per_adam_step=ms,
        first_call_s=first,
        s_per_image_at_10k=ms * PAPER_M2_STEPS / 1e3 / b,
      )
    )
    print(json.dumps({"m2": rows[-1]}), flush=True)
  model_name = cfg["vq"].get("preset", "tiny VQ")
  return dict(model=model_name, image=size, steps_timed=steps, channel="jpeg75", rows=rows)


def part_jpeg(cfg, repeats):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  b, size = int(cfg["jpeg_batch"]), int(cfg["jpeg_image"])
  x = jax.random.uniform(jax.random.key(3), (b, size, size, 3), jnp.float32)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(jpeg_lib.diff_jpeg(x, 75.0, "ss"))))
  first, t = _time(lambda: grad(x), repeats)
  imgs = (np.asarray(x) * 255).astype(np.uint8)

  def pil():
    for im in imgs:
      buf = io.BytesIO()
      Image.fromarray(im).save(buf, format="JPEG", quality=75)
      np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

  t0 = time.perf_counter()
  pil()
  t_pil = time.perf_counter() - t0
  return dict(
    batch=b,
    image=size,
    diff_fwd_bwd_ms=1e3 * t,
    pil_encode_decode_ms=1e3 * t_pil,
    diff_x_faster_than_pil=t_pil / t,
    first_call_s=first,
  )


def part_train(cfg, dtype, peak_flops):
  model = gpt_model(cfg["gpt_train"], dtype)
  t_len, b = model.num_tokens, int(cfg["train_batch"])
  init_args = (jnp.zeros((1, t_len), jnp.int32), jnp.zeros((1,), jnp.int32))
  init_fn = lambda rng: (model.init({"params": rng, "dropout": rng}, *init_args)["params"], {})

  def loss_fn(params, extra, batch, rng, step):
    logits = model.apply(
      {"params": params}, batch["tokens"], batch["label"], train=True, rngs={"dropout": rng}
    )
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    loss = -jnp.mean(jnp.take_along_axis(logp, batch["tokens"][..., None], -1))
    return loss, ({}, extra)

  tx = trainer.make_optimizer(
    _Cfg(lr=1e-4, num_steps=1000, schedule="constant", grad_clip=1.0, weight_decay=0.05)
  )
  mesh = sharding.make_mesh(None)
  state = trainer.create_train_state(init_fn, tx, jax.random.PRNGKey(0), mesh, "replicate")
  step = trainer.make_train_step(loss_fn, tx, mesh, state)
  rs = np.random.RandomState(0)
  batch = sharding.put_batch(
    {
      "tokens": rs.randint(0, model.vocab_size, (b, t_len)).astype(np.int32),
      "label": rs.randint(0, model.num_classes, (b,)).astype(np.int32),
    },
    mesh,
  )
  t0 = time.perf_counter()
  for _ in range(2):  # compile + one warm step
    state, m = step(state, batch)
  jax.block_until_ready(m["loss"])
  first = time.perf_counter() - t0
  n = int(cfg["train_steps"])
  t0 = time.perf_counter()
  for _ in range(n):
    state, m = step(state, batch)
  jax.block_until_ready(m["loss"])
  dt = (time.perf_counter() - t0) / n
  n_mm = sum(
    x.size
    for p, x in jax.tree_util.tree_leaves_with_path(state.params)
    if sharding.path_str(p).endswith("/kernel")
  )
  flops_tok = 6 * n_mm + 12 * model.n_layer * model.dim * t_len
  achieved = flops_tok * b * t_len / dt
  return dict(
    batch=b,
    model=cfg["gpt_train"].get("preset", "tiny GPT"),
    seq_len=t_len,
    step_ms=1e3 * dt,
    tokens_per_s=b * t_len / dt,
    achieved_tflops=achieved / 1e12,
    matmul_params=n_mm,
    mfu=None if peak_flops is None else achieved / peak_flops,
    first_two_steps_s=first,
    loss=float(m["loss"]),
  )


# ----------------------------------------------------------------------------- driver


def _reason(e: BaseException) -> str:
  return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"


def _device_peaks(kind: str):
  for name, (tflops, bw) in DEVICE_PEAKS.items():
    if name.lower() in kind.lower():
      return tflops * 1e12, bw
  return None, None


def run_parts(cfg, args, dtype, budget_s: float, t_start: float) -> dict:
  dev = jax.devices()[0]
  peak, hbm = _device_peaks(dev.device_kind) if jax.default_backend() != "cpu" else (None, None)
  copy_bw = measure_copy_bw(int(cfg["copy_mb"]))
  hbm_bw = args.hbm_bw or hbm or copy_bw
  rep = int(cfg["repeats"])
  parts = [
    ("identity", lambda: part_identity(cfg, dtype)),
    ("sampling", lambda: part_sampling(cfg, dtype, "gpt", cfg["batches"], hbm_bw, copy_bw, rep)),
    ("discop_step", lambda: part_discop_step(cfg, dtype, rep)),
    ("m2", lambda: part_m2(cfg, dtype, rep)),
    ("jpeg", lambda: part_jpeg(cfg, rep)),
    ("train", lambda: part_train(cfg, dtype, peak)),
    ("sampling_3b", lambda: part_sampling(cfg, dtype, "gpt_3b", (1,), hbm_bw, copy_bw, rep)),
  ]
  wanted = set(args.parts.split(",")) if args.parts else {p for p, _ in parts}
  out = dict(
    baselines=dict(
      copy_bw_gbs=copy_bw / 1e9,
      hbm_bw_gbs=hbm_bw / 1e9,
      peak_tflops=None if peak is None else peak / 1e12,
    )
  )
  for name, fn in parts:
    if name not in wanted:
      continue
    used = time.perf_counter() - t_start
    if used > budget_s:
      out[name] = dict(skipped=f"time budget: {used:.0f} s of {budget_s:.0f} s used before it")
      continue
    t0 = time.perf_counter()
    try:
      out[name] = fn()
    except Exception as e:  # recorded; the other parts still run
      traceback.print_exc()
      out[name] = dict(failed=_reason(e))
    out[name]["part_s"] = time.perf_counter() - t0
    print(f"[{time.perf_counter() - t_start:.0f} s] {name} done", flush=True)
  if "discop_step" in out and "sampling" in out and out["sampling"].get("rows"):
    ar = out["sampling"]["rows"][0]["plain_ms_per_step"]
    if "discop_ms_per_step" in out["discop_step"]:
      out["discop_step"]["ar_ms_per_step_b1"] = ar
      out["discop_step"]["discop_x_ar_step"] = out["discop_step"]["discop_ms_per_step"] / ar
  return out


def _cell(v, fmt="{:.3g}"):
  return "n/a" if v is None else fmt.format(v)


def _get(d, *keys):
  for k in keys:
    if not isinstance(d, dict) or k not in d:
      return None
    d = d[k]
  return d


def _sampling_rows(r: dict) -> list:
  rows = []
  for part, peer_b1 in (("sampling", "gpt_b"), ("sampling_3b", "gpt_3b")):
    label = f"{_get(r, part, 'model')} {_get(r, part, 'tokens')} tok"
    for row in _get(r, part, "rows") or []:
      b = row["batch"]
      peer = PEERS.get(f"{peer_b1}_ms_per_step_b{b}") if r["size"] == "full" else None
      bound = _get(r, part, "hbm_bound_ms_per_step")
      rows.append(
        [
          f"{label} plain, batch {b} (ms/step)",
          _cell(row["plain_ms_per_step"]),
          _cell(peer),
          f"HBM bound {_cell(bound)}; {row['plain_x_hbm_bound']:.2f}x",
        ]
      )
      rows.append(
        [
          f"{label} stego (Discop), batch {b} (ms/step)",
          _cell(row["stego_ms_per_step"]),
          "",
          f"{row['stego_x_plain']:.2f}x plain",
        ]
      )
  return rows


def _m2_rows(r: dict) -> list:
  rows = []
  d = r.get("discop_step", {})
  if "discop_ms_per_step" in d:
    rows.append(
      [
        "Discop step alone, batch 1 (ms)",
        _cell(d["discop_ms_per_step"]),
        "",
        f"{_cell(d.get('discop_x_ar_step'))}x one {_get(r, 'sampling', 'model')} AR step",
      ]
    )
  m2_label = f"{_get(r, 'm2', 'model')} {_get(r, 'm2', 'image')} px"
  for row in _get(r, "m2", "rows") or []:
    b = row["batch"]
    if "failed" in row:
      rows.append([f"M2 {m2_label}, batch {b}", "failed", "", row["failed"]])
      continue
    rows.append(
      [
        f"M2 {m2_label}, batch {b} (ms/Adam step)",
        _cell(row["ms_per_adam_step"]),
        _cell(PEERS["m2_ms_per_step_b1"]) if b == 1 and r["size"] == "full" else "",
        f"{row['s_per_image_at_10k']:.3g} s/image at 10,000 steps (peer 243 s)",
      ]
    )
  return rows


def _other_rows(r: dict) -> list:
  rows = []
  j = r.get("jpeg", {})
  if "diff_fwd_bwd_ms" in j:
    rows.append(
      [
        f"diff-JPEG fwd+bwd, batch {j['batch']} (ms)",
        _cell(j["diff_fwd_bwd_ms"]),
        "",
        f"PIL encode+decode {_cell(j['pil_encode_decode_ms'])} ms",
      ]
    )
  t = r.get("train", {})
  if "tokens_per_s" in t:
    rows.append(
      [
        f"train {t['model']} {t['seq_len']} tok, batch {t['batch']} (tok/s)",
        _cell(t["tokens_per_s"]),
        "",
        f"MFU {_cell(t['mfu'], '{:.1%}')}",
      ]
    )
  i = r.get("identity", {})
  if "logits_bit_identical" in i:
    rows.append(
      [
        f"logits row alone == inside batch {i['batch']}",
        str(i["logits_bit_identical"]),
        "",
        f"max |diff| {_cell(i['logits_max_abs_diff'])}",
      ]
    )
    rows.append(
      [
        "Discop extraction (same batch / batch 1)",
        f"{i['extract_ok_same_batch']} / {i['extract_ok_batch1']}",
        "",
        "",
      ]
    )
  for name, v in r.items():
    if isinstance(v, dict) and ("skipped" in v or "failed" in v):
      rows.append(
        [name, "skipped" if "skipped" in v else "failed", "", v.get("skipped", v.get("failed"))]
      )
  return rows


def markdown(r: dict) -> str:
  """The table a BENCHMARKS.md entry copies: figure | stegjax | peer (H100, their code)."""
  rows = _sampling_rows(r) + _m2_rows(r) + _other_rows(r)
  head = f"device: {r['device_kind']} ({r['backend']}), size {r['size']}, {r['total_s']:.0f} s\n\n"
  lines = ["| figure | stegjax | peer (H100, their code) | note |", "| --- | --- | --- | --- |"]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return head + "\n".join(lines) + "\n"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="full")
  ap.add_argument("--parts", default="", help="comma list (default: all)")
  ap.add_argument("--budget_s", type=float, default=420.0, help="start no part after this")
  ap.add_argument("--hbm_bw", type=float, default=None, help="bytes/s (default by device kind)")
  ap.add_argument("--cache_dir", default=os.path.join("/tmp", "stegjax_jax_cache"))
  ap.add_argument("--out", default="bench_out/device_suite.json")
  args = ap.parse_args(argv)
  t_start = time.perf_counter()
  if args.cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  cfg = SIZES[args.size]
  dtype = jnp.dtype(cfg["dtype"]) if jax.default_backend() != "cpu" else jnp.float32
  dev = jax.devices()[0]
  report = dict(
    benchmark="device_suite",
    size=args.size,
    device_kind=dev.device_kind,
    backend=jax.default_backend(),
    device_count=jax.device_count(),
    jax=jax.__version__,
    python=platform.python_version(),
    dtype=str(dtype),
    peers=PEERS,
    variant=VARIANT,
    precision=PRECISION,
    cfg_scale=cfg["cfg_scale"],
    top_k=cfg["top_k"],
  )
  report.update(run_parts(cfg, args, dtype, args.budget_s, t_start))
  report["total_s"] = time.perf_counter() - t_start
  table = markdown(report)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
    f.write(table)
  print(table)
  print(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.md")
  return report


if __name__ == "__main__":
  main(sys.argv[1:])
