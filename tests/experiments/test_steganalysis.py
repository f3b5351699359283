"""End-to-end steganalysis experiment at the :smoke size (a few detector steps)."""

import importlib.util
import json
import os

import pytest

from stegjax.experiments import steganalysis

_CFG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "steganalysis.py")
_spec = importlib.util.spec_from_file_location("steganalysis_config", _CFG)
sa_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sa_config)


def _smoke():
  c = sa_config.get_config("smoke")
  c.steganalysis.detectors = "xunet"     # one detector keeps the compile time down
  c.steganalysis.scenarios = "discop,lsb"
  return c


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
    assert r["pe_min"] <= r["pe_fixed"] + 1e-12   # min over thresholds on the same data
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
  assert any("token tests reject naive" in v["check"] and v["pass"] for v in data["verdicts"])
