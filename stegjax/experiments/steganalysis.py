"""Experiment: can a steganalyzer, a token statistic or a model-aware warden tell stegos from covers?

  python -m stegjax.main --config=configs/steganalysis.py:smoke

``run`` reads top to bottom:
1. models: the VQ tokenizer and AR prior (``recipes.prior``, shared with cmsteg);
2. run: cover tokens (plain categorical sampling, fresh keys) and stego tokens from samplers of
   the ``stego.sampler`` registry, for the same labels, CFG and top-k: the sampler under test
   (random messages, fresh counters), the insecure ``naive`` sampler, a fixed-counter ablation
   through the real framing, and the legacy floor quantizer at a low precision (the warden's
   positive control); all decoded to images, plus LSB-matching stegos of the covers;
3. measure: every steganalyzer trained per scenario (P_E with intervals, ROC, AUC); the token
   tests (log-likelihood, per-position chi-square, coincidence); the model-aware warden;
4. write: ``security.report`` (report.md / report.json / roc.png / sample grids).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from stegjax import models
from stegjax.cmsteg import recipes
from stegjax.errors import ConfigError
from stegjax.security import report as steganalysis_report
from stegjax.security import targets as steganalysis_targets
from stegjax.metrics import detection, report, stats
from stegjax.models import steganalyzers
from stegjax.security import detectors, generation, lsb, warden
from stegjax.stego import sampler
from stegjax.train import sharding, toolkit

SCENARIOS = ("discop", "naive", "lsb")


def run(config, workdir: str):
  sa = config.steganalysis
  scenarios, names = _check(config)
  timers = toolkit.Timers()
  with timers("models"):
    models_cached = _models_cached(config, workdir)
    vq, prior = recipes.prior(config, workdir)
  gen = generation.Generator(prior, config.stego)
  k_lab, k_gen, k_lsb, k_eval, k_tt = jax.random.split(jax.random.PRNGKey(config.seed + 101), 5)
  train_labels = np.asarray(prior.info["train_labels"], np.int32)
  n = int(sa.num_train) + int(sa.num_test)
  labels = train_labels[np.asarray(jax.random.randint(k_lab, (n,), 0, len(train_labels)))]
  fp = _fingerprint(config)
  root = os.path.join(workdir, "steganalysis")

  with timers("generate"):
    toks = _cached_tokens(gen, config, labels, k_gen, os.path.join(root, f"tokens_{fp}.npz"))
  with timers("decode"):
    images = _images(vq, tuple(prior.info["grid"]), toks, scenarios, config, k_lsb)

  with timers("detectors"):
    det = _detection(config, images, scenarios, names, fp, root, k_eval)
  with timers("token_tests"):
    token = _token_tests(gen, toks, labels, config, k_tt)
  with timers("warden"):
    ward = _warden(gen, toks, labels, config)

  results = {
    "detectors": det,
    "token_tests": token,
    "warden": ward,
    "models_cached": models_cached,
    "num_train_per_class": int(sa.num_train),
    "num_test_per_class": int(sa.num_test),
    "grid": list(prior.info["grid"]),
    "image_shape": list(images["cover"].shape[1:]),
    "timing": timers.split(),
    "config_fingerprint": fp,
  }
  results["verdicts"] = steganalysis_targets.verdicts(results, config)
  steganalysis_report.write(workdir, config, results, images)
  return results


# ----------------------------------------------------------------------------- setup


def _names(s, valid, what: str) -> list[str]:
  names = [x.strip() for x in str(s).split(",") if x.strip()]
  bad = [x for x in names if x not in valid]
  if bad or not names:
    raise ConfigError(f"unknown {what} {bad or s!r}; valid: {', '.join(valid)}")
  return names


def _check(config):
  sa = config.steganalysis
  scenarios = _names(sa.scenarios, SCENARIOS, "steganalysis.scenarios")
  names = _names(sa.detectors, steganalyzers.NAMES, "steganalysis.detectors")
  if int(sa.num_train) < 2 or int(sa.num_test) < 2:
    raise ConfigError(
      f"steganalysis.num_train and num_test must be >= 2, got {sa.num_train}, {sa.num_test}"
    )
  return scenarios, names


def _models_cached(config, workdir: str) -> bool:
  """Whether the tokenizer and prior are already trained (nothing to train in this run)."""
  return all(recipes.is_cached(config, workdir, kind) for kind in ("tokenizer", "prior"))


def _fingerprint(config) -> str:
  """What the token sets depend on (the detectors add their own sizes and recipes)."""
  sa = config.steganalysis
  keys = ("num_train", "num_test", "num_token_sequences", "gen_batch", "ablation_message_bytes")
  parts = (config.data, config.vq, config.prior, config.stego, {k: sa.get(k) for k in keys})
  # v3: samplers from the registry; the warden's sets.
  return toolkit.fingerprint(config.seed, *parts, sa.warden, "tokens-v3")


# ----------------------------------------------------------------------------- sampling


def _sampler(st, name=None, **over) -> sampler.Sampler:
  """The registry's sampler for config section ``st`` (``name`` or ``st.variant``), with
  fields ``over`` changed (e.g. ``precision``, ``quantizer``)."""
  return sampler.from_config({**st.to_dict(), **over}, name)


def _token_sets(gen: generation.Generator, config, labels, key) -> dict:
  """Every token set the measurements use, from fixed keys (the same on every run). Counters
  of different sets never overlap, so no (key, counter) pair repeats across sets."""
  sa, st = config.steganalysis, config.stego
  gb, n, m = int(sa.gen_batch), len(labels), int(sa.num_token_sequences)
  claim, naive = _sampler(st), _sampler(st, "naive")
  k_cov, k_msg, k_naive, k_tok = jax.random.split(key, 4)
  # Random messages longer than the capacity, fresh bits per batch.
  rand = lambda k, s: (
    lambda i, b: generation.random_bits(jax.random.fold_in(k, i), b, gen.capacity(s))
  )
  out = {"cover": gen.covers(labels, k_cov, gb)}
  out["discop"], out["discop_bits"] = gen.stegos(claim, labels, rand(k_msg, claim), 0, gb)
  out["naive"], out["naive_bits"] = gen.stegos(naive, labels, rand(k_naive, naive), 0, gb)
  # Token-test sets, one label: covers, one fixed message (fresh counters), the ablation.
  lab = np.full((m,), labels[0], np.int32)
  k1, k2, k3 = jax.random.split(k_tok, 3)
  out["tt_cover"] = gen.covers(lab, k1, gb)
  msg = generation.random_bits(k2, 1, gen.capacity(claim))
  fixed = lambda s: lambda i, b: np.repeat(msg[:, : gen.capacity(s)], b, 0)
  out["tt_discop_fixed_msg"] = gen.stegos(claim, lab, fixed(claim), n, gb)[0]
  out["tt_naive_fixed_msg"] = gen.stegos(naive, lab, fixed(naive), 0, gb)[0]
  # The fixed-counter ablation through the real framing: many messages under one key with the
  # SAME counter (the public Discop code's one seed for every message) vs a fresh counter each.
  # The counter keys both the header/AEAD keystream and the sampler's PRF: reuse repeats both.
  msgs = np.asarray(jax.random.randint(k3, (m, int(sa.ablation_message_bytes)), 0, 256), np.uint8)
  secret = str(st.secret).encode()
  counters = {"fixed": np.full(m, 2**31), "fresh": np.arange(n + m, n + 2 * m)}
  for k, c in counters.items():
    out[f"tt_discop_{k}_nonce"] = gen.framed(claim, lab, msgs, c.astype(np.uint32), secret, gb)
  out["tt_label"] = lab
  # The warden's sets: the sampler under test at the warden's low precision, with the legacy
  # floor rule (the positive control) and with the nearest rule.
  w = int(sa.warden.precision)
  k_floor, k_near = jax.random.split(jax.random.fold_in(key, 1))
  for c, (rule, k) in enumerate((("floor", k_floor), ("nearest", k_near))):
    s = _sampler(st, precision=w, quantizer=rule)
    out[f"warden_{rule}"] = gen.stegos(s, labels, rand(k, s), (c + 1) * n + 2 * m, gb)[0]
  return out


def _cached_tokens(gen, config, labels, key, path: str) -> dict:
  if os.path.exists(path):
    return dict(np.load(path))
  toks = _token_sets(gen, config, labels, key)
  if report.is_writer():
    toolkit.atomic_write(path, lambda f: np.savez(f, **toks))
  return toks


# ----------------------------------------------------------------------------- images


def _images(vq, grid, toks, scenarios, config, key) -> dict:
  """uint8 images of the covers and of each scenario's stegos (LSB: of the covers)."""
  h, w = grid
  decode = jax.jit(
    lambda p, t: jnp.clip(
      vq.model.apply({"params": p}, t.reshape(-1, h, w), method="decode_indices"), -1.0, 1.0
    )
  )
  gb = int(config.steganalysis.gen_batch)
  sets = ["cover"] + [sc for sc in ("discop", "naive") if sc in scenarios]
  images = {
    k: report.to_uint8(sharding.batched_apply(decode, vq.params, toks[k], gb)) for k in sets
  }
  if "lsb" in scenarios:
    bpp = float(config.stego.lsb_bpp)
    images["lsb"] = np.asarray(lsb.embed_random(key, jnp.asarray(images["cover"]), bpp))
  return images


# ----------------------------------------------------------------------------- measure


def _detection(config, images, scenarios, names, fp, root, key) -> dict:
  """Each detector trained on the first num_train pairs of each scenario, tested on the rest.

  Detector-major: a detector compiles once and is refitted from the same start per scenario.
  """
  sa = config.steganalysis
  n_tr, n_te = int(sa.num_train), int(sa.num_test)
  y_tr, y_te = (np.r_[np.zeros(k, int), np.ones(k, int)] for k in (n_tr, n_te))
  cov = images["cover"]
  out: dict = {sc: {} for sc in scenarios}
  for di, name in enumerate(names):
    over = sa.get("detector_train", {}).get(name, {})
    tcfg = detectors.train_config(sa.train, over, f"steganalysis.detector_train.{name}")
    seed = config.seed + 10 * di
    d = detectors.Detector(
      name, sa.models[name], tcfg, cov.shape[1:], seed, config.mesh, "steganalysis.train"
    )
    for si, sc in enumerate(scenarios):
      stg, settings = images[sc], (fp, sa.models[name])
      fit = d.fit(cov[:n_tr], stg[:n_tr], root=root, name=f"{sc}_{name}", settings=settings)
      s_tr = np.concatenate([d.scores(fit, cov[:n_tr]), d.scores(fit, stg[:n_tr])])
      s_te = np.concatenate([d.scores(fit, cov[n_tr:]), d.scores(fit, stg[n_tr:])])
      k = jax.random.fold_in(key, 10 * si + di)
      r = detection.evaluate(
        k, s_tr, y_tr, s_te, y_te, float(sa.ci_level), num_resamples=int(sa.num_resamples)
      )
      r.update(params=models.param_count(fit.params), train_steps=int(tcfg.num_steps))
      r.update(train_crop=d.crop, train_min_pe=detection.min_pe(s_tr, y_tr)[0])
      out[sc][name] = dict(r, cached=fit.cached)
  return out


def _token_tests(gen, toks, labels, config, key) -> dict:
  """Network-free attacks: log-likelihood two-sample tests, per-position chi-square of a fixed
  message, and token coincidence for the fixed-counter ablation."""
  sa = config.steganalysis
  alpha, gb, perms = float(sa.alpha), int(sa.gen_batch), int(sa.num_permutations)
  vocab = int(gen.model.vocab_size)
  ks = jax.random.split(key, 4)
  ll = {
    k: gen.per_sequence(generation.mean_loglik, labels, toks[k], gb)
    for k in ("cover", "discop", "naive")
  }
  nc = min(4, len(labels))
  replay = gen.replay_loglik(labels[:nc], toks["discop"][:nc])
  chi2 = lambda a, b: _compact_chi2(stats.per_position_chi2(toks[a], toks[b], vocab, alpha))
  coincide = lambda k: stats.coincidence_test(toks[f"tt_discop_{k}"], toks["tt_cover"])
  per_token = lambda k: float(np.mean(toks[f"{k}_bits"]) / gen.model.num_tokens)
  return {
    "loglik_fast_vs_replay_max_abs_diff": float(np.max(np.abs(ll["discop"][:nc] - replay))),
    "loglik": {
      k: stats.two_sample_tests(ll["cover"], ll[k], ks[i], perms)
      for i, k in enumerate(("discop", "naive"))
    },
    "chi2_fixed_message": {k: chi2("tt_cover", f"tt_{k}_fixed_msg") for k in ("discop", "naive")},
    "coincidence": {k: coincide(k) for k in ("fixed_nonce", "fresh_nonce")},
    "chi2_fixed_nonce": chi2("tt_cover", "tt_discop_fixed_nonce"),
    "bits_per_token": {k: per_token(k) for k in ("discop", "naive")},
  }


def _compact_chi2(r: dict) -> dict:
  keep = ("min_pvalue", "bonferroni_pvalue", "num_rejected", "num_positions", "alpha")
  return dict({k: r[k] for k in keep}, pvalues=r["pvalues"])


def _warden(gen, toks, labels, config) -> dict:
  """The model-aware warden on the sampler under test, and on the floor and nearest rules at
  the warden's low precision, each against the same honest covers."""
  sa, st = config.steganalysis, config.stego
  w = int(sa.warden.precision)
  cases = {
    "claim": ("discop", int(st.precision), str(st.quantizer)),
    "floor": ("warden_floor", w, "floor"),
    "nearest": ("warden_nearest", w, "nearest"),
  }
  kw = dict(num_train=int(sa.num_train), level=float(sa.ci_level), batch=int(sa.gen_batch))
  return {
    case: dict(
      warden.evaluate(gen, labels, toks["cover"], toks[k], precision=p, rule=r, **kw),
      sampler=str(st.variant),
    )
    for case, (k, p, r) in cases.items()
  }
