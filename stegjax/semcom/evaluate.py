"""Measuring stego JSCC: DeepJSCC against the separation baselines, and each run's table rows.

Every figure is PSNR/SSIM from ``metrics.image`` and steganalyzer P_E from
``metrics.detection``, over held-out cover/secret pairs, per evaluated channel and SNR.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stegjax import channels
from stegjax.metrics import detection
from stegjax.metrics import image as image_metrics
from stegjax.semcom import keys as keys_lib
from stegjax.semcom import separation
from stegjax.semcom import system
from stegjax.train import sharding


def metrics(a, b) -> tuple[float, float]:
  """(mean PSNR, mean SSIM) of a against b."""
  return (float(jnp.mean(image_metrics.psnr(a, b))), float(jnp.mean(image_metrics.ssim(a, b))))


def _local(trained) -> dict:
  """The run's trained variables replicated on this process's devices (``sharding.spread``
  inputs). Every process measures all pairs itself: the figures do not depend on the count."""
  names = ("params", "p_jscc", "eve_params", "det_vars")
  return trained | {k: sharding.replicate_local(trained[k]) for k in names}


def _cell_key(key, snr_index, channel_index):
  return jax.random.fold_in(jax.random.fold_in(key, snr_index), channel_index)


def _separation_cells(table, snr, ratio, channel, key, x) -> dict:
  """The separation baselines of one (channel, SNR) cell: ``sep`` (payload; Rayleigh: outage),
  ``sep_file`` (headers counted) and ``sep_ergodic`` (fading only; AWGN: equal to ``sep``)."""
  fading = channels.wireless_channel(channel).fading
  variants = [("sep", {}), ("sep_file", dict(size="file"))]
  if fading:
    variants.append(("sep_ergodic", dict(rayleigh="ergodic")))
  row = {}
  for name, kw in variants:
    rec, q, ok = separation.reconstruct(table, float(snr), ratio, channel, key, **kw)
    row[f"{name}_psnr"], row[f"{name}_ssim"] = metrics(jnp.asarray(rec), x)
    row[f"{name}_quality_mean"] = float(q.mean())
    row[f"{name}_delivered"] = float(ok.mean())
  if not fading:
    for k in ("psnr", "ssim", "quality_mean", "delivered"):
      row[f"sep_ergodic_{k}"] = row[f"sep_{k}"]
  # The strongest baseline in the cell (the target compares against it too).
  row["sep_best_psnr"] = max(row["sep_psnr"], row["sep_ergodic_psnr"], row["sep_file_psnr"])
  return row


def jscc_rows(model, params, covers, config, ratio, key, table) -> list[dict]:
  """DeepJSCC vs the separation baselines, PSNR/SSIM per channel and SNR.

  ``table`` is ``separation.rate_table(covers)``.
  """
  params = sharding.replicate_local(params)
  enc = jax.jit(
    lambda x, snr, k, ch: system.transmit(model, params, x, snr, k, ch), static_argnums=3
  )
  (x,) = sharding.spread((system.to_float(covers),))
  snrs = tuple(config.channel.get("jscc_eval_snrs", config.channel.eval_snrs))
  grey = float(np.mean(image_metrics.psnr_from_mse(table.grey_mse)))
  rows = []
  for ci, ch in enumerate(system.CHANNELS):
    for i, snr in enumerate(snrs):
      k = _cell_key(key, i, ci)
      pj, sj = metrics(enc(x, jnp.float32(snr), k, ch), x)
      row = dict(ratio=ratio, channel=ch, snr=float(snr), jscc_psnr=pj, jscc_ssim=sj)
      row["grey_psnr"] = grey
      rows.append(row | _separation_cells(table, snr, ratio, ch, k, x))
  return rows


def _forward_fn(spec, trained, jscc_model, block):
  """The jitted evaluation forward of one run: one compiled function for every channel (the
  channel is a traced index into ``system.CHANNELS``)."""
  hider, params, p_jscc = trained["hider"], trained["params"], trained["p_jscc"]

  @jax.jit
  def forward(cover, secret, snr, k_ch, legit, wrong, ch_index):
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

  return forward


def _row(out, x_c, x_s, n, det_threshold) -> dict:
  row = {}
  for name, a, b in (
    ("stego", out["stego"], x_c),
    ("received", out["received"], x_c),
    ("legit", out["legit"], x_s),
    ("eve_naive", out["naive"], x_s),
    ("eve_inverse", out["inverse"], x_s),
  ):
    row[f"{name}_psnr"], row[f"{name}_ssim"] = metrics(a, b)
  row["eve_best_psnr"] = max(row["eve_naive_psnr"], row["eve_inverse_psnr"])
  row["legit_minus_eve_db"] = row["legit_psnr"] - row["eve_best_psnr"]
  scores = np.concatenate([np.asarray(out["s_cover"]), np.asarray(out["s_stego"])])
  labels = np.concatenate([np.zeros(n), np.ones(n)])
  row["steganalyzer_pe_min"] = detection.min_pe(scores, labels)[0]
  row["steganalyzer_pe_fixed"] = detection.pe_at_threshold(scores, labels, det_threshold)
  return row


def run_rows(spec, trained, config, covers, secrets, jscc_model, key, det_threshold) -> list:
  """Table rows for one run over channels x SNRs."""
  n = len(covers)
  forward = _forward_fn(spec, _local(trained), jscc_model, int(config.key_block))
  legit = keys_lib.message_keys(jax.random.key(int(config.secret_key_seed)), 0, n)
  # The eavesdropper's guess of the key.
  wrong = keys_lib.message_keys(jax.random.key(int(config.secret_key_seed) + 1), 0, n)
  x_c, x_s = system.to_float(covers), system.to_float(secrets)
  x_c, x_s, legit, wrong = sharding.spread((x_c, x_s, legit, wrong))
  rows = []
  for ci, ch in enumerate(system.CHANNELS):
    for si, snr in enumerate(config.channel.eval_snrs):
      out = forward(x_c, x_s, jnp.float32(snr), _cell_key(key, si, ci), legit, wrong, ci)
      row = dict(run=spec.name, family=spec.family, channel=ch, snr=float(snr))
      rows.append(row | _row(out, x_c, x_s, n, det_threshold))
  return rows


def det_threshold(spec, trained, config, covers, secrets, jscc_model, key) -> float:
  """Detector threshold fixed on training pairs (so the held-out P_E is unbiased)."""
  trained = _local(trained)
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
