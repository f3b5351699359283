"""Steganographic semantic communication (issue 8): train and evaluate stego JSCC codecs.

  python -m stegjax.main --config=configs/semcom.py:smoke

Reads top to bottom: data -> DeepJSCC per bandwidth ratio (+ the JPEG separation
baseline) -> for each run (family x strategy) the hider, then its eavesdroppers
(closed-box inverse network, steganalyzer) -> the evaluation table over channels
and SNRs -> report.md / report.json / PSNR-vs-SNR plots. Every trained model is
checkpointed under ``workdir/models/<name>``; a rerun restores it and skips training.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from stegjax import channels
from stegjax import models
from stegjax import data as data_lib
from stegjax.metrics import detection
from stegjax.metrics import image as image_metrics
from stegjax.metrics import report as report_lib
from stegjax.models import steganalyzers
from stegjax.semcom import keys as keys_lib
from stegjax.semcom import networks
from stegjax.semcom import separation
from stegjax.semcom import system
from stegjax.train import sharding
from stegjax.train import trainer


def _fit(name, workdir, init_fn, loss_fn, batch_fn, train_cfg, mesh, rng, rules):
  """Trains (or restores) one model; returns (params, extra, {'seconds', 'cpu_seconds'})."""
  tx = trainer.make_optimizer(train_cfg)
  state = trainer.create_train_state(init_fn, tx, rng, mesh, rules)
  step_fn = trainer.make_train_step(loss_fn, tx, mesh, state)
  ckpt = os.path.join(workdir, "models", name)
  times_path = os.path.join(ckpt, "train_time.json")
  cached = None
  if os.path.exists(times_path):  # written after a completed fit: the model is cached
    with open(times_path) as f:
      cached = json.load(f)
  t0, c0 = time.time(), _cpu_seconds()
  state = trainer.fit(
    state, step_fn, batch_fn, int(train_cfg.num_steps), ckpt, train_cfg, mesh, desc=name
  )
  if cached is not None:
    times = {
      "seconds": float(cached["seconds"]),
      "cpu_seconds": float(cached.get("cpu_seconds", float("nan"))),
    }
  else:
    times = {"seconds": time.time() - t0, "cpu_seconds": _cpu_seconds() - c0}
    if report_lib.is_writer():
      with open(times_path, "w") as f:
        json.dump(times, f)
  return state.params, state.extra, times


def _cpu_seconds() -> float:
  """CPU time of this process (user + system): a load-independent cost on a shared machine."""
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def _loadavg() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def _pair_batches(images: np.ndarray, batch_size: int, seed: int):
  """batch_fn(step) -> {'cover', 'secret'}: two independent, resumable index streams."""
  n = len(images)

  def batch_fn(step):
    i = data_lib.batch_indices(n, batch_size, seed, step)
    j = data_lib.batch_indices(n, batch_size, seed + 7919, step)
    return {"cover": np.asarray(images[i]), "secret": np.asarray(images[j])}

  return batch_fn


def _eval_pairs(heldout: np.ndarray, num: int, seed: int):
  """Fixed held-out cover/secret pairs (secret never equals its cover)."""
  n = len(heldout)
  if n < 2:
    raise ValueError(f"need at least 2 held-out patches, got {n}")
  k1, k2 = jax.random.split(jax.random.key(seed))
  ci = np.asarray(jax.random.randint(k1, (num,), 0, n))
  shift = np.asarray(jax.random.randint(k2, (num,), 1, n))
  return np.asarray(heldout[ci]), np.asarray(heldout[(ci + shift) % n])


def _metrics(a, b):
  return (float(jnp.mean(image_metrics.psnr(a, b))), float(jnp.mean(image_metrics.ssim(a, b))))


def _train_jscc(config, ratio, images, mesh, rng, workdir):
  model = system.make_jscc(config.jscc.features, ratio, config.jscc.get("arch", "conv"))
  p = config.data.patch_size

  def init_fn(r):
    return {"jscc": system.init_jscc(model, r, p, images)}, {}

  n = len(images)
  bs = int(config.jscc.train.batch_size)

  def batch_fn(step):
    return {"image": np.asarray(images[data_lib.batch_indices(n, bs, config.seed, step)])}

  name = f"deepjscc_r{round(1 / ratio)}"
  params, _, times = _fit(
    name,
    workdir,
    init_fn,
    system.jscc_loss_fn(model, config.channel),
    batch_fn,
    config.jscc.train,
    mesh,
    rng,
    config.mesh.rules,
  )
  return model, params["jscc"], times


def _eval_jscc(model, params, covers, config, ratio, key, table):
  """DeepJSCC vs the separation baselines, PSNR/SSIM per channel and SNR.

  ``table`` is ``separation.rate_table(covers)``. Baselines per cell: ``sep`` the primary
  one (JPEG payload over the AWGN capacity; Rayleigh: outage with the rate chosen for the
  fading statistics), ``sep_file`` the same counting the JPEG headers, and for Rayleigh
  ``sep_ergodic`` (payload over the ergodic capacity, an idealized bound).
  """
  enc = jax.jit(
    lambda x, snr, k, ch: system.transmit(model, params, x, snr, k, ch), static_argnums=3
  )
  (x,) = sharding.spread((system.to_float(covers),))
  snrs = tuple(config.channel.get("jscc_eval_snrs", config.channel.eval_snrs))
  rows = []
  for ch in system.CHANNELS:
    for i, snr in enumerate(snrs):
      k = jax.random.fold_in(jax.random.fold_in(key, i), system.CHANNELS.index(ch))
      y = enc(x, jnp.float32(snr), k, ch)
      pj, sj = _metrics(y, x)
      row = dict(
        ratio=ratio,
        channel=ch,
        snr=float(snr),
        jscc_psnr=pj,
        jscc_ssim=sj,
        grey_psnr=float(np.mean(10.0 * np.log10(1.0 / table.grey_mse))),
      )
      variants = [("sep", {}), ("sep_file", dict(size="file"))]
      fading = channels.wireless_channel(ch).fading
      if fading:
        variants.append(("sep_ergodic", dict(rayleigh="ergodic")))
      for name, kw in variants:
        rec, q, ok = separation.reconstruct(table, float(snr), ratio, ch, k, **kw)
        row[f"{name}_psnr"], row[f"{name}_ssim"] = _metrics(jnp.asarray(rec), x)
        row[f"{name}_quality_mean"] = float(q.mean())
        row[f"{name}_delivered"] = float(ok.mean())
      if not fading:
        row.update(
          sep_ergodic_psnr=row["sep_psnr"],
          sep_ergodic_ssim=row["sep_ssim"],
          sep_ergodic_quality_mean=row["sep_quality_mean"],
          sep_ergodic_delivered=row["sep_delivered"],
        )
      # The strongest baseline in the cell (the acceptance compares against it).
      row["sep_best_psnr"] = max(row["sep_psnr"], row["sep_ergodic_psnr"], row["sep_file_psnr"])
      rows.append(row)
  return rows


def _refine_net(config, spec):
  """The keyed receiver's post-filter (networks.RefineNet), or None (unkeyed run, or depth 0)."""
  cfg = config.get("refine")
  if not spec.keyed or cfg is None or int(cfg.depth) == 0:
    return None
  return networks.RefineNet(int(cfg.features), int(cfg.depth))


def _train_run(spec, config, train_imgs, mesh, rng, workdir, jscc_model, jscc_params):
  fam = config.families[spec.family]
  hider = system.Hider(spec.family, fam, spec.high_freq)
  p = config.data.patch_size
  disc = networks.Discriminator(int(fam.disc_features)) if spec.adversarial else None
  refine = _refine_net(config, spec)
  rngs = jax.random.split(rng, 3)

  def init_fn(r):
    k1, k2, k3, k4 = jax.random.split(r, 4)
    params = {"hider": hider.init(k1, (p, p, 3))}
    if spec.end_to_end:  # from scratch (PilotJSCC: the same data-dependent PCA init)
      params["jscc"] = system.init_jscc(jscc_model, k2, p, train_imgs)
    if disc is not None:
      params["disc"] = disc.init(k3, jnp.zeros((1, p, p, 3)))
    if refine is not None:
      params["refine"] = refine.init(k4, jnp.zeros((1, p, p, 3)))
    extra = {} if spec.end_to_end else {"jscc": jscc_params}
    return params, extra

  weights = config.loss.to_dict()
  weights.update(dict(fam.get("loss", {}) or {}))  # per-family overrides
  weights = ml_collections.ConfigDict(weights)
  loss_fn = system.stego_loss_fn(
    spec, hider, jscc_model, config.channel, weights, int(config.key_block), disc, refine
  )
  bs = int(config.hide_train.batch_size)
  params, _, secs = _fit(
    spec.name,
    workdir,
    init_fn,
    loss_fn,
    _pair_batches(train_imgs, bs, config.seed + 1),
    config.hide_train,
    mesh,
    rngs[0],
    config.mesh.rules,
  )
  p_jscc = params["jscc"] if spec.end_to_end else jscc_params
  n_params = {
    "hider": models.param_count(params["hider"]),
    "disc": models.param_count(params.get("disc", {})),
    "refine": models.param_count(params.get("refine", {})),
    "jscc": models.param_count(p_jscc),
  }

  # Closed-box inverse eavesdropper: the public revealing network's architecture on
  # (received, public reveal) pairs intercepted under other keys (system.eve_input).
  ecfg = config.eve
  eve_net = networks.RevealNet(int(ecfg.features), int(ecfg.depth))

  def eve_init(r):
    return (
      {"eve": eve_net.init(r, jnp.zeros((1, p, p, 6)))},
      {"hider": params["hider"], "jscc": p_jscc},
    )

  eve_params, _, eve_secs = _fit(
    f"{spec.name}_eve_inverse",
    workdir,
    eve_init,
    system.inverse_eve_loss_fn(
      spec, hider, jscc_model, eve_net, config.channel, int(config.key_block)
    ),
    _pair_batches(train_imgs, bs, config.seed + 2),
    ecfg.train,
    mesh,
    rngs[1],
    config.mesh.rules,
  )

  detector = steganalyzers.make_steganalyzer(
    ecfg.steganalyzer, dict(ecfg.get("steganalyzer_cfg", {}) or {})
  )

  def det_init(r):
    dp, dstate = steganalyzers.init_steganalyzer(detector, r, (p, p, 3))
    return {"det": dp}, {"hider": params["hider"], "jscc": p_jscc, "det_state": dstate}

  det_params, det_extra, det_secs = _fit(
    f"{spec.name}_steganalyzer",
    workdir,
    det_init,
    system.steganalyzer_loss_fn(
      spec, hider, jscc_model, detector, config.channel, int(config.key_block)
    ),
    _pair_batches(train_imgs, bs, config.seed + 3),
    ecfg.steganalyzer_train,
    mesh,
    rngs[2],
    config.mesh.rules,
  )
  return dict(
    hider=hider,
    params=params,
    p_jscc=p_jscc,
    refine=refine,
    eve_net=eve_net,
    eve_params=eve_params["eve"],
    detector=detector,
    det_vars={"params": det_params["det"], **det_extra["det_state"]},
    n_params=n_params,
    train_seconds=dict(
      hider=secs["seconds"], eve_inverse=eve_secs["seconds"], steganalyzer=det_secs["seconds"]
    ),
    train_cpu_seconds=dict(
      hider=secs["cpu_seconds"],
      eve_inverse=eve_secs["cpu_seconds"],
      steganalyzer=det_secs["cpu_seconds"],
    ),
  )


def _eval_run(spec, trained, config, covers, secrets, jscc_model, key, det_train):
  """Table rows for one run over channels x SNRs."""
  hider, params, p_jscc = trained["hider"], trained["params"], trained["p_jscc"]
  block = int(config.key_block)
  n = len(covers)
  legit_key = jax.random.key(int(config.secret_key_seed))
  eve_key = jax.random.key(int(config.secret_key_seed) + 1)  # the eavesdropper's guess

  @jax.jit
  def forward(cover, secret, snr, k_ch, legit, wrong, ch_index):
    # One compiled forward for every evaluated channel: the channel is a traced index.
    ch_fn = lambda pj, x, k: jax.lax.switch(
      ch_index,
      [functools.partial(system.transmit, jscc_model, pj, x, snr, k, c) for c in system.CHANNELS],
    )
    hidden = keys_lib.scramble(secret, legit, block) if spec.keyed else secret
    stego = jnp.clip(hider.hide(params["hider"], cover, hidden), 0.0, 1.0)
    k1, k2 = jax.random.split(k_ch)
    received = ch_fn(p_jscc, stego, k1)
    rx_cover = ch_fn(p_jscc, cover, k2)
    revealed = hider.reveal(params["hider"], received)
    # The naive eavesdropper runs the same public pipeline with its guessed key.
    legit_secret, naive = (
      system.unscramble_secret(spec, revealed, k, block, trained["refine"], params.get("refine"))
      for k in (legit, wrong)
    )
    inverse = trained["eve_net"].apply(
      trained["eve_params"], system.eve_input(hider, params["hider"], received)
    )
    score = lambda x: trained["detector"].apply(trained["det_vars"], x * 255.0, train=False)
    return dict(
      stego=stego,
      received=received,
      rx_cover=rx_cover,
      legit=legit_secret,
      naive=naive,
      inverse=inverse,
      s_cover=score(rx_cover),
      s_stego=score(received),
    )

  x_c, x_s = system.to_float(covers), system.to_float(secrets)
  legit = keys_lib.message_keys(legit_key, 0, n)
  wrong = keys_lib.message_keys(eve_key, 0, n)
  x_c, x_s, legit, wrong = sharding.spread((x_c, x_s, legit, wrong))
  rows = []
  for ci, ch in enumerate(system.CHANNELS):
    for si, snr in enumerate(config.channel.eval_snrs):
      k = jax.random.fold_in(jax.random.fold_in(key, si), ci)
      out = forward(x_c, x_s, jnp.float32(snr), k, legit, wrong, ci)
      row = dict(run=spec.name, family=spec.family, channel=ch, snr=float(snr))
      for name, a, b in (
        ("stego", out["stego"], x_c),
        ("received", out["received"], x_c),
        ("legit", out["legit"], x_s),
        ("eve_naive", out["naive"], x_s),
        ("eve_inverse", out["inverse"], x_s),
      ):
        row[f"{name}_psnr"], row[f"{name}_ssim"] = _metrics(a, b)
      row["eve_best_psnr"] = max(row["eve_naive_psnr"], row["eve_inverse_psnr"])
      row["legit_minus_eve_db"] = row["legit_psnr"] - row["eve_best_psnr"]
      scores = np.concatenate([np.asarray(out["s_cover"]), np.asarray(out["s_stego"])])
      labels = np.concatenate([np.zeros(n), np.ones(n)])
      row["steganalyzer_pe_min"] = detection.min_pe(scores, labels)[0]
      row["steganalyzer_pe_fixed"] = detection.pe_at_threshold(scores, labels, det_train)
      rows.append(row)
  return rows


def _det_threshold(spec, trained, config, covers, secrets, jscc_model, key):
  """Detector threshold fixed on training pairs (so the held-out P_E is unbiased)."""
  hider, params, p_jscc = trained["hider"], trained["params"], trained["p_jscc"]
  n = len(covers)
  ch = config.channel.train_channel

  @jax.jit
  def scores_fn(x_c, x_s, key):
    snr = system.sample_snr(key, n, config.channel.train_snr_min, config.channel.train_snr_max)
    k1, k2, k3 = jax.random.split(key, 3)
    _, _, received, _ = system.stego_forward(
      spec,
      hider,
      jscc_model,
      params["hider"],
      p_jscc,
      x_c,
      x_s,
      jax.random.split(k1, n),
      snr,
      k2,
      ch,
      int(config.key_block),
    )
    rx_cover = system.transmit(jscc_model, p_jscc, x_c, snr, k3, ch)
    f = lambda x: trained["detector"].apply(trained["det_vars"], x * 255.0, train=False)
    return jnp.concatenate([f(rx_cover), f(received)])

  scores = np.asarray(
    scores_fn(*sharding.spread((system.to_float(covers), system.to_float(secrets))), key)
  )
  labels = np.concatenate([np.zeros(n), np.ones(n)])
  return detection.min_pe(scores, labels)[1]


def _plots(workdir, jscc_rows, table):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  paths = []
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for ax, ch in zip(axes, system.CHANNELS):
    for ratio in sorted({r["ratio"] for r in jscc_rows}, reverse=True):
      rs = [r for r in jscc_rows if r["channel"] == ch and r["ratio"] == ratio]
      tag = f"1/{round(1 / ratio)}"
      ax.plot(
        [r["snr"] for r in rs], [r["jscc_psnr"] for r in rs], "o-", label=f"DeepJSCC k/n={tag}"
      )
      ax.plot(
        [r["snr"] for r in rs], [r["sep_psnr"] for r in rs], "s--", label=f"JPEG+capacity k/n={tag}"
      )
    ax.set(title=f"{ch}: cover reconstruction", xlabel="SNR (dB)", ylabel="PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  path = os.path.join(workdir, "psnr_vs_snr_jscc.png")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  paths.append(path)
  runs = sorted({r["run"] for r in table})
  if runs:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, ch in zip(axes, system.CHANNELS):
      for i, run in enumerate(runs):
        rs = [r for r in table if r["run"] == run and r["channel"] == ch]
        (line,) = ax.plot(
          [r["snr"] for r in rs], [r["legit_psnr"] for r in rs], "o-", label=f"{run} legit"
        )
        ax.plot(
          [r["snr"] for r in rs],
          [r["eve_best_psnr"] for r in rs],
          "x:",
          color=line.get_color(),
          label=f"{run} best eve",
        )
      ax.set(title=f"{ch}: secret PSNR", xlabel="SNR (dB)", ylabel="PSNR (dB)")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=6)
    path = os.path.join(workdir, "psnr_vs_snr_secret.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
  return paths


def _verdict(ok: bool) -> str:
  return "**MET**" if ok else "**NOT MET**"


def _acceptance(config, jscc_rows, table, runs_info):
  """One line per acceptance criterion of issue 8: measured value vs target, MET / NOT MET."""
  lines = []
  # (a) DeepJSCC vs separation at 0-5 dB, and graceful degradation.
  low = [r for r in jscc_rows if 0 <= r["snr"] <= 5]
  if low:

    def wins(key):
      return sum(r["jscc_psnr"] > r[key] for r in low)

    cells = lambda key: "; ".join(
      f"1/{round(1 / r['ratio'])} {r['channel']} {r['snr']:g} dB: {r['jscc_psnr']:.2f} vs "
      f"{r[key]:.2f}"
      for r in low
    )
    n = len(low)
    lines.append(
      f"(a) DeepJSCC beats the separation baseline at 0-5 dB. Target: JSCC PSNR > JPEG PSNR in "
      f"every (k/n, channel, SNR) cell with 0 <= SNR <= 5 dB, JPEG as the issue defines it "
      f"(the JPEG file must fit the capacity of an ideal code).\n"
      f"  - vs JPEG **whole file** (headers counted): {wins('sep_file_psnr')}/{n} "
      f"cells -> {_verdict(wins('sep_file_psnr') == n)}. ({cells('sep_file_psnr')}) At small "
      f"image sizes the headers alone exceed the capacity, so this is the cliff, not a "
      f"contest; the stricter baselines below are reported for that reason.\n"
      f"  - stricter, beyond the issue: vs JPEG **payload only** (headers assumed known, ideal "
      f"code; Rayleigh: outage with the best fixed rate): DeepJSCC wins {wins('sep_psnr')}/{n} "
      f"cells ({cells('sep_psnr')}); vs the strongest baseline per cell (also the Rayleigh "
      f"ergodic-capacity bound): {wins('sep_best_psnr')}/{n}."
    )
    # PSNR lost per dB of SNR between neighbouring SNRs, for DeepJSCC and the JPEG payload.
    slopes = {"jscc_psnr": [], "sep_psnr": []}
    floor = []
    for ratio in sorted({r["ratio"] for r in jscc_rows}):
      for ch in system.CHANNELS:
        rs = sorted(
          (r for r in jscc_rows if r["ratio"] == ratio and r["channel"] == ch),
          key=lambda r: r["snr"],
        )
        for key, v in slopes.items():
          v += [(b[key] - a[key]) / (b["snr"] - a["snr"]) for a, b in zip(rs, rs[1:])]
        floor.append((ratio, ch, rs[0]))
    worst = {k: max(v, default=0.0) for k, v in slopes.items()}
    lowest = min(r["snr"] for r in jscc_rows)
    grey = float(np.mean([r["grey_psnr"] for r in jscc_rows]))
    jscc_floor = min(r["jscc_psnr"] for _, _, r in floor)
    # Uncoded analog transmission loses 1 dB of PSNR per dB of SNR at low SNR (its MSE is
    # proportional to 1/SNR): that is graceful. A cliff is far steeper, down to the grey image.
    graceful = worst["jscc_psnr"] <= 1.0
    lines.append(
      f"(a') Graceful degradation (no cliff). Target: nowhere steeper than uncoded analog "
      f"transmission (at most 1 dB of PSNR lost per dB of SNR), down to {lowest:g} dB. "
      f"Measured: steepest DeepJSCC loss {worst['jscc_psnr']:.2f} dB/dB (JPEG payload: "
      f"{worst['sep_psnr']:.2f} dB/dB); at {lowest:g} dB DeepJSCC >= {jscc_floor:.2f} dB "
      f"({jscc_floor - grey:+.2f} dB over the grey image, {grey:.2f} dB). JPEG payload at "
      f"{lowest:g} dB for contrast: "
      + ", ".join(
        f"1/{round(1 / ra)} {ch} {r['sep_psnr']:.2f} dB (delivered {r['sep_delivered']:.2f})"
        for ra, ch, r in floor
      )
      + f" -> {_verdict(graceful)}."
    )
  # (b) key-conditioned INN: legit vs best eavesdropper at 0 dB.
  keyed_inn = [
    r for r in table if r["snr"] == 0 and r["family"] == "inn" and runs_info[r["run"]]["keyed"]
  ]
  main = [
    r
    for r in keyed_inn
    if not runs_info[r["run"]]["end_to_end"] and not runs_info[r["run"]]["high_freq"]
  ] or keyed_inn
  if main:
    lines.append(
      "(b) Key-conditioned INN, 0 dB: legit secret PSNR >= best eavesdropper + 4 dB, on each "
      "channel:\n"
      + "\n".join(
        f"  - {r['run']} {r['channel']}: legit {r['legit_psnr']:.2f}, best eve "
        f"{r['eve_best_psnr']:.2f} (naive {r['eve_naive_psnr']:.2f}, inverse "
        f"{r['eve_inverse_psnr']:.2f}), margin {r['legit_minus_eve_db']:+.2f} dB -> "
        f"{_verdict(r['legit_minus_eve_db'] >= 4.0)}"
        for r in main
      )
    )
    others = [r for r in keyed_inn if r not in main]
    if others:
      lines[-1] += "\n  - other keyed INN runs at 0 dB: " + "; ".join(
        f"{r['run']} {r['channel']}: margin {r['legit_minus_eve_db']:+.2f} dB "
        f"({'>=' if r['legit_minus_eve_db'] >= 4 else '<'} 4)"
        for r in others
      )
  # (c) family ordering vs survey Table II.
  fams = {}
  for name, info in runs_info.items():
    rs = [r for r in table if r["run"] == name]
    if not rs:
      continue
    q = dict(
      name=name,
      params=sum(info["n_params"].get(k, 0) for k in ("hider", "disc", "refine")),
      sec_per_step=info["train_seconds"]["hider"] / max(1, info["hide_steps"]),
      stego=float(np.mean([r["stego_psnr"] for r in rs])),
      secret=float(np.mean([r["legit_psnr"] for r in rs])),
      pe=float(np.mean([r["steganalyzer_pe_min"] for r in rs])),
      margin=float(np.mean([r["legit_minus_eve_db"] for r in rs])),
    )
    best = fams.get(info["family"])
    # One representative per family: its two-stage keyed run (the same strategy for all three).
    if best is None or (info["keyed"] and not info["end_to_end"] and not info["high_freq"]):
      fams[info["family"]] = q
  if fams:
    order = lambda key: " > ".join(f for f, _ in sorted(fams.items(), key=lambda kv: -kv[1][key]))
    claims = [
      ("model size (params)", "params", ["gan", "inn", "cnn"]),
      ("training time (s/step)", "sec_per_step", ["inn", "gan", "cnn"]),
      ("secret capacity/quality (secret PSNR)", "secret", ["inn", "gan", "cnn"]),
      ("transmission quality (cover-stego PSNR)", "stego", ["inn", "gan", "cnn"]),
      ("anti-steganalysis (steganalyzer P_E)", "pe", ["gan", "inn", "cnn"]),
    ]
    sub = []
    for label, key, survey in claims:
      survey = [f for f in survey if f in fams]
      measured = [f for f, _ in sorted(fams.items(), key=lambda kv: -kv[1][key])]
      sub.append(
        f"  - {label}: measured {order(key)} ("
        + ", ".join(f"{f} {fams[f][key]:.4g}" for f in measured)
        + f"); survey {' > '.join(survey)} -> "
        + ("agrees" if measured == survey else "disagrees")
      )
    lines.append(
      "(c) Families vs survey Table II (representative run per family: two-stage + key; "
      "means over channels and SNRs; every family hides a full-size image, so capacity "
      "shows as secret PSNR at equal payload). Target: measured and reported -> "
      f"{_verdict(len(fams) == 3)}.\n" + "\n".join(sub)
    )
  # (d) closed-box inverse eavesdropper.
  inv = [r for r in table if r["snr"] == 0]
  if inv:
    lines.append(
      "(d) Closed-box inverse (model-inversion) eavesdropper: a RevealNet trained on (received stego "
      "+ public reveal, secret) pairs intercepted under other keys, in the table for every run. "
      "At 0 dB: "
      + "; ".join(
        f"{r['run']} {r['channel']}: {r['eve_inverse_psnr']:.2f} dB (legit {r['legit_psnr']:.2f})"
        for r in inv
      )
      + f" -> {_verdict(all('eve_inverse_psnr' in r for r in table))}."
    )
  return lines


def _report(workdir, config, jscc_rows, table, runs_info, jscc_info, run_info):
  md = report_lib.md_table
  sections = []
  sections.append(
    (
      "Setup",
      (
        f"Size `{config.size}`, patches {config.data.patch_size}x{config.data.patch_size} of the "
        f"bundled photos (held out: {', '.join(config.data.heldout)}); {config.eval.num_pairs} held-out "
        f"cover/secret pairs. Training SNR uniform on [{config.channel.train_snr_min}, "
        f"{config.channel.train_snr_max}] dB over channel `{config.channel.train_channel}`. "
        "Rayleigh: block fading, one h ~ CN(0,1) per image, perfect-CSI zero-forcing equalization at "
        "the receiver. Keyed runs scramble the secret in "
        f"{config.key_block}x{config.key_block} blocks with a per-transmission key"
        + (
          f" and the receiver refines the unscrambled secret with a public post-filter "
          f"(RefineNet, depth {config.refine.depth})"
          if config.get("refine") and int(config.refine.depth)
          else ""
        )
        + "; the naive eavesdropper runs the same public networks with a wrong key.\n\n"
        "Separation baselines (PIL JPEG + an ideal capacity-achieving channel code, grey image when "
        "nothing is delivered): **JPEG payload** = the entropy-coded bytes + 1 quality byte must fit "
        "k log2(1+SNR) bits (AWGN); for Rayleigh the sender knows only the fading statistics and picks, "
        "per image, the quality minimizing the expected MSE under outage "
        "P(k log2(1+|h|^2 SNR) < bits), and the image is lost when the drawn h is in outage. "
        "**JPEG ergodic** (Rayleigh only): the payload must fit k E[log2(1+|h|^2 SNR)] and is "
        "always delivered, an idealized bound. **JPEG file**: the whole file, headers included. "
        "No finite-blocklength penalty anywhere (favours JPEG).\n\n"
        f"Run: {run_info['wall_seconds']:.0f} s wall, {run_info['cpu_seconds']:.0f} s CPU "
        f"(user+sys) on {run_info['cpu_count']} CPU(s); load average at start "
        f"{run_info['load_start']}, at end {run_info['load_end']} (the machine may be shared)."
      ),
    )
  )
  rows = [
    [
      f"1/{round(1 / r['ratio'])}",
      r["channel"],
      r["snr"],
      r["jscc_psnr"],
      r["jscc_ssim"],
      r["sep_psnr"],
      r["sep_ssim"],
      r["sep_quality_mean"],
      r["sep_delivered"],
      r["sep_ergodic_psnr"] if r["channel"] == "rayleigh" else "",
      r["sep_file_psnr"],
      r["sep_file_delivered"],
    ]
    for r in jscc_rows
  ]
  sections.append(
    (
      "DeepJSCC vs separation (cover only)",
      md(
        [
          "k/n",
          "channel",
          "SNR",
          "JSCC PSNR",
          "JSCC SSIM",
          "JPEG payload PSNR",
          "SSIM",
          "mean Q",
          "delivered",
          "JPEG ergodic PSNR",
          "JPEG file PSNR",
          "file delivered",
        ],
        rows,
      )
      + "\n\nTraining (wall s / CPU s): "
      + ", ".join(
        f"{k}: {v['seconds']:.0f} / {v['cpu_seconds']:.0f}" for k, v in jscc_info.items()
      ),
    )
  )
  rows = [
    [
      r["run"],
      r["channel"],
      r["snr"],
      r["stego_psnr"],
      r["stego_ssim"],
      r["received_psnr"],
      r["legit_psnr"],
      r["legit_ssim"],
      r["eve_naive_psnr"],
      r["eve_naive_ssim"],
      r["eve_inverse_psnr"],
      r["eve_inverse_ssim"],
      r["legit_minus_eve_db"],
      r["steganalyzer_pe_fixed"],
      r["steganalyzer_pe_min"],
    ]
    for r in table
  ]
  sections.append(
    (
      "Stego JSCC table",
      md(
        [
          "run",
          "channel",
          "SNR",
          "cover-stego PSNR",
          "SSIM",
          "cover-received PSNR",
          "secret legit PSNR",
          "SSIM",
          "eve naive PSNR",
          "SSIM",
          "eve inverse PSNR",
          "SSIM",
          "legit - best eve (dB)",
          "steganalyzer P_E (train thr.)",
          "P_E (min)",
        ],
        rows,
      )
      + "\n\nSteganalyzer P_E: error of the steganalyzer (XuNet) on received cover vs received "
      "stego; 0.5 = undetectable. 'train thr.' fixes the threshold on training pairs, 'min' is "
      "the best threshold on the test scores (optimistic for the detector).",
    )
  )
  rows = [
    [
      name,
      i["family"],
      i["strategy"],
      i["n_params"]["hider"],
      i["n_params"]["disc"],
      i["n_params"].get("refine", 0),
      i["n_params"]["jscc"],
      i["hide_steps"],
      f"{i['train_seconds']['hider']:.0f} / {i['train_cpu_seconds']['hider']:.0f}",
      f"{i['train_seconds']['eve_inverse']:.0f} / {i['train_cpu_seconds']['eve_inverse']:.0f}",
      f"{i['train_seconds']['steganalyzer']:.0f} / {i['train_cpu_seconds']['steganalyzer']:.0f}",
    ]
    for name, i in runs_info.items()
  ]
  sections.append(
    (
      "Runs: parameters and training time",
      md(
        [
          "run",
          "family",
          "strategy",
          "hider params",
          "disc params",
          "refine params",
          "JSCC params",
          "hider steps",
          "hider wall s / CPU s",
          "eve inverse wall s / CPU s",
          "steganalyzer wall s / CPU s",
        ],
        rows,
      ),
    )
  )
  checks = _acceptance(config, jscc_rows, table, runs_info)
  sections.append(("Acceptance (issue 8), measured", "\n".join(f"- {c}" for c in checks)))
  report_lib.write_report(
    workdir,
    "Steganographic semantic communication",
    sections,
    dict(
      config=config.to_dict(),
      jscc=jscc_rows,
      table=table,
      runs={k: dict(v) for k, v in runs_info.items()},
      jscc_train_seconds=jscc_info,
      run=run_info,
      checks=checks,
    ),
  )


def run(config, workdir):
  os.makedirs(workdir, exist_ok=True)
  t_start, c_start, load_start = time.time(), _cpu_seconds(), _loadavg()
  specs = [system.parse_run(s) for s in config.runs]
  mesh = sharding.make_mesh(config.mesh)
  train, heldout, _ = data_lib.get_dataset(config.data, os.path.join(workdir, "data"))
  train_imgs, held_imgs = train["image"], heldout["image"]
  covers, secrets = _eval_pairs(held_imgs, int(config.eval.num_pairs), config.seed + 11)
  root = jax.random.key(config.seed)
  rate_table = separation.rate_table(covers)

  jscc_rows, jscc_info, jscc_models = [], {}, {}
  for i, ratio in enumerate(config.jscc.ratios):
    model, params, secs = _train_jscc(
      config, ratio, train_imgs, mesh, jax.random.fold_in(root, 100 + i), workdir
    )
    jscc_models[ratio] = (model, params)
    jscc_info[f"deepjscc_r{round(1 / ratio)}"] = secs
    jscc_rows += _eval_jscc(
      model, params, covers, config, ratio, jax.random.fold_in(root, 200 + i), rate_table
    )
  ratio = config.jscc.ratios[0]
  jscc_model, jscc_params = jscc_models[ratio]

  table, runs_info = [], {}
  for i, spec in enumerate(specs):
    logging.info("semcom run %s", spec.name)
    trained = _train_run(
      spec,
      config,
      train_imgs,
      mesh,
      jax.random.fold_in(root, 300 + i),
      workdir,
      jscc_model,
      jscc_params,
    )
    tc, ts = _eval_pairs(train_imgs, int(config.eval.num_pairs), config.seed + 13)
    thr = _det_threshold(
      spec, trained, config, tc, ts, jscc_model, jax.random.fold_in(root, 400 + i)
    )
    table += _eval_run(
      spec, trained, config, covers, secrets, jscc_model, jax.random.fold_in(root, 500 + i), thr
    )
    strategy = "+".join(
      s
      for s, on in (
        ("end_to_end" if spec.end_to_end else "two_stage", True),
        ("high_freq", spec.high_freq),
        ("key", spec.keyed),
        ("adversarial", spec.adversarial),
      )
      if on
    )
    runs_info[spec.name] = dict(
      family=spec.family,
      strategy=strategy,
      n_params=trained["n_params"],
      keyed=spec.keyed,
      end_to_end=spec.end_to_end,
      high_freq=spec.high_freq,
      hide_steps=int(config.hide_train.num_steps),
      train_seconds=trained["train_seconds"],
      train_cpu_seconds=trained["train_cpu_seconds"],
    )
  plots = _plots(workdir, jscc_rows, table) if report_lib.is_writer() else []
  run_info = dict(
    wall_seconds=time.time() - t_start,
    cpu_seconds=_cpu_seconds() - c_start,
    cpu_count=os.cpu_count(),
    load_start=load_start,
    load_end=_loadavg(),
  )
  _report(workdir, config, jscc_rows, table, runs_info, jscc_info, run_info)
  logging.info("semcom report: %s (plots %s)", os.path.join(workdir, "report.md"), plots)
