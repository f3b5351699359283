"""Steganographic semantic communication: train and evaluate stego JSCC codecs.

  python -m stegjax.main --config=configs/semcom.py:smoke

Reads top to bottom: data -> DeepJSCC per bandwidth ratio (+ the JPEG separation
baseline) -> for each run (family x strategy) the hider, then its eavesdroppers
(closed-box inverse network, steganalyzer) -> the evaluation table over channels
and SNRs (``semcom.evaluate``) -> report.md / report.json / PSNR-vs-SNR plots
(``semcom.report``). Every trained model is fitted or loaded by ``train.toolkit`` under
``workdir/models``; a rerun restores it and trains nothing.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from stegjax import data as data_lib
from stegjax import errors
from stegjax import models
from stegjax.metrics import report as report_lib
from stegjax.models import steganalyzers
from stegjax.semcom import evaluate
from stegjax.semcom import networks
from stegjax.semcom import report
from stegjax.semcom import separation
from stegjax.semcom import system
from stegjax.train import sharding
from stegjax.train import toolkit


def _settings(config, *extra):
  """Everything besides a train config that shapes the semcom models (the cache key)."""
  sections = ("data", "jscc", "channel", "families", "loss", "refine", "key_block", "eve")
  return tuple(config.get(k) for k in sections) + (config.seed,) + extra


def _fit(config, name, workdir, init_fn, loss_fn, batch_fn, train_cfg, mesh, rng, settings):
  """Trains (or restores) one model; returns (params, extra, {'seconds', 'cpu_seconds'})."""
  recipe = toolkit.Recipe(init_fn, loss_fn, train_cfg, mesh, rng, config.mesh.rules)
  f = toolkit.fit_or_load(
    recipe, batch_fn, root=os.path.join(workdir, "models"), name=name, settings=settings
  )
  return f.params, f.extra, {"seconds": f.seconds, "cpu_seconds": f.cpu_seconds}


def _loadavg() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def _pair_batches(images: np.ndarray, batch_size: int, seed: int):
  """batch_fn(step) -> {'cover', 'secret'}: two independent, resumable index streams."""
  n = len(images)

  def batch_fn(step):  # the global batch's rows of this process (the same model at any count)
    i = sharding.process_rows(data_lib.batch_indices(n, batch_size, seed, step))
    j = sharding.process_rows(data_lib.batch_indices(n, batch_size, seed + 7919, step))
    return {"cover": np.asarray(images[i]), "secret": np.asarray(images[j])}

  return batch_fn


def _eval_pairs(heldout: np.ndarray, num: int, seed: int):
  """Fixed held-out cover/secret pairs (secret never equals its cover)."""
  n = len(heldout)
  if n < 2:
    raise errors.ConfigError(f"need at least 2 held-out patches, got {n}")
  k1, k2 = jax.random.split(jax.random.key(seed))
  ci = np.asarray(jax.random.randint(k1, (num,), 0, n))
  shift = np.asarray(jax.random.randint(k2, (num,), 1, n))
  return np.asarray(heldout[ci]), np.asarray(heldout[(ci + shift) % n])


def _train_jscc(config, ratio, images, mesh, rng, workdir):
  model = system.make_jscc(config.jscc.features, ratio, config.jscc.get("arch", "conv"))
  p = config.data.patch_size

  def init_fn(r):
    return {"jscc": system.init_jscc(model, r, p, images)}, {}

  n = len(images)
  bs = int(config.jscc.train.batch_size)

  def batch_fn(step):
    rows = sharding.process_rows(data_lib.batch_indices(n, bs, config.seed, step))
    return {"image": np.asarray(images[rows])}

  name = f"deepjscc_r{round(1 / ratio)}"
  loss_fn = system.jscc_loss_fn(model, config.channel)
  params, _, times = _fit(
    config,
    name,
    workdir,
    init_fn,
    loss_fn,
    batch_fn,
    config.jscc.train,
    mesh,
    rng,
    _settings(config, "deepjscc", ratio),
  )
  return model, params["jscc"], times


def _refine_net(config, spec):
  """The keyed receiver's post-filter (networks.RefineNet), or None (unkeyed run, or depth 0)."""
  cfg = config.get("refine")
  if not spec.keyed or cfg is None or int(cfg.depth) == 0:
    return None
  return networks.RefineNet(int(cfg.features), int(cfg.depth))


def _train_hider(spec, config, train_imgs, mesh, rng, workdir, jscc_model, jscc_params):
  """The run's hider (+ its discriminator, post-filter, and JSCC if end to end)."""
  fam = config.families[spec.family]
  hider = system.Hider(spec.family, fam, spec.high_freq)
  p = config.data.patch_size
  disc = networks.Discriminator(int(fam.disc_features)) if spec.adversarial else None
  refine = _refine_net(config, spec)

  def init_fn(r):
    k1, k2, k3, k4 = jax.random.split(r, 4)
    params = {"hider": hider.init(k1, (p, p, 3))}
    if spec.end_to_end:  # from scratch (PilotJSCC: the same data-dependent PCA init)
      params["jscc"] = system.init_jscc(jscc_model, k2, p, train_imgs)
    if disc is not None:
      params["disc"] = disc.init(k3, jnp.zeros((1, p, p, 3)))
    if refine is not None:
      params["refine"] = refine.init(k4, jnp.zeros((1, p, p, 3)))
    return params, ({} if spec.end_to_end else {"jscc": jscc_params})

  weights = config.loss.to_dict()
  weights.update(dict(fam.get("loss", {}) or {}))  # per-family overrides
  loss_fn = system.stego_loss_fn(
    spec,
    hider,
    jscc_model,
    config.channel,
    ml_collections.ConfigDict(weights),
    int(config.key_block),
    disc,
    refine,
  )
  batches = _pair_batches(train_imgs, int(config.hide_train.batch_size), config.seed + 1)
  settings = _settings(config, spec.name, config.jscc.ratios[0])
  params, _, secs = _fit(
    config, spec.name, workdir, init_fn, loss_fn, batches, config.hide_train, mesh, rng, settings
  )
  return hider, refine, params, secs


def _train_eve(spec, hider, config, train_imgs, mesh, rng, workdir, jscc_model, p_hider, p_jscc):
  """Closed-box inverse eavesdropper: the public revealing network's architecture on
  (received, public reveal) pairs intercepted under other keys (``system.eve_input``)."""
  ecfg, p = config.eve, config.data.patch_size
  eve_net = networks.RevealNet(int(ecfg.features), int(ecfg.depth))

  def init_fn(r):
    return {"eve": eve_net.init(r, jnp.zeros((1, p, p, 6)))}, {"hider": p_hider, "jscc": p_jscc}

  loss_fn = system.inverse_eve_loss_fn(
    spec, hider, jscc_model, eve_net, config.channel, int(config.key_block)
  )
  batches = _pair_batches(train_imgs, int(config.hide_train.batch_size), config.seed + 2)
  name = f"{spec.name}_eve_inverse"
  settings = _settings(config, name, config.jscc.ratios[0])
  params, _, secs = _fit(
    config, name, workdir, init_fn, loss_fn, batches, ecfg.train, mesh, rng, settings
  )
  return eve_net, params["eve"], secs


def _train_detector(spec, hider, config, train_imgs, mesh, rng, workdir, jscc_model, p_h, p_j):
  """The steganalyzer on received cover vs received stego."""
  ecfg, p = config.eve, config.data.patch_size
  detector = steganalyzers.make_steganalyzer(
    ecfg.steganalyzer, dict(ecfg.get("steganalyzer_cfg", {}) or {})
  )

  def init_fn(r):
    dp, dstate = steganalyzers.init_steganalyzer(detector, r, (p, p, 3))
    return {"det": dp}, {"hider": p_h, "jscc": p_j, "det_state": dstate}

  loss_fn = system.steganalyzer_loss_fn(
    spec, hider, jscc_model, detector, config.channel, int(config.key_block)
  )
  batches = _pair_batches(train_imgs, int(config.hide_train.batch_size), config.seed + 3)
  name = f"{spec.name}_steganalyzer"
  settings = _settings(config, name, config.jscc.ratios[0])
  params, extra, secs = _fit(
    config, name, workdir, init_fn, loss_fn, batches, ecfg.steganalyzer_train, mesh, rng, settings
  )
  return detector, {"params": params["det"], **extra["det_state"]}, secs


def _train_run(spec, config, train_imgs, mesh, rng, workdir, jscc_model, jscc_params):
  """The hider and its two eavesdroppers; what ``semcom.evaluate`` needs, and their costs."""
  r_hide, r_eve, r_det = jax.random.split(rng, 3)
  args = (config, train_imgs, mesh)
  hider, refine, params, secs = _train_hider(spec, *args, r_hide, workdir, jscc_model, jscc_params)
  p_jscc = params["jscc"] if spec.end_to_end else jscc_params
  eve_net, eve_params, eve_secs = _train_eve(
    spec, hider, *args, r_eve, workdir, jscc_model, params["hider"], p_jscc
  )
  detector, det_vars, det_secs = _train_detector(
    spec, hider, *args, r_det, workdir, jscc_model, params["hider"], p_jscc
  )
  parts = {"hider": params["hider"], "disc": params.get("disc", {})}
  parts.update(refine=params.get("refine", {}), jscc=p_jscc)
  times = dict(hider=secs, eve_inverse=eve_secs, steganalyzer=det_secs)
  trained = dict(hider=hider, params=params, p_jscc=p_jscc, refine=refine, eve_net=eve_net)
  trained.update(eve_params=eve_params, detector=detector, det_vars=det_vars)
  trained["n_params"] = {k: models.param_count(v) for k, v in parts.items()}
  trained["train_seconds"] = {k: v["seconds"] for k, v in times.items()}
  trained["train_cpu_seconds"] = {k: v["cpu_seconds"] for k, v in times.items()}
  return trained


def _run_info(spec, trained, config) -> dict:
  flags = (("high_freq", spec.high_freq), ("key", spec.keyed), ("adversarial", spec.adversarial))
  first = "end_to_end" if spec.end_to_end else "two_stage"
  strategy = "+".join([first] + [s for s, on in flags if on])
  return dict(
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


def _jscc_models(config, train_imgs, covers, mesh, root, workdir):
  """DeepJSCC per bandwidth ratio and its rows against the separation baselines."""
  rate_table = separation.rate_table(covers)
  rows, info, fitted = [], {}, {}
  for i, ratio in enumerate(config.jscc.ratios):
    model, params, secs = _train_jscc(
      config, ratio, train_imgs, mesh, jax.random.fold_in(root, 100 + i), workdir
    )
    fitted[ratio] = (model, params)
    info[f"deepjscc_r{round(1 / ratio)}"] = secs
    key = jax.random.fold_in(root, 200 + i)
    rows += evaluate.jscc_rows(model, params, covers, config, ratio, key, rate_table)
  return fitted[config.jscc.ratios[0]], rows, info


def run(config, workdir):
  os.makedirs(workdir, exist_ok=True)
  t_start, c_start, load_start = time.time(), toolkit.cpu_seconds(), _loadavg()
  specs = [system.parse_run(s) for s in config.runs]
  mesh = sharding.make_mesh(config.mesh)
  train, heldout, _ = data_lib.get_dataset(config.data, os.path.join(workdir, "data"))
  train_imgs, held_imgs = train["image"], heldout["image"]
  covers, secrets = _eval_pairs(held_imgs, int(config.eval.num_pairs), config.seed + 11)
  root = jax.random.key(config.seed)

  # Models and the cover-only measurements: DeepJSCC per ratio against JPEG.
  (jscc_model, jscc_params), jscc_rows, jscc_info = _jscc_models(
    config, train_imgs, covers, mesh, root, workdir
  )
  # Each stego run: train, then measure over channels x SNRs.
  table, runs_info = [], {}
  for i, spec in enumerate(specs):
    logging.info("semcom run %s", spec.name)
    rng = jax.random.fold_in(root, 300 + i)
    trained = _train_run(spec, config, train_imgs, mesh, rng, workdir, jscc_model, jscc_params)
    tc, ts = _eval_pairs(train_imgs, int(config.eval.num_pairs), config.seed + 13)
    k_thr, k_eval = jax.random.fold_in(root, 400 + i), jax.random.fold_in(root, 500 + i)
    thr = evaluate.det_threshold(spec, trained, config, tc, ts, jscc_model, k_thr)
    table += evaluate.run_rows(spec, trained, config, covers, secrets, jscc_model, k_eval, thr)
    runs_info[spec.name] = _run_info(spec, trained, config)

  # Write.
  plots = report.plots(workdir, jscc_rows, table) if report_lib.is_writer() else []
  run_info = dict(
    wall_seconds=time.time() - t_start,
    cpu_seconds=toolkit.cpu_seconds() - c_start,
    cpu_count=os.cpu_count(),
    load_start=load_start,
    load_end=_loadavg(),
  )
  report.write(workdir, config, jscc_rows, table, runs_info, jscc_info, run_info)
  logging.info("semcom report: %s (plots %s)", os.path.join(workdir, "report.md"), plots)
