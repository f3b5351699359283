"""The steganalysis experiment's verdicts: measured figures against the config's plain targets.

``verdicts`` judges each measurement against ``steganalysis.targets`` (``caught_p``: a positive
control is caught below this p-value; ``control_pe``: a steganalyzer catches a positive
control at this P_E or less) and ``steganalysis.alpha`` (the claim passes a test at p >= alpha).
"""

from __future__ import annotations

GROUPS = {
  "steganalyzers": "Discop undetected by the steganalyzers",
  "controls": "positive controls caught by the steganalyzers",
  "token": "token tests",
  "ablation": "fixed-counter ablation",
  "warden": "model-aware warden",
}


# ----------------------------------------------------------------------------- verdicts


def verdicts(results: dict, config) -> list[dict]:
  """Each target as {target, check, measured, pass}; ``target`` is a key of ``GROUPS``."""
  sa = config.steganalysis
  alpha, caught, pe_max = float(sa.alpha), float(sa.targets.caught_p), float(sa.targets.control_pe)
  v: list[dict] = []
  add = lambda t, c, m, ok: v.append({"target": t, "check": c, "measured": m, "pass": bool(ok)})
  det = results["detectors"]
  for name, r in det.get("discop", {}).items():
    lo, hi = r["pe_fixed_ci"]
    nlo = r["pe_min_null_interval"][0]
    check = f"discop/{name}: 0.5 inside the {r['ci_level']:.0%} CI of P_E (train threshold), "
    check += "and min-P_E not below its permutation-null interval"
    got = f"{_pe(r)}; min-P_E {r['pe_min']:.3f} vs null {ci(r['pe_min_null_interval'])} "
    got += f"(perm. p {r['pe_min_pvalue']:.2g}); AUC {r['auc']:.3f}"
    # min-P_E is only evidence of detection when it falls BELOW its null interval.
    add("steganalyzers", check, got, bool(lo <= 0.5 <= hi and r["pe_min"] >= nlo))
  for sc in ("naive", "lsb"):
    for name, r in det.get(sc, {}).items():
      got = f"{_pe(r)}; min-P_E {r['pe_min']:.3f}; AUC {r['auc']:.3f}"
      add(
        "controls", f"{sc}/{name}: P_E (train threshold) <= {pe_max}", got, r["pe_fixed"] <= pe_max
      )
  if results.get("token_tests"):
    _token_verdicts(add, results["token_tests"], alpha, caught)
  if results.get("warden"):
    _warden_verdicts(add, results["warden"], alpha, caught)
  return v


def _pe(r: dict) -> str:
  return f"P_E {r['pe_fixed']:.3f} {ci(r['pe_fixed_ci'])}"


def _token_verdicts(add, token: dict, alpha: float, caught: float):
  ll, c2, co = token["loglik"], token["chi2_fixed_message"], token["coincidence"]
  p_naive = min(ll["naive"]["min_pvalue"], c2["naive"]["bonferroni_pvalue"])
  p_discop = min(
    ll["discop"]["min_pvalue"], c2["discop"]["bonferroni_pvalue"], co["fresh_nonce"]["pvalue"]
  )
  check = f"token tests reject naive at p < {caught:g} (smallest p of log-likelihood and "
  add("token", check + "per-position chi-square tests)", f"p = {p_naive:.2g}", p_naive < caught)
  check = f"token tests do not reject Discop at p < {alpha} (smallest p of log-likelihood, "
  check += "per-position chi-square and coincidence tests, no multiplicity correction)"
  add("token", check, f"p = {p_discop:.2g}", p_discop >= alpha)
  p_fn, p_fr = co["fixed_nonce"]["pvalue"], co["fresh_nonce"]["pvalue"]
  check = f"token-coincidence test catches one key + fixed counter at p < {caught:g} and "
  got = f"fixed counter p = {p_fn:.2g}; fresh counters p = {p_fr:.2g}"
  add(
    "ablation",
    check + f"passes fresh counters at p >= {alpha}",
    got,
    p_fn < caught and p_fr >= alpha,
  )


def stats_of(r: dict) -> dict:
  """The per-statistic figures of one warden case."""
  return {k: s for k, s in r.items() if isinstance(s, dict) and "pe_ci" in s}


def _warden_summary(r: dict) -> str:
  return "; ".join(
    f"{k} P_E {s['pe']:.3f} {ci(s['pe_ci'])}, p {s['pvalue']:.2g}" for k, s in stats_of(r).items()
  )


def _warden_verdicts(add, ward: dict, alpha: float, caught: float):
  fl, cl = ward["floor"], ward["claim"]
  n = next(iter(stats_of(fl).values()))
  check = f"catches the legacy floor quantizer at precision {fl['precision']} (positive "
  check += f"control): a statistic at p < {caught:g}, N = {n['n_cover']}+{n['n_stego']} sequences"
  add(
    "warden", check, _warden_summary(fl), min(s["pvalue"] for s in stats_of(fl).values()) < caught
  )
  check = f"does not catch {cl['sampler']} with the {cl['rule']} quantizer at precision "
  check += f"{cl['precision']}: 0.5 inside every statistic's P_E interval, every p >= {alpha}"
  ok = all(
    s["pe_ci"][0] <= 0.5 <= s["pe_ci"][1] and s["pvalue"] >= alpha for s in stats_of(cl).values()
  )
  add("warden", check, _warden_summary(cl), ok)


def ci(x) -> str:
  return f"[{x[0]:.3f}, {x[1]:.3f}]"
