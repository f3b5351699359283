"""Report of the coverless stego SemCom experiment: tables, acceptance verdicts, plots, grids."""

from __future__ import annotations

import os
import time

import numpy as np

from stegjax.metrics import detection
from stegjax.metrics import report as report_lib
from stegjax.train import toolkit

EVES = ("public_only", "wrong_key", "every_class")
EVE_TEXT = {
  "public_only": "public key only (the received stego image itself)",
  "wrong_key": "wrong private keys (other shared secrets; best key per image)",
  "every_class": "every class (and null) as the private condition, no key (best per image)",
}


def _load() -> str:
  try:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "n/a"


def start_info() -> dict:
  return dict(t0=time.time(), c0=toolkit.cpu_seconds(), load_start=_load())


def end_info(info: dict, sections: dict, fits: dict) -> dict:
  return dict(
    wall_seconds=time.time() - info["t0"],
    cpu_seconds=toolkit.cpu_seconds() - info["c0"],
    cpu_count=os.cpu_count(),
    load_start=info["load_start"],
    load_end=_load(),
    sections=sections,
    fits={
      k: dict(cached=f.cached, seconds=f.seconds, cpu_seconds=f.cpu_seconds)
      for k, f in fits.items()
    },
  )


def detection_summary(s_train, y_train, s_test, n: int) -> dict:
  """Threshold fixed on the training scores; test P_E at it with its 95% interval; min P_E."""
  thr = detection.min_pe(s_train, y_train)[1]
  y = np.concatenate([np.zeros(n), np.ones(n)])
  p_fa, p_md = detection.detection_errors(s_test, y, thr)
  lo, hi = detection.pe_binomial_ci(p_fa, p_md, n, n)
  return dict(
    n_cover=n,
    n_stego=n,
    train_pe=float(detection.min_pe(s_train, y_train)[0]),
    pe=float(0.5 * (p_fa + p_md)),
    pe_ci95=(lo, hi),
    pe_min=float(detection.min_pe(s_test, y)[0]),
    auc=float(detection.auc(s_test, y)),
  )


def _plots(workdir, rows, channels) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, axes = plt.subplots(1, len(channels), figsize=(5.5 * len(channels), 4), sharey=True)
  axes = np.atleast_1d(axes)
  ceiling = next(r for r in rows if r["channel"] == "none")
  for ax, ch in zip(axes, channels):
    rs = [r for r in rows if r["channel"] == ch]
    x = [r["snr"] for r in rs]
    ax.plot(x, [r["legit_psnr"] for r in rs], "o-", label="legitimate receiver")
    for e in EVES:
      ax.plot(x, [r[f"{e}_psnr"] for r in rs], "x:", label=f"eve: {e}")
    ax.axhline(ceiling["legit_psnr"], color="grey", ls="--", label="noise-free ceiling")
    ax.set(title=f"{ch}: secret PSNR", xlabel="SNR (dB)", ylabel="PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  path = os.path.join(workdir, "psnr_vs_snr_secret.png")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return [path]


def _grids(workdir, images, secrets, stego, k: int) -> list[str]:
  """Survey Fig. 4 layout per cell: secret, stego, received, legit reveal, each eavesdropper."""
  paths = []
  cols = ["received", "legit", "wrong_key", "every_class"]
  k = min(k, secrets.shape[0])
  for (ch, snr), outs in images.items():
    tiles = []
    for i in range(k):
      tiles += [secrets[i], np.clip(stego[i], 0, 1)] + [np.asarray(outs[c][i]) for c in cols]
    name = f"grid_{ch}" + ("" if snr is None else f"_{snr:g}dB") + ".png"
    paths.append(
      report_lib.save_grid(np.stack(tiles), os.path.join(workdir, name), ncol=6, scale=3)
    )
  return paths


def _best_same(d) -> float:
  return max(v["same_condition"] for v in d["exactness"].values())


def _exactness_table(d) -> str:
  rows = [
    [
      ("plain DDIM inversion" if int(k) == 0 else f"{k} fixed-point iterations per step"),
      v["same_condition"],
      v["scheme"],
    ]
    for k, v in d["exactness"].items()
  ]
  return (
    report_lib.md_table(
      [
        "inversion",
        "round trip, private condition alone (PSNR dB)",
        "whole scheme, no channel (PSNR dB)",
      ],
      rows,
    )
    + "\n\nRound trip: invert the secret, regenerate under the same condition. Whole scheme: "
    "invert (private), generate (public), invert (public), generate (private), stego kept as floats."
    + "".join(
      f" Pixels outside [0, 1] before the clip the channel needs: stego {o['stego']:.1%}, honest "
      f"generations {o['honest']:.1%}; the 'none' row of the table includes that clip."
      for o in [d["out_of_range"]]
      if o
    )
  )


def _verdict(ok) -> str:
  return "**MET**" if ok else "**NOT MET**"


def _acceptance(config, d) -> list[str]:
  rows, det, rl, run = d["rows"], d["detection"], d["rl"], d["run"]
  ceil = next(r for r in rows if r["channel"] == "none")
  at10 = [r for r in rows if r["snr"] == 10.0]
  lines = [
    f"Noise-free legitimate recovery >= 24 dB: {ceil['legit_psnr']:.2f} dB (uint8-quantized stego: "
    f"{next(r for r in rows if r['channel'] == 'uint8')['legit_psnr']:.2f} dB; round trip under "
    f"the private condition alone: {_best_same(d):.2f} dB) -> "
    f"{_verdict(ceil['legit_psnr'] >= 24.0)}",
  ]
  for r in at10:
    lines.append(
      f"Legit - best eve >= 6 dB at 10 dB ({r['channel']}): legit {r['legit_psnr']:.2f}, best eve "
      f"{r['best_eve_psnr']:.2f} ("
      + ", ".join(f"{e} {r[f'{e}_psnr']:.2f}" for e in EVES)
      + f"), margin {r['legit_minus_best_eve_db']:+.2f} dB -> {_verdict(r['legit_minus_best_eve_db'] >= 6)}"
    )
  lo, hi = det["pe_ci95"]
  lines.append(
    f"Steganalyzer P_E (stego vs honest public-condition generations, threshold from training, "
    f"N = {det['n_cover']} + {det['n_stego']}): {det['pe']:.3f}, 95% interval [{lo:.3f}, {hi:.3f}] "
    f"(min-P_E on the test scores {det['pe_min']:.3f}, AUC {det['auc']:.3f}) -> "
    f"{_verdict(lo <= 0.5 <= hi)} (0.5 inside the interval)"
  )
  a, m = rl["agent"], rl["uniform_at_agent_secret_psnr"]
  wins = a["pe"] > m["pe"] and m["inside"]
  lines.append(
    f"Cost-based RL hider vs uniform at equal secret PSNR ({a['secret_psnr']:.2f} dB): P_E "
    f"{a['pe']:.3f} vs {m['pe']:.3f}, cover-stego PSNR {a['cover_psnr']:.2f} vs "
    f"{m['cover_psnr']:.2f} dB -> "
    + (
      "the agent reaches the higher P_E"
      if wins
      else "**the agent does not beat the uniform hider**"
    )
    + (
      ""
      if m["inside"]
      else " (the agent's secret PSNR lies outside the uniform sweep: extrapolated)"
    )
  )
  lines.append(
    f"CPU default <= 20 min: this run took {run['wall_seconds'] / 60:.1f} min wall (size "
    f"`{config.size}`, load average {run['load_start']} at start, {run['load_end']} at end; models "
    + ("cached" if all(f["cached"] for f in run["fits"].values()) else "trained in this run")
    + ")"
    + (
      " -> " + _verdict(run["wall_seconds"] <= 1200)
      if config.size == "cpu"
      else " (not the cpu size)"
    )
  )
  return lines


def _tables(d) -> tuple[str, str]:
  head = ["channel", "SNR", "stego->received PSNR", "legit PSNR", "SSIM"]
  for e in EVES:
    head += [f"{e} PSNR", "SSIM"]
  head += ["legit - best eve (dB)"]
  rows = []
  for r in d["rows"]:
    row = [r["channel"], "-" if r["snr"] is None else r["snr"], r["received_vs_stego_psnr"]]
    row += [r["legit_psnr"], r["legit_ssim"]]
    for e in EVES:
      row += [r[f"{e}_psnr"], r[f"{e}_ssim"]]
    rows.append(row + [r["legit_minus_best_eve_db"]])
  rl = d["rl"]
  rl_rows = [
    ["uniform", u["level"], u["secret_psnr"], u["cover_psnr"], u["pe"]] for u in rl["uniform"]
  ]
  a = rl["agent"]
  rl_rows.append(
    [
      "REINFORCE agent",
      f"mean {a['mean_strength']:.3f}",
      a["secret_psnr"],
      a["cover_psnr"],
      a["pe"],
    ]
  )
  m = rl["uniform_at_agent_secret_psnr"]
  rl_rows.append(
    ["uniform at the agent's secret PSNR", "interp.", a["secret_psnr"], m["cover_psnr"], m["pe"]]
  )
  return (
    report_lib.md_table(head, rows),
    report_lib.md_table(["hider", "strength", "secret PSNR", "cover-stego PSNR", "P_E"], rl_rows),
  )


def _setup(config, d) -> str:
  kc, dc, run = config.stego_keys, config.ddim, d["run"]
  return (
    f"Size `{config.size}`: {config.data.patch_size}x{config.data.patch_size} patches of the bundled "
    f"photos; class-conditional UNet ({d['params']['unet']:,} parameters, class = source photo, "
    f"training classes {d['info']['train_labels']}); deterministic DDIM, {dc.steps} steps each way, "
    f"CFG scale {dc.guidance}, {dc.fixed_point_iters} fixed-point iterations per inversion step. "
    f"{config.eval.num_secrets} secrets from the held-out photos ({', '.join(config.data.heldout)}); "
    f"public condition = a training class per transmission (cycled). Private key: HKDF-SHA256 of the "
    f"shared secret -> a keyed direction of strength {kc.strength} (x the mean class-embedding norm) "
    f"added to the {'null' if int(kc.secret_class) < 0 else 'secret'} class embedding"
    + (
      f", plus a keyed {kc.latent_block}x{kc.latent_block}-block permutation and sign flip of x_T"
      if int(kc.latent_block)
      else ""
    )
    + f". DeepJSCC ({config.jscc.arch}, k/n = 1/{round(1 / config.jscc.ratio)}) over "
    f"{', '.join(config.channel.channels)}.\n\nRun: {run['wall_seconds']:.0f} s wall, "
    f"{run['cpu_seconds']:.0f} s CPU on {run['cpu_count']} CPU(s), load average {run['load_start']} "
    f"at start and {run['load_end']} at end (a shared, loaded machine is slower than an idle one). "
    "Sections (wall s): " + ", ".join(f"{k} {v['seconds']:.0f}" for k, v in run["sections"].items())
  )


def _survey(config, d) -> str:
  kc, dc = config.stego_keys, config.ddim
  return (
    "| | survey (Sec. IV, Fig. 4) | stegjax |\n|---|---|---|\n"
    "| diffusion model | Stable Diffusion 1.5 (text prompts) | "
    f"{d['params']['unet']:,}-parameter class-conditional UNet trained here |\n"
    f"| sampler | deterministic DDIM, 50 steps each way | deterministic DDIM, {dc.steps} steps each way, "
    "fixed-point inversion |\n"
    "| private key | a prompt ('Eiffel Tower under the blue sky') | HKDF(shared secret) keyed condition"
    + (" + keyed latent scramble" if int(kc.latent_block) else "")
    + " |\n"
    "| public key | a prompt ('a tree under the blue sky') | a cover class |\n"
    "| channel | DeepJSCC | DeepJSCC over AWGN and Rayleigh, 0-20 dB |\n"
    "| results | pictures only: the legit receiver recovers the secret, a wrong key does not | "
    "the tables above (the survey gives no numbers to compare with) |"
  )


def write(workdir, config, d, images, secrets, stego, honest) -> str:
  """report.md, report.json, PSNR-vs-SNR plots and one picture grid per channel cell."""
  plots = (
    _plots(workdir, d["rows"], tuple(config.channel.channels)) if report_lib.is_writer() else []
  )
  grids = _grids(workdir, images, np.asarray(secrets), np.asarray(stego), int(config.eval.grid))
  grids.append(
    report_lib.save_grid(
      np.clip(np.asarray(honest[:12]), 0, 1),
      os.path.join(workdir, "honest_generations.png"),
      ncol=6,
      scale=3,
    )
  )
  table, rl_table = _tables(d)
  checks = _acceptance(config, d)
  setup, survey = _setup(config, d), _survey(config, d)
  sections = [
    ("Setup", setup),
    (
      "Secret recovery per channel and SNR",
      table
      + "\n\nEavesdroppers: "
      + "; ".join(f"`{k}`: {v}" for k, v in EVE_TEXT.items())
      + ". 'none' = the stego image as floats, no channel (the ceiling the inversion sets); 'uint8' = quantized.",
    ),
    ("Inversion exactness", _exactness_table(d)),
    (
      "Steganalysis",
      f"{config.steganalyzer.name} trained on {config.steganalyzer.num_train} stego + as many honest generations (training secrets, wrong key), tested on the evaluation stego vs fresh honest generations: "
      + ", ".join(f"{k} {v}" for k, v in d["detection"].items()),
    ),
    (
      "Cost-based strategy (REINFORCE)",
      rl_table
      + f"\n\nHeld-out pairs: {d['rl']['n']}; AWGN {config.rl.snr} dB; P_E of the environment's steganalyzer (trained on the uniform strength-1 hider) on received cover vs received stego, best threshold.",
    ),
    ("Survey vs stegjax", survey),
    ("Acceptance, measured", "\n".join(f"- {c}" for c in checks)),
    (
      "Pictures",
      "\n".join(f"- `{os.path.basename(p)}`" for p in plots + grids)
      + "\n\nGrid columns: secret, stego, received, legit reveal, best wrong key, best class guess.",
    ),
  ]
  return report_lib.write_report(
    workdir,
    "Coverless stego semantic communication",
    sections,
    dict(d, config=config.to_dict(), checks=checks),
  )
