"""Coverless stego SemCom (survey Sec. IV, Figs. 3-4) and the cost-based RL strategy.

  python -m stegjax.main --config=configs/semcom_coverless.py:smoke

Reads top to bottom: data -> the class-conditional UNet and DeepJSCC (fit or load) -> keys
(the legitimate private key, wrong keys, every class as a guess) -> inversion exactness ->
stego images -> the channel sweep (legit and every eavesdropper per channel and SNR, plus the
noise-free ceiling) -> a steganalyzer on stego vs honest public-condition generations -> the
cost-based strategy (REINFORCE over per-block strengths vs the uniform hider) -> report.
"""

from __future__ import annotations

import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stegjax import data as data_lib
from stegjax.semcom import coverless_report as report
from stegjax.metrics import image as image_metrics
from stegjax.models import diffusion
from stegjax.models import steganalyzers
from stegjax.semcom import cost_rl
from stegjax.semcom import coverless
from stegjax.semcom import system
from stegjax.train import sharding
from stegjax.train import toolkit


def _fit(config, workdir, name, settings, init_fn, loss_fn, batch_fn, train_cfg, rng):
  recipe = toolkit.Recipe(
    init_fn, loss_fn, train_cfg, sharding.make_mesh(config.mesh), rng, config.mesh.rules
  )
  return toolkit.fit_or_load(
    recipe, batch_fn, root=os.path.join(workdir, "models"), name=name, settings=settings
  )


def _batches(arrays: dict, batch_size: int, seed: int):
  """batch_fn(step): this process's rows of the global batch (the same model at any count)."""
  n = len(next(iter(arrays.values())))
  rows = lambda step: sharding.process_rows(data_lib.batch_indices(n, batch_size, seed, step))
  return lambda step: {k: np.asarray(v[rows(step)]) for k, v in arrays.items()}


def _fit_unet(config, workdir, train, num_classes, rng):
  ucfg = config.unet
  model = diffusion.UNet(num_classes, tuple(ucfg.features), int(ucfg.cond_dim))
  abar = diffusion.alpha_bars(int(ucfg.train_steps))

  def loss_fn(params, extra, batch, rng, step):
    x = system.to_float(batch["image"])
    key = system.typed_key(rng)
    loss = diffusion.loss(
      model,
      params["unet"],
      x,
      batch["label"],
      key,
      abar,
      float(ucfg.p_uncond),
      str(ucfg.space),
      str(ucfg.prediction),
    )
    return loss, ({"mse": loss}, extra)

  init_fn = lambda r: ({"unet": diffusion.init(model, r, config.data.patch_size)}, {})
  batch_fn = _batches(
    {"image": train["image"], "label": train["label"]}, int(ucfg.train.batch_size), config.seed
  )
  settings = (config.data, {k: v for k, v in ucfg.items() if k != "train"}, config.seed)
  f = _fit(config, workdir, "unet", settings, init_fn, loss_fn, batch_fn, ucfg.train, rng)
  return model, f.params["unet"], abar, f


def _fit_jscc(config, workdir, images, rng):
  jc = config.jscc
  model = system.make_jscc(jc.features, jc.ratio, jc.arch)
  init_fn = lambda r: ({"jscc": system.init_jscc(model, r, config.data.patch_size, images)}, {})
  batch_fn = _batches({"image": images}, int(jc.train.batch_size), config.seed + 1)
  loss_fn = system.jscc_loss_fn(model, config.channel)
  settings = (config.data, {k: v for k, v in jc.items() if k != "train"}, config.channel)
  f = _fit(config, workdir, "deepjscc", settings, init_fn, loss_fn, batch_fn, jc.train, rng)
  return model, f.params["jscc"], f


def _keys(config, model, params, classes):
  """The legitimate key, the wrong keys and every class (plus null) as a guessed condition."""
  kc, p = config.stego_keys, config.data.patch_size
  base = model.num_classes if int(kc.secret_class) < 0 else int(kc.secret_class)
  scale = coverless.embedding_scale(model, params, classes)
  make = lambda s: coverless.make_private_key(
    model, params, s, base, float(kc.strength), scale, int(kc.latent_block), p
  )
  secret = kc.shared_secret.encode()
  wrong = [make(secret + b"|wrong %d" % i) for i in range(int(kc.num_wrong_keys))]
  guesses = list(classes) + [model.num_classes]
  conds = diffusion.class_conds(model, params, jnp.asarray(guesses))
  every_class = [coverless.PrivateKey(c) for c in conds]
  return make(secret), {"wrong_key": wrong, "every_class": every_class}


def _score_receiver(sc, received, pub_cond, secrets):
  """Secret PSNR/SSIM for the legit receiver and each eavesdropper (best over a group's keys)."""
  z = sc.inv(received, pub_cond)
  outs = {
    "legit": coverless.reveal_many(sc.gen, z, [sc.legit])[0],
    "public_only": jnp.clip(received, 0, 1),
  }
  for name, keys in sc.eves.items():
    imgs = coverless.reveal_many(sc.gen, z, keys)
    psnrs = jnp.stack([image_metrics.psnr(jnp.clip(x, 0, 1), secrets) for x in imgs])
    outs[name] = imgs[jnp.argmax(psnrs, axis=0), jnp.arange(secrets.shape[0])]  # oracle best
  row = {}
  for name, x in outs.items():
    x = jnp.clip(x, 0.0, 1.0)
    outs[name] = x
    row[f"{name}_psnr"] = float(jnp.mean(image_metrics.psnr(x, secrets)))
    row[f"{name}_ssim"] = float(jnp.mean(image_metrics.ssim(x, secrets)))
  row["best_eve_psnr"] = max(row[f"{n}_psnr"] for n in outs if n != "legit")
  row["legit_minus_best_eve_db"] = row["legit_psnr"] - row["best_eve_psnr"]
  return row, outs


def _sweep(config, jscc, p_jscc, sc, stego, pub_cond, secrets, key):
  """Rows per (channel, SNR), the noise-free ceilings first; grids of the images per cell."""
  tx = jax.jit(lambda x, snr, k, ch: system.transmit(jscc, p_jscc, x, snr, k, ch), static_argnums=3)
  sent = jnp.clip(stego, 0.0, 1.0)
  cells = [("none", None, sent), ("uint8", None, jnp.round(sent * 255.0) / 255.0)]
  for ci, ch in enumerate(config.channel.channels):
    for si, snr in enumerate(config.channel.eval_snrs):
      k = jax.random.fold_in(jax.random.fold_in(key, ci), si)
      cells.append((ch, float(snr), tx(sent, jnp.float32(snr), k, ch)))
  rows, images = [], {}
  for ch, snr, received in cells:
    row, outs = _score_receiver(sc, received, pub_cond, secrets)
    row.update(channel=ch, snr=snr, received_vs_stego_psnr=_mean_psnr(received, sent))
    rows.append(row)
    images[(ch, snr)] = dict(outs, received=received)
  return rows, images


def _mean_psnr(a, b):
  return float(jnp.mean(image_metrics.psnr(jnp.clip(a, 0, 1), jnp.clip(b, 0, 1))))


def _eps_fn(config, unet, p_unet, abar):
  guidance, prediction = float(config.ddim.guidance), str(config.unet.prediction)
  return coverless.guided_eps_fn(unet, p_unet, guidance, abar, prediction)


def _exactness(config, unet, p_unet, abar, secrets, legit, pub_cond):
  """Noise-free round trips, plain inversion vs fixed-point (``coverless.round_trips``)."""
  eps_fn = _eps_fn(config, unet, p_unet, abar)
  out = {}
  for iters in sorted({0, int(config.ddim.fixed_point_iters)}):
    s = coverless.Sampler(eps_fn, abar, int(config.ddim.steps), iters, str(config.unet.space))
    same, full = jax.jit(lambda x: coverless.round_trips(s, x, legit, pub_cond))(secrets)
    out[iters] = dict(same_condition=_mean_psnr(same, secrets), scheme=_mean_psnr(full, secrets))
  return out


def _steganalysis(config, workdir, scheme, train_imgs, stego, rng):
  """A steganalyzer on stego vs honest generations (z ~ N(0, I)) under the same public classes.

  Its training stego hides training-photo secrets under a wrong key (the warden can make
  stego images, not the legitimate pair's); the test stego are the evaluation ones."""
  sc, p = config.steganalyzer, config.data.patch_size
  n_tr = int(sc.num_train)
  k1, k2, k3 = jax.random.split(rng, 3)
  tr_secrets = system.to_float(train_imgs[:n_tr])
  tr_cond = scheme.pub_of(n_tr, 1)
  honest = lambda k, cond: scheme.gen(jax.random.normal(k, (cond.shape[0], p, p, 3)), cond)
  q = lambda x: jnp.round(jnp.clip(x, 0, 1) * 255.0)
  tr_stego = scheme.hide(tr_secrets, tr_cond, scheme.eves["wrong_key"][0])
  x_tr = jnp.concatenate([q(honest(k1, tr_cond)), q(tr_stego)])
  y_tr = np.concatenate([np.zeros(n_tr), np.ones(n_tr)]).astype(np.int32)
  det = steganalyzers.make_steganalyzer(sc.name, dict(sc.cfg))

  def init_fn(r):
    dp, ds = steganalyzers.init_steganalyzer(det, r, (p, p, 3))
    return {"det": dp}, {"det_state": ds}

  batch_fn = _batches({"image": np.asarray(x_tr), "label": y_tr}, int(sc.train.batch_size), 5)
  settings = (config.unet, config.ddim, config.stego_keys, config.data, sc.name, sc.cfg, n_tr, "v1")
  loss_fn = cost_rl.steganalyzer_loss_fn(det)
  f = _fit(config, workdir, "steganalyzer", settings, init_fn, loss_fn, batch_fn, sc.train, k2)
  variables = {"params": f.params["det"], **f.extra["det_state"]}
  score = jax.jit(lambda x: det.apply(variables, x, train=False).reshape(-1))
  n = stego.shape[0]
  test_honest = honest(k3, scheme.pub_of(n, 0))
  s_tr = np.asarray(score(x_tr))
  s_te = np.concatenate([np.asarray(score(q(test_honest))), np.asarray(score(q(stego)))])
  return report.detection_summary(s_tr, y_tr, s_te, n), test_honest


def _pairs(images, batch_size: int, seed: int):
  """Cover/secret batches: the secret of record i is record perm[i] (a fixed shuffle)."""
  perm = np.random.default_rng(seed).permutation(len(images))
  return _batches({"cover": images, "secret": np.asarray(images)[perm]}, batch_size, seed)


def _cost_strategy(config, workdir, train_imgs, held_imgs, jscc, p_jscc, rng):
  """An existing CNN stego-JSCC hider, its steganalyzer environment, the REINFORCE agent."""
  rc, p = config.rl, config.data.patch_size
  spec = system.RunSpec("rl_cnn", "cnn", keyed=False)
  hider = system.Hider("cnn", rc.hider)
  ks = jax.random.split(rng, 4)
  base = (config.data, config.jscc, config.channel, rc.hider, rc.hider_loss)
  w = ml_collections.ConfigDict(dict(rc.hider_loss))

  def fit(name, settings, init_fn, loss_fn, train_cfg, seed, key):
    batch_fn = _pairs(train_imgs, int(train_cfg.batch_size), seed)
    return _fit(config, workdir, name, settings, init_fn, loss_fn, batch_fn, train_cfg, key)

  hider_init = lambda r: ({"hider": hider.init(r, (p, p, 3))}, {"jscc": p_jscc})
  hider_loss = system.stego_loss_fn(spec, hider, jscc, config.channel, w, 1)
  p_hider = fit("rl_hider", base, hider_init, hider_loss, rc.hider_train, 11, ks[0]).params["hider"]
  det = steganalyzers.make_steganalyzer(config.steganalyzer.name, dict(config.steganalyzer.cfg))
  env_ch = ml_collections.ConfigDict(
    dict(train_snr_min=float(rc.snr), train_snr_max=float(rc.snr), train_channel="awgn")
  )

  def det_init(r):
    dp, ds = steganalyzers.init_steganalyzer(det, r, (p, p, 3))
    return {"det": dp}, {"hider": p_hider, "jscc": p_jscc, "det_state": ds}

  det_loss = system.steganalyzer_loss_fn(spec, hider, jscc, det, env_ch, 1)
  det_settings = (base, config.steganalyzer.cfg, rc.snr)
  fd = fit("rl_env_steganalyzer", det_settings, det_init, det_loss, rc.detector_train, 12, ks[1])
  det_vars = {"params": fd.params["det"], **fd.extra["det_state"]}
  env = cost_rl.make_env(hider, p_hider, jscc, p_jscc, det, det_vars, float(rc.snr), rc.weights)
  policy = cost_rl.Policy(len(rc.levels), int(rc.block))
  z = jnp.zeros((1, p, p, 3))
  agent_init = lambda r: ({"policy": policy.init(r, z, z)}, {"p_hider": p_hider})
  agent_loss = cost_rl.reinforce_loss_fn(policy, hider, env, tuple(rc.levels), float(rc.entropy))
  agent_settings = (base, rc.to_dict(), config.steganalyzer.cfg)
  fa = fit("rl_agent", agent_settings, agent_init, agent_loss, rc.agent_train, 13, ks[2])
  n = int(config.eval.num_secrets)
  covers, secrets = system.to_float(held_imgs[:n]), system.to_float(np.roll(held_imgs[:n], 1, 0))
  return cost_rl.evaluate(
    policy, fa.params["policy"], hider, p_hider, env, tuple(rc.levels), covers, secrets, ks[3]
  )


def _scheme(config, unet, p_unet, abar, classes):
  """Sampler, jitted hide/generate/invert, the public condition of transmission i, the keys."""
  dc = config.ddim
  eps_fn = _eps_fn(config, unet, p_unet, abar)
  sampler = coverless.Sampler(
    eps_fn, abar, int(dc.steps), int(dc.fixed_point_iters), str(config.unet.space)
  )
  legit, eves = _keys(config, unet, p_unet, classes)
  # One compile per key (a key's scramble indexes with host arrays).
  hide = lambda x, c, key: jax.jit(lambda x, c: coverless.hide(sampler, x, key, c))(x, c)
  # The cover class of transmission i cycles through the training classes (offset per set).
  pub_of = lambda m, off: diffusion.class_conds(
    unet, p_unet, jnp.asarray([classes[(i + off) % len(classes)] for i in range(m)])
  )
  return types.SimpleNamespace(
    gen=jax.jit(sampler.generate),
    inv=jax.jit(sampler.invert),
    hide=hide,
    pub_of=pub_of,
    legit=legit,
    eves=eves,
  )


def run(config, workdir):
  os.makedirs(workdir, exist_ok=True)
  timers, run_info = toolkit.Timers(), report.start_info()
  train, heldout, info = data_lib.get_dataset(config.data, os.path.join(workdir, "data"))
  classes = info["train_labels"]
  root = jax.random.key(config.seed)

  with timers("models"):
    unet, p_unet, abar, fit_u = _fit_unet(
      config, workdir, train, info["num_classes"], jax.random.fold_in(root, 1)
    )
    jscc, p_jscc, fit_j = _fit_jscc(config, workdir, train["image"], jax.random.fold_in(root, 2))

  sc = _scheme(config, unet, p_unet, abar, classes)
  n = int(config.eval.num_secrets)
  secrets = system.to_float(heldout["image"][:n])
  pub_cond = sc.pub_of(n, 0)
  with timers("inversion"):
    exactness = _exactness(config, unet, p_unet, abar, secrets, sc.legit, pub_cond)
    stego = sc.hide(secrets, pub_cond, sc.legit)
  with timers("channel sweep"):
    key = jax.random.fold_in(root, 3)
    rows, images = _sweep(config, jscc, p_jscc, sc, stego, pub_cond, secrets, key)
  with timers("steganalysis"):
    key = jax.random.fold_in(root, 4)
    detect, honest = _steganalysis(config, workdir, sc, train["image"], stego, key)
  with timers("cost-based RL"):
    key = jax.random.fold_in(root, 5)
    rl = _cost_strategy(config, workdir, train["image"], heldout["image"], jscc, p_jscc, key)

  run_info = report.end_info(run_info, timers.split(), dict(unet=fit_u, jscc=fit_j))
  params = dict(unet=int(sum(x.size for x in jax.tree.leaves(p_unet))))
  d = dict(info=info, exactness=exactness, rows=rows, detection=detect, rl=rl, run=run_info)
  # Pixels a generation puts outside [0, 1]: the channel sends images, so these get clipped.
  d["out_of_range"] = {
    k: float(jnp.mean((x < 0) | (x > 1))) for k, x in (("stego", stego), ("honest", honest))
  }
  report.write(workdir, config, dict(d, params=params), images, secrets, stego, honest)
