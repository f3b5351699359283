"""End-to-end steganalysis experiment at the :smoke size (a few detector steps)."""

import importlib.util
import json
import os

import pytest

from stegjax.experiments import steganalysis
from stegjax.security import targets as steganalysis_targets

_CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "steganalysis.py")
_spec = importlib.util.spec_from_file_location("steganalysis_config", _CFG)
sa_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sa_config)


def _smoke():
  c = sa_config.get_config("smoke")
  c.steganalysis.detectors = "xunet"  # one detector keeps the compile time down
  c.steganalysis.scenarios = "discop,lsb"
  return c


def test_verdicts_on_hand_made_results():
  def res(pe, lo, hi, pe_min, null_lo):
    return dict(
      pe_fixed=pe,
      pe_fixed_ci=(lo, hi),
      pe_min=pe_min,
      pe_min_null_interval=(null_lo, 0.5),
      pe_min_pvalue=0.5,
      auc=0.5,
      ci_level=0.95,
    )

  det = {
    "discop": {
      "a": res(0.49, 0.44, 0.54, 0.45, 0.43),  # undetected
      "b": res(0.40, 0.35, 0.45, 0.38, 0.43),
    },  # caught: 0.5 outside its CI
    "naive": {"a": res(0.05, 0.02, 0.08, 0.04, 0.43)},
    "lsb": {"a": res(0.25, 0.20, 0.30, 0.24, 0.43)},
  }  # missed: above 0.2
  tok = {
    "loglik": {"naive": {"min_pvalue": 1e-9}, "discop": {"min_pvalue": 0.3}},
    "chi2_fixed_message": {
      "naive": {"bonferroni_pvalue": 1.0},
      "discop": {"bonferroni_pvalue": 0.02},
    },
    "coincidence": {"fixed_nonce": {"pvalue": 1e-5}, "fresh_nonce": {"pvalue": 0.5}},
  }

  def case(pe, ci, p, precision, rule):
    s = dict(pe=pe, pe_ci=ci, pvalue=p, n_cover=32, n_stego=32)
    return dict(rare_rate=s, log_ratio=dict(s), precision=precision, rule=rule, sampler="x")

  ward = {
    "claim": case(0.5, (0.4, 0.6), 0.4, 24, "nearest"),  # not caught
    "floor": case(0.1, (0.05, 0.2), 1e-6, 12, "floor"),  # caught
  }
  cfg = sa_config.get_config("smoke")
  results = {"detectors": det, "token_tests": tok, "warden": ward}
  got = [(x["target"], x["pass"]) for x in steganalysis_targets.verdicts(results, cfg)]
  assert got == [
    ("steganalyzers", True),
    ("steganalyzers", False),
    ("controls", True),
    ("controls", False),
    ("token", True),
    ("token", True),
    ("ablation", True),
    ("warden", True),
    ("warden", True),
  ]
  tok["coincidence"]["fresh_nonce"]["pvalue"] = 0.001  # the counter design flagged too
  ward["floor"]["log_ratio"]["pvalue"] = ward["floor"]["rare_rate"]["pvalue"] = 0.5  # missed
  ward["claim"]["rare_rate"]["pe_ci"] = (0.3, 0.45)  # the claim caught by one statistic
  v = steganalysis_targets.verdicts(results, cfg)
  assert [x["pass"] for x in v if x["target"] not in ("steganalyzers", "controls")] == [
    True,
    False,
    False,
    False,
    False,
  ]


def test_bad_names_raise(tmp_path):
  c = _smoke()
  c.steganalysis.detectors = "xunet,resnet"
  with pytest.raises(ValueError, match="steganalysis.detectors"):
    steganalysis.run(c, str(tmp_path))
  c = _smoke()
  c.steganalysis.scenarios = "discop,jpeg"
  with pytest.raises(ValueError, match="steganalysis.scenarios"):
    steganalysis.run(c, str(tmp_path))


def test_smoke_end_to_end(tmp_path):
  c = _smoke()
  wd = str(tmp_path)
  res = steganalysis.run(c, wd)
  for f in ("report.md", "report.json", "roc.png", "grid_cover.png", "grid_lsb.png"):
    assert os.path.exists(os.path.join(wd, f)), f
  n = c.steganalysis.num_train + c.steganalysis.num_test
  for name in ("cover", "discop", "lsb"):  # PNGs of the sets the chosen scenarios use
    assert len(os.listdir(os.path.join(wd, "images", name))) == n
  with open(os.path.join(wd, "report.json")) as f:
    data = json.load(f)
  assert set(data["detectors"]) == {"discop", "lsb"}
  for sc in ("discop", "lsb"):
    r = data["detectors"][sc]["xunet"]
    assert r["n_cover_test"] == r["n_stego_test"] == c.steganalysis.num_test
    assert 0.0 <= r["pe_min"] <= 0.5 and 0.0 <= r["pe_fixed"] <= 1.0
    assert r["pe_min"] <= r["pe_fixed"] + 1e-12  # min over thresholds on the same data
    lo, hi = r["pe_fixed_ci"]
    assert 0.0 <= lo < hi <= 1.0
    assert 0.0 <= r["auc"] <= 1.0
  tok = res["token_tests"]
  # The insecure sampler is caught by the token tests even on a barely trained prior;
  # Discop (fresh counters) is not.
  assert tok["loglik"]["naive"]["min_pvalue"] < 1e-3
  assert tok["chi2_fixed_message"]["naive"]["bonferroni_pvalue"] < 1e-3
  assert tok["loglik"]["discop"]["min_pvalue"] > 0.01
  assert tok["chi2_fixed_message"]["discop"]["bonferroni_pvalue"] > 0.01
  assert tok["coincidence"]["fresh_nonce"]["pvalue"] > 0.01
  # One key and one counter for many framed messages repeats the header keystream and the
  # sampler's randomness: the stegos share long token prefixes (the fixed-nonce ablation).
  assert tok["coincidence"]["fixed_nonce"]["pvalue"] < 1e-3
  # The fast teacher-forced log-likelihood agrees with the sampler's KV-cached replay.
  assert tok["loglik_fast_vs_replay_max_abs_diff"] < 1e-3
  assert any("token tests reject naive" in v["check"] and v["pass"] for v in data["verdicts"])
  targets = {"steganalyzers", "controls", "token", "ablation", "warden"}
  assert {v["target"] for v in data["verdicts"]} == targets
  # The model-aware warden: every case on all n sequences of each side. The smoke prior is
  # barely trained (no token under half a unit), so only the mean log ratio can see the floor
  # rule's coarse frequencies (at 2**-8); tests/security/test_warden.py holds the sharp control.
  w = res["warden"]
  assert set(w) == {"claim", "floor", "nearest"} and w["floor"]["precision"] == 8
  for case in w.values():
    for stat in ("rare_rate", "log_ratio"):
      assert case[stat]["n_cover"] == case[stat]["n_stego"] == n
  fl = w["floor"]["log_ratio"]
  assert fl["mean_stego"] > fl["mean_cover"] and fl["pvalue"] < 0.01
  for stat in ("rare_rate", "log_ratio"):
    lo, hi = w["claim"][stat]["pe_ci"]
    assert lo <= 0.5 <= hi, (stat, w["claim"][stat])
  assert not data["models_cached"]  # smoke trains its own models in the test's folder
  with open(os.path.join(wd, "report.md")) as f:
    text = f.read()
  assert "Small-N SMOKE run" in text and "N = 16+16 train" in text and "MET" in text
  assert "Paper vs stegjax" in text and "0.5014" in text and "Model-aware warden" in text
