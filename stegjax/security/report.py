"""The steganalysis experiment's report: tables and prose around the measured figures.

``write`` writes report.md, report.json, roc.png, the sample grids and (``save_png``) every
image; the verdicts come from ``security.targets``. Figures published by the CMSTEG paper
(Table 3) stand beside ours in "Paper vs stegjax".
"""

from __future__ import annotations

import os

import numpy as np

from stegjax.security.targets import GROUPS, ci as _ci, stats_of as _stats
from stegjax.metrics import report

# CMSTEG (AAAI 2025, papers/002_*) Table 3: P_E of three steganalyzers against its Discop
# stegos from LlamaGen, trained on 4000 + 4000 images and tested on 1000 + 1000.
PAPER_PE = {"convnet": 0.5014, "lwenet": 0.5043, "srnet": 0.4980}
PAPER_N = "4000+4000 train, 1000+1000 test"
# Ours in the paper's place: XuNet stands in for ConvNet (Deng et al. 2019, not implemented).
PAPER_COUNTERPART = {"xunet": "convnet", "srnet": "srnet", "lwenet": "lwenet"}

# ----------------------------------------------------------------------------- write


def write(workdir: str, config, results: dict, images: dict):
  """report.md / report.json / roc.png, the sample grids and (``save_png``) every image."""
  if config.steganalysis.save_png:
    for name, im in images.items():
      report.save_pngs(im, os.path.join(workdir, "images", name))
  for name, im in images.items():
    report.save_grid(im[:32], os.path.join(workdir, f"grid_{name}.png"), ncol=8, scale=2)
  curves = {
    sc: {f"{d} (AUC {r['auc']:.3f})": (r["roc_fpr"], r["roc_tpr"]) for d, r in per.items()}
    for sc, per in results["detectors"].items()
  }
  report.roc_plot(curves, os.path.join(workdir, "roc.png"))
  grids = " ".join(f"![](grid_{k}.png)" for k in ("cover", "discop", "naive", "lsb") if k in images)
  sections = [
    ("Setup", _setup(config, results)),
    ("Targets", _targets_table(results["verdicts"])),
    ("Paper vs stegjax", _paper_table(results)),
    ("Detection error", _detector_table(results, config) + "\n\n![](roc.png)"),
    ("Token tests", _token_tables(results["token_tests"], config)),
    ("Model-aware warden", _warden_table(results["warden"], config)),
    ("Samples", "Covers, Discop stegos, naive stegos, LSB stegos:\n\n" + grids),
  ]
  report.write_report(workdir, "Security evaluation (steganalysis)", sections, results)


def _targets_table(v: list[dict]) -> str:
  summary = []
  for key, label in GROUPS.items():
    rows = [x for x in v if x["target"] == key]
    if rows:
      summary.append(f"{label}: **{_met(all(x['pass'] for x in rows))}**")
  rows = [[GROUPS[x["target"]], x["check"], x["measured"], _met(x["pass"])] for x in v]
  return (
    "; ".join(summary) + ".\n\n" + report.md_table(["target", "check", "measured", "verdict"], rows)
  )


def _met(ok) -> str:
  return "MET" if ok else "NOT MET"


def _cells(r: dict, fields) -> list:
  """r's values for ``fields``; pairs (intervals) as ``[lo, hi]``."""
  return [_ci(r[f]) if isinstance(r[f], (list, tuple)) else r[f] for f in fields]


def _paper_table(results: dict) -> str:
  n_tr, n_te = results["num_train_per_class"], results["num_test_per_class"]
  rows = []
  for name, r in results["detectors"].get("discop", {}).items():
    paper = PAPER_COUNTERPART.get(name)
    who = f"{paper} (paper) / {name} (ours)" if paper != name else name
    rows.append([who, PAPER_PE.get(paper, "-"), *_cells(r, ("pe_fixed", "pe_fixed_ci", "pe_min"))])
  head = "steganalyzer|P_E, CMSTEG Table 3|P_E, stegjax (train thr.)|95% CI|min P_E".split("|")
  return (
    f"Discop stegos. The paper: LlamaGen at 256x256, {PAPER_N}. stegjax: this run's prior, "
    f"{n_tr}+{n_tr} train, {n_te}+{n_te} test. The paper reports one P_E per detector without "
    "an interval; both are read as 'indistinguishable' when 0.5 is inside ours.\n\n"
    + report.md_table(head, rows)
  )


_DETECTOR_FIELDS = ("params", "pe_fixed", "pe_fixed_ci", "pe_min", "pe_min_bootstrap_ci")
_DETECTOR_FIELDS += ("pe_min_null_interval", "auc", "train_min_pe")


def _detector_table(results: dict, config) -> str:
  lvl = f"{float(config.steganalysis.ci_level):.0%}"
  rows = [
    [sc, det, *_cells(r, _DETECTOR_FIELDS)]
    for sc, per in results["detectors"].items()
    for det, r in per.items()
  ]
  head = (
    f"scenario|detector|params|P_E (train thr.)|{lvl} CI (binomial)|min P_E (test)|"
    f"{lvl} CI (bootstrap)|null interval (perm.)|AUC|train min P_E"
  )
  return report.md_table(head.split("|"), rows)


def _coincidence(r) -> str:
  return (
    f"pair coincidence {r['mean_coincidence_test']:.3f} vs cover {r['mean_coincidence_ref']:.3f}; "
    f"common prefix {r['mean_common_prefix_test']:.2f} vs {r['mean_common_prefix_ref']:.2f}"
  )


def _token_tables(token: dict, config) -> str:
  alpha, tl = config.steganalysis.alpha, token["loglik"]
  p = lambda r, k: r.get(k, {}).get("pvalue")
  tests = ("welch_t", "mann_whitney_u", "permutation_mean")
  ll = [[f"mean log-lik, cover vs {k}", *(p(tl[k], t) for t in tests)] for k in ("discop", "naive")]
  c2, co, fn = token["chi2_fixed_message"], token["coincidence"], token["chi2_fixed_nonce"]
  chi = lambda r, at="": f"{r['num_rejected']}/{r['num_positions']} positions{at}"
  other = [
    [
      f"chi-square per position, fixed message, {k}",
      c2[k]["bonferroni_pvalue"],
      chi(c2[k], f" at p<{alpha}"),
    ]
    for k in ("discop", "naive")
  ]
  for k, what in (("fixed_nonce", "one fixed counter"), ("fresh_nonce", "fresh counters")):
    other.append(
      [f"token coincidence, discop framed, {what}", co[k]["pvalue"], _coincidence(co[k])]
    )
  other.append(["chi-square per position, discop fixed counter", fn["bonferroni_pvalue"], chi(fn)])
  return (
    report.md_table(["test", "Welch t p", "Mann-Whitney p", "permutation p"], ll)
    + "\n\n"
    + report.md_table(["test", "p-value", "detail"], other)
    + "\n\nMean log-likelihoods come from one teacher-forced pass of the prior; on the first "
    "rows they match the sampler's own KV-cached replay to "
    f"{token['loglik_fast_vs_replay_max_abs_diff']:.1e} nats/token."
  )


_WARDEN_FIELDS = ("pe", "pe_ci", "auc", "pvalue")


def _warden_table(ward: dict, config) -> str:
  what = {
    "claim": "the sampler under test (as configured)",
    "floor": "legacy floor rule (positive control)",
    "nearest": "nearest rule, same low precision",
  }
  rows = [
    [f"{r['sampler']}, {r['rule']}, 2^-{r['precision']}: {what[case]}", stat]
    + [f"{s['mean_cover']:.3g} / {s['mean_stego']:.3g}", *_cells(s, _WARDEN_FIELDS)]
    + [f"{s['n_cover']}+{s['n_stego']}"]
    for case, r in ward.items()
    for stat, s in _stats(r).items()
  ]
  head = ["stegos", "statistic", "mean cover / stego", "P_E", "95% CI", "AUC", "p", "N"]
  return (
    "A warden with the prior and the quantizer: for every token it knows the model's mass p "
    "(what an honest generator, `jax.random.categorical` on the top-k distribution, draws "
    "from) and the stego mass q = frequency / 2^precision. Per sequence: *rare_rate*, the "
    "fraction of tokens with p < 2^-(precision+1); *log_ratio*, the mean of log q/p (the "
    "likelihood ratio of stego vs cover). Threshold from the first num_train sequences of "
    "each side, P_E on the rest (binomial interval); p: one-sided Mann-Whitney over all "
    "sequences. Covers are the same honest generations for every row.\n\n"
    + report.md_table(head, rows)
    + "\n\nKept tokens per step below half a unit, in the covers' distributions (what the "
    "floor rule inflates; with none, only its coarse rounding of the rest can show): "
    + "; ".join(
      f"2^-{r['precision']}: {r['tail_tokens']:.3g} tokens, mass {r['tail_mass']:.2g}"
      for r in {r["precision"]: r for r in ward.values()}.values()
    )
    + "."
  )


def _setup(config, results: dict) -> str:
  sa, st = config.steganalysis, config.stego
  n_tr, n_te = results["num_train_per_class"], results["num_test_per_class"]
  token, tm = results["token_tests"], results["timing"]
  sec = lambda k: tm.get(k, {}).get("seconds", 0.0)
  total = sum(v["seconds"] for v in tm.values())
  steps = "; ".join(
    f"{det} {r['train_steps']} steps on "
    + (f"random {r['train_crop']}x{r['train_crop']} crops" if r["train_crop"] else "whole images")
    for det, r in next(iter(results["detectors"].values())).items()
  )
  small = config.size != "paper"
  h, w = results["image_shape"][:2]
  where = (
    "loaded from the shared cache, nothing trained"
    if results["models_cached"]
    else ("tokenizer and/or prior TRAINED in this run")
  )
  where += f", `{config.model_dir}`" if config.get("model_dir", "") else ""
  tc = sa.train
  text = (
    f"{'**Small-N ' + config.size.upper() + ' run.** ' if small else ''}"
    f"Size `{config.size}`: N = {n_tr}+{n_tr} train and {n_te}+{n_te} test images (cover+stego) "
    f"per scenario ({h}x{w}, token grid {results['grid'][0]}x{results['grid'][1]}); prior "
    f"top-k {st.top_k}, CFG {st.cfg_scale}; Discop `{st.variant}` with the {st.quantizer} "
    f"quantizer at 2^-{st.precision} ({token['bits_per_token']['discop']:.2f} bits/token), "
    f"naive {st.naive_bits} bits/token, LSB matching {st.lsb_bpp} bits per pixel value. "
    "Covers: plain categorical sampling with fresh keys, from the same prior, labels, CFG and "
    "top-k; stegos: random messages, fresh counters. Fixed-counter ablation: "
    f"{sa.num_token_sequences} framed {sa.ablation_message_bytes}-byte messages "
    "(`framing.pack`, as `cmsteg.api.hide`) under one key, all with one counter vs a fresh "
    "counter each, one class label.\n\n"
    "Detectors: one recipe per detector, the same in every scenario (same initial weights, "
    f"batches and augmentations): {steps}; batch {tc.batch_size}, pair-constrained (cover i "
    "and stego i in the same batch under the same random flip/rotation and crop window), "
    f"AdamW lr {tc.lr} (warmup {tc.warmup_steps}, {tc.schedule}); evaluated on whole images "
    "with BatchNorm in inference mode.\n\n"
    "P_E = (P_FA + P_MD)/2. *P_E (train thr.)* uses the threshold minimizing P_E on the train "
    "split (Agresti-Caffo binomial interval); *min P_E (test)* minimizes over thresholds on "
    "the test split as in the literature, which is biased below 0.5 for an undetectable "
    "stego, so it is judged against its label-permutation null interval.\n\n"
    f"Timing: {total:.0f} s in total: {sec('models'):.0f} s models ({where}), "
    f"{sec('generate'):.0f} s sampling, {sec('decode'):.0f} s decoding/LSB, "
    f"{sec('detectors'):.0f} s detectors, {sec('token_tests'):.0f} s token tests, "
    f"{sec('warden'):.0f} s warden."
  )
  if small:
    text += (
      f" This is not the paper's 4000/1000 split (use `:paper`): at N = {n_te} test images "
      f"per class every interval is about {2 * 1.96 * 0.5 / np.sqrt(2 * n_te):.2f} wide at "
      "P_E = 0.5, so only a gross detectability would be seen."
    )
  return text
